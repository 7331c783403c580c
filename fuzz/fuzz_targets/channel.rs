//! AFL++ target: see `bayeux_edge_fuzz::targets::channel`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        bayeux_edge_fuzz::targets::channel(data);
    });
}
