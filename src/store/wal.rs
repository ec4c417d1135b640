//! The store's write-ahead log: how a batch of new items becomes durable
//! with one small sequential write and one `fdatasync`, instead of a redb
//! commit that writes a header and pages scattered over the file.
//!
//! # The contract it keeps
//! A batch made only of the hot path's writes — new items (a hub taking
//! reports, a county taking its operators'), the receipts that come back
//! for them, the record that an item was forwarded, a child's
//! acknowledgement of delivery receipts — is applied to redb in a transaction
//! committed *without* fsync, and the batch's writes are appended to this
//! log and `fdatasync`ed before the commit becomes visible or anyone is
//! answered. Every other batch — and one every [`CHECKPOINT_BYTES`] of log
//! or [`CHECKPOINT_AGE`], every batch of more than [`MAX_BATCH_BYTES`], and
//! every batch while less than [`ROOM`] is free on the disk — is committed
//! by redb with fsync, which makes every earlier commit durable too, and
//! records where the log goes on after it ([`Wal::end`]).
//!
//! Each transaction records, in the store's `meta` table, the sequence
//! number of the last logged batch it includes. At open (and after a failed
//! commit, when redb is reopened at its last durable state), the log is read
//! from where the last full commit left it, and batches logged after that
//! number are applied again, in order, with the clock reading they were
//! first applied with: applying a batch is deterministic, so the store ends
//! exactly as it was when those writes were answered.
//!
//! # Reports in the log
//! A frame holds its batch's reports raw, ahead of the encoded batch, and
//! each new item's record points at where its report lies (see
//! [`Frame`] and [`bodies`](super::bodies)): the log is where reports are
//! kept, not only a copy until the next full commit. So it never goes back
//! over a frame: a full commit leaves it appending after its last, and
//! once a file is full ([`CHECKPOINT_BYTES`]) the next full commit starts a
//! new one, the next *segment*; the old ones stay as long as a row points
//! into them.
//!
//! # The file
//! Frames `[len: u32 LE][crc32: u32 LE][payload]`, the payload an encoded
//! [`Batch`] stamped with the log's secret generation ([`Stamp`]), or with
//! the reports before it (see [`Frame`]), in a
//! file written out with zeros ahead of its appends (so an append's
//! `fdatasync` writes its data and none of the file's metadata): a store's
//! first part as the file is opened, the rest in the background (see
//! [`writeout`](super::writeout)), and the next segment's likewise before
//! it is needed. A frame that is empty,
//! short, fails its checksum, does not decode, is of another generation or
//! is older than the one before it ends the log: it is the tail of an
//! append a crash cut off (never acknowledged), or one taken back — where a
//! sender's report body could have been made to look like a frame, which
//! the generation, drawn afresh at every full commit, keeps from being read
//! as one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;

use super::bodies::segment_path;
use super::record::{BodyRef, Destination, ItemRecord};
use super::writeout::WriteOut;

/// Log bytes after which the next batch is committed by redb with fsync
/// (and the log started afresh after it). A full commit stops the writer for tens of
/// milliseconds at load, and an urgent item that comes meanwhile waits for
/// it: the more log between two, the fewer meet one. (From 16 MiB to 64,
/// an emergency's p99 during a saturating load fell in every pair of runs
/// measured; each full commit took about as long: redb writes out at most
/// half its cache at one.)
pub(super) const CHECKPOINT_BYTES: u64 = 64 << 20;
/// Log bytes a store logs between full commits before its log file is
/// written out further (see [`writeout`](super::writeout)).
const QUIET_BYTES: u64 = 16 << 20;
/// Log bytes after which the rest of the file is written out, ahead of need.
const WRITE_OUT_FROM: u64 = 8 << 20;
/// Room kept between the log's end and what is written out: more than
/// any frame the writer makes (see [`MAX_BATCH_BYTES`]).
const SLACK: u64 = 4 << 20;
/// The log file's size once written out whole.
const WRITTEN_OUT: u64 = CHECKPOINT_BYTES + SLACK;
/// Free space below which batches are not logged but committed with fsync:
/// room for what the log may hold to be applied again (redb's pages for it
/// included) should the disk fill under a commit.
pub(super) const ROOM: u64 = 4 * CHECKPOINT_BYTES;
/// Time after which likewise (a full commit is cheap then: little has
/// changed since the last).
pub(super) const CHECKPOINT_AGE: Duration = Duration::from_secs(8);
/// Largest batch logged, bytes: a larger one (large reports) is committed
/// by redb with fsync, which costs less than writing it twice.
pub(super) const MAX_BATCH_BYTES: usize = 1 << 20;
/// Largest frame read back: far above any batch the writer makes.
const MAX_FRAME: usize = 256 << 20;
/// Set in a frame's length word when its payload starts with the batch's
/// report bodies (see [`Frame`]); frames of earlier versions never set it
/// (they are shorter than [`MAX_FRAME`]).
const WITH_BODIES: u32 = 1 << 31;
/// Bytes before a frame's first body: length, checksum, bodies' length.
const BODIES_AT: u64 = 12;
/// The log's size on disk from the start (zeros until written): all a
/// quiet store needs.
const PREALLOCATED: u64 = QUIET_BYTES + SLACK;

/// One logged batch.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Batch {
    /// Its sequence number: one more than the batch logged before it.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The clock reading the batch was applied with, Unix ms.
    #[prost(int64, tag = "2")]
    pub now_ms: i64,
    /// Its writes, in the order they were applied.
    #[prost(message, repeated, tag = "3")]
    pub writes: Vec<Logged>,
    /// The log's generation, stamped by [`Wal::write`] (see [`Stamp`]);
    /// empty when read back, and in logs written before it existed.
    #[prost(bytes = "vec", tag = "4")]
    pub generation: Vec<u8>,
}

