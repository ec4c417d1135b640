//! Retention at a node: passes that prune what `[retention]` allows, and
//! at the final hub the archive files (see [`super::archive`]) written before
//! anything is pruned.
//!
//! A node with routes drops the bodies and attachments of items the final
//! hub has (a delivery receipt is here), some days after their first
//! receipt; the final hub archives items stored long ago — each appended
//! to `archive/YYYY-MM.zba` (the local month it was stored; the format is
//! `ArchivedItem` in the proto) and the file `fsync`ed — before pruning
//! them from its store. Either way the store keeps what proves custody: the
//! digest, every receipt and decision, the custody log (which records each
//! pruning). A crash between the archive's sync and the prune archives the
//! item again on the next pass: a reader keeps the last copy of an id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::archive::{append_all, frame};
use crate::clock::Clock;
use crate::proto::ArchivedItem;
use crate::store::{self, Retention, Store};

/// Items pruned per write: one commit stays short beside the hot path.
const BATCH: usize = 256;

/// Archive frames held in memory before they are written and synced: a
/// batch of items with large attachments is archived a few at a time, not
/// all at once (an item's own size is bounded by `limits`).
const ARCHIVE_BUFFER: usize = 32 << 20;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Items pruned.
    pub items: u64,
    /// Bytes of reports and attachments they no longer take.
    pub bytes: u64,
    /// Archive files written to (the final hub).
    pub archived_to: Vec<PathBuf>,
    /// Reports moved out of the log's mostly emptied segments into their
    /// rows (see `store::compact`).
    pub compacted: u64,
    /// Bytes of the log's segment files nothing points into after that,
    /// deleted.
    pub segment_bytes_freed: u64,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PassError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// An archive file could not be written: nothing was pruned after it.
    #[error("cannot write the archive {path}: {source}")]
    Archive {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What [`Retainer::archive`] did with a batch.
struct Archived {
    /// The files it appended to.
    files: Vec<PathBuf>,
    /// Items left out: their reports could not be read back whole.
    damaged: Vec<String>,
}

/// The node's retention: its rule, and where the hub's archive goes.
#[derive(Debug)]
pub(crate) struct Retainer {
    store: Store,
    clock: Clock,
    rule: Option<Retention>,
    archive_dir: PathBuf,
    utc_offset_ms: i64,
    /// [`ARCHIVE_BUFFER`], but for tests.
    archive_buffer: usize,
    /// One pass at a time (the schedule's and a command's).
    running: Mutex<()>,
}

impl Retainer {
    pub(crate) fn new(
        store: Store,
        clock: Clock,
        rule: Option<Retention>,
        data_dir: &Path,
        utc_offset_ms: i64,
    ) -> Self {
        Self {
            store,
            clock,
            rule,
            archive_dir: data_dir.join("archive"),
            utc_offset_ms,
            archive_buffer: ARCHIVE_BUFFER,
            running: Mutex::new(()),
        }
    }

    /// The rule in force, in words.
    pub(crate) fn describe(&self) -> String {
        match self.rule {
            None => "keep everything (retention: keep)".into(),
            Some(Retention::Delivered { keep_ms }) => format!(
                "prune the report and attachments of items the final hub has, {} after their first receipt",
                span(keep_ms)
            ),
            Some(Retention::Archive { keep_ms }) => format!(
                "archive items to {} and prune them from the store {} after they were stored",
                self.archive_dir.display(),
                span(keep_ms)
            ),
        }
    }

    /// Where the hub's archive files are.
    pub(crate) fn archive_dir(&self) -> &Path {
        &self.archive_dir
    }

    /// Prunes (archiving first at the final hub) everything the rule allows
    /// now, a batch at a time.
    pub(crate) async fn pass(&self) -> Result<Pass, PassError> {
        let _one = self.running.lock().await;
        let mut done = Pass::default();
        let Some(rule) = self.rule else {
            return Ok(done);
        };
        let mut after = String::new();
        // Segments of the log that pruning has mostly emptied: the scan
        // below notes what they still hold, moved out after it.
        let mut sparse = self.store.sparse_segments().await?;
        loop {
            let now = self.clock.now_ms();
            let found = self.store.prunable(rule, now, after, &mut sparse).await?;
            for ids in found.ids.chunks(BATCH) {
                let mut ids = ids.to_vec();
                let why = match rule {
                    Retention::Delivered { .. } => "retention after delivery".to_string(),
                    Retention::Archive { .. } => {
                        let archived = self.archive(&ids).await?;
                        // Not archived whole, so not pruned: kept as it is.
                        ids.retain(|id| !archived.damaged.contains(id));
                        let names: Vec<String> = archived
                            .files
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect();
                        for f in archived.files {
                            if !done.archived_to.contains(&f) {
                                done.archived_to.push(f);
                            }
                        }
                        format!("archived to {}", names.join(", "))
                    }
                };
                for (_, bytes) in self.store.prune(ids, rule, why).await? {
                    done.items += 1;
                    done.bytes += bytes;
                }
            }
            match found.next {
                Some(next) => after = next,
                None => break,
            }
        }
        if done.items > 0 {
            info!(
                items = done.items,
                bytes = done.bytes,
                archived_to = ?done.archived_to,
                "retention: pruned the reports and attachments of items whose time was up"
            );
        }
        if !sparse.is_empty() {
            let compacted = self.store.compact(sparse).await?;
            if compacted.reports > 0 {
                info!(
                    reports = compacted.reports,
                    bytes = compacted.bytes,
                    segments = ?compacted.segments,
                    freed_bytes = compacted.freed_bytes,
                    "retention: the last reports of mostly emptied log segments moved into their rows, and the segments deleted"
                );
            }
            done.compacted = compacted.reports;
            done.segment_bytes_freed = compacted.freed_bytes;
        }
        Ok(done)
    }

    /// Appends `ids` to their months' archive files and syncs them, at
    /// most [`ARCHIVE_BUFFER`] of frames at a time. An item whose report
    /// cannot be read back whole is left out (an ALARM): archived, it
    /// would be lost once pruned; kept, it holds up none of the others.
    async fn archive(&self, ids: &[String]) -> Result<Archived, PassError> {
        let mut written: Vec<PathBuf> = Vec::new();
        let mut damaged = Vec::new();
        let mut frames: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        let mut buffered = 0;
        for id in ids {
            let rec = match self.store.get_or_damaged(id.clone()).await? {
                Some((rec, None)) => rec,
                Some((_, Some(e))) => {
                    self.store
                        .alarm_damaged(id, &e, "not archived, and kept in the store");
                    damaged.push(id.clone());
                    continue;
                }
                None => continue,
            };
            if rec.is_pruned() {
                continue;
            }
            let item = ArchivedItem {
                id: id.clone(),
                signed_report: rec.signed.clone(),
                stored_unix_ms: rec.stored_ms,
                attachments: self.store.attachments_of(id.clone()).await?,
                decisions: self.store.decisions(id.clone()).await?,
            };
            let path = self
                .archive_dir
                .join(format!("{}.zba", month(rec.stored_ms, self.utc_offset_ms)));
            let msg = item.encode_to_vec();
            drop(item);
            buffered += msg.len();
            frame(frames.entry(path).or_default(), &msg);
            if buffered >= self.archive_buffer {
                buffered = 0;
                self.append(std::mem::take(&mut frames), &mut written)
                    .await?;
            }
        }
        if !frames.is_empty() {
            self.append(frames, &mut written).await?;
        }
        Ok(Archived {
            files: written,
            damaged,
        })
    }

    /// Appends `frames` to their files and syncs them (on a blocking
    /// thread), adding the files to `written`.
    async fn append(
        &self,
        frames: BTreeMap<PathBuf, Vec<u8>>,
        written: &mut Vec<PathBuf>,
    ) -> Result<(), PassError> {
        let dir = self.archive_dir.clone();
        let files = tokio::task::spawn_blocking(move || append_all(&dir, frames))
            .await
            .map_err(|e| PassError::Archive {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })?
            .map_err(|(path, source)| PassError::Archive { path, source })?;
        for f in files {
            if !written.contains(&f) {
                written.push(f);
            }
        }
        Ok(())
    }

    /// Runs a pass at start and then regularly (a quarter of the retention
    /// period, between a second and an hour) until `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(rule) = self.rule else {
            return;
        };
        let keep_ms = match rule {
            Retention::Delivered { keep_ms } | Retention::Archive { keep_ms } => keep_ms,
        };
        let every = Duration::from_millis(u64::try_from(keep_ms / 4).unwrap_or(0))
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        loop {
            if let Err(e) = self.pass().await {
                warn!(error = %e, "retention pass failed; nothing further was pruned, retrying later");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// `YYYY-MM` of `ms` at `offset_ms` from UTC.
fn month(ms: i64, offset_ms: i64) -> String {
    let secs = ms.saturating_add(offset_ms).div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!("{:04}-{:02}", t.year(), u8::from(t.month())),
        Err(_) => "unknown".into(),
    }
}

/// A period in words: "7 days", "36 hours", "90 s".
fn span(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 86_400 && s % 86_400 == 0 {
        format!("{} days", s / 86_400)
    } else if s >= 3600 && s % 3600 == 0 {
        format!("{} hours", s / 3600)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_local() {
        // 2026-11-30 17:00 UTC is already December at +08:00.
        let ms = 1_796_058_000_000;
        assert_eq!(month(ms, 0), "2026-11");
        assert_eq!(month(ms, 8 * 3_600_000), "2026-12");
    }

    /// Puts a report `signed` into the inbox of `store` as item `id`.
    async fn in_inbox(store: &Store, id: &str, signed: &[u8]) {
        let rec = store::ItemRecord {
            signed: signed.to_vec(),
            lane: 2,
            sha256: vec![1; 32],
            from: "county-a".into(),
            ..Default::default()
        };
        store
            .put(id.into(), rec, store::Destination::Inbox)
            .await
            .unwrap();
    }

    /// A final hub's retention over `store` that archives everything now.
    fn archiving_now(store: &Store, data_dir: &Path) -> Retainer {
        Retainer::new(
            store.clone(),
            Clock::System,
            Some(Retention::Archive { keep_ms: 0 }),
            data_dir,
            0,
        )
    }

    #[tokio::test]
    async fn a_batch_is_archived_a_few_items_at_a_time_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let ids: Vec<String> = (0..5).map(|i| format!("item-{i}")).collect();
        for id in &ids {
            in_inbox(&store, id, &[7; 1000]).await;
        }
        let mut r = archiving_now(&store, dir.path());
        // Written out after every item.
        r.archive_buffer = 1;
        let done = r.pass().await.unwrap();
        assert_eq!(done.items, 5);
        assert_eq!(done.archived_to.len(), 1, "{:?}", done.archived_to);
        let read = crate::node::archive::read_archive(&done.archived_to[0]).unwrap();
        let read: Vec<&str> = read.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(read, ids.iter().map(String::as_str).collect::<Vec<_>>());
        for id in ids {
            assert!(store.get(id).await.unwrap().unwrap().is_pruned());
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_report_that_cannot_be_read_back_is_neither_archived_nor_pruned_nor_in_the_way() {
        use std::os::unix::fs::FileExt as _;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        for (id, body) in [("a", b"report-a-0123456789"), ("b", b"report-b-0123456789")] {
            in_inbox(&store, id, body).await;
        }
        // One byte of a's report changed in the log.
        let log = dir.path().join("s.redb.log");
        let bytes = std::fs::read(&log).unwrap();
        let at = bytes
            .windows(8)
            .position(|w| w == b"report-a")
            .expect("a's report is in the log");
        let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        file.write_all_at(b"R", at as u64).unwrap();

        let done = archiving_now(&store, dir.path()).pass().await.unwrap();
        assert_eq!(done.items, 1, "b alone");
        let read = crate::node::archive::read_archive(&done.archived_to[0]).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].id, "b");
        assert!(store.get("b".into()).await.unwrap().unwrap().is_pruned());
        // a is still in the store as it was, its record not pruned.
        assert!(matches!(
            store.get("a".into()).await,
            Err(store::Error::Body { .. })
        ));
        store.close().await;
    }
}
