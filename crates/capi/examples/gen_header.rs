//! Regenerates include/sparseflow.h from this crate with cbindgen.
//!
//! `cargo run -p sparseflow-capi --example gen_header` (tests/header.rs fails until you do,
//! whenever an exported item changed).

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../../include/sparseflow.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("read crates/capi/cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed to generate the header");
    std::fs::create_dir_all(header.parent().unwrap()).expect("create include/");
    bindings.write_to_file(&header);
    println!("wrote {}", header.display());
}
