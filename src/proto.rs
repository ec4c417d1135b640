//! The generated wire types of `proto/zhibao/v1/zhibao.proto`.

#![allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]

/// Version 1 of the zhibao wire contract.
pub mod v1 {
    tonic::include_proto!("zhibao.v1");
}

pub use v1::*;
