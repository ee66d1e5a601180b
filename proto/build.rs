//! Compiles `proto/sluice/v1/sluice.proto`, `groups.proto` and `replication.proto` with protox (a pure-Rust protobuf compiler,
//! so no `protoc` is needed on the build machine) and generates tonic code from it.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/sluice/v1/sluice.proto", "proto/sluice/v1/groups.proto", "proto/sluice/v1/replication.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // The descriptor set also feeds the gRPC reflection service.
    std::fs::write(out.join("sluice_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        // `bytes::Bytes` for bytes fields: decoding a batch slices the request buffer
        // instead of copying it.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
