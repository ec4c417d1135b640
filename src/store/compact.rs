//! Compaction of the log's segments: the last reports of a segment that
//! pruning has mostly emptied are moved into their items' rows, so the
//! segment's file can be deleted.
//!
//! A segment is deleted only once no row points into it (see `bodies`).
//! Without compaction, one report kept longer than the others — an answer
//! still owed on it, an item not delivered yet — would keep its whole
//! segment (64 MiB by default) on the disk for as long as it is kept.
//!
//! Compaction runs inside a retention pass, the only thing that empties
//! segments:
//! 1. [`Store::sparse_segments`] names the candidates: segments before the
//!    one the log was read back from at the last full commit (so no frame
//!    is appended to them any more), with at most [`MOST_ROWS`] rows
//!    pointing into them, at most [`MOST_SEGMENTS`] per pass;
//! 2. the pass's scan of the items ([`Store::prunable`]) notes every row
//!    pointing into a candidate, and its report's length;
//! 3. [`Store::compact`] takes the candidates whose live reports are at
//!    most a quarter of their file ([`Sparse::worth_it`]), reads each
//!    report back (checked against its CRC-32, as every read is) and, in a
//!    commit with fsync, puts it in its row, which then no longer points
//!    into the segment. The segment's count falls to zero, and its file is
//!    deleted right after that commit, as when pruning empties it.
//!
//! The reports go into their rows, not forward into the log's newest
//! segment: they are few (a quarter of a segment at most, usually a
//! handful), redb keeps them as it keeps the reports of batches it commits
//! itself, and a copy in the log would pin a newer segment the same way.
//! A row that changed between the scan and the write (pruned, or already
//! moved) is left as the write finds it: each move checks that the row
//! still points where the scan saw it.

use std::collections::BTreeMap;

use redb::ReadableDatabase;

use super::record::BodyRef;
use super::txn::Txn;
use super::writer::Write;
use super::{Error, Store};

/// Most rows pointing into a segment for it to be a candidate: the scan
/// keeps each one's id until the pass compacts it. A 64 MiB segment of
/// 1 KiB reports holds some 60,000.
pub const MOST_ROWS: u64 = 8192;

/// Most segments a pass takes as candidates; the next pass takes the rest.
pub const MOST_SEGMENTS: usize = 8;

/// Most bytes of reports moved by one write, so the commit stays short
/// beside the hot path (and what is read ahead of it stays small).
const WRITE_BYTES: usize = 4 << 20;

/// Most reports moved by one write.
const WRITE_ITEMS: usize = 256;

/// One candidate segment, and the rows the scan found pointing into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Candidate {
    /// Its file's length.
    file_bytes: u64,
    /// Rows the scan found pointing into it (and not pruned by the same
    /// pass), with where their reports lie.
    found: Vec<(String, BodyRef)>,
}

impl Candidate {
    /// Whether moving its reports is worth it: they take at most a
    /// quarter of the file, so moving them frees at least three times what
    /// it copies. (One the pass empties by pruning alone is deleted
    /// without this.)
    fn worth_it(&self) -> bool {
        let live: u64 = self.found.iter().map(|(_, at)| u64::from(at.len)).sum();
        !self.found.is_empty() && live.saturating_mul(4) <= self.file_bytes
    }
}

/// Segments that may be compacted, and what a pass found in them (see the
/// module's docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sparse {
    segments: BTreeMap<u64, Candidate>,
}

impl Sparse {
    /// Whether there is no candidate.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The candidate segments, in order.
    pub(super) fn wanted(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Notes that `id`'s report lies at `at`, in a candidate.
    pub(super) fn note(&mut self, id: String, at: BodyRef) {
        if let Some(c) = self.segments.get_mut(&at.segment)
            && c.found.len() < MOST_ROWS as usize
        {
            c.found.push((id, at));
        }
    }

    /// The candidates worth compacting (see `Candidate::worth_it`).
    pub fn worth_it(&self) -> Vec<u64> {
        self.segments
            .iter()
            .filter(|(_, c)| c.worth_it())
            .map(|(n, _)| *n)
            .collect()
    }
}

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Segments no row points into any more (their files are deleted after
    /// the commit).
    pub segments: Vec<u64>,
    /// Reports moved into their rows.
    pub reports: u64,
    /// Bytes of those reports.
    pub bytes: u64,
    /// Bytes of the segments' files, freed.
    pub freed_bytes: u64,
}

/// Moves reports read out of a segment into their rows.
struct Move {
    /// (item, where the scan saw its report, the report).
    reports: Vec<(String, BodyRef, Vec<u8>)>,
}

impl Write for Move {
    /// Reports moved, and their bytes.
    type Out = (u64, u64);