/// The log's generation, appended to each frame's encoded [`Batch`] (a
/// protobuf field appended to a message is read as the message's own).
///
/// Drawn afresh whenever the log is opened or started afresh by a full commit, and never written
/// anywhere but this file. A frame of another generation ends the log, so
/// bytes left from before — another batch's tail after a shorter one
/// written over it, report bodies among them, chosen by whoever sent the
/// report — are not read as batches, however well they imitate a frame:
/// the imitation would have to carry sixteen bytes its maker does not
/// know, or, made to end on a genuine stamp left after it, a checksum over
/// them (one chance in 2³² at each crash that happens to leave it at the
/// log's end).
#[derive(Clone, PartialEq, prost::Message)]
struct Stamp {
    #[prost(bytes = "vec", tag = "4")]
    generation: Vec<u8>,
}

/// Bytes of a generation.
const GENERATION: usize = 16;

/// One write, as handed to the store.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Logged {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<Kind>,
}

/// The writes the log takes: those of the hot path.
// Built once per write and dropped with its batch: the size of a variant
// costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Kind {
    /// A new item.
    #[prost(message, tag = "1")]
    Put(Put),
    /// An upstream's verified receipt for an item queued on it.
    #[prost(message, tag = "2")]
    Receipt(Receipt),
    /// A verified delivery receipt that travelled down.
    #[prost(message, tag = "3")]
    Delivery(Delivery),
    /// A custody-log record of its own (an item forwarded).
    #[prost(message, tag = "4")]
    Note(Note),
    /// A child's acknowledgement of delivery receipts pushed down to it.
    #[prost(message, tag = "5")]
    AckDown(AckDown),
}

/// A new item.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Put {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub record: Option<ItemRecord>,
    /// Queued on these routes, unless `inbox`.
    #[prost(string, repeated, tag = "3")]
    pub routes: Vec<String>,
    #[prost(bool, tag = "4")]
    pub inbox: bool,
    #[prost(bool, tag = "5")]
    pub may_hold_back: bool,
}

/// An upstream's receipt.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Receipt {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub route: String,
    #[prost(bytes = "vec", tag = "3")]
    pub receipt: Vec<u8>,
    #[prost(bool, tag = "4")]
    pub delivery: bool,
}

/// A delivery receipt from above.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Delivery {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub receipt: Vec<u8>,
}

/// A custody-log record (an `audit::Entry`).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Note {
    #[prost(int32, tag = "1")]
    pub kind: i32,
    #[prost(string, tag = "2")]
    pub item_id: String,
    #[prost(string, tag = "3")]
    pub peer: String,
    #[prost(string, tag = "4")]
    pub detail: String,
}

/// A child's acknowledgement of delivery receipts.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct AckDown {
    #[prost(string, tag = "1")]
    pub child: String,
    #[prost(string, repeated, tag = "2")]
    pub ids: Vec<String>,
}

impl Logged {
    pub(super) fn of(kind: Kind) -> Self {
        Self { kind: Some(kind) }
    }
}

impl Put {
    pub(super) fn new(
        id: &str,
        record: &ItemRecord,
        dest: &Destination,
        may_hold_back: bool,
    ) -> Self {
        let (routes, inbox) = match dest {
            Destination::Queue(routes) => (routes.clone(), false),
            Destination::Inbox => (Vec::new(), true),
        };
        Self {
            id: id.to_string(),
            record: Some(record.clone()),
            routes,
            inbox,
            may_hold_back,
        }
    }

    pub(super) fn dest(&self) -> Destination {
        if self.inbox {
            Destination::Inbox
        } else {
            Destination::Queue(self.routes.clone())
        }
    }
}

/// A batch written to the log and not yet durable (see [`Wal::write`]).
#[derive(Debug)]
#[must_use = "a written batch is made durable with `sync` or taken back with `cancel`"]
pub(super) struct Written {
    seq: u64,
    bytes: u64,
}

/// A batch laid out for the log: its reports' bytes taken out of its new
/// items' records, to be written raw at the front of the frame, each record
/// pointing at where its report will lie ([`ItemRecord::body`]). On disk:
/// `[len | WITH_BODIES: u32 LE][crc32: u32 LE][bodies' length: u32 LE]
/// [bodies][encoded batch]`, the checksum over all after it.
#[derive(Debug)]
pub(super) struct Frame {
    pub batch: Batch,
    /// One per write: the report's bytes, empty for writes without one.
    bodies: Vec<Vec<u8>>,
}

impl Frame {
    /// Where the report of write `i` will lie, if it has one.
    pub(super) fn body(&self, i: usize) -> Option<BodyRef> {
        match self.batch.writes.get(i)?.kind.as_ref()? {
            Kind::Put(put) => put.record.as_ref()?.body,
            _ => None,
        }
    }

    /// Keeps the first `n` writes (a batch cut short): the bodies of those
    /// kept come first, so where they lie does not move.
    pub(super) fn truncate(&mut self, n: usize) {
        self.batch.writes.truncate(n);
        self.bodies.truncate(n);
    }
}

