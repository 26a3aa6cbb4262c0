//! Compiles etcd's v3 API (the `.proto` files under `proto/`, as etcd
//! publishes them) into a gRPC client for the fleet store.
//!
//! With `protox`, a protobuf compiler written in Rust, so that building
//! Switchyard needs no `protoc` on the machine (the `etcd-client` crate
//! would: its build script runs `protoc`, which a fresh machine lacks).

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["etcd/api/etcdserverpb/rpc.proto"], ["proto"])
        .unwrap_or_else(|e| panic!("compiling etcd's protocol files under proto/: {e}"));
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(files)
        .unwrap_or_else(|e| panic!("generating the etcd client: {e}"));
}
