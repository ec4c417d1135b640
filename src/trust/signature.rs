//! Ed25519 signatures on statements: one rule for every check, one at a
//! time or many at once.
//!
//! # The rule
//! A signature is valid under [ZIP 215]: `s` canonical, `R` and the key
//! encodings of curve points, and the cofactored equation
//! `[8][s]B = [8]R + [8][k]A`. It is the rule `ed25519-zebra`
//! implements, and the one for which checking a batch accepts exactly the
//! signatures that checking each alone accepts. With RFC 8032's
//! cofactorless check (ring's, most libraries'), a batch can accept a
//! signature the single check refuses, so which one a node used would
//! decide what it takes — not acceptable for a signed record that many
//! nodes check.
//!
//! Every signature a correct signer makes (ring's, ours) is valid under
//! both rules. They differ only for one whose `R` has a small-order part,
//! which only the key's holder can make; the statement is theirs either
//! way. To keep what a signature proves, a key itself must be canonical and
//! of prime order: a small-order key (for which one signature would verify
//! for every message) or a key with a small-order part is refused when its
//! certificate is first checked.
//!
//! # Batches
//! [`Batcher`] combines the checks of routine reports waiting at one
//! moment, from every connection, into batches checked on a checker
//! thread: a busy node checks many signatures for the cost of a few (34 µs
//! for one here, 27 µs each in a batch of eight from as many counties,
//! 17 µs when they come from one). The thread checks what is queued, up to
//! [`MAX_BATCH`] at a time, until the queue is empty; what queues while it
//! works makes the next batch, so batches grow with the load. A caller
//! that is alone (the only routine report in flight at the node) and finds
//! no check running checks at once, on its own thread, so one report at a
//! time pays no hand-off. If a batch fails, each of its signatures is
//! checked alone, so only the bad one is refused.
//!
//! The checker thread runs at a lower priority than the node's others (see
//! `NICE`): on a saturated node the CPU goes first to what urgent items
//! need — their signatures, checked at once where they arrive, the store's
//! writer, the connections — and routine checks take the rest.
//!
//! [ZIP 215]: https://zips.z.cash/zip-0215

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes};
use tokio::sync::oneshot;

/// Most signatures checked in one batch: beyond this a batch is not much
/// cheaper per signature, and its callers would wait longer.
pub const MAX_BATCH: usize = 32;
/// Fewest signatures checked as a batch.
const MIN_BATCH: usize = 4;
/// The checker thread's nice value: below the runtime's threads, so that
/// routine checks take the CPU they leave (see [`drain`]). +10 (until
/// 2026-11-29) starved it on a saturated hub: routine items waited for
/// their checks and each cost more CPU. At +5 the hub took 6 % more items
/// in the deep window and 15 % more at 64 streams × 1, and an emergency
/// through a county under load was no slower; at 0, more still, but that
/// emergency's p99 rose by a third (see "The deep window as it says,
/// and the signature checker less niced" in docs/performance.md).
const NICE: i32 = 5;

/// Why a key in a certificate cannot check signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 32 bytes: not an Ed25519 key.
    #[error("its public key is not an Ed25519 key")]
    NotEd25519,
    /// Not the canonical encoding of a curve point.
    #[error("its Ed25519 public key is not a canonical curve point")]
    NotCanonical,
    /// Of small order, or with a small-order part: signatures with it would
    /// not prove who made them.
    #[error("its Ed25519 public key is of small order or not in the prime-order group")]
    Weak,
}

/// A public key that passed [`usable_key`], decompressed once (a
/// certificate's key is remembered with the certificate, so each
/// signature check does not decompress it again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerificationKey);

impl PublicKey {
    /// Its 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }
}

