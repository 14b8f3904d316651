//! Generates the gRPC echo service's code from tests/proto/echo.proto
//! (needs protoc: Debian's protobuf-compiler, which scripts/test.sh installs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    tonic_prost_build::compile_protos("proto/echo.proto")?;
    Ok(())
}
