//! Why a node could not start ([`StartError`]), why a request was not served
//! (`Error`), and the one place where the latter becomes a gRPC status.
//!
//! Every refusal a peer or an operator sees is built by `From<Error> for
//! tonic::Status` below, so the codes the README promises are kept in one
//! match: malformed or out-of-range input is `INVALID_ARGUMENT`, a bad
//! signature or custody chain `UNAUTHENTICATED`, a report that claims an
//! origin it does not have or a chain that does not end at the sender
//! `PERMISSION_DENIED`, anything over a limit (or a full disk)
//! `RESOURCE_EXHAUSTED`, and the same id with other bytes `ALREADY_EXISTS`.

mod words;

pub(crate) use words::status;

use std::path::PathBuf;

use tonic::Status;

use super::said::Said;
use crate::config::ConfigError;
use crate::envelope::{AttachmentError, BadItemId, VerifyError};
use crate::store;
use crate::tls::TlsError;
use crate::trust::{LoadError, SignerError};

/// Why a node could not start. Every case names the configuration field
/// to look at ([`StartError::field`]); the command exits 64 for all of them.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates, keys, the CA or the CRL could not be used.
    #[error("invalid `{field}`: {source}")]
    Load {
        /// The configuration field naming the file.
        field: &'static str,
        /// Why.
        source: LoadError,
    },
    /// The certificate names another node than `node_id`.
    #[error(
        "invalid `node_id`: certificate {path} names node {found:?} but node_id is {expected:?}"
    )]
    IdentityMismatch {
        /// The certificate file.
        path: PathBuf,
        /// The node id in it.
        found: String,
        /// The configured node id.
        expected: String,
    },
    /// Our own certificate is not one the region accepts now.
    #[error("invalid `tls.cert`: {path}: not valid for this region: {source}")]
    NotTrusted {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        source: SignerError,
    },
    /// The store could not be opened.
    #[error("invalid `data_dir`: store {path}: {source}")]
    Store {
        /// The store file.
        path: PathBuf,
        /// Why.
        source: store::Error,
    },
    /// A secret's file could not be used.
    #[error("invalid `{field}`: {source}")]
    Secret {
        /// The configuration field naming the file.
        field: &'static str,
        /// Why.
        source: crate::secret::SecretFileError,
    },
    /// A listener could not be bound.
    #[error("invalid `{field}`: cannot bind {what}: {source}")]
    Bind {
        /// The configuration field naming the address or path.
        field: &'static str,
        /// Which listener.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node's certificate folder holds the region CA's private key.
    #[error(
        "invalid `tls.key`: {path} is the region CA's private key, in this node's certificate folder; keep it apart (zhibao certs init --ca-dir) and give nodes only their own files (zhibao certs bundle)"
    )]
    CaKeyPresent {
        /// The CA key file.
        path: PathBuf,
    },
    /// Our certificate and key do not make a TLS configuration.
    #[error("invalid `tls.cert`: {0}")]
    Tls(#[from] TlsError),
}

