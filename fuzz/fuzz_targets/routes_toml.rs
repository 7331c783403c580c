//! AFL++ target: see `bayeux_edge::fuzzing::routes_toml`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        bayeux_edge::fuzzing::routes_toml(data);
    });
}