/// Checks a certificate's raw Ed25519 public key (the 32 bytes of its
/// subjectPublicKeyInfo).
///
/// # Errors
/// See [`KeyError`].
pub fn usable_key(raw: &[u8]) -> Result<PublicKey, KeyError> {
    let bytes: [u8; 32] = raw.try_into().map_err(|_| KeyError::NotEd25519)?;
    let point = CompressedEdwardsY(bytes)
        .decompress()
        .ok_or(KeyError::NotCanonical)?;
    if point.compress().to_bytes() != bytes {
        return Err(KeyError::NotCanonical);
    }
    if point.is_small_order() || !point.is_torsion_free() {
        return Err(KeyError::Weak);
    }
    VerificationKey::try_from(bytes)
        .map(PublicKey)
        .map_err(|_| KeyError::NotCanonical)
}

/// A signature over a message, ready to be checked in a batch: the
/// message is hashed when it is made, so it need not outlive it.
#[derive(Clone, Debug)]
struct Check(batch::Item);

impl Check {
    fn new(key: PublicKey, msg: &[u8], signature: &[u8; 64]) -> Self {
        let bytes = VerificationKeyBytes::from(key.0);
        Self(batch::Item::from((bytes, Signature::from(*signature), msg)))
    }

    /// Whether the signature is valid, checked on its own.
    fn single(self) -> bool {
        self.0.verify_single().is_ok()
    }
}

/// Checks `signature` over `msg` with `key`, on its own.
pub fn verify(key: PublicKey, msg: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    key.0.verify(&Signature::from(sig), msg).is_ok()
}

/// Whether each check is valid, in order: one batch, and each alone only
/// if the batch fails. Fewer than [`MIN_BATCH`] are checked alone: a batch
/// of two or three costs about as much per signature as checking each.
fn check_all(checks: Vec<Check>) -> Vec<bool> {
    if checks.len() < MIN_BATCH {
        return checks.into_iter().map(Check::single).collect();
    }
    let mut verifier = batch::Verifier::new();
    for c in &checks {
        verifier.queue(c.0.clone());
    }
    if verifier.verify(rand_core::OsRng).is_ok() {
        vec![true; checks.len()]
    } else {
        checks.into_iter().map(Check::single).collect()
    }
}

/// A caller waiting for the checker thread.
struct Waiting {
    check: Check,
    tx: oneshot::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// A check is running: a lone caller's, or the checker thread's.
    busy: bool,
    /// The queue is the checker thread's to empty.
    draining: bool,
    /// The checker thread is running (it may fail to start, or stop).
    threaded: bool,
    /// The batcher is gone: the thread ends once the queue is empty.
    closed: bool,
    queue: VecDeque<Waiting>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    /// Signatures checked in batches of [`MIN_BATCH`] or more so far.
    batched: AtomicU64,
    /// Told whenever the batcher becomes idle.
    idle: Condvar,
    /// The checker thread's id, once it runs.
    #[cfg(test)]
    tid: std::sync::atomic::AtomicI32,
    /// Signatures the checker thread checked.
    #[cfg(test)]
    by_thread: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Combines the signature checks of concurrent callers into batches,
/// checked on a thread of lower priority (see the module docs).
pub struct Batcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Default for Batcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.work.notify_one();
    }
}