impl StartError {
    /// The configuration field to look at.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Config(ConfigError::Invalid { field, .. }) => field,
            Self::Config(_) => "(configuration file)",
            Self::Load { field, .. } | Self::Bind { field, .. } | Self::Secret { field, .. } => {
                field
            }
            Self::IdentityMismatch { .. } => "node_id",
            Self::NotTrusted { .. } | Self::Tls(_) => "tls.cert",
            Self::CaKeyPresent { .. } => "tls.key",
            Self::Store { .. } => "data_dir",
        }
    }
}

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The request did not come over mutual TLS.
    #[error("no verified client certificate on this connection")]
    NoPeer,
    /// The caller's certificate is not in `operator.allowed`.
    #[error("node {0:?} may not use this node's operator API")]
    NotOperator(String),
    /// The caller's certificate may not read this inbox.
    #[error("node {0:?} is not a consumer of this inbox (relay.consumers)")]
    NotConsumer(String),
    /// A durable consumer's name that is not one (shown cut short).
    #[error("consumer name {0:?} is not 1 to 64 bytes of A-Z a-z 0-9 . _ -")]
    BadConsumerName(String),
    /// A cursor sent with a durable consumer's name.
    #[error(
        "a durable consumer's position is kept by the hub: subscribe with a consumer name or a cursor, not both"
    )]
    CursorWithConsumer,
    /// The caller's certificate has as many durable consumers as it may.
    #[error(
        "node {peer:?} already has {limit} durable consumers of this inbox, the most one certificate may have; subscribe under one of their names"
    )]
    TooManyConsumers {
        /// The certificate's node id.
        peer: String,
        /// The most one certificate may have.
        limit: usize,
    },
    /// The caller's certificate has no durable consumer of that name.
    #[error("no durable consumer {0:?} for this certificate: subscribe under that name first")]
    NoConsumer(String),
    /// More ids in one acknowledgement than one may carry.
    #[error("{count} item ids in one acknowledgement; at most {limit}")]
    TooManyAckIds {
        /// How many it carried.
        count: usize,
        /// The most it may.
        limit: usize,
    },
    /// A newer subscription under the same consumer name took over.
    #[error("consumer {0:?} was taken over by a newer subscription under the same name")]
    TakenOver(String),
    /// The report does not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// An item id from the caller is not one.
    #[error(transparent)]
    BadId(#[from] BadItemId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The same id is stored with other bytes.
    #[error(
        "item {id} is already stored with different content (stored digest {stored}, offered {offered})"
    )]
    Conflict {
        /// The item.
        id: String,
        /// Hex digest of what is stored.
        stored: String,
        /// Hex digest of what was offered.
        offered: String,
    },
    /// The sender does not hold the item according to its custody chain.
    #[error(
        "item {id} is held by {holder:?} according to its custody chain, not by {sender:?} who sent it"
    )]
    NotHolder {
        /// The item.
        id: String,
        /// The last holder in its chain.
        holder: String,
        /// The peer that sent it.
        sender: String,
    },
    /// An operator's submission cannot be taken.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// A chunk or an upload does not fit what was announced.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// `Relay.Deliver` was given an item with attachments.
    #[error("items with attachments travel on Relay.Forward, which carries their chunks")]
    AttachmentsNeedStream,
    /// An acknowledgement of delivery receipts that cannot be one.
    #[error("malformed delivery acknowledgement")]
    BadAck,
    /// A `ForwardRequest` with none of its kinds set.
    #[error("ForwardRequest carries none of item, ack, chunk")]
    EmptyForward,
    /// No such item here.
    #[error("no item {0}")]
    NotFound(String),
    /// No such item in this hub's inbox.
    #[error("no item {0} in this inbox")]
    NotInInbox(String),
    /// The item's report and attachments were pruned after the retention
    /// period (archived first at a hub); its receipts and decisions remain.
    #[error(
        "the report and attachments of {id} are no longer held here: pruned after the retention period (at Unix ms {at_ms}); its receipts and decisions remain (at the final hub, the archived report: `zhibao store archive show {id}`)"
    )]
    Pruned {
        /// The item.
        id: String,
        /// When it was pruned, Unix ms.
        at_ms: i64,
    },
    /// The item names no such attachment.
    #[error("item {id} has no attachment {index}")]
    NoAttachment {
        /// The item.
        id: String,
        /// The attachment asked for.
        index: u32,
    },
    /// A chunk the item needs is not in the store.
    #[error("chunk {index} of attachment {attachment} of item {id} is missing")]
    MissingChunk {
        /// The item.
        id: String,
        /// Which attachment.
        attachment: u32,
        /// Which chunk.
        index: u32,
    },
    /// A stored item does not decode.
    #[error("stored item {id} does not decode: {source}")]
    Corrupt {
        /// The item.
        id: String,
        /// prost's reason.
        source: prost::DecodeError,
    },
    /// The node is stopping.
    #[error("node is shutting down")]
    ShuttingDown,
    /// A decision that cannot be made or taken as it is.
    #[error(transparent)]
    Decision(#[from] crate::disposition::DispositionError),
    /// The item is not one this node's office decides on.
    #[error("item {id}: {why}")]
    NotDecidable {
        /// The item.
        id: String,
        /// Why not.
        why: Said,
    },
    /// Another decision on the item was recorded at the same moment.
    #[error("item {0}: another decision was recorded at the same moment; try again")]
    DecisionRace(String),
    /// As many held notices as this node keeps are kept already.
    #[error(
        "this node keeps {0} held notices already, the most it keeps (limits.max_held_notices)"
    )]
    HeldFull(u64),
    /// A held notice that does not verify.
    #[error(transparent)]
    Held(#[from] crate::held::HeldError),
    /// A follow-up of a report by another origin.
    #[error(
        "item {id} was written by {origin}; only its origin may withdraw, correct or add to it, not {by}"
    )]
    NotOrigin {
        /// The report followed up.
        id: String,
        /// Its origin.
        origin: String,
        /// Who tried.
        by: String,
    },
    /// A follow-up that cannot be made as asked.
    #[error("item {id}: {why}")]
    FollowUp {
        /// The report followed up.
        id: String,
        /// Why not.
        why: Said,
    },
    /// The socket's caller could not be identified.
    #[error("cannot tell who is calling on the operator socket (no peer credentials)")]
    NoCredentials,
    /// The socket's caller is not a listed operator and unlisted ones may not.
    #[error("uid {0} is not in [[operators]] and operator.allow_unlisted is false")]
    Unlisted(u32),
    /// A solicitation, bulletin, answer or figure that cannot be made.
    #[error(transparent)]
    Office(#[from] super::office::OfficeError),
    /// The caller may not review (把关): only a director or deputy may.
    #[error("{0} may not review reports: only an operator with role director or deputy may")]
    NotReviewer(String),
    /// A reviewer's own report needs another reviewer.
    #[error("item {0} is your own report: the other reviewer must review it")]
    OwnReport(String),
    /// The deputy acted while the item is still the director's.
    #[error(
        "item {id} is with the director until {until} ({in_secs} s from now); the deputy may review it from then"
    )]
    NotOfferedYet {
        /// The item.
        id: String,
        /// When it is offered to the deputy, as a time.
        until: String,
        /// Seconds until then.
        in_secs: i64,
    },
    /// The item is here but not awaiting review (or sign-off).
    #[error("item {id} is not awaiting review: {why}")]
    NotAwaitingReview {
        /// The item.
        id: String,
        /// What it is instead.
        why: Said,
    },
    /// A review request that cannot be done as asked.
    #[error("{0}")]
    BadReview(Said),
}

