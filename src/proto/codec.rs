//! The gRPC codec of every zhibao service and client: protobuf via prost,
//! strict about what it lets through.
//!
//! - A message that does not decode is `INVALID_ARGUMENT` (prost's own codec
//!   says `INTERNAL`, which tells a client the fault is ours).
//! - A message that sets two members of one `oneof` is `INVALID_ARGUMENT`.
//!   Protobuf's rule is that the last member on the wire wins, so a plain
//!   decoder would act on one part of such a message and silently drop the
//!   rest; a message that means one thing must say one thing.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::v1::*;

/// How every refusal of this codec's begins: it is made before any
/// handler sees the call (see `node::refusals`).
pub const MALFORMED: &str = "malformed message";

/// A `oneof` group of a message: its members' field numbers and names.
#[derive(Debug)]
pub struct Oneof {
    /// The message's name, for error messages.
    pub message: &'static str,
    /// (field number, name) of each member.
    pub members: &'static [(u32, &'static str)],
}

/// What the decoder must know about a message beyond prost's view of it.
pub trait Strict {
    /// The message's `oneof` groups.
    const ONEOFS: &'static [Oneof] = &[];
}

macro_rules! strict {
    ($($t:ty),* $(,)?) => { $(impl Strict for $t {})* };
}

strict!(
    SignedReport,
    SignedReceipt,
    SubmitRequest,
    SubmitResponse,
    StatusRequest,
    ItemStatus,
    WatchRequest,
    Event,
    ListRequest,
    ListResponse,
    NodeRequest,
    NodeStatus,
    AuditRequest,
    AuditBatch,
    SubscribeRequest,
    InboxItem,
    InboxAck,
    InboxAckResponse,
    ConsumersRequest,
    ConsumersResponse,
    AttachmentRequest,
    Chunk,
    DisposeRequest,
    DispositionView,
    HistoryRequest,
    HistoryAckRequest,
    HistoryAckResponse,
    SolicitRequest,
    NoticeView,
    NoticesRequest,
    NoticesResponse,
    SolicitationStatusRequest,
    SolicitationStatusResponse,
    StatsRequest,
    StatsResponse,
    TargetRequest,
    TargetResponse,
    ReviewListRequest,
    ReviewListResponse,
    StoreStatsRequest,
    StoreStatsResponse,
    PruneRequest,
    PruneResponse,
    ReviewRequest,
);

impl Strict for ForwardRequest {
    const ONEOFS: &'static [Oneof] = &[Oneof {
        message: "ForwardRequest",
        members: &[(1, "item"), (2, "ack"), (3, "chunk"), (4, "held")],
    }];
}

impl Strict for HistoryEntry {
    const ONEOFS: &'static [Oneof] = &[Oneof {
        message: "HistoryEntry",
        members: &[(2, "disposition"), (3, "held")],
    }];
}

impl Strict for ForwardResponse {
    const ONEOFS: &'static [Oneof] = &[Oneof {
        message: "ForwardResponse",
        members: &[
            (1, "receipt"),
            (2, "refusal"),
            (3, "need"),
            (4, "delivered"),
            (5, "crl"),
            (6, "disposition"),
            (7, "held_ack"),
            (8, "notice"),
        ],
    }];
}

/// The codec named in `build.rs` for every generated service and client.
#[derive(Debug)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Strict + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(PhantomData)
    }
}

/// Decodes `U` and applies [`Strict`]'s rules.
#[derive(Debug)]
pub struct StrictDecoder<U>(PhantomData<U>);

impl<U: Message + Default + Strict> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        if !U::ONEOFS.is_empty() {
            check_oneofs(&bytes, U::ONEOFS)?;
        }
        U::decode(bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("{MALFORMED}: {e}")))
    }
}

/// Refuses a message in which two members of one `oneof` appear.
fn check_oneofs(mut bytes: &[u8], oneofs: &[Oneof]) -> Result<(), Status> {
    let malformed = || Status::invalid_argument(format!("{MALFORMED}: bad field framing"));
    let mut seen: Vec<Option<(u32, &str)>> = vec![None; oneofs.len()];
    while !bytes.is_empty() {
        let key = varint(&mut bytes).ok_or_else(malformed)?;
        let field = u32::try_from(key >> 3).map_err(|_| malformed())?;
        match key & 7 {
            0 => {
                varint(&mut bytes).ok_or_else(malformed)?;
            }
            1 => skip(&mut bytes, 8).ok_or_else(malformed)?,
            2 => {
                let len = varint(&mut bytes).ok_or_else(malformed)?;
                skip(&mut bytes, usize::try_from(len).map_err(|_| malformed())?)
                    .ok_or_else(malformed)?;
            }
            5 => skip(&mut bytes, 4).ok_or_else(malformed)?,
            // Groups (3, 4) are not part of proto3, nor of zhibao.v1.
            _ => return Err(malformed()),
        }
        for (group, slot) in oneofs.iter().zip(seen.iter_mut()) {
            let Some(&(n, name)) = group.members.iter().find(|(n, _)| *n == field) else {
                continue;
            };
            match *slot {
                Some((m, other)) if m != n => {
                    return Err(Status::invalid_argument(format!(
                        "{MALFORMED}: {} carries both `{other}` and `{name}`; it must carry exactly one of {}",
                        group.message,
                        group
                            .members
                            .iter()
                            .map(|(_, n)| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                _ => *slot = Some((n, name)),
            }
        }
    }
    Ok(())
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn skip(bytes: &mut &[u8], n: usize) -> Option<()> {
    *bytes = bytes.get(n..)?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<U: Message + Default + Strict>(msg: &[u8]) -> Result<U, Status> {
        if !U::ONEOFS.is_empty() {
            check_oneofs(msg, U::ONEOFS)?;
        }
        U::decode(msg).map_err(|e| Status::invalid_argument(e.to_string()))
    }

    #[test]
    fn one_member_passes_two_are_refused() {
        let item = ForwardRequest {
            kind: Some(forward_request::Kind::Item(SignedReport::default())),
        };
        let chunk = ForwardRequest {
            kind: Some(forward_request::Kind::Chunk(Chunk {
                item_id: "x".into(),
                ..Default::default()
            })),
        };
        assert!(check::<ForwardRequest>(&item.encode_to_vec()).is_ok());
        let mut both = item.encode_to_vec();
        both.extend(chunk.encode_to_vec());
        let err = check::<ForwardRequest>(&both).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("`item` and `chunk`"), "{err}");
        // The same member twice merges, as protobuf says; not a mix.
        let mut twice = chunk.encode_to_vec();
        twice.extend(chunk.encode_to_vec());
        assert!(check::<ForwardRequest>(&twice).is_ok());
    }

    #[test]
    fn bad_framing_is_refused() {
        assert!(check::<ForwardRequest>(&[0x0a, 0x05, 0x01]).is_err());
        assert!(check::<ForwardRequest>(&[0x0b]).is_err(), "a group");
        assert!(
            check::<ForwardRequest>(&[0xff; 11]).is_err(),
            "varint too long"
        );
    }
}