impl Batcher {
    /// A batcher and its checker thread. Should the thread not start, every
    /// check is made at once, alone, by its caller (and a warning says so).
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            batched: AtomicU64::new(0),
            idle: Condvar::new(),
            #[cfg(test)]
            tid: std::sync::atomic::AtomicI32::new(0),
            #[cfg(test)]
            by_thread: AtomicU64::new(0),
        });
        shared.state().threaded = true;
        let for_thread = shared.clone();
        let started = std::thread::Builder::new()
            .name("zhibao-signatures".into())
            .spawn(move || drain(&for_thread));
        if let Err(e) = started {
            tracing::warn!(error = %e, "no thread for batched signature checks: each is checked alone");
            shared.state().threaded = false;
        }
        Self { shared }
    }

    /// Signatures checked in batches (rather than one by one) so far.
    pub fn batched(&self) -> u64 {
        self.shared.batched.load(Ordering::Relaxed)
    }

    /// Whether `signature` over `msg` was made with `key`. If `alone` (the
    /// caller is the only one with a routine check to make) and no check is
    /// running, it is checked at once, on this thread; else it is queued for
    /// the checker thread, which checks what is queued in batches.
    pub async fn verify(&self, key: PublicKey, msg: &[u8], signature: &[u8], alone: bool) -> bool {
        let Ok(sig) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let rx = {
            let mut state = self.shared.state();
            if !state.threaded {
                None
            } else if state.busy || !alone {
                let (tx, rx) = oneshot::channel();
                state.queue.push_back(Waiting {
                    check: Check::new(key, msg, sig),
                    tx,
                });
                if !state.busy {
                    state.busy = true;
                    state.draining = true;
                    drop(state);
                    self.shared.work.notify_one();
                }
                Some(rx)
            } else {
                state.busy = true;
                drop(state);
                let _done = HandOver(&self.shared);
                return verify(key, msg, signature);
            }
        };
        match rx {
            // The thread stopped (it panicked) before checking it.
            Some(rx) => match rx.await {
                Ok(valid) => valid,
                Err(_) => verify(key, msg, signature),
            },
            None => verify(key, msg, signature),
        }
    }
}

/// A lone caller's duty, once its check is done (or it panicked): hand
/// what queued meanwhile to the checker thread, or mark the batcher idle.
struct HandOver<'a>(&'a Shared);

impl Drop for HandOver<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if state.queue.is_empty() {
            state.busy = false;
            self.0.idle.notify_all();
        } else {
            state.draining = true;
            drop(state);
            self.0.work.notify_one();
        }
    }
}

/// The checker thread: empties the queue in batches whenever a lone caller
/// hands it over, until the batcher is dropped.
///
/// It runs at a lower priority ([`NICE`]) than the async runtime's threads.
/// Only routine reports are checked here, so on a saturated node the CPU
/// goes first to what urgent items need — their own checks, made on the
/// runtime's threads, the store's writer, the connections — and routine
/// checks take the rest: as they wait, more queue, and larger batches cost
/// less per signature.
fn drain(shared: &Shared) {
    let _stopped = Stopped(shared);
    #[cfg(test)]
    shared.tid.store(
        rustix::thread::gettid().as_raw_nonzero().get(),
        Ordering::SeqCst,
    );
    // Below the thread that started it, whatever the node's own nice value
    // (a unit's `Nice=`): an absolute value could put it above the rest.
    let own = rustix::process::getpriority_process(None).unwrap_or(0);
    let nice = (own + NICE).min(19);
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(error = %e, "the signature checker thread keeps its priority");
    }
    loop {
        let batch: Vec<Waiting> = {
            let mut state = shared.state();
            loop {
                if state.draining {
                    if !state.queue.is_empty() {
                        break;
                    }
                    state.draining = false;
                    state.busy = false;
                    shared.idle.notify_all();
                } else if state.closed {
                    return;
                }
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let n = state.queue.len().min(MAX_BATCH);
            state.queue.drain(..n).collect()
        };
        // Callers that stopped waiting (their request went away) are not
        // checked.
        let (txs, checks): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .filter(|w| !w.tx.is_closed())
            .map(|w| (w.tx, w.check))
            .unzip();
        #[cfg(test)]
        shared
            .by_thread
            .fetch_add(checks.len() as u64, Ordering::Relaxed);
        if checks.len() >= MIN_BATCH {
            shared
                .batched
                .fetch_add(checks.len() as u64, Ordering::Relaxed);
        }
        for (tx, valid) in txs.into_iter().zip(check_all(checks)) {
            let _ = tx.send(valid);
        }
    }
}

/// Should the checker thread stop (a panic), callers check alone from then
/// on, and those queued hear nothing, so they check alone too.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.threaded = false;
        state.busy = false;
        state.draining = false;
        state.queue.clear();
        self.0.idle.notify_all();
    }
}

#[cfg(test)]
mod tests;
