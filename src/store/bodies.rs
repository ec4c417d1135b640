//! Report bodies kept in the store's log, where the frame that made each
//! item durable wrote them, instead of copied into redb's B-tree.
//!
//! A hub's item is one report of about a kilobyte and a row of a few
//! hundred bytes: with the report in the row, redb copied it into a leaf,
//! split leaves three times as often, checksummed and wrote out those pages
//! at every full commit — the largest single cost of applying a batch (see
//! the README, "How far the store is from the ceiling"). Now a logged
//! batch's reports are written once, raw, at the front of its frame (see
//! `wal`); the item's row holds a [`BodyRef`] (segment, offset, length) and
//! a CRC-32 of it.
//!
//! # Segments
//! The log is a series of files, the *segments*: segment 0 is
//! `<db>.log` (the single log file of earlier versions), segment `n` is
//! `<db>.log.<n>`. The log appends to the newest; when it is full, the next
//! full commit starts a new one. An older segment is read only for the
//! bodies in it, and deleted once no row points into it: the `segments`
//! table counts the rows that do, and a count that falls to zero (bodies
//! pruned, or the last ones moved into their rows by `compact`) lets the
//! file go after the next commit with fsync, never before, so the store's
//! last durable state never points into a missing file.
//!
//! # Reads
//! Every read of a body checks it against the CRC-32 its row keeps: bytes
//! damaged on the disk, or a file swapped, are an error
//! ([`Error::Body`](super::Error::Body)), not a report handed on. (The
//! report's SHA-256, which receipts name, covers only its inner bytes, not
//! its signature and custody chain; the CRC covers every byte kept.) File handles are kept open, one per segment, so a read is one
//! `pread` of bytes the kernel usually still holds.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Error;
use super::record::{BodyRef, ItemRecord};

/// The file of segment `n` of the log of the database at `db`.
pub(super) fn segment_path(db: &Path, n: u64) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".log");
    if n > 0 {
        name.push(format!(".{n}"));
    }
    db.with_file_name(name)
}

