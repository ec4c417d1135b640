//! Compiles the wire contract in `proto/` without a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/zhibao/v1/zhibao.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(protos)?;
    // The encoded descriptor set, for gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("zhibao_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    // Every service decodes with our codec: malformed messages and messages
    // that set two members of a `oneof` are refused as INVALID_ARGUMENT.
    tonic_prost_build::configure()
        .codec_path("crate::proto::codec::Codec")
        // Handlers take `self: Arc<Self>`, so streams can hold the service.
        .use_arc_self(true)
        .compile_fds(fds)?;
    Ok(())
}
