//! Checking a whole custody log: every link, every signed checkpoint, and
//! the anchor of a pruned log; the first bad record is named.
//!
//! What is checked, in this order:
//! 1. every checkpoint given opens as `node`'s ([`open_for`]): region CA,
//!    CRL, signature, signer = the node it names = the log's node;
//! 2. the first record: seq 0 links to [`GENESIS`]; a later seq (a pruned
//!    log) must link to the head of a signed checkpoint at the seq before;
//! 3. each following record has the next seq (no gap, nothing going
//!    backwards) and links to the hash of the record before it;
//! 4. every checkpoint at a seq within the records matches that record's
//!    hash, and none lies beyond the last record.
//!
//! Records after the last checkpoint (the unsigned tail, reported in
//! [`Verified::unsigned_tail`]) are only as good as their links: the last
//! of them can be altered, and any of them deleted from the end, without a
//! trace until a checkpoint covers them.

use std::fmt;
use std::time::SystemTime;

use prost::Message;

use super::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint, open_for};
use super::record::{AuditRecord, GENESIS};
use crate::trust::Trust;

/// A log that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The seq of the first record (0 unless the log was pruned); `None` for
    /// an empty log.
    pub first_seq: Option<u64>,
    /// The seq of the last record; `None` for an empty log.
    pub last_seq: Option<u64>,
    /// How many records were checked.
    pub records: u64,
    /// How many signed checkpoints were opened (all those given).
    pub checkpoints_checked: usize,
    /// How many records come after the last checkpoint (all of them if
    /// there is none): records no signature covers yet.
    pub unsigned_tail: u64,
}

/// Where and why a log failed to check.
#[derive(Debug, Clone)]
pub struct Broken {
    /// The first bad record: the one that is missing, out of place, links
    /// wrongly or does not match a checkpoint. For
    /// [`BrokenWhy::Checkpoint`], the seq the checkpoint claims (read
    /// without trusting it), or 0 if its bytes do not decode.
    pub seq: u64,
    /// What is wrong.
    pub why: BrokenWhy,
}

/// What is wrong with a log.
#[derive(Debug, Clone)]
pub enum BrokenWhy {
    /// Record `expected` is missing: the record after the one before it is
    /// `found` (a record was deleted).
    Gap {
        /// The seq that should have come next.
        expected: u64,
        /// The seq that came instead.
        found: u64,
    },
    /// Record `found` is out of place: record `expected` should have come
    /// next (records reordered or repeated).
    Order {
        /// The seq that should have come next.
        expected: u64,
        /// The seq that came instead.
        found: u64,
    },
    /// The record does not link to the hash of the record before it (or,
    /// for seq 0, to [`GENESIS`]; for the first record of a pruned log, to
    /// the head of the checkpoint before it): that record or this one was
    /// altered, or records were reordered or inserted.
    Link,
    /// A signed checkpoint at this seq does not match the record's hash:
    /// history up to here was rewritten, links and all, after it was signed.
    HeadMismatch,
    /// The record is missing although a signed checkpoint covers the log
    /// up to `covered_to`: records were deleted from the end.
    Truncated {
        /// The highest seq a checkpoint covers.
        covered_to: u64,
    },
    /// The log starts at this record, after seq 0 (it was pruned), but no
    /// signed checkpoint at the seq before vouches for what it links to.
    NotAnchored,
    /// A signed checkpoint does not open as the log's node's.
    Checkpoint {
        /// Its position in the list given to [`verify`].
        index: usize,
        /// Why it was refused.
        error: CheckpointError,
    },
}

impl Broken {
    fn at(seq: u64, why: BrokenWhy) -> Self {
        Self { seq, why }
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match &self.why {
            BrokenWhy::Gap { found, .. } => write!(
                f,
                "record {seq}: missing (record {found} comes next instead; deleted)"
            ),
            BrokenWhy::Order { expected, found } => write!(
                f,
                "record {found}: out of order (record {expected} should come next; reordered or repeated)"
            ),
            BrokenWhy::Link => match seq.checked_sub(1) {
                Some(prev) => write!(
                    f,
                    "record {seq}: its link to record {prev} does not match (altered, reordered or inserted)"
                ),
                None => write!(
                    f,
                    "record {seq}: its link to the start of the log does not match (altered, reordered or inserted)"
                ),
            },
            BrokenWhy::HeadMismatch => write!(
                f,
                "record {seq}: does not match the signed checkpoint at record {seq} (history rewritten after it was signed)"
            ),
            BrokenWhy::Truncated { covered_to } => write!(
                f,
                "record {seq}: missing, though a signed checkpoint covers the log up to record {covered_to} (records deleted from the end)"
            ),
            BrokenWhy::NotAnchored => write!(
                f,
                "record {seq}: the log starts here, but no signed checkpoint at record {} vouches for its link (records deleted without a checkpoint)",
                seq.saturating_sub(1)
            ),
            BrokenWhy::Checkpoint {
                index,
                error: error @ CheckpointError::Malformed(_),
            } => write!(f, "checkpoint #{index}: {error}"),
            BrokenWhy::Checkpoint { index, error } => {
                write!(f, "checkpoint #{index} (at record {seq}): {error}")
            }
        }
    }
}

