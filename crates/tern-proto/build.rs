//! Compiles proto/ with protox (a pure-Rust protobuf compiler), so no system `protoc` is
//! needed on a fresh machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../proto")
        .canonicalize()?;
    let files = [
        "tern/store/v1/store.proto",
        "tern/raft/v1/raft.proto",
        "tern/queue/v1/queue.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
