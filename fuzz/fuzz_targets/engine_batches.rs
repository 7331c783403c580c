//! AFL++ target: sequences of whole batches through one engine; see
//! `bayeux_edge_fuzz::engine_batches`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        bayeux_edge_fuzz::engine_batches::run(data);
    });
}