/// What is wrong with an operator's submission.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    #[error("unknown class {0}: use emergency, bad_news or routine")]
    UnknownClass(i32),
    #[error("title is empty")]
    EmptyTitle,
    #[error("title is {len} bytes, over the limit of {limit} (limits.max_title_bytes)")]
    TitleTooLong { len: usize, limit: usize },
    #[error(
        "body is {len} bytes, over the limit of {budget} bytes for this title (limits.max_report_bytes = {limit})"
    )]
    BodyTooLarge {
        len: usize,
        budget: usize,
        limit: usize,
    },
    #[error("{0} attachments; at most {max}", max = crate::envelope::MAX_ATTACHMENTS)]
    TooManyAttachments(usize),
    #[error(
        "attachments are {total} bytes, over the limit of {limit} (limits.max_attachment_bytes)"
    )]
    AttachmentsTooLarge { total: u64, limit: u64 },
    #[error("every attachment needs a name of 1 to {0} bytes")]
    AttachmentName(usize),
    #[error("deadline is in the past")]
    DeadlineInPast,
}

/// What is wrong with a chunk or an upload on a `Forward` stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error("chunk for item {0:?}, which was not announced on this stream")]
    NotAnnounced(String),
    #[error("item {id} has no attachment {index}")]
    NoAttachment { id: String, index: u32 },
    #[error("chunk {index} of attachment {attachment} of {id} has the wrong size")]
    ChunkSize {
        id: String,
        attachment: u32,
        index: u32,
    },
    #[error("attachment {index} ({name:?}) does not match the digest the origin signed")]
    Digest { index: u32, name: String },
    #[error("{child} is over its quota of partial uploads: {held} of {limit} ({quota})")]
    Quota {
        child: String,
        quota: &'static str,
        held: u64,
        limit: u64,
    },
}