impl std::error::Error for Broken {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.why {
            BrokenWhy::Checkpoint { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Checks `node`'s custody log: `records` in the order they are stored
/// (ascending seq) and the signed `checkpoints` kept with them, against the
/// region CA and CRL in `trust` at `now` (see [`open`](super::open()) on
/// `now`).
///
/// Returns what was checked, or the first bad record and why. Never panics,
/// whatever the records and checkpoints contain; reads each record once
/// (one encoding and one SHA-256 each), so a log of any length can be
/// streamed from the store. A stored record that does not even decode is
/// the caller's to report (by its key), since it never reaches this
/// function.
pub fn verify(
    records: impl IntoIterator<Item = AuditRecord>,
    checkpoints: &[SignedCheckpoint],
    trust: &Trust,
    node: &str,
    now: SystemTime,
) -> Result<Verified, Broken> {
    let heads = open_all(checkpoints, trust, node, now)?;
    let last_checkpoint = heads.last().map(|&(seq, _)| seq);
    let mut heads = heads.iter().copied().peekable();
    let mut records = records.into_iter().peekable();

    let Some(first) = records.next() else {
        return Ok(Verified {
            first_seq: None,
            last_seq: None,
            records: 0,
            checkpoints_checked: checkpoints.len(),
            unsigned_tail: 0,
        });
    };

    // The anchor: what the first record must link to.
    match first.seq.checked_sub(1) {
        None => {
            if first.prev_sha256 != GENESIS {
                return Err(Broken::at(first.seq, BrokenWhy::Link));
            }
        }
        Some(anchor) => {
            // Checkpoints of records pruned earlier vouch for nothing here.
            while heads.next_if(|&(seq, _)| seq < anchor).is_some() {}
            let mut anchored = false;
            while let Some((_, head)) = heads.next_if(|&(seq, _)| seq == anchor) {
                if first.prev_sha256 != head {
                    return Err(Broken::at(first.seq, BrokenWhy::Link));
                }
                anchored = true;
            }
            if !anchored {
                return Err(Broken::at(first.seq, BrokenWhy::NotAnchored));
            }
        }
    }

    let first_seq = first.seq;
    let mut count: u64 = 0;
    let mut unsigned_tail: u64 = 0;
    let mut buf = Vec::new();
    let mut current = first;
    loop {
        let hash = current.hash_with(&mut buf);
        count = count.saturating_add(1);
        while let Some((_, head)) = heads.next_if(|&(seq, _)| seq == current.seq) {
            if head != hash {
                return Err(Broken::at(current.seq, BrokenWhy::HeadMismatch));
            }
        }
        if last_checkpoint.is_none_or(|cp| current.seq > cp) {
            unsigned_tail = unsigned_tail.saturating_add(1);
        }

        let Some(next) = records.next() else { break };
        let expected = current.seq.saturating_add(1);
        if next.seq <= current.seq {
            return Err(Broken::at(
                next.seq,
                BrokenWhy::Order {
                    expected,
                    found: next.seq,
                },
            ));
        }
        if next.seq != expected {
            // A record further on than expected, followed by one that goes
            // back, was moved rather than left alone after a deletion.
            let moved = records.peek().is_some_and(|after| after.seq < next.seq);
            let found = next.seq;
            return Err(if moved {
                Broken::at(found, BrokenWhy::Order { expected, found })
            } else {
                Broken::at(expected, BrokenWhy::Gap { expected, found })
            });
        }
        if next.prev_sha256 != hash {
            return Err(Broken::at(next.seq, BrokenWhy::Link));
        }
        current = next;
    }

    let last_seq = current.seq;
    if let (Some(_), Some(covered_to)) = (heads.next(), last_checkpoint) {
        return Err(Broken::at(
            last_seq.saturating_add(1),
            BrokenWhy::Truncated { covered_to },
        ));
    }
    Ok(Verified {
        first_seq: Some(first_seq),
        last_seq: Some(last_seq),
        records: count,
        checkpoints_checked: checkpoints.len(),
        unsigned_tail,
    })
}

/// Opens every checkpoint as `node`'s and returns their (seq, head) pairs,
/// sorted by seq.
fn open_all(
    checkpoints: &[SignedCheckpoint],
    trust: &Trust,
    node: &str,
    now: SystemTime,
) -> Result<Vec<(u64, [u8; 32])>, Broken> {
    let mut heads = Vec::with_capacity(checkpoints.len());
    for (index, signed) in checkpoints.iter().enumerate() {
        let refused = |seq, error| Broken::at(seq, BrokenWhy::Checkpoint { index, error });
        // The seq it claims, to name it by, before trusting anything in it.
        let claimed = Checkpoint::decode(signed.checkpoint.as_slice())
            .map_err(|e| refused(0, CheckpointError::Malformed(e)))?
            .seq;
        let cp = open_for(signed, trust, now, node).map_err(|e| refused(claimed, e))?;
        let head = <[u8; 32]>::try_from(cp.head_sha256.as_slice())
            .map_err(|_| refused(cp.seq, CheckpointError::BadHead(cp.head_sha256.len())))?;
        heads.push((cp.seq, head));
    }
    heads.sort_unstable();
    Ok(heads)
}
