//! The custody log: a tamper-evident, hash-chained record of everything
//! that happened to items in a node's custody, with signed checkpoints.
//!
//! Every custody event — accepted, forwarded, receipted, refused,
//! escalated, overdue, delivered, disposed, a revoked peer seen, a prune —
//! becomes an [`AuditRecord`] that carries the SHA-256 of the record
//! before it. Periodically the node signs a [`Checkpoint`] of the chain's
//! head with its key. [`verify`] walks the whole log, checks every link and
//! checkpoint, and names the first bad record.
//!
//! # What it proves, and what it does not
//! It makes rewriting history detectable to anyone holding the region CA:
//! a record altered, deleted, inserted or moved breaks a link, and a log
//! rewritten consistently (every later link recomputed) no longer matches
//! the checkpoints signed before. Pruning keeps that property: records are
//! deleted only up to a signed checkpoint, which stays and anchors the
//! first record kept ([`prune_point`]).
//!
//! It does not stop a node from refusing to log an event, nor prove that
//! a record tells the truth: it shows what the node wrote, and that this
//! has not changed since. Records after the last checkpoint are covered by
//! links only, so the newest can be altered or dropped from the end
//! unnoticed until a checkpoint covers them — checkpoint often. A node that
//! holds its key can sign checkpoints of a rewritten log; only someone who
//! kept a copy of an earlier checkpoint (an auditor, the parent node) sees
//! that two signed heads disagree.
//!
//! # Using it
//! This module only builds, links, signs and checks; it does no I/O. The
//! store's writer keeps a [`Chain`] ([`Chain::genesis`], or
//! [`Chain::resume`] from the last stored record, or [`Chain::resume_at`]
//! the kept checkpoint of a log pruned to nothing) and for each custody
//! change calls [`Chain::append`] with an [`Entry`], writing the encoded
//! record (keyed by its seq) in the same transaction as the change. To
//! checkpoint: [`Chain::checkpoint`], then [`sign`], and store the
//! [`SignedCheckpoint`]. To check: read the records back in seq order and
//! pass them with the stored checkpoints to [`verify`].
//!
//! ```
//! use zhibao::audit::{AuditKind, Chain, Entry};
//!
//! let mut chain = Chain::genesis();
//! let (first, bytes) = chain.append(Entry::new(AuditKind::Accepted, "item-1"), 1_000);
//! assert_eq!(first.seq, 0);
//! assert_eq!(zhibao::digest::sha256(&bytes), chain.head());
//! let (second, _) = chain.append(
//!     Entry::new(AuditKind::Forwarded, "item-1").with_peer("hub"),
//!     1_005,
//! );
//! assert_eq!(second.prev_sha256, first.hash());
//! ```

mod chain;
mod checkpoint;
mod record;
mod verify;

pub use chain::Chain;
pub use checkpoint::{
    Checkpoint, CheckpointError, SignedCheckpoint, open, open_for, peek, prune_point, sign,
};
pub use record::{AuditKind, AuditRecord, Entry, GENESIS};
pub use verify::{Broken, BrokenWhy, Verified, verify};

#[cfg(test)]
mod tests;