impl Error {
    fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::NoPeer => Code::Unauthenticated,
            Self::NotOperator(_)
            | Self::NotConsumer(_)
            | Self::NotHolder { .. }
            | Self::Unlisted(_)
            | Self::NotOrigin { .. } => Code::PermissionDenied,
            Self::FollowUp { .. } => Code::FailedPrecondition,
            Self::NotReviewer(_) | Self::OwnReport(_) => Code::PermissionDenied,
            Self::NotOfferedYet { .. } | Self::NotAwaitingReview { .. } => Code::FailedPrecondition,
            Self::BadReview(_) => Code::InvalidArgument,
            Self::HeldFull(_) => Code::ResourceExhausted,
            Self::Held(h) => match h {
                crate::held::HeldError::Signer(_) => Code::Unauthenticated,
                crate::held::HeldError::HolderMismatch { .. } => Code::PermissionDenied,
                _ => Code::InvalidArgument,
            },
            Self::NoCredentials => Code::Unauthenticated,
            Self::Decision(d) => match d {
                crate::disposition::DispositionError::TextTooLong(_)
                | crate::disposition::DispositionError::StaffTooLong(_) => Code::ResourceExhausted,
                crate::disposition::DispositionError::Signer(_)
                | crate::disposition::DispositionError::Receipt(_) => Code::Unauthenticated,
                _ => Code::InvalidArgument,
            },
            Self::NotDecidable { .. } => Code::FailedPrecondition,
            Self::DecisionRace(_) => Code::Aborted,
            Self::Verify(v) => match v {
                // Over a configured size limit: the one code for all of them.
                VerifyError::TooLarge { .. }
                | VerifyError::TitleTooLong { .. }
                | VerifyError::AuthorTooLong(_)
                | VerifyError::Attachments(
                    AttachmentError::TooLarge { .. } | AttachmentError::TooMany(_),
                ) => Code::ResourceExhausted,
                VerifyError::Signer(_) | VerifyError::Hop { .. } => Code::Unauthenticated,
                VerifyError::OriginMismatch { .. } => Code::PermissionDenied,
                VerifyError::Malformed(_)
                | VerifyError::BadId(_)
                | VerifyError::UnknownClass(_)
                | VerifyError::FromTheFuture { .. }
                | VerifyError::TooOld { .. }
                | VerifyError::Attachments(_)
                | VerifyError::TooManyHops(_)
                | VerifyError::BadLink(_)
                | VerifyError::BadReview(_) => Code::InvalidArgument,
            },
            Self::BadId(_)
            | Self::BadAck
            | Self::EmptyForward
            | Self::BadConsumerName(_)
            | Self::CursorWithConsumer => Code::InvalidArgument,
            Self::TooManyConsumers { .. } | Self::TooManyAckIds { .. } => Code::ResourceExhausted,
            Self::NoConsumer(_) => Code::NotFound,
            Self::TakenOver(_) => Code::Aborted,
            Self::Store(s) => match s {
                store::Error::Full => Code::ResourceExhausted,
                store::Error::Closed | store::Error::Reopening => Code::Unavailable,
                // A report kept in the log that cannot be read back whole:
                // what gRPC names unrecoverable loss or corruption.
                store::Error::Body { .. } | store::Error::BodyGone { .. } => Code::DataLoss,
                _ => Code::Internal,
            },
            Self::Conflict { .. } => Code::AlreadyExists,
            Self::Submit(s) => match s {
                SubmitError::BodyTooLarge { .. }
                | SubmitError::AttachmentsTooLarge { .. }
                | SubmitError::TitleTooLong { .. }
                | SubmitError::TooManyAttachments(_) => Code::ResourceExhausted,
                _ => Code::InvalidArgument,
            },
            Self::Upload(u) => match u {
                UploadError::NotAnnounced(_) => Code::FailedPrecondition,
                UploadError::Quota { .. } => Code::ResourceExhausted,
                UploadError::Digest { .. } => Code::Unauthenticated,
                UploadError::NoAttachment { .. } | UploadError::ChunkSize { .. } => {
                    Code::InvalidArgument
                }
            },
            Self::AttachmentsNeedStream | Self::Pruned { .. } => Code::FailedPrecondition,
            Self::NotFound(_) | Self::NotInInbox(_) | Self::NoAttachment { .. } => Code::NotFound,
            Self::MissingChunk { .. } | Self::Corrupt { .. } => Code::DataLoss,
            Self::ShuttingDown => Code::Unavailable,
            Self::Office(o) => o.code(),
        }
    }
}