    fn bytes(&self) -> usize {
        self.reports.iter().map(|(_, _, b)| b.len()).sum()
    }

    // Housekeeping waits behind everything else.
    fn lane(&self) -> u8 {
        2
    }

    fn apply(&self, txn: &mut Txn<'_>) -> Result<(u64, u64), Error> {
        let mut moved = (0, 0);
        for (id, at, report) in &self.reports {
            if txn.take_body_into_row(id, at, report)? {
                moved.0 += 1;
                moved.1 += report.len() as u64;
            }
        }
        Ok(moved)
    }
}

impl Store {
    /// The log's segments that may be compacted (see the module's docs),
    /// with their files' lengths; the scan of a retention pass then notes
    /// what it finds in them.
    pub async fn sparse_segments(&self) -> Result<Sparse, Error> {
        let path = self.inner.db.path.clone();
        self.read(move |db| {
            let (current, _) = super::read::wal_start(db)?;
            let txn = db.begin_read()?;
            let counts = txn.open_table(super::tables::SEGMENTS)?;
            let mut out = Sparse::default();
            for row in counts.range(..current)? {
                let (n, rows) = row?;
                let (n, rows) = (n.value(), rows.value());
                if rows == 0 || rows > MOST_ROWS {
                    continue;
                }
                // A segment whose file is missing is not compacted: its
                // reports cannot be read back anyway.
                let Ok(meta) = std::fs::metadata(super::bodies::segment_path(&path, n)) else {
                    continue;
                };
                out.segments.insert(
                    n,
                    Candidate {
                        file_bytes: meta.len(),
                        found: Vec::new(),
                    },
                );
                if out.segments.len() == MOST_SEGMENTS {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    /// Moves the reports `sparse` found in its segments worth compacting
    /// ([`Sparse::worth_it`]) into their rows, a few megabytes per commit;
    /// each segment's file is deleted once nothing points into it. A
    /// report that cannot be read back whole stays where it is (and keeps
    /// its segment), named in the log.
    pub async fn compact(&self, sparse: Sparse) -> Result<Compacted, Error> {
        let mut done = Compacted::default();
        for (n, c) in sparse.segments.into_iter().filter(|(_, c)| c.worth_it()) {
            let mut left = c.found.as_slice();
            while !left.is_empty() {
                let (mut take, mut bytes) = (0, 0);
                while take < left.len() && take < WRITE_ITEMS && bytes < WRITE_BYTES {
                    bytes += left[take].1.len as usize;
                    take += 1;
                }
                let (part, rest) = left.split_at(take);
                left = rest;
                let bodies = self.inner.bodies.clone();
                let part = part.to_vec();
                let reports = self
                    .read(move |_| {
                        Ok(part
                            .into_iter()
                            .filter_map(|(id, at)| match bodies.read(&at) {
                                Ok(report) => Some((id, at, report)),
                                Err(e) => {
                                    bodies.alarm_damaged(
                                        &id,
                                        &e,
                                        "left in its segment, which is kept",
                                    );
                                    None
                                }
                            })
                            .collect::<Vec<_>>())
                    })
                    .await?;
                if reports.is_empty() {
                    continue;
                }
                let (moved, bytes) = self.write(Move { reports }).await?;
                done.reports += moved;
                done.bytes += bytes;
            }
            let emptied = self.lookup(|db| {
                let txn = db.begin_read()?;
                let counts = txn.open_table(super::tables::SEGMENTS)?;
                Ok(counts.get(n)?.is_none())
            })?;
            if emptied {
                done.segments.push(n);
                done.freed_bytes += c.file_bytes;
            }
        }
        Ok(done)
    }
}