/// The open log.
#[derive(Debug)]
pub(super) struct Wal {
    /// The database the log is beside (its segments are named after it).
    db: PathBuf,
    /// The segment appended to.
    segment: u64,
    path: PathBuf,
    file: File,
    /// Bytes of whole frames in the file.
    len: u64,
    /// The last batch logged (or applied from the log).
    last_seq: u64,
    /// When redb last committed with fsync.
    durable_at: Instant,
    /// An append failed and its tail could not be cut off: nothing more is
    /// logged until the next full commit.
    broken: bool,
    /// This generation's stamp (see [`Stamp`]).
    generation: [u8; GENERATION],
    /// How far the file is written out, and the thread writing it further.
    written_out: WriteOut,
    /// The next segment's file, written out in the background ahead of
    /// need once this one is busy.
    spare: Option<WriteOut>,
    /// Bytes past which the next full commit starts a new segment.
    rotate_at: u64,
}

impl Wal {
    /// Opens segment `segment` of the log of the database at `db` (created
    /// if missing) and reads back its batches from `start`, where the last
    /// full commit left it; a torn tail is cut off.
    /// `segment_bytes`: the log goes on in a new segment past this many
    /// bytes (at most [`CHECKPOINT_BYTES`]).
    pub(super) fn open(
        db: &Path,
        segment: u64,
        start: u64,
        segment_bytes: u64,
    ) -> std::io::Result<(Self, Vec<Batch>)> {
        Self::open_segment(db, segment, start, segment_bytes, false)
    }

