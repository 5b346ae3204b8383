//! Generates the moq-worker protobuf types from ../schema at build time.
//! protox parses the .proto files in Rust, so no protoc binary is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a target
    // dir shared by several checkouts reuses the compiled script, which must
    // still read this checkout's schema.
    let schema = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../schema");
    let files = [
        schema.join("moqworker/v1/coordinator.proto"),
        schema.join("moqworker/v1/admin.proto"),
        schema.join("moqworker/v1/watch.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&schema])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
