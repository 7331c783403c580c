//! AFL++ target: see `bayeux_edge_fuzz::targets::routes_toml`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        bayeux_edge_fuzz::targets::routes_toml(data);
    });
}
