//! The head of a node's custody log: appends records, each linked to the
//! one before it.
//!
//! The store's writer keeps one [`Chain`] and, for every custody change,
//! calls [`Chain::append`] and writes the encoded record in the same
//! transaction as the change it describes. `append` only computes (one
//! encoding and one SHA-256 per record, no I/O), so it adds little to the
//! writer's time per item.
//!
//! `append` advances the chain at once, before anything is committed: if
//! the transaction is then aborted, put back the copy taken before
//! (`Chain` is `Copy`), or the next record would link to one that was never
//! stored and the log would read as broken from there.

use super::checkpoint::Checkpoint;
use super::record::{AuditRecord, Entry, GENESIS};
use prost::Message;

/// Where the next record goes: its seq, and the hash it links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    next_seq: u64,
    head: [u8; 32],
}

impl Default for Chain {
    fn default() -> Self {
        Self::genesis()
    }
}

impl Chain {
    /// An empty log: the first record gets seq 0 and links to [`GENESIS`].
    pub const fn genesis() -> Self {
        Self {
            next_seq: 0,
            head: GENESIS,
        }
    }

    /// Continues a log after `last`, the last record stored (the one with
    /// the highest seq).
    ///
    /// This trusts `last`; run [`verify`](super::verify()) first if the
    /// store may have been tampered with.
    pub fn resume(last: &AuditRecord) -> Self {
        Self {
            // A log of 2^64 records is out of reach (a hub at 14,000 records a
            // second needs 40 million years); saturating keeps this total, and
            // a repeated seq would be reported by `verify`.
            next_seq: last.seq.saturating_add(1),
            head: last.hash(),
        }
    }

    /// Continues a log whose records were all pruned, from the checkpoint
    /// that was kept (see [`prune_point`](super::prune_point)): the next
    /// record gets `checkpoint.seq + 1` and links to its head.
    ///
    /// `None` if the checkpoint's head is not a SHA-256 (32 bytes): no
    /// checkpoint made by [`Chain::checkpoint`] or accepted by
    /// [`open`](super::open()) is like that.
    pub fn resume_at(checkpoint: &Checkpoint) -> Option<Self> {
        let head = <[u8; 32]>::try_from(checkpoint.head_sha256.as_slice()).ok()?;
        Some(Self {
            next_seq: checkpoint.seq.saturating_add(1),
            head,
        })
    }

    /// The seq the next record will get.
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last record appended (or resumed from), which the
    /// next record links to; [`GENESIS`] for an empty log.
    pub const fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The seq of the last record appended (or resumed from); `None` for a
    /// log with no record yet.
    pub const fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// Makes the next record from `entry`, committed at `at_unix_ms`:
    /// assigns its seq, links it to the head, and advances the head to it.
    ///
    /// Returns the record and its encoding; store the encoding (its SHA-256
    /// is the new [`head`](Self::head)). Deterministic: the same chain,
    /// entry and time give the same bytes.
    #[must_use = "store the encoded record: the chain has moved on to it"]
    pub fn append(&mut self, entry: Entry, at_unix_ms: i64) -> (AuditRecord, Vec<u8>) {
        let record = AuditRecord {
            seq: self.next_seq,
            at_unix_ms,
            kind: entry.kind.into(),
            item_id: entry.item_id,
            peer: entry.peer,
            detail: entry.detail,
            prev_sha256: self.head.to_vec(),
        };
        let encoded = record.encode_to_vec();
        self.head = crate::digest::sha256(&encoded);
        self.next_seq = self.next_seq.saturating_add(1);
        (record, encoded)
    }

    /// A checkpoint of the head as it stands, for `node` (this node's id)
    /// to sign with [`sign`](super::sign()); `None` for a log with no record
    /// yet (there is nothing to vouch for).
    pub fn checkpoint(&self, node: &str, at_unix_ms: i64) -> Option<Checkpoint> {
        Some(Checkpoint {
            node: node.to_string(),
            seq: self.last_seq()?,
            head_sha256: self.head.to_vec(),
            at_unix_ms,
        })
    }
}
