//! The final hub's archive files: what retention writes before it prunes,
//! and how they are read back.
//!
//! An archive file (`archive/YYYY-MM.zba` under the data directory, the
//! local month the items were stored) is a run of frames, each
//! `[length: u32 BE][CRC-32: u32 BE][ArchivedItem]` (see the proto): the
//! signed report exactly as received, its attachments and every decision.
//! Files are only appended to, and synced after each append. A crash while
//! appending leaves a torn last frame, which ends the file; a crash between
//! an append and the prune archives the item again, so a reader keeps the
//! last copy of an id (as `zhibao store archive` does).
//!
//! Reading goes frame by frame ([`Frames`]): a year of a busy hub's
//! reports and attachments is never held in memory at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Write as _};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::proto::ArchivedItem;

/// Appends `msg` to `out` as one frame.
pub(super) fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Appends each file's frames to it and syncs it, then syncs `dir` (a new
/// file's name is durable only once its directory is). Answers the files
/// written, or the file that failed and why.
pub(super) fn append_all(
    dir: &Path,
    frames: BTreeMap<PathBuf, Vec<u8>>,
) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |e| (path, e)
    };
    crate::store::create_data_dir(dir).map_err(fail(dir))?;
    let mut written = Vec::new();
    for (path, bytes) in frames {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(fail(&path))?;
        f.write_all(&bytes).map_err(fail(&path))?;
        f.sync_all().map_err(fail(&path))?;
        written.push(path);
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail(dir))?;
    Ok(written)
}

/// The items of one archive file, in order, read one frame at a time. A
/// torn last frame ends them; a frame whose CRC-32 fails, or that does not
/// decode, is an error naming the file and the byte it starts at, and ends
/// them too (what follows it cannot be told apart from damage).
#[derive(Debug)]
pub struct Frames {
    path: PathBuf,
    file: BufReader<File>,
    /// Where the next frame starts.
    at: u64,
    /// The file's length when opened: no frame is read past it, and none
    /// allocates more than it.
    len: u64,
    done: bool,
}

impl Frames {
    /// Opens the archive file at `path`.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(1 << 16, file),
            at: 0,
            len,
            done: false,
        })
    }

    fn bad(&self, at: u64, why: impl std::fmt::Display) -> std::io::Error {
        std::io::Error::new(
            ErrorKind::InvalidData,
            format!("{}: the frame at byte {at} {why}", self.path.display()),
        )
    }

    fn next_frame(&mut self) -> std::io::Result<Option<ArchivedItem>> {
        let at = self.at;
        if self.len.saturating_sub(at) < 8 {
            return Ok(None);
        }
        let mut head = [0u8; 8];
        self.file.read_exact(&mut head)?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = head;
        let len = u64::from(u32::from_be_bytes([l0, l1, l2, l3]));
        let crc = u32::from_be_bytes([c0, c1, c2, c3]);
        if len > self.len - at - 8 {
            // Torn: the append that wrote it did not finish.
            return Ok(None);
        }
        let mut msg = vec![0; usize::try_from(len).map_err(|e| self.bad(at, e))?];
        self.file.read_exact(&mut msg)?;
        if crc32fast::hash(&msg) != crc {
            return Err(self.bad(at, "fails its CRC-32 (damaged)"));
        }
        let item = ArchivedItem::decode(msg.as_slice())
            .map_err(|e| self.bad(at, format_args!("does not decode: {e}")))?;
        self.at = at + 8 + len;
        Ok(Some(item))
    }
}

impl Iterator for Frames {
    type Item = std::io::Result<ArchivedItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_frame().transpose();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}

/// Reads an archive file back whole: every item in it, in order (see
/// [`Frames`]).
///
/// # Errors
/// The file cannot be read, or a frame in it is damaged.
pub fn read_archive(path: &Path) -> std::io::Result<Vec<ArchivedItem>> {
    Frames::open(path)?.collect()
}

/// The archive files in `dir`, oldest month first; none if `dir` does not
/// exist (nothing archived yet).
///
/// # Errors
/// `dir` exists and cannot be listed.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "zba") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, attachment: usize) -> ArchivedItem {
        ArchivedItem {
            id: id.into(),
            signed_report: vec![1, 2, 3],
            attachments: vec![vec![9; attachment]],
            ..ArchivedItem::default()
        }
    }

    #[test]
    fn frames_read_back_and_a_torn_tail_ends_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (item("a", 0), item("b", 100));
        let mut bytes = Vec::new();
        frame(&mut bytes, &a.encode_to_vec());
        frame(&mut bytes, &b.encode_to_vec());
        let path = dir.path().join("2026-11.zba");
        let mut frames = BTreeMap::new();
        frames.insert(path.clone(), bytes.clone());
        append_all(dir.path(), frames).unwrap();
        assert_eq!(read_archive(&path).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(files(dir.path()).unwrap(), vec![path.clone()]);
        // Torn: the last frame cut short.
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert_eq!(read_archive(&path).unwrap(), vec![a.clone()]);
        // A length past the end of the file is a torn frame, not an
        // allocation of 4 GiB.
        let mut huge = bytes.clone();
        let second = 8 + a.encoded_len();
        huge[second..second + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert_eq!(read_archive(&path).unwrap(), vec![a.clone()]);
        // A flipped byte inside a frame is an error naming where, not a
        // silent skip; the frames before it are still read.
        let mut bad = bytes.clone();
        bad[second + 10] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let read: Vec<_> = Frames::open(&path).unwrap().collect();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].as_ref().unwrap(), &a);
        let e = read[1].as_ref().unwrap_err().to_string();
        assert!(
            e.contains(&format!("byte {second}")) && e.contains("CRC-32"),
            "{e}"
        );
    }

    #[test]
    fn no_archive_directory_is_no_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(files(&dir.path().join("archive")).unwrap().is_empty());
    }
}