/// The segments whose files are beside the database at `db`, in order.
pub(super) fn segments_on_disk(db: &Path) -> std::io::Result<Vec<u64>> {
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut prefix = db.file_name().unwrap_or_default().to_os_string();
    prefix.push(".log");
    let prefix = prefix.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if rest.is_empty() {
            out.push(0);
        } else if let Some(n) = rest.strip_prefix('.').and_then(|n| n.parse::<u64>().ok())
            && n > 0
            && segment_path(db, n).file_name() == Some(std::ffi::OsStr::new(name))
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads bodies out of the log's segments; one per store, shared by its
/// readers and its writer.
#[derive(Debug)]
pub(super) struct Bodies {
    db: PathBuf,
    files: Mutex<HashMap<u64, Arc<File>>>,
    /// Damaged reports already alarmed, with what was done about them:
    /// see [`Bodies::alarm_damaged`].
    alarmed: Mutex<HashSet<(String, &'static str)>>,
}

/// Most damaged reports remembered as alarmed; past it, all are forgotten
/// and alarmed once more (a bound on memory, not a limit on alarms).
const MAX_ALARMED: usize = 4096;

impl Bodies {
    pub(super) fn new(db: &Path) -> Self {
        Self {
            db: db.to_path_buf(),
            files: Mutex::new(HashMap::new()),
            alarmed: Mutex::new(HashSet::new()),
        }
    }

    /// Logs that the report of `id` cannot be read back whole (`e`) and
    /// what was `done` about it: an ALARM the first time this process
    /// meets it for that, a DEBUG line after. A listing, a retention pass
    /// and a compaction meet the same damaged report again and again; one
    /// ALARM per report says it, a stream of them would bury the next one.
    /// A restart raises each once more.
    /// Returns whether it alarmed.
    pub(super) fn alarm_damaged(&self, id: &str, e: &Error, done: &'static str) -> bool {
        let first = {
            let mut alarmed = self
                .alarmed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if alarmed.len() >= MAX_ALARMED {
                alarmed.clear();
            }
            alarmed.insert((id.to_string(), done))
        };
        if first {
            tracing::error!(alarm = "report-damaged", %id, error = %e, "ALARM: a stored report cannot be read back whole; {done}");
        } else {
            tracing::debug!(%id, error = %e, "a stored report, alarmed before, still cannot be read back whole; {done}");
        }
        first
    }

    /// The item record in `bytes`, its report put back (see [`Bodies::fill`]).
    pub(super) fn decode(&self, bytes: &[u8]) -> Result<ItemRecord, Error> {
        let mut rec = super::decode(bytes)?;
        self.fill(&mut rec)?;
        Ok(rec)
    }

    /// Puts the body of `rec` back in `rec.signed`, if the record points
    /// into the log for it (a pruned record has no body, and one written
    /// by a full commit holds its own).
    pub(super) fn fill(&self, rec: &mut ItemRecord) -> Result<(), Error> {
        if let Some(at) = rec.body
            && rec.signed.is_empty()
        {
            rec.signed = self.read(&at)?;
        }
        Ok(())
    }

    /// [`Bodies::fill`] for a read of many items, which one damaged
    /// report must not stop: such a report is left out, `rec.signed`
    /// staying empty while `rec.body` still points at it
    /// ([`ItemRecord::unreadable`]), and answered as `Ok(Some(why))`. A
    /// segment gone ([`Error::BodyGone`]) is still an error, for the read
    /// to be made again.
    pub(super) fn fill_unless_damaged(&self, rec: &mut ItemRecord) -> Result<Option<Error>, Error> {
        match self.fill(rec) {
            Ok(()) => Ok(None),
            Err(e @ Error::Body { .. }) => Ok(Some(e)),
            Err(e) => Err(e),
        }
    }

    /// [`Bodies::fill_unless_damaged`], a damaged report logged (an ALARM)
    /// and passed over.
    pub(super) fn fill_or_skip(&self, id: &str, rec: &mut ItemRecord) -> Result<(), Error> {
        if let Some(e) = self.fill_unless_damaged(rec)? {
            self.alarm_damaged(id, &e, "passed over");
        }
        Ok(())
    }

    /// The `at.len` bytes at `at`, checked against `at.crc32`.
    pub(super) fn read(&self, at: &BodyRef) -> Result<Vec<u8>, Error> {
        let path = segment_path(&self.db, at.segment);
        let fail = |why: String| Error::Body {
            path: path.clone(),
            offset: at.offset,
            why,
        };
        let file = self.file(at.segment).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BodyGone { path: path.clone() },
            _ => fail(e.to_string()),
        })?;
        let mut bytes = vec![0; at.len as usize];
        file.read_exact_at(&mut bytes, at.offset)
            .map_err(|e| fail(e.to_string()))?;
        if crc32fast::hash(&bytes) != at.crc32 {
            return Err(fail(
                "damaged: its CRC-32 is not the one stored with the item".into(),
            ));
        }
        Ok(bytes)
    }

    fn file(&self, segment: u64) -> std::io::Result<Arc<File>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = files.get(&segment) {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(segment_path(&self.db, segment))?);
        files.insert(segment, file.clone());
        Ok(file)
    }

    /// Deletes the file of `segment`, which nothing points into any more.
    pub(super) fn remove(&self, segment: u64) -> std::io::Result<()> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&segment);
        match std::fs::remove_file(segment_path(&self.db, segment)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_report_is_alarmed_once_for_each_outcome() {
        let bodies = Bodies::new(Path::new("s.redb"));
        let e = Error::BodyGone {
            path: "s.redb.log.2".into(),
        };
        assert!(bodies.alarm_damaged("a", &e, "passed over"));
        assert!(!bodies.alarm_damaged("a", &e, "passed over"), "once");
        assert!(
            bodies.alarm_damaged("a", &e, "not archived"),
            "another outcome"
        );
        assert!(
            bodies.alarm_damaged("b", &e, "passed over"),
            "another report"
        );
        // Bounded: past the bound everything is forgotten, then alarmed anew.
        for i in 0..MAX_ALARMED {
            bodies.alarm_damaged(&i.to_string(), &e, "passed over");
        }
        assert!(bodies.alarmed.lock().unwrap().len() <= MAX_ALARMED);
        assert!(
            bodies.alarm_damaged("a", &e, "passed over"),
            "forgotten past the bound, so alarmed again"
        );
    }

    #[test]
    fn segment_files_are_named_after_the_database_and_listed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.redb");
        for n in [3u64, 0, 12] {
            std::fs::write(segment_path(&db, n), b"x").unwrap();
        }
        std::fs::write(dir.path().join("s.redb.log.x"), b"x").unwrap();
        std::fs::write(dir.path().join("s.redb.log.07"), b"x").unwrap();
        std::fs::write(dir.path().join("t.redb.log.4"), b"x").unwrap();
        assert_eq!(segment_path(&db, 0), dir.path().join("s.redb.log"));
        assert_eq!(segment_path(&db, 3), dir.path().join("s.redb.log.3"));
        assert_eq!(segments_on_disk(&db).unwrap(), vec![0, 3, 12]);
    }

    #[test]
    fn a_body_is_read_back_only_whole_and_undamaged() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.redb");
        std::fs::write(segment_path(&db, 2), b"....the report....").unwrap();
        let bodies = Bodies::new(&db);
        let at = BodyRef {
            segment: 2,
            offset: 4,
            len: 10,
            crc32: crc32fast::hash(b"the report"),
        };
        assert_eq!(bodies.read(&at).unwrap(), b"the report");
        let mut rec = ItemRecord {
            body: Some(at),
            ..Default::default()
        };
        bodies.fill(&mut rec).unwrap();
        assert_eq!(rec.signed, b"the report");

        let elsewhere = BodyRef { offset: 3, ..at };
        let e = bodies.read(&elsewhere).unwrap_err();
        assert!(matches!(e, Error::Body { .. }), "{e}");
        let past_the_end = BodyRef { offset: 15, ..at };
        assert!(bodies.read(&past_the_end).is_err());

        bodies.remove(2).unwrap();
        assert!(!segment_path(&db, 2).exists());
        let e = bodies.read(&at).unwrap_err();
        assert!(matches!(e, Error::BodyGone { .. }), "{e}");
        bodies.remove(2).unwrap();
    }
}