impl From<Error> for Status {
    /// The code, the English message, and in the status's details (gRPC's
    /// richer error model) a `google.rpc.ErrorInfo` naming the reason and
    /// a `zh-CN` `google.rpc.LocalizedMessage` (see [`words`]).
    fn from(e: Error) -> Self {
        let code = e.code();
        if code == tonic::Code::DataLoss {
            tracing::error!(alarm = "data-loss", error = %e, "ALARM: stored data cannot be read back whole");
        }
        words::status(code, e.reason(), &Said::both(e.to_string(), e.in_chinese()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_are_the_ones_the_readme_promises() {
        let cases = [
            (
                Error::Verify(VerifyError::TooManyHops(17)),
                Code::InvalidArgument,
            ),
            (
                Error::Verify(VerifyError::Signer(SignerError::BadSignature)),
                Code::Unauthenticated,
            ),
            (
                Error::Verify(VerifyError::OriginMismatch {
                    claimed: "a".into(),
                    signer: "b".into(),
                }),
                Code::PermissionDenied,
            ),
            (
                Error::Verify(VerifyError::TooLarge { size: 2, limit: 1 }),
                Code::ResourceExhausted,
            ),
            (
                Error::Verify(VerifyError::TitleTooLong {
                    len: 2000,
                    limit: 1024,
                }),
                Code::ResourceExhausted,
            ),
            (
                Error::Submit(SubmitError::TitleTooLong {
                    len: 2000,
                    limit: 1024,
                }),
                Code::ResourceExhausted,
            ),
            (
                Error::Verify(VerifyError::Attachments(AttachmentError::TooMany(17))),
                Code::ResourceExhausted,
            ),
            (Error::Store(store::Error::Full), Code::ResourceExhausted),
            (
                Error::Store(store::Error::Body {
                    path: "s.redb.log".into(),
                    offset: 8,
                    why: "damaged".into(),
                }),
                Code::DataLoss,
            ),
            (
                Error::Conflict {
                    id: "x".into(),
                    stored: "1".into(),
                    offered: "2".into(),
                },
                Code::AlreadyExists,
            ),
            (Error::EmptyForward, Code::InvalidArgument),
            (Error::BadConsumerName("a b".into()), Code::InvalidArgument),
            (
                Error::TooManyConsumers {
                    peer: "analyst".into(),
                    limit: 64,
                },
                Code::ResourceExhausted,
            ),
            (Error::NoConsumer("x".into()), Code::NotFound),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let status = Status::from(e);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }

    #[test]
    fn every_refusal_names_its_reason_and_says_it_in_chinese() {
        use tonic_types::StatusExt;
        let cases = [
            (
                Error::NotFound("item-1".into()),
                "NO_SUCH_ITEM",
                "没有信息 item-1",
            ),
            (
                Error::Submit(SubmitError::BodyTooLarge {
                    len: 9000,
                    budget: 8000,
                    limit: 8192,
                }),
                "BODY_TOO_LARGE",
                "正文 9000 字节，超过这个标题下可用的 8000 字节（limits.max_report_bytes = 8192）",
            ),
            (
                Error::Verify(VerifyError::Signer(SignerError::BadSignature)),
                "BAD_SIGNATURE",
                "报告的签名未通过检查：签名与内容不符",
            ),
            (
                Error::NotDecidable {
                    id: "item-2".into(),
                    why: Said::both("it is closed", "它已办结"),
                },
                "NOT_DECIDABLE",
                "信息 item-2：它已办结",
            ),
            (
                Error::FollowUp {
                    id: "item-3".into(),
                    why: Said::from("only in English".to_string()),
                },
                "FOLLOW_UP_REFUSED",
                "信息 item-3：only in English",
            ),
            (Error::Store(store::Error::Full), "STORE_FULL", "存储已满"),
        ];
        for (e, reason, chinese) in cases {
            let english = e.to_string();
            let status = Status::from(e);
            // The English stays the message; the rest is in the details,
            // as gRPC's richer error model carries them.
            assert_eq!(status.message(), english);
            let details = status.check_error_details().expect("details decode");
            let info = details.error_info().expect("an ErrorInfo");
            assert_eq!(info.reason, reason, "{english}");
            assert_eq!(info.domain, "zhibao.v1");
            let said = details.localized_message().expect("a LocalizedMessage");
            assert_eq!(said.locale, "zh-CN");
            assert!(said.message.starts_with(chinese), "{}", said.message);
            assert_eq!(
                crate::client::refusal_in_chinese(&status).as_deref(),
                Some(said.message.as_str())
            );
            assert_eq!(
                crate::client::refusal_reason(&status).as_deref(),
                Some(reason)
            );
        }
        // A status made elsewhere (another server) says nothing more.
        let bare = Status::not_found("no route");
        assert_eq!(crate::client::refusal_in_chinese(&bare), None);
        assert_eq!(crate::client::refusal_reason(&bare), None);
    }

    #[test]
    fn reasons_are_upper_snake_case_as_error_info_asks() {
        let errors = [
            Error::NoPeer,
            Error::NotOperator("x".into()),
            Error::CursorWithConsumer,
            Error::ShuttingDown,
            Error::BadAck,
            Error::Verify(VerifyError::TooManyHops(17)),
            Error::Verify(VerifyError::Signer(SignerError::StaleCrl { expired: 0 })),
            Error::Store(store::Error::Closed),
            Error::Submit(SubmitError::EmptyTitle),
            Error::Decision(crate::disposition::DispositionError::AnswerBy),
            Error::HeldFull(3),
            Error::Unlisted(1000),
        ];
        for e in errors {
            let reason = e.reason();
            // google.rpc.ErrorInfo: [A-Z][A-Z0-9_]+[A-Z0-9], at most 63.
            assert!(reason.len() <= 63, "{reason}");
            assert!(
                reason.starts_with(|c: char| c.is_ascii_uppercase()),
                "{reason}"
            );
            assert!(!reason.ends_with('_'), "{reason}");
            assert!(
                reason
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{reason}"
            );
            let chinese = e.in_chinese();
            assert!(
                chinese
                    .chars()
                    .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "no Chinese words for {reason}: {chinese}"
            );
        }
    }

    #[test]
    fn a_signers_reason_is_its_problem_code_in_upper_case() {
        use crate::trust::signature::KeyError;
        let signers = [
            SignerError::Certificate(webpki::Error::CertRevoked),
            SignerError::Certificate(webpki::Error::UnknownIssuer),
            SignerError::Certificate(webpki::Error::BadDer),
            SignerError::NoNodeId,
            SignerError::KeyUsage("x"),
            SignerError::BadSignature,
            SignerError::Key(KeyError::NotEd25519),
            SignerError::StaleCrl { expired: 0 },
        ];
        for s in signers {
            let reason = s.reason();
            assert_eq!(reason, s.problem().to_ascii_uppercase(), "{s}");
            // A refusal names it so.
            assert_eq!(Error::Verify(VerifyError::Signer(s)).reason(), reason);
        }
    }
}
