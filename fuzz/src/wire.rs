//! The gRPC decoding path of every zhibao service and client, driven from
//! plain bytes.
//!
//! zhibao's decoder (`zhibao::proto::codec::StrictDecoder`) only takes a
//! tonic `DecodeBuf`, which nothing outside tonic can make. tonic's public
//! `Streaming::new_request` / `new_response` can, though: they are what a
//! generated server or client wraps around an HTTP/2 body. So the targets
//! hand the real decoder, through tonic's real framing, a body made of the
//! fuzzer's bytes — exactly what a peer's DATA frames would be. No copy of
//! zhibao's code lives here.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::Full;
use prost::Message;
use prost::bytes::Buf;
use tonic::codec::{Codec as _, Streaming};
use tonic::{Code, Status};
use zhibao::proto::codec::{Codec, Strict};

/// The largest message the targets let through (tonic's default decoding
/// limit; zhibao's relay listener configures its own, which is larger than
/// any fuzz input).
pub const MAX_MESSAGE: usize = 4 << 20;

/// One gRPC length-prefixed message: uncompressed flag, big-endian length,
/// the bytes.
pub fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(msg.len() + 5);
    b.put_u8(0);
    b.put_u32(u32::try_from(msg.len()).expect("fuzz inputs are small"));
    b.put_slice(msg);
    b.freeze()
}

/// Which end decodes: a server reads requests, a client responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `Streaming::new_request`, as a generated server does.
    Server,
    /// `Streaming::new_response` with HTTP 200, as a generated client does.
    Client,
}

/// Decodes every message of a gRPC body with zhibao's codec, as `side`
/// would; stops at the end of the body or the first error.
pub fn decode_body<U>(side: Side, body: Bytes) -> Vec<Result<U, Status>>
where
    U: Message + Default + Strict + Send + 'static,
{
    let decoder = Codec::<U, U>::default().decoder();
    let body = Full::new(body);
    let mut stream: Streaming<U> = match side {
        Side::Server => Streaming::new_request(decoder, body, None, Some(MAX_MESSAGE)),
        Side::Client => {
            Streaming::new_response(decoder, body, http::StatusCode::OK, None, Some(MAX_MESSAGE))
        }
    };
    let mut out = Vec::new();
    // A `Full` body is always ready: nothing here ever waits.
    while let Some(r) = futures::executor::block_on(stream.message()).transpose() {
        let stop = r.is_err();
        out.push(r);
        if stop || out.len() > 1024 {
            break;
        }
    }
    out
}

/// One message through zhibao's decoder, as the `side` end would decode it.
///
/// The shape of the helper the brief proposed for `src/proto/codec.rs`
/// (`decode_strict<U>(bytes: &[u8]) -> Result<U, tonic::Status>`), built on
/// tonic's public API instead, so that it needs no change to the library.
pub fn decode_strict<U>(side: Side, bytes: &[u8]) -> Result<U, Status>
where
    U: Message + Default + Strict + Send + 'static,
{
    match decode_body::<U>(side, frame(bytes)).into_iter().next() {
        Some(r) => r,
        None => panic!("one framed message decoded to none"),
    }
}

/// What an independent reading of a message's top-level fields (prost's
/// own field walker, not zhibao's) says about its `oneof` groups.
#[derive(Debug, Default)]
pub struct Scan {
    /// The framing does not parse.
    pub bad_framing: bool,
    /// A group (wire types 3/4) appears: not part of proto3.
    pub has_group: bool,
    /// For each group, the distinct member field numbers seen.
    pub members: Vec<Vec<u32>>,
}

impl Scan {
    /// Whether any group has two different members.
    pub fn mixes(&self) -> bool {
        self.members.iter().any(|m| m.len() > 1)
    }
}

/// Walks the top-level fields of `bytes` with prost's decoder primitives.
pub fn scan<U: Strict>(mut bytes: &[u8]) -> Scan {
    let mut s = Scan {
        members: vec![Vec::new(); U::ONEOFS.len()],
        ..Scan::default()
    };
    while bytes.has_remaining() {
        let Ok((tag, wire)) = prost::encoding::decode_key(&mut bytes) else {
            s.bad_framing = true;
            return s;
        };
        if matches!(
            wire,
            prost::encoding::WireType::StartGroup | prost::encoding::WireType::EndGroup
        ) {
            s.has_group = true;
        }
        for (group, seen) in U::ONEOFS.iter().zip(s.members.iter_mut()) {
            if group.members.iter().any(|(n, _)| *n == tag) && !seen.contains(&tag) {
                seen.push(tag);
            }
        }
        if prost::encoding::skip_field(
            wire,
            tag,
            &mut bytes,
            prost::encoding::DecodeContext::default(),
        )
        .is_err()
        {
            s.bad_framing = true;
            return s;
        }
    }
    s
}

/// Checks zhibao's strict decoding of `bytes` against plain prost and the
/// independent field walk:
///
/// - whatever it refuses is `INVALID_ARGUMENT` (never prost's `INTERNAL`);
/// - what it accepts, prost accepts too, to the same message, and it mixes
///   no two members of a `oneof`;
/// - what it refuses is malformed to prost, mixes two members of a `oneof`,
///   or carries a group (which proto3 has not).
pub fn check_strict<U>(bytes: &[u8], strict: &Result<U, Status>)
where
    U: Message + Default + Strict + PartialEq + fmt::Debug,
{
    let plain = U::decode(bytes);
    let scan = scan::<U>(bytes);
    match strict {
        Ok(msg) => {
            let plain = plain.unwrap_or_else(|e| {
                panic!("strict decoder accepted what prost refuses ({e}): {msg:?}")
            });
            assert_eq!(&plain, msg, "strict and plain decoding differ");
            assert!(
                !scan.mixes(),
                "strict decoder accepted a message mixing oneof members {:?}",
                scan.members
            );
        }
        Err(status) => {
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "a refused message must be INVALID_ARGUMENT: {status:?}"
            );
            assert!(
                plain.is_err() || scan.mixes() || scan.has_group,
                "strict decoder refused a well-formed message ({status:?}); scan: {scan:?}"
            );
        }
    }
}
