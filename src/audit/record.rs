//! One record of the custody log: what happened to which item, when, with
//! whom, and the hash of the record before it.
//!
//! A record's hash is the SHA-256 of its protobuf encoding ([`AuditRecord::hash`]).
//! Prost encodes a message the same way every time (fields in tag order,
//! default values left out), so a record read back from disk and decoded
//! hashes exactly as it did when it was appended.

use prost::Message;

use crate::digest::sha256;

/// The hash the first record of a log (seq 0) links to: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// What happened, in a node's custody, to an item (or, for
/// [`AuditKind::RevokedPeer`], to a connection).
///
/// The numbers are part of every stored record and of its hash: never
/// renumber or reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AuditKind {
    /// The protobuf zero value; never logged. A record whose kind is missing
    /// or unknown reads as this, not as [`AuditKind::Accepted`].
    Unspecified = 0,
    /// The node took custody of an item: submitted by its operator (`peer`
    /// empty) or stored from the node that handed it over (`peer`).
    Accepted = 1,
    /// The item was sent up a route (`peer`: the route's node).
    Forwarded = 2,
    /// A verified custody receipt for the item was stored (`peer`: the
    /// receiver that signed it).
    Receipted = 3,
    /// The node refused an item (`peer`: who offered it; `detail`: the
    /// reason or code).
    Refused = 4,
    /// The item was added to an alternate or skip-level route (`peer`).
    Escalated = 5,
    /// The item's class deadline passed with no receipt (`detail`: the class).
    Overdue = 6,
    /// The item was delivered: kept in the final hub's inbox, or the final
    /// hub's delivery receipt reached this node (`peer`: the final hub).
    Delivered = 7,
    /// The item left the store for good (`detail`: why, e.g. retention).
    Disposed = 8,
    /// A peer presented a revoked certificate (`peer`: that node; `item_id`
    /// empty unless it was handing over an item).
    RevokedPeer = 9,
    /// Records up to a signed checkpoint were deleted (`detail`: the last
    /// seq deleted). See [`prune_point`](super::prune_point).
    Pruned = 10,
    /// An office's decision on the item was recorded: made here or come
    /// down from above (`peer`: the deciding node; `detail`: kind and
    /// number in that node's history).
    Decided = 11,
}

impl AuditKind {
    /// A short lower-case name for people and logs, e.g. `"revoked-peer"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Accepted => "accepted",
            Self::Forwarded => "forwarded",
            Self::Receipted => "receipted",
            Self::Refused => "refused",
            Self::Escalated => "escalated",
            Self::Overdue => "overdue",
            Self::Delivered => "delivered",
            Self::Disposed => "disposed",
            Self::RevokedPeer => "revoked-peer",
            Self::Pruned => "pruned",
            Self::Decided => "decided",
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One stored record of the custody log.
///
/// Built by [`Chain::append`](super::Chain::append), which fills in `seq`,
/// `at_unix_ms` and `prev_sha256`; store the encoding it returns. Checked by
/// [`verify`](super::verify()).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuditRecord {
    /// Position in the node's log: 0, 1, 2, … with no gaps.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// When the custody change was committed, Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub at_unix_ms: i64,
    /// What happened: an [`AuditKind`].
    #[prost(enumeration = "AuditKind", tag = "3")]
    pub kind: i32,
    /// The item concerned (empty for events about a peer only).
    #[prost(string, tag = "4")]
    pub item_id: String,
    /// The node on the other side: who handed the item over, which route it
    /// went to, who signed the receipt, which node was revoked.
    #[prost(string, tag = "5")]
    pub peer: String,
    /// Short free text: class, reason, code.
    #[prost(string, tag = "6")]
    pub detail: String,
    /// The hash of the previous record ([`GENESIS`] before the first).
    #[prost(bytes = "vec", tag = "7")]
    pub prev_sha256: Vec<u8>,
}

impl AuditRecord {
    /// The record's hash: SHA-256 of its protobuf encoding. The next record
    /// links to it, and a checkpoint at this record's seq signs it.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.encode_to_vec())
    }

    /// [`hash`](Self::hash), encoding into `buf` (cleared first) so that a
    /// loop over many records reuses one allocation.
    pub(super) fn hash_with(&self, buf: &mut Vec<u8>) -> [u8; 32] {
        buf.clear();
        // A Vec grows as needed, so encoding into one does not fail; should
        // it ever, hash a fresh encoding rather than a partial one.
        match self.encode(buf) {
            Ok(()) => sha256(buf),
            Err(_) => self.hash(),
        }
    }

    /// The kind, if it is one this build knows (the [`kind`](Self::kind)
    /// getter prost generates turns unknown values into `Unspecified`).
    pub fn known_kind(&self) -> Option<AuditKind> {
        AuditKind::try_from(self.kind).ok()
    }
}

/// What a caller logs: one custody event, without the position, time and
/// link that [`Chain::append`](super::Chain::append) fills in.
///
/// ```
/// use zhibao::audit::{AuditKind, Entry};
/// let e = Entry::new(AuditKind::Forwarded, "item-1").with_peer("hub");
/// assert_eq!(e.detail, "");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// What happened.
    pub kind: AuditKind,
    /// The item concerned (empty for events about a peer only).
    pub item_id: String,
    /// The node on the other side (see [`AuditRecord::peer`]).
    pub peer: String,
    /// Short free text: class, reason, code.
    pub detail: String,
}

impl Entry {
    /// An event of `kind` about `item_id`, with no peer and no detail.
    pub fn new(kind: AuditKind, item_id: impl Into<String>) -> Self {
        Self {
            kind,
            item_id: item_id.into(),
            peer: String::new(),
            detail: String::new(),
        }
    }

    /// The same entry naming `peer`, the node on the other side.
    #[must_use]
    pub fn with_peer(mut self, peer: impl Into<String>) -> Self {
        self.peer = peer.into();
        self
    }

    /// The same entry with `detail` (class, reason, code).
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}