    /// [`Wal::open`]; a `fresh` segment (one no commit has named yet, so
    /// with no frames: zeros at most) is not read.
    fn open_segment(
        db: &Path,
        segment: u64,
        start: u64,
        segment_bytes: u64,
        fresh: bool,
    ) -> std::io::Result<(Self, Vec<Batch>)> {
        let rotate_at = segment_bytes.clamp(1, CHECKPOINT_BYTES);
        let preallocated = preallocated(rotate_at);
        let path = &segment_path(db, segment);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        if !fresh {
            file.read_to_end(&mut bytes)?;
        }
        let Some(from) = bytes.get(start as usize..) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the last full commit left the log at byte {start}, past its end ({})",
                    bytes.len()
                ),
            ));
        };
        let (batches, at, stamp) = frames(from, segment, start);
        let len = start + at;
        let have = if fresh {
            file.metadata()?.len()
        } else {
            bytes.len() as u64
        };
        if have < preallocated && room_for_preallocation(path) {
            // Written out once, so that appends overwrite blocks the file
            // already has: their fdatasync then writes the data and nothing
            // of the file's metadata. (On a disk too full for it, nothing is
            // logged anyway.)
            file.seek(SeekFrom::Start(have))?;
            let zeros = file
                .write_all(&vec![0; (preallocated - have) as usize])
                .and_then(|()| file.sync_all());
            if let Err(e) = zeros {
                tracing::warn!(path = %path.display(), error = %e, "store log not written out ahead; appends also write its size");
                file.set_len(have)?;
            }
        }
        // The file's name is on the disk before any frame is written to
        // it, or a commit names it as where the log goes on.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        file.seek(SeekFrom::Start(len))?;
        // Appends go on in the generation of the batches read, if stamped.
        let mut generation = [0; GENERATION];
        match stamp {
            Some(stamp) if stamp.len() == GENERATION => generation.copy_from_slice(&stamp),
            _ => ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut generation)
                .map_err(|_| std::io::Error::other("no random bytes from the system"))?,
        }
        let written_out = WriteOut::new(file.metadata()?.len());
        let wal = Self {
            db: db.to_path_buf(),
            segment,
            path: path.to_path_buf(),
            file,
            len,
            last_seq: 0,
            durable_at: Instant::now(),
            broken: false,
            generation,
            written_out,
            spare: None,
            rotate_at,
        };
        Ok((wal, batches))
    }

    /// The segment appended to.
    pub(super) fn segment(&self) -> u64 {
        self.segment
    }

    /// Where the next batch goes: (segment, offset). A full commit records
    /// it, and the log is read back from there.
    pub(super) fn end(&self) -> (u64, u64) {
        (self.segment, self.len)
    }

    /// Starts a new segment at the next full commit past `bytes` (which
    /// comes once the log is that long).
    #[cfg(test)]
    pub(super) fn set_rotate_at(&mut self, bytes: u64) {
        self.rotate_at = bytes;
    }

    /// Bytes of log after which it goes on in a new segment.
    pub(super) fn segment_bytes(&self) -> u64 {
        self.rotate_at
    }

    /// How far a segment's file is written out with zeros at most.
    fn written_out_to(&self) -> u64 {
        WRITTEN_OUT.min(self.rotate_at + SLACK)
    }

    /// Whether the next full commit should start a new segment: this one
    /// is full, or cannot take appends without writing its size.
    pub(super) fn rotation_due(&self) -> bool {
        self.len >= self.rotate_at
            || (self.len >= QUIET_BYTES && self.len + SLACK > self.written_out.done())
    }

    /// Opens the next segment, to be appended to once a full commit has
    /// recorded it as the log's start ([`Wal::rotate`]). Its file is the
    /// spare written out in the background, if that is done; else it is
    /// written out now, as a log is opened.
    pub(super) fn next_segment(&mut self) -> std::io::Result<Self> {
        if let Some(mut spare) = self.spare.take() {
            spare.stop();
        }
        Self::open_segment(&self.db, self.segment + 1, 0, self.rotate_at, true)
            .map(|(next, _)| next)
    }

    /// Appends to `next` from now on (a full commit has just recorded it as
    /// the log's start); the file appended to so far is kept for the
    /// reports in it, cut to its frames.
    pub(super) fn rotate(&mut self, mut next: Self) {
        next.last_seq = self.last_seq;
        let old = std::mem::replace(self, next);
        drop(old.written_out);
        if let Err(e) = old.file.set_len(old.len) {
            tracing::debug!(path = %old.path.display(), error = %e, "store log: a full segment not cut to its frames");
        }
        tracing::debug!(from = %old.path.display(), to = %self.path.display(), "store log: a new segment");
    }

    /// Writes the next segment's file out in the background, once this
    /// one is written out and half full, so that starting it costs a full
    /// commit nothing.
    fn prepare_spare(&mut self) {
        if self.spare.is_some()
            || self.len < self.rotate_at / 2
            || self.written_out.done() < self.written_out_to()
        {
            return;
        }
        let path = segment_path(&self.db, self.segment + 1);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if super::free_bytes(dir).is_none_or(|free| free < ROOM + PREALLOCATED) {
            return;
        }
        let spare = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|file| {
                let mut out = WriteOut::new(file.metadata()?.len());
                out.start(file, preallocated(self.rotate_at))?;
                Ok(out)
            });
        match spare {
            Ok(out) => self.spare = Some(out),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "store log: the next segment not written out ahead; the full commit that starts it writes it");
                // Not tried again for this segment.
                self.spare = Some(WriteOut::new(0));
            }
        }
    }

    /// Lays `batch` out as the next frame (see [`Frame`]): each new item's
    /// report is taken out of its record, which points at where it will lie.
    pub(super) fn frame(&self, mut batch: Batch) -> Frame {
        let writes = std::mem::take(&mut batch.writes);
        let mut frame = Frame {
            bodies: Vec::with_capacity(writes.len()),
            batch,
        };
        frame.batch.writes.reserve(writes.len());
        self.extend(&mut frame, writes);
        frame
    }

    /// Adds `writes` at the end of `frame`, laid out as [`Wal::frame`]
    /// lays them: their reports after those already in it, so that where
    /// those lie does not move.
    pub(super) fn extend(&self, frame: &mut Frame, writes: Vec<Logged>) {
        let mut at =
            self.len + BODIES_AT + frame.bodies.iter().map(|b| b.len() as u64).sum::<u64>();
        for mut write in writes {
            let body = match write.kind.as_mut() {
                Some(Kind::Put(Put {
                    record: Some(record),
                    ..
                })) if !record.signed.is_empty() => {
                    let body = std::mem::take(&mut record.signed);
                    record.body = Some(BodyRef {
                        segment: self.segment,
                        offset: at,
                        len: u32::try_from(body.len()).unwrap_or(u32::MAX),
                        crc32: crc32fast::hash(&body),
                    });
                    at += body.len() as u64;
                    body
                }
                _ => Vec::new(),
            };
            frame.bodies.push(body);
            frame.batch.writes.push(write);
        }
    }

    /// The log file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the next batch should be committed by redb with fsync.
    /// Past [`QUIET_BYTES`], the log appends only where the file is written
    /// out, less [`SLACK`]: never where the write-out thread writes.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.broken
            || self.len >= self.rotate_at
            || (self.len >= QUIET_BYTES && self.len + SLACK > self.written_out.done())
            || self.durable_at.elapsed() >= CHECKPOINT_AGE
    }

    /// Stops writing the file out ahead, and waits until nothing does:
    /// before the log is opened again (see `writer::reopen`).
    pub(super) fn stop_writing_out(&mut self) {
        self.written_out.stop();
    }

    /// Once the log has grown past [`WRITE_OUT_FROM`], writes the rest of
    /// the file out in the background, where the disk has room for it.
    fn write_out_ahead(&mut self) {
        self.prepare_spare();
        if self.len < WRITE_OUT_FROM
            || self.written_out.asked()
            || self.written_out.done() >= self.written_out_to()
        {
            return;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if super::free_bytes(dir).is_none_or(|free| free < ROOM + WRITTEN_OUT) {
            // Looked at again at the next full commit.
            self.written_out.refuse();
            return;
        }
        if let Err(e) = self
            .file
            .try_clone()
            .and_then(|file| self.written_out.start(file, self.written_out_to()))
        {
            self.written_out.refuse();
            tracing::warn!(path = %self.path.display(), error = %e, "store log: not written out ahead; full commits come sooner");
        }
    }

    /// The next batch's sequence number.
    pub(super) fn next_seq(&self) -> u64 {
        self.last_seq + 1
    }

    /// The last batch logged or applied.
    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Sets where the sequence stands (after replay at open).
    pub(super) fn set_last_seq(&mut self, seq: u64) {
        self.last_seq = seq;
    }

    /// Appends `batch` and makes it durable. On failure the log is as it
    /// was (or, if even that fails, takes no more batches until the next full commit).
    #[cfg(test)]
    pub(super) fn append(&mut self, batch: &Batch) -> std::io::Result<()> {
        let written = self.write(&self.frame(batch.clone()))?;
        self.sync(written)
    }

    /// Writes `batch` after the last frame and starts writing it out to the
    /// disk, without waiting: [`Wal::sync`] then waits for it (the writer
    /// applies the batch to redb meanwhile), or [`Wal::cancel`] takes it
    /// back. Nothing is durable, and the log's length and sequence do not
    /// move, until `sync` returns. On failure the log is as it was.
    pub(super) fn write(&mut self, frame: &Frame) -> std::io::Result<Written> {
        let bodies: usize = frame.bodies.iter().map(Vec::len).sum();
        let mut payload = Vec::with_capacity(4 + bodies + frame.batch.encoded_len() + 20);
        payload.extend_from_slice(&u32::try_from(bodies).unwrap_or(u32::MAX).to_le_bytes());
        for body in &frame.bodies {
            payload.extend_from_slice(body);
        }
        frame
            .batch
            .encode(&mut payload)
            .map_err(std::io::Error::other)?;
        Stamp {
            generation: self.generation.to_vec(),
        }
        .encode(&mut payload)
        .map_err(std::io::Error::other)?;
        let framed = framed(&payload, WITH_BODIES);
        let written = Written {
            seq: frame.batch.seq,
            bytes: framed.len() as u64,
        };
        if let Err(e) = self.file.write_all(&framed) {
            self.back();
            return Err(e);
        }
        // Start the write-back now, so that much of it is done by the time
        // `sync` waits for it (about a quarter of an fdatasync's time here).
        // Only advice: if it fails, `sync` still writes everything.
        let _ = rustix::fs::fadvise(
            &self.file,
            self.len,
            std::num::NonZeroU64::new(written.bytes),
            rustix::fs::Advice::DontNeed,
        );
        Ok(written)
    }

    /// Makes the batch `written` durable. On failure the log is as it was
    /// (or, if even that fails, takes no more batches until the next full commit).
    pub(super) fn sync(&mut self, written: Written) -> std::io::Result<()> {
        match self.file.sync_data() {
            Ok(()) => {
                self.len += written.bytes;
                self.last_seq = written.seq;
                self.write_out_ahead();
                Ok(())
            }
            Err(e) => {
                self.back();
                Err(e)
            }
        }
    }

    /// Takes back the batch `written` (its transaction failed): its frame
    /// is overwritten with an empty one, which ends the log, and that is
    /// made durable, so that it is never applied again. Should that fail,
    /// the batch's sequence number is spent and no batch is logged until
    /// the next commit with fsync, which records the number as applied
    /// (and the log going on at that frame, which the next batch writes
    /// over): the frame can then be applied again only by a crash
    /// before that commit — the writes of a batch whose callers heard it
    /// failed, stored after all (each write is idempotent by item id).
    pub(super) fn cancel(&mut self, written: Written) {
        let zeroed = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&[0; 8]))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = zeroed {
            tracing::error!(path = %self.path.display(), error = %e, "store log: a batch whose transaction failed could not be taken back; batches are committed with fsync until the next full commit");
            self.last_seq = written.seq;
            self.broken = true;
        }
        self.back();
    }

    /// Goes back to the end of the last durable frame, where the next
    /// append is written; whatever a failed append left after it is a frame
    /// that does not verify, or an older one, which ends the log.
    fn back(&mut self) {
        if let Err(seek) = self.file.seek(SeekFrom::Start(self.len)) {
            tracing::error!(path = %self.path.display(), error = %seek, "store log: cannot go back after a failed append; batches are committed with fsync until the next full commit");
            self.broken = true;
        }
    }

    /// Starts the log afresh after its end: redb has just committed with
    /// fsync everything in it, and recorded [`Wal::end`] as where the log
    /// is read back from. The frames before stay where they are, for the
    /// reports in them; the next batch is written after them, in a new
    /// generation.
    pub(super) fn reset(&mut self) {
        self.durable_at = Instant::now();
        match self.file.seek(SeekFrom::Start(self.len)) {
            Ok(_) => {
                self.broken = false;
                self.written_out.unrefuse();
                // A new generation, drawn from the last (which nobody else
                // knows) rather than from the OS, so starting afresh cannot fail.
                let next = ring::digest::digest(&ring::digest::SHA256, &self.generation);
                self.generation
                    .copy_from_slice(&next.as_ref()[..GENERATION]);
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "store log: not started afresh after a full commit; its batches are all in the store already")
            }
        }
    }
}

