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
//! [`Batcher`] combines the checks waiting at one moment, from every
//! connection, into one batch: the first caller to find no batch running
//! checks its own signature with every one queued so far; callers arriving
//! meanwhile queue, and when the batch is done the oldest of them leads the
//! next. A lone caller therefore checks at once, alone, as before; a busy
//! node checks many signatures for the cost of a few (34 µs for one here,
//! 27 µs each in a batch of eight from as many counties, 17 µs when they
//! come from one). If
//! a batch fails, each of its signatures is checked alone, so only the bad
//! one is refused.
//!
//! [ZIP 215]: https://zips.z.cash/zip-0215

use std::collections::VecDeque;
use std::sync::Mutex;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes};
use tokio::sync::oneshot;

/// Most signatures checked in one batch: beyond this a batch is not much
/// cheaper per signature, and its callers would wait longer.
pub const MAX_BATCH: usize = 32;
/// Fewest signatures checked as a batch.
const MIN_BATCH: usize = 4;

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

/// What a queued caller hears.
enum Turn {
    /// Its signature's verdict.
    Done(bool),
    /// It leads the next batch, with its check back.
    Lead(Check),
}

struct Waiting {
    check: Check,
    tx: oneshot::Sender<Turn>,
}

#[derive(Default)]
struct State {
    /// A batch is being checked (by a caller that will hand over).
    busy: bool,
    queue: VecDeque<Waiting>,
}

/// Combines the signature checks of concurrent callers into batches (see
/// the module docs).
#[derive(Default)]
pub struct Batcher {
    state: Mutex<State>,
    /// Signatures checked in batches of [`MIN_BATCH`] or more so far.
    batched: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signatures checked in batches (rather than one by one) so far.
    pub fn batched(&self) -> u64 {
        self.batched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `signature` over `msg` was made with `key`: checked at once,
    /// alone, if no batch is running and none is queued; else in a batch.
    pub async fn verify(&self, key: PublicKey, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let check = || Check::new(key, msg, signature);
        let wait = {
            let mut state = self.state();
            if state.busy {
                let (tx, rx) = oneshot::channel();
                state.queue.push_back(Waiting { check: check(), tx });
                Some(Queued {
                    batcher: self,
                    rx: Some(rx),
                })
            } else {
                state.busy = true;
                None
            }
        };
        let mine = match wait {
            None => None,
            Some(mut queued) => match queued.turn().await {
                Some(Turn::Done(valid)) => return valid,
                Some(Turn::Lead(mine)) => Some(mine),
                // The leader went away without a word (it panicked and
                // handed over to another): check this one alone.
                None => return verify(key, msg, signature),
            },
        };
        let _leading = Leading(self);
        // This check and the oldest queued ones; no await until the next
        // leader is named (by `Leading`'s drop, even on a panic).
        let others: Vec<Waiting> = {
            let mut state = self.state();
            let n = state.queue.len().min(MAX_BATCH - 1);
            state.queue.drain(..n).collect()
        };
        if others.is_empty() {
            return verify(key, msg, signature);
        }
        let (txs, mut checks): (Vec<_>, Vec<_>) =
            others.into_iter().map(|w| (w.tx, w.check)).unzip();
        checks.push(mine.unwrap_or_else(check));
        if checks.len() >= MIN_BATCH {
            self.batched
                .fetch_add(checks.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let mut verdicts = check_all(checks);
        let valid = verdicts.pop().unwrap_or(false);
        for (tx, verdict) in txs.into_iter().zip(verdicts) {
            let _ = tx.send(Turn::Done(verdict));
        }
        valid
    }

    /// Names the oldest queued caller still waiting the next leader, or
    /// marks the batcher idle.
    fn hand_over(&self) {
        let mut state = self.state();
        while let Some(next) = state.queue.pop_front() {
            match next.tx.send(Turn::Lead(next.check)) {
                Ok(()) => return,
                // It stopped waiting (its request went away).
                Err(_) => continue,
            }
        }
        state.busy = false;
    }
}

/// The leader's duty to hand over when its batch is done.
struct Leading<'a>(&'a Batcher);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.hand_over();
    }
}

/// A queued caller. Should it stop waiting (its request cancelled) just as
/// it is named leader, it hands the lead on rather than leave every later
/// caller queued behind a batch nobody runs.
struct Queued<'a> {
    batcher: &'a Batcher,
    rx: Option<oneshot::Receiver<Turn>>,
}

impl Queued<'_> {
    async fn turn(&mut self) -> Option<Turn> {
        let rx = self.rx.as_mut()?;
        let turn = rx.await.ok();
        self.rx = None;
        turn
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(Turn::Lead(_)) = rx.try_recv() {
                self.batcher.hand_over();
            }
        }
    }
}

#[cfg(test)]
mod tests;
