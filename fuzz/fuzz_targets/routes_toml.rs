#![no_main]
//! Fuzz target: see `bayeux_edge::fuzzing::routes_toml`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bayeux_edge::fuzzing::routes_toml(data);
});
