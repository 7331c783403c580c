//! Embeds the Faye browser bundle (npm `faye`, pinned in `scripts/fetch-client`)
//! so a plain `cargo build` produces a server that serves `{prefix}/client.js`.
//! When the files are missing the script is run once; if that fails (no npm,
//! no network) the binary is built without the bundle and `[server] client_dir`
//! can point at the files at run time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 4] = [
    "faye-browser-min.js",
    "faye-browser-min.js.map",
    "faye-browser.js",
    "faye-browser.js.map",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = root.join("vendor").join("faye-client");
    println!("cargo:rerun-if-changed=scripts/fetch-client");
    println!("cargo:rerun-if-env-changed=BAYEUX_EDGE_NO_FETCH");
    for f in FILES {
        println!("cargo:rerun-if-changed=vendor/faye-client/{f}");
    }
    if !dir.join(FILES[0]).exists() && std::env::var_os("BAYEUX_EDGE_NO_FETCH").is_none() {
        let status = Command::new("bash")
            .arg(root.join("scripts").join("fetch-client"))
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            println!("cargo:warning=Faye browser bundle not embedded: scripts/fetch-client failed; set [server] client_dir to serve it");
        }
    }
    // The list of files is written here once; the server includes it.
    let mut code = format!("const FILES: [&str; {}] = {FILES:?};\n\n", FILES.len());
    code.push_str("fn embedded(name: &str) -> Option<&'static [u8]> {\n    match name {\n");
    for f in FILES {
        let path = dir.join(f);
        if Path::new(&path).exists() {
            let _ = writeln!(
                code,
                "        {f:?} => Some(include_bytes!({:?})),",
                path.display().to_string()
            );
        }
    }
    code.push_str("        _ => None,\n    }\n}\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("faye_client.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
    }
}
