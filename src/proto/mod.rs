//! The wire contract, `proto/zhibao/v1/zhibao.proto`: the generated types and
//! services, and the [`codec`] every zhibao service and client decodes with.

/// Version 1 of the zhibao wire contract.
#[allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("zhibao.v1");
}

pub mod codec;

/// The encoded `FileDescriptorSet` of the wire contract, served by gRPC
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/zhibao_descriptor.bin"));

pub use v1::*;
