//! Fuzz harnesses that drive the library through its public API only. The
//! targets in `fuzz_targets/` are thin `afl::fuzz!` wrappers around these and
//! around `bayeux_edge::fuzzing`; `tests/fuzz_smoke.rs` in the main crate runs
//! the same functions on the committed corpus as part of `cargo test`.

pub mod engine_batches;
