//! What this machine gives at the moment a `zhibao bench` runs: the floors
//! every figure of the run stands on.
//!
//! This machine's speed moves by up to half between hours (a virtual disk,
//! two shared vCPUs), so a figure alone says little about the code; beside
//! the disk's and the CPU's own figures, taken the same minute, it does.
//! Both are measured the way the peer bench's `limits` step measures them
//! (`../shared/peer-bench/limits`), so the two can be read side by side:
//! - the disk: an overwrite of 1 KiB inside a file written and synced
//!   beforehand, then `fdatasync` — what the store's log does per commit,
//!   and no less than any durable acknowledgement on this disk can cost;
//! - the CPU: one Ed25519 signature (ring), what a receipt group costs.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use zhibao::trust::Identity;

/// Bytes per overwrite, as the peer bench's `disk_overwrite_1KiB_fdatasync_each`.
const RECORD: usize = 1024;
/// Overwrites timed.
const SYNCS: usize = 500;
/// Signatures timed.
const SIGNATURES: usize = 200;

/// The floors, measured once at the start of a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Floor {
    /// Median of [`SYNCS`] 1 KiB overwrites, each followed by `fdatasync`,
    /// in the run's scratch directory (the stores' file system), µs.
    pub fdatasync_p50_us: u64,
    /// One Ed25519 signature of 1 KiB (ring), the mean of [`SIGNATURES`],
    /// µs.
    pub ed25519_sign_us: f64,
}

impl Floor {
    /// Measures both in `dir`, signing as `signer`.
    pub fn measure(dir: &Path, signer: &Identity) -> std::io::Result<Self> {
        Ok(Self {
            fdatasync_p50_us: fdatasync_p50(dir)?.as_micros() as u64,
            ed25519_sign_us: sign_mean(signer).as_nanos() as f64 / 1000.0,
        })
    }
}

/// The median time of a 1 KiB overwrite and its `fdatasync`, in a file
/// written out and synced first (so no sync has metadata to write).
fn fdatasync_p50(dir: &Path) -> std::io::Result<Duration> {
    let path = dir.join("floor.dat");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    file.write_all(&vec![0; RECORD * SYNCS])?;
    file.sync_all()?;
    let record = [0xa5u8; RECORD];
    let mut times = Vec::with_capacity(SYNCS);
    for i in 0..SYNCS {
        let started = Instant::now();
        file.write_all_at(&record, (i * RECORD) as u64)?;
        file.sync_data()?;
        times.push(started.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// The mean time of one Ed25519 signature of 1 KiB.
fn sign_mean(signer: &Identity) -> Duration {
    let msg = [0x5au8; RECORD];
    // One first, so the timing starts warm.
    std::hint::black_box(signer.sign(&msg));
    let started = Instant::now();
    for _ in 0..SIGNATURES {
        std::hint::black_box(signer.sign(&msg));
    }
    started.elapsed() / SIGNATURES as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floors_are_measured_and_the_scratch_file_removed() {
        zhibao::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("certs");
        zhibao::pki::init(&pki_dir, "floor", "hub", &[]).unwrap();
        let (cert, key) = zhibao::trust::node_paths(&pki_dir, "hub");
        let signer = Identity::load(&cert, &key).unwrap();
        let floor = Floor::measure(dir.path(), &signer).unwrap();
        // (An fdatasync on a RAM-backed file system may round to 0 µs.)
        assert!(floor.ed25519_sign_us > 0.0, "{floor:?}");
        assert!(!dir.path().join("floor.dat").exists());
    }
}
