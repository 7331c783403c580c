//! The `bayeux-edge` binary: the allocator, then the command line in
//! `bayeux_edge::cli`.

use std::process::ExitCode;

// jemalloc instead of the system allocator: with glibc's, a quarter of the user-space
// time under load went to malloc, and its per-thread arenas fragment with
// many small per-connection buffers (see the performance section of the README).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // jemalloc returns freed pages to the system only when something allocates,
    // so after a burst an idle process would keep its peak RSS. A background
    // thread applies the decay (pages unused for ~10 s go back) on its own.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("bayeux-edge: cannot start the allocator's background purging: {e}");
    }
    bayeux_edge::cli::main()
}
