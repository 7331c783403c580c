//! Fuzz harnesses that drive the library through its public API only. The
//! targets in `fuzz_targets/` are thin `afl::fuzz!` wrappers around these;
//! `tests/fuzz_smoke.rs` in the main crate compiles the same files in by path
//! and runs them on the committed corpus as part of `cargo test`.

pub mod engine_batches;
pub mod targets;
