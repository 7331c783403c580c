//! A bounded, seeded run of the fuzz entry points on stable Rust, so every test
//! run exercises them: every file of the committed corpus as it is (crashes the
//! fuzzer found stay there as named seeds, so a fixed crash stays fixed), then
//! mutations of the corpus plus random bytes. `scripts/fuzz` runs the same
//! entry points coverage-guided under AFL++ (see `fuzz/README.md`).

use std::path::{Path, PathBuf};

/// The `engine_batches` target's logic, shared with the fuzz crate.
#[path = "../fuzz/src/engine_batches.rs"]
mod engine_batches;
#[path = "../fuzz/src/targets.rs"]
mod targets;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                if let Ok(bytes) = std::fs::read(&path) {
                    out.push((path, bytes));
                }
            }
        }
    }
    assert!(!out.is_empty(), "corpus for {target} is empty");
    // Replay in a fixed order, whatever the directory's.
    out.sort();
    out
}

fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.usize(1..8) {
        match rng.u8(0..4) {
            0 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v[i] = rng.u8(..);
            }
            1 if !v.is_empty() => {
                let i = rng.usize(..v.len());
                v.remove(i);
            }
            2 => {
                let i = rng.usize(..=v.len());
                let b = *b"{}[]\",:/*\\0n\n!$";
                v.insert(i, b[rng.usize(..b.len())]);
            }
            _ => {
                if !v.is_empty() {
                    let a = rng.usize(..v.len());
                    let b = rng.usize(a..v.len());
                    let piece = v[a..b].to_vec();
                    let at = rng.usize(..=v.len());
                    v.splice(at..at, piece);
                }
            }
        }
    }
    v
}

fn run(target: &str, f: fn(&[u8]), rounds: usize) {
    let seeds = corpus(target);
    for (path, seed) in &seeds {
        // Shown with the failure when this seed panics.
        println!("replaying {}", path.display());
        f(seed);
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + target.len() as u64);
    for _ in 0..rounds {
        let (_, seed) = &seeds[rng.usize(..seeds.len())];
        f(&mutate(&mut rng, seed));
        let random: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
        f(&random);
    }
}

#[test]
fn bayeux_batch_never_panics() {
    run("bayeux_batch", targets::batch, 3000);
}

#[test]
fn channel_never_panics() {
    run("channel", targets::channel, 5000);
}

#[test]
fn routes_toml_never_panics() {
    run("routes_toml", targets::routes_toml, 300);
}

#[test]
fn engine_batches_keep_their_invariants() {
    run("engine_batches", engine_batches::run, 1500);
}
