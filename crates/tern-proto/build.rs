//! Compiles proto/ with protox (a pure-Rust protobuf compiler), so no system `protoc` is
//! needed on a fresh machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not compiled in with env!(): cargo reuses a compiled build script
    // across checkouts of the workspace at different paths (the build cache lives outside
    // the clone), and a compiled-in path would point at the checkout that built it.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .join("../../proto")
        .canonicalize()?;
    let files = [
        "tern/store/v1/store.proto",
        "tern/raft/v1/raft.proto",
        "tern/queue/v1/queue.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    // Every gRPC method as `package.Service/Method`, one a line: the authorization tests
    // walk this list, so a method added to proto/ is tested without anyone listing it.
    let mut methods = String::new();
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                let (package, name) = (file.package(), service.name());
                methods.push_str(&format!("{package}.{name}/{}\n", method.name()));
            }
        }
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("methods.txt"), methods)?;
    // Message content on the Enqueue paths is `Bytes`: tern-queue keeps the pieces as they
    // arrived and hands the same buffers to every store attempt, with no copy per attempt.
    tonic_prost_build::configure()
        .bytes(".tern.queue.v1.EnqueueRequest.chunk")
        .bytes(".tern.store.v1.EnqueueRequest.chunk")
        .compile_fds(fds)?;
    // Relative to this package, not `root`: an absolute path would tie the check to the
    // checkout that ran the script first, and another checkout's proto changes (same build
    // cache) would go unseen, its code generated from the first checkout's files.
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
