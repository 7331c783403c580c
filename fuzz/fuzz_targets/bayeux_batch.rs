//! AFL++ target: see `bayeux_edge::fuzzing::batch`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        bayeux_edge::fuzzing::batch(data);
    });
}