/// `payload` framed: `[len | flags: u32 LE][crc32: u32 LE][payload]`.
fn framed(payload: &[u8], flags: u32) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(
        &(u32::try_from(payload.len()).unwrap_or(u32::MAX) | flags).to_le_bytes(),
    );
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The batches at the start of `bytes` (which start at `offset` in
/// segment `segment`), and where they end: frames in
/// order of rising sequence numbers, up to the first that is empty, does
/// not verify or does not decode (a torn or never-written tail), is of
/// another generation than the first (see [`Stamp`]) or is older than the
/// one before it (left from before, after an append torn or taken back); and their
/// generation. Each new item's report is put back in its record, which
/// still points where it lies.
fn frames(bytes: &[u8], segment: u64, offset: u64) -> (Vec<Batch>, u64, Option<Vec<u8>>) {
    let mut batches: Vec<Batch> = Vec::new();
    let mut generation: Option<Vec<u8>> = None;
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + 8) {
        let word = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let len = (word & !WITH_BODIES) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_FRAME {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let start = offset + at as u64;
        let Some(mut batch) = (if word & WITH_BODIES != 0 {
            with_bodies(payload, segment, start)
        } else {
            Batch::decode(payload).ok()
        }) else {
            break;
        };
        let stamp = std::mem::take(&mut batch.generation);
        if *generation.get_or_insert_with(|| stamp.clone()) != stamp {
            break;
        }
        if batches.last().is_some_and(|b| batch.seq <= b.seq) {
            break;
        }
        batches.push(batch);
        at += 8 + len;
    }
    (batches, at as u64, generation)
}

/// The batch in a frame's `payload` laid out with its bodies (see
/// [`Frame`]), the frame starting at `start` in segment `segment`: each
/// body is put back in the record that points at it, and must lie where
/// it says, inside the bodies.
fn with_bodies(payload: &[u8], segment: u64, start: u64) -> Option<Batch> {
    let head = payload.get(..4)?;
    let bodies_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
    let bodies = payload.get(4..usize::try_from(4 + bodies_len).ok()?)?;
    let mut batch = Batch::decode(payload.get(bodies.len() + 4..)?).ok()?;
    let first = start + BODIES_AT;
    for write in &mut batch.writes {
        if let Some(Kind::Put(Put {
            record: Some(record),
            ..
        })) = write.kind.as_mut()
            && let Some(body) = record.body
        {
            let from = body.offset.checked_sub(first)?;
            if body.segment != segment {
                return None;
            }
            let to = from.checked_add(u64::from(body.len))?;
            record.signed = bodies
                .get(usize::try_from(from).ok()?..usize::try_from(to).ok()?)?
                .to_vec();
        }
    }
    Some(batch)
}

/// How much of a segment's file is written out before its first append:
/// all a quiet store needs, or the whole of a smaller segment.
fn preallocated(rotate_at: u64) -> u64 {
    PREALLOCATED.min(rotate_at + SLACK)
}

/// Whether the disk under `path` has room to write the log out ahead and
/// still log batches after (see [`ROOM`]).
fn room_for_preallocation(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(Path::new("."));
    super::free_bytes(dir).is_some_and(|free| free >= ROOM + PREALLOCATED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the log file at `path` as segment 0 of its database's log,
    /// from its start; batches read back without where their bodies lie.
    fn open(path: &Path) -> (Wal, Vec<Batch>) {
        open_from(path, 0)
    }

    /// Likewise, from `start`.
    fn open_from(path: &Path, start: u64) -> (Wal, Vec<Batch>) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let db = path.with_file_name(name.strip_suffix(".log").unwrap());
        let (wal, mut batches) = Wal::open(&db, 0, start, CHECKPOINT_BYTES).unwrap();
        for batch in &mut batches {
            for write in &mut batch.writes {
                if let Some(Kind::Put(Put {
                    record: Some(record),
                    ..
                })) = write.kind.as_mut()
                {
                    record.body = None;
                }
            }
        }
        (wal, batches)
    }

    impl Wal {
        fn write_batch(&mut self, batch: Batch) -> std::io::Result<Written> {
            self.write(&self.frame(batch))
        }
    }

    fn batch(seq: u64, ids: &[&str]) -> Batch {
        Batch {
            seq,
            now_ms: 1_000 + seq as i64,
            generation: Vec::new(),
            writes: ids
                .iter()
                .map(|id| {
                    Logged::of(Kind::Put(Put::new(
                        id,
                        &ItemRecord {
                            signed: vec![7; 100],
                            ..Default::default()
                        },
                        &Destination::Inbox,
                        false,
                    )))
                })
                .collect(),
        }
    }

    /// A batch of one item whose report is `bytes` long.
    fn big(seq: u64, bytes: usize) -> Batch {
        let mut b = batch(seq, &["big"]);
        if let Some(Kind::Put(put)) = b.writes[0].kind.as_mut()
            && let Some(record) = put.record.as_mut()
        {
            record.signed = vec![7; bytes];
        }
        b
    }

    #[test]
    fn a_busy_log_is_written_out_ahead_and_logs_on_past_a_quiet_one() {
        let dir = tempfile::tempdir().unwrap();
        if super::super::free_bytes(dir.path()).is_none_or(|free| free < ROOM + WRITTEN_OUT) {
            eprintln!("skipped: too little free disk to write the log out");
            return;
        }
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        wal.set_last_seq(0);
        let mut seq = 0;
        while wal.len < WRITE_OUT_FROM {
            seq += 1;
            wal.append(&big(seq, 512 << 10)).unwrap();
        }
        wal.written_out.wait();
        assert_eq!(wal.written_out.done(), WRITTEN_OUT);
        assert!(std::fs::metadata(&path).unwrap().len() >= WRITTEN_OUT);
        while wal.len < QUIET_BYTES + (1 << 20) {
            seq += 1;
            wal.append(&big(seq, 512 << 10)).unwrap();
        }
        // Only the size says when: the clock is not the test's.
        wal.durable_at = Instant::now();
        assert!(!wal.checkpoint_due(), "a written-out log takes more");
        drop(wal);
        // Every frame reads back: none was written over by the zeros.
        let (_, back) = open(&path);
        assert_eq!(back.len() as u64, seq);
        assert_eq!(back.last(), Some(&big(seq, 512 << 10)));
    }

    #[test]
    fn a_log_not_written_out_takes_a_full_commit_past_a_quiet_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        // As if the disk had no room to write it out further.
        wal.written_out.refuse();
        wal.set_last_seq(0);
        let mut seq = 0;
        while wal.len < QUIET_BYTES {
            seq += 1;
            wal.append(&big(seq, 512 << 10)).unwrap();
        }
        wal.durable_at = Instant::now();
        assert!(wal.checkpoint_due());
    }

    #[test]
    fn batches_come_back_in_order_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, none) = open(&path);
        assert!(none.is_empty());
        wal.append(&batch(1, &["a", "b"])).unwrap();
        wal.append(&batch(2, &["c"])).unwrap();
        let end = wal.len;
        drop(wal);
        // A third append cut short by a crash.
        let third = batch(3, &["d"]).encode_to_vec();
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(end)).unwrap();
        f.write_all(&framed(&third, 0)[..8 + third.len() / 2])
            .unwrap();
        drop(f);

        let (mut wal, back) = open(&path);
        assert_eq!(back, vec![batch(1, &["a", "b"]), batch(2, &["c"])]);
        assert_eq!(wal.len, end, "the torn tail is where the next goes");
        wal.set_last_seq(2);
        wal.append(&batch(3, &["e"])).unwrap();
        drop(wal);
        let (_, back) = open(&path);
        assert_eq!(back.len(), 3);
        assert!(matches!(&back[2].writes[0].kind, Some(Kind::Put(p)) if p.id == "e"));
    }

    /// A frame as a log written before generations existed writes it, or
    /// as a forger would imitate one.
    fn frame_stamped(batch: &Batch, generation: Option<&[u8]>) -> Vec<u8> {
        let mut payload = batch.encode_to_vec();
        if let Some(generation) = generation {
            Stamp {
                generation: generation.to_vec(),
            }
            .encode(&mut payload)
            .unwrap();
        }
        framed(&payload, 0)
    }

    #[test]
    fn a_well_made_frame_of_another_generation_is_never_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        for forged in [None, Some(&[7u8; GENERATION][..])] {
            let (mut wal, _) = open(&path);
            wal.reset();
            wal.set_last_seq(0);
            wal.append(&batch(1, &["a"])).unwrap();
            let end = wal.len;
            drop(wal);
            // Right after the last batch, bytes that make a frame with a
            // good checksum and the next number: as a report body left
            // there from before might, made so by its sender.
            let mut f = OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(end)).unwrap();
            f.write_all(&frame_stamped(&batch(2, &["forged"]), forged))
                .unwrap();
            drop(f);
            let (_, back) = open(&path);
            assert_eq!(back, vec![batch(1, &["a"])], "stamp {forged:?}");
        }
    }

    #[test]
    fn a_log_written_before_generations_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let mut bytes = frame_stamped(&batch(1, &["a", "b"]), None);
        bytes.extend(frame_stamped(&batch(2, &["c"]), None));
        bytes.extend([0; 64]);
        std::fs::write(&path, &bytes).unwrap();
        let (_, back) = open(&path);
        assert_eq!(back, vec![batch(1, &["a", "b"]), batch(2, &["c"])]);
    }

    #[test]
    fn a_frame_that_fails_its_checksum_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        wal.append(&batch(1, &["a"])).unwrap();
        wal.append(&batch(2, &["b"])).unwrap();
        let last = wal.len as usize - 1;
        drop(wal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, back) = open(&path);
        assert_eq!(back, vec![batch(1, &["a"])]);
    }

    #[test]
    fn a_log_started_afresh_reads_back_from_its_new_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        if room_for_preallocation(&path) {
            assert!(std::fs::metadata(&path).unwrap().len() >= PREALLOCATED);
        }
        wal.append(&batch(1, &["a", "b", "c"])).unwrap();
        wal.append(&batch(2, &["d"])).unwrap();
        wal.reset();
        // The frames before stay, for their reports; the log goes on after
        // them, and is read back from there.
        let (segment, start) = wal.end();
        assert_eq!(segment, 0);
        wal.append(&batch(3, &["e"])).unwrap();
        drop(wal);
        let (_, back) = open_from(&path, start);
        assert_eq!(back, vec![batch(3, &["e"])]);
        // Read from the start, the old generation ends where it ended.
        let (_, back) = open_from(&path, 0);
        assert_eq!(back, vec![batch(1, &["a", "b", "c"]), batch(2, &["d"])]);
    }

    #[test]
    fn reports_lie_where_their_records_point_and_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        wal.append(&batch(1, &["a"])).unwrap();
        let mut second = batch(2, &["b", "c"]);
        if let Some(Kind::Put(put)) = second.writes[1].kind.as_mut() {
            put.record.as_mut().unwrap().signed = b"the report of c".to_vec();
        }
        // A write without a report between them takes no room.
        second.writes.insert(
            1,
            Logged::of(Kind::AckDown(AckDown {
                child: "x".into(),
                ids: vec!["a".into()],
            })),
        );
        let frame = wal.frame(second.clone());
        let refs: Vec<_> = (0..3).map(|i| frame.body(i)).collect();
        assert!(refs[1].is_none());
        let written = wal.write(&frame).unwrap();
        wal.sync(written).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let at = |r: BodyRef| &bytes[r.offset as usize..(r.offset + u64::from(r.len)) as usize];
        assert_eq!(at(refs[0].unwrap()), &[7; 100][..]);
        assert_eq!(at(refs[2].unwrap()), b"the report of c");
        assert_eq!(refs[2].unwrap().segment, 0);
        drop(wal);
        // Read back, each record has its report again and still points at it.
        let name = path.file_name().unwrap().to_str().unwrap();
        let db = path.with_file_name(name.strip_suffix(".log").unwrap());
        let (_, back) = Wal::open(&db, 0, 0, CHECKPOINT_BYTES).unwrap();
        let Some(Kind::Put(put)) = back[1].writes[2].kind.as_ref() else {
            panic!("a put");
        };
        let record = put.record.as_ref().unwrap();
        assert_eq!(record.signed, b"the report of c");
        assert_eq!(record.body, refs[2]);
        assert_eq!(back.len(), 2);
    }

    #[test]
    fn a_frame_pointing_outside_its_reports_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        wal.append(&batch(1, &["a"])).unwrap();
        // The second frame's record claims bytes of the first frame.
        let mut frame = wal.frame(batch(2, &["b"]));
        if let Some(Kind::Put(put)) = frame.batch.writes[0].kind.as_mut() {
            put.record.as_mut().unwrap().body = Some(BodyRef {
                segment: 0,
                offset: 12,
                len: 100,
                crc32: crc32fast::hash(&[7; 100]),
            });
        }
        let written = wal.write(&frame).unwrap();
        wal.sync(written).unwrap();
        drop(wal);
        let (_, back) = open(&path);
        assert_eq!(back, vec![batch(1, &["a"])]);
    }

    #[test]
    fn a_full_segment_gives_way_to_the_next_and_keeps_its_frames() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.redb");
        let (mut wal, _) = Wal::open(&db, 0, 0, CHECKPOINT_BYTES).unwrap();
        wal.rotate_at = 1000;
        wal.set_last_seq(0);
        let mut seq = 0;
        while !wal.rotation_due() {
            seq += 1;
            wal.append(&batch(seq, &["a"])).unwrap();
        }
        let kept = wal.len;
        let next = wal.next_segment().unwrap();
        assert_eq!(next.end(), (1, 0));
        wal.rotate(next);
        assert_eq!(wal.segment(), 1);
        assert_eq!(wal.next_seq(), seq + 1, "the sequence goes on");
        assert_eq!(std::fs::metadata(segment_path(&db, 0)).unwrap().len(), kept);
        wal.append(&batch(seq + 1, &["b"])).unwrap();
        drop(wal);
        let (_, back) = Wal::open(&db, 1, 0, CHECKPOINT_BYTES).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].seq, seq + 1);
        let (_, old) = Wal::open(&db, 0, 0, CHECKPOINT_BYTES).unwrap();
        assert_eq!(old.len() as u64, seq);
    }

    #[test]
    fn the_next_segment_is_written_out_ahead_once_this_one_is_half_full() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.redb");
        if !room_for_preallocation(&db) {
            eprintln!("skipped: no room on this disk to write the log out ahead");
            return;
        }
        let (mut wal, _) = Wal::open(&db, 0, 0, CHECKPOINT_BYTES).unwrap();
        wal.rotate_at = 4000;
        wal.set_last_seq(0);
        wal.written_out.wait();
        let mut seq = 0;
        while wal.len < wal.rotate_at / 2 {
            assert!(wal.spare.is_none(), "not before it is half full");
            seq += 1;
            wal.append(&batch(seq, &["a"])).unwrap();
        }
        seq += 1;
        wal.append(&batch(seq, &["a"])).unwrap();
        let spare = wal.spare.as_mut().expect("started once half full");
        spare.wait();
        let ahead = preallocated(wal.rotate_at);
        assert!(spare.done() >= ahead, "{} < {ahead}", spare.done());
        let next = segment_path(&db, 1);
        assert!(std::fs::metadata(&next).unwrap().len() >= ahead);
        assert!(std::fs::read(&next).unwrap().iter().all(|b| *b == 0));

        // The next segment takes the spare, and starts written out.
        let next = wal.next_segment().unwrap();
        assert!(wal.spare.is_none(), "taken");
        assert!(next.written_out.done() >= ahead);
        wal.rotate(next);
        wal.append(&batch(seq + 1, &["b"])).unwrap();
        drop(wal);
        let (_, back) = Wal::open(&db, 1, 0, CHECKPOINT_BYTES).unwrap();
        assert_eq!(back.iter().map(|b| b.seq).collect::<Vec<_>>(), [seq + 1]);
    }

    #[test]
    fn writes_joined_to_a_cut_frame_are_laid_out_as_if_it_had_held_them_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        wal.set_last_seq(0);
        wal.append(&batch(1, &["a"])).unwrap();
        // A routine batch cut short after its first write, which the urgent
        // write "u" (a report of other bytes and length) then joins.
        let mut urgent = batch(2, &["u"]);
        if let Some(Kind::Put(put)) = urgent.writes[0].kind.as_mut()
            && let Some(record) = put.record.as_mut()
        {
            record.signed = vec![9; 37];
        }
        let mut frame = wal.frame(batch(2, &["r1", "r2", "r3"]));
        frame.truncate(1);
        wal.extend(&mut frame, urgent.writes.clone());
        let mut whole = batch(2, &["r1"]);
        whole.writes.extend(urgent.writes);
        let whole = wal.frame(whole);
        assert_eq!(
            frame.batch, whole.batch,
            "the same records, pointing at the same places"
        );
        assert_eq!(frame.bodies, whole.bodies);
        let (r1, u) = (frame.body(0).unwrap(), frame.body(1).unwrap());
        assert_eq!(u.offset, r1.offset + 100, "right after the report kept");

        let written = wal.write(&frame).unwrap();
        wal.sync(written).unwrap();
        drop(wal);
        // Read back as at a start after a crash.
        let db = path.with_file_name("store.redb");
        let (_, back) = Wal::open(&db, 0, 0, CHECKPOINT_BYTES).unwrap();
        assert_eq!(back.len(), 2);
        let ids: Vec<&str> = back[1]
            .writes
            .iter()
            .filter_map(|w| match &w.kind {
                Some(Kind::Put(put)) => Some(put.id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["r1", "u"]);
        let bodies = super::super::bodies::Bodies::new(&db);
        assert_eq!(bodies.read(&u).unwrap(), vec![9; 37]);
        assert_eq!(bodies.read(&r1).unwrap(), vec![7; 100]);
    }

    #[test]
    fn a_batch_taken_back_is_never_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb.log");
        let (mut wal, _) = open(&path);
        wal.set_last_seq(0);
        wal.append(&batch(1, &["a"])).unwrap();
        let written = wal.write_batch(batch(2, &["b", "c"])).unwrap();
        wal.cancel(written);
        assert_eq!(wal.next_seq(), 2, "its number is not spent");
        drop(wal);
        let (mut wal, back) = open(&path);
        assert_eq!(back, vec![batch(1, &["a"])]);

        // The next batch takes its place (shorter: what is left after it
        // of the one taken back does not verify).
        wal.set_last_seq(1);
        let written = wal.write_batch(batch(2, &["d"])).unwrap();
        wal.sync(written).unwrap();
        drop(wal);
        let (_, back) = open(&path);
        assert_eq!(back, vec![batch(1, &["a"]), batch(2, &["d"])]);
    }
}
