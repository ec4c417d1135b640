//! The log's file written out ahead, in the background, once a store is
//! busy.
//!
//! An append's `fdatasync` writes no metadata only into blocks the file
//! already has, written (zeros, or older frames): appending past the end
//! also writes the file's size, and into `fallocate`d space the extent's
//! state; both cost a journal commit per sync here. So the log is written
//! out with zeros ahead of its appends. The first part is written out as
//! the log is opened (enough for a quiet store, which never needs more);
//! the rest, up to the most a busy store logs between two full commits,
//! by a thread of its own once the log has grown past a threshold, so
//! that neither opening a store nor any commit waits for it.
//!
//! The thread writes only beyond what it has published as written out,
//! and the log appends only below that, less a margin larger than any
//! frame (see `Wal::checkpoint_due`): the two never write the same bytes.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Bytes of zeros written (and synced) per step, between which the thread
/// looks whether it is to stop. Small: the log's own `fdatasync` writes
/// out every dirty page of the file, these zeros included, so a commit
/// that comes while a step is being written waits for at most one.
const STEP: usize = 256 << 10;

/// How far the log file is written out, and the thread writing it further.
#[derive(Debug)]
pub(super) struct WriteOut {
    /// Bytes from the start of the file that are written (zeros or frames).
    done: Arc<AtomicU64>,
    thread: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
    /// Not to be asked for now (no room on the disk, say).
    refused: bool,
}

impl WriteOut {
    /// A file written out to `done` bytes.
    pub(super) fn new(done: u64) -> Self {
        Self {
            done: Arc::new(AtomicU64::new(done)),
            thread: None,
            refused: false,
        }
    }

    /// Whether a write-out was started (it may be done by now), or refused.
    pub(super) fn asked(&self) -> bool {
        self.thread.is_some() || self.refused
    }

    /// No write-out is to be started until [`WriteOut::unrefuse`].
    pub(super) fn refuse(&mut self) {
        self.refused = true;
    }

    /// Undoes [`WriteOut::refuse`].
    pub(super) fn unrefuse(&mut self) {
        self.refused = false;
    }

    /// Bytes from the start of the file known written.
    pub(super) fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Starts writing `file` out with zeros to `to` bytes, unless it is
    /// that far already or a thread was started before. `file` is a handle
    /// of the thread's own on the log (writes at offsets, so the log's own
    /// position does not move).
    pub(super) fn start(&mut self, file: File, to: u64) -> std::io::Result<()> {
        if self.thread.is_some() || self.done() >= to {
            return Ok(());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("zhibao-log-writeout".into())
            .spawn({
                let (done, stop) = (self.done.clone(), stop.clone());
                move || write_out(&file, to, &done, &stop)
            })?;
        self.thread = Some((thread, stop));
        Ok(())
    }

    /// Stops the thread, if any, after the step it is in, and waits for it:
    /// nothing writes to the file behind the caller's back after this.
    pub(super) fn stop(&mut self) {
        if let Some((thread, stop)) = self.thread.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Waits until the thread has written the file out as far as it was
    /// asked to (or failed, or was stopped).
    #[cfg(test)]
    pub(super) fn wait(&mut self) {
        if let Some((thread, _)) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WriteOut {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes zeros from what is done to `to`, one synced step at a time, each
/// published only once on disk; gives up at the first error (the log then
/// only logs less between full commits).
fn write_out(file: &File, to: u64, done: &AtomicU64, stop: &AtomicBool) {
    let zeros = vec![0; STEP];
    loop {
        let at = done.load(Ordering::Acquire);
        if at >= to || stop.load(Ordering::Relaxed) {
            return;
        }
        let n = (to - at).min(STEP as u64) as usize;
        // The file's size changes: `sync_all`, so that appends into these
        // blocks later need not write it.
        if let Err(e) = file
            .write_all_at(&zeros[..n], at)
            .and_then(|()| file.sync_all())
        {
            tracing::warn!(error = %e, written_out = at, "store log: not written out further ahead; full commits come sooner");
            return;
        }
        done.store(at + n as u64, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_zeros_beyond_what_is_done_and_nothing_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, [7u8; 1000]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut out = WriteOut::new(1000);
        let to = 1000 + STEP as u64 + 10;
        out.start(file, to).unwrap();
        out.wait();
        assert_eq!(out.done(), to);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, to);
        assert!(bytes[..1000].iter().all(|b| *b == 7), "untouched before");
        assert!(bytes[1000..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_file_written_out_far_enough_starts_no_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("log")).unwrap();
        let mut out = WriteOut::new(100);
        out.start(file, 50).unwrap();
        assert!(out.thread.is_none());
    }
}
