//! AFL++ target: see `bayeux_edge::fuzzing::channel`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        bayeux_edge::fuzzing::channel(data);
    });
}
