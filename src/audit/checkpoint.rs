//! Signed checkpoints: a node's signature over the head of its custody log.
//!
//! A checkpoint names the node, the seq of the last record it covers, that
//! record's hash and when it was made. The node signs the checkpoint's
//! encoding with its Ed25519 key ([`sign`]); anyone holding the region CA
//! can check it ([`open`], [`open_for`]). Because each record's hash covers
//! the one before it, a checkpoint vouches for every record up to its seq:
//! changing, inserting, deleting or reordering any of them changes the head.
//!
//! Checkpoints also make pruning safe: records up to a checkpoint may be
//! deleted as long as that checkpoint is kept, since it vouches for the
//! hash the first remaining record links to (see [`prune_point`]).

use std::time::SystemTime;

use prost::Message;

use crate::trust::{Identity, SignerError, Trust};

/// The head of a node's custody log at some record, as signed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Checkpoint {
    /// The node whose log this is; must be the signer.
    #[prost(string, tag = "1")]
    pub node: String,
    /// The seq of the last record it covers.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// The hash of the record at `seq` (SHA-256, 32 bytes).
    #[prost(bytes = "vec", tag = "3")]
    pub head_sha256: Vec<u8>,
    /// When it was made, Unix milliseconds.
    #[prost(int64, tag = "4")]
    pub at_unix_ms: i64,
}

/// A [`Checkpoint`] with its signature and the signer's certificate: what
/// is stored (and may be sent to other nodes).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignedCheckpoint {
    /// The encoded [`Checkpoint`], exactly the bytes signed.
    #[prost(bytes = "vec", tag = "1")]
    pub checkpoint: Vec<u8>,
    /// Ed25519 signature over `checkpoint`.
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
    /// The signer's certificate, DER.
    #[prost(bytes = "vec", tag = "3")]
    pub signer_cert: Vec<u8>,
}

/// Why a signed checkpoint was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckpointError {
    /// The signer's certificate or the signature did not verify (this is
    /// also what altered checkpoint bytes give).
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The signed bytes are not a checkpoint.
    #[error("checkpoint does not decode: {0}")]
    Malformed(prost::DecodeError),
    /// The checkpoint's head is not a SHA-256.
    #[error("checkpoint head is {0} bytes, not a SHA-256 (32)")]
    BadHead(usize),
    /// The checkpoint names a node other than the one that signed it.
    #[error("checkpoint names node {named:?} but is signed by {signer:?}")]
    NodeMismatch {
        /// Node in the checkpoint.
        named: String,
        /// Node in the signing certificate.
        signer: String,
    },
    /// The checkpoint is for another node's log.
    #[error("checkpoint is for the log of {actual:?}, expected {expected:?}")]
    OtherNode {
        /// Whose log it is for (and who signed it).
        actual: String,
        /// Whose log is being checked.
        expected: String,
    },
}

/// Signs `cp` as `identity`.
///
/// `cp.node` should be `identity`'s node id ([`Chain::checkpoint`](super::Chain::checkpoint)
/// makes it so when given that id): [`open`] refuses a checkpoint that
/// names another node than its signer. Ed25519 is deterministic, so signing
/// the same checkpoint twice gives the same bytes.
pub fn sign(cp: &Checkpoint, identity: &Identity) -> SignedCheckpoint {
    let bytes = cp.encode_to_vec();
    SignedCheckpoint {
        signature: identity.sign(&bytes),
        signer_cert: identity.cert().to_vec(),
        checkpoint: bytes,
    }
}

/// Verifies a checkpoint's signer (against the region CA and CRL, valid at
/// `now`) and signature, decodes it, and checks that it names its signer.
///
/// A checkpoint signed with a certificate that has since expired does not
/// open at the present time; to check an old log, pass a `now` at which
/// the signer's certificate was valid.
pub fn open(
    signed: &SignedCheckpoint,
    trust: &Trust,
    now: SystemTime,
) -> Result<Checkpoint, CheckpointError> {
    let signer = trust.verify_signed(
        &signed.signer_cert,
        &signed.checkpoint,
        &signed.signature,
        now,
    )?;
    let cp =
        Checkpoint::decode(signed.checkpoint.as_slice()).map_err(CheckpointError::Malformed)?;
    if cp.head_sha256.len() != 32 {
        return Err(CheckpointError::BadHead(cp.head_sha256.len()));
    }
    if cp.node != signer {
        return Err(CheckpointError::NodeMismatch {
            named: cp.node,
            signer,
        });
    }
    Ok(cp)
}

/// [`open`], and checks that the checkpoint is for `node`'s log.
pub fn open_for(
    signed: &SignedCheckpoint,
    trust: &Trust,
    now: SystemTime,
    node: &str,
) -> Result<Checkpoint, CheckpointError> {
    let cp = open(signed, trust, now)?;
    if cp.node != node {
        return Err(CheckpointError::OtherNode {
            actual: cp.node,
            expected: node.to_string(),
        });
    }
    Ok(cp)
}

/// Decodes a checkpoint *without verifying it*, only to show or sort one;
/// nothing in it may be trusted before [`open`].
pub fn peek(signed: &SignedCheckpoint) -> Option<Checkpoint> {
    Checkpoint::decode(signed.checkpoint.as_slice()).ok()
}

/// Where a log may be cut: the highest seq among `checkpoints` made before
/// `keep_after_ms` (Unix ms; records from then on are to be kept).
///
/// The rule: records with seq up to and including the returned seq may be
/// deleted; the checkpoint at that seq must be kept (signed, as it was),
/// because it vouches for the hash the first remaining record links to,
/// and [`verify`](super::verify()) refuses a log that starts after seq 0
/// without one ([`BrokenWhy::NotAnchored`](super::BrokenWhy::NotAnchored)).
/// Checkpoints with a lower seq may be deleted with the records; those with
/// a higher seq must be kept. `None`: no checkpoint is old enough, so
/// nothing may be deleted.
///
/// Records are committed in order and a checkpoint is made after the
/// records it covers, so everything deleted this way is older than
/// `keep_after_ms` (as far as the node's clock went forward).
///
/// Pass checkpoints that have been [`open`]ed. Log an
/// [`AuditKind::Pruned`](super::AuditKind::Pruned) entry naming the seq in
/// the transaction that deletes. A log left with no record resumes with
/// [`Chain::resume_at`](super::Chain::resume_at) its highest checkpoint.
pub fn prune_point(checkpoints: &[Checkpoint], keep_after_ms: i64) -> Option<u64> {
    checkpoints
        .iter()
        .filter(|cp| cp.at_unix_ms < keep_after_ms)
        .map(|cp| cp.seq)
        .max()
}
