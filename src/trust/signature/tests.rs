use std::sync::Arc;

use curve25519_dalek::constants::{ED25519_BASEPOINT_TABLE, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::*;

fn ring_key() -> Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
}

fn random_scalar() -> Scalar {
    let mut wide = [0u8; 64];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut wide).expect("rng");
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// A signature made by hand with secret scalar `a`, its `R` moved by
/// `torsion` (a small-order point): valid under the cofactored rule only
/// if `torsion` is not the identity.
fn crafted(a: &Scalar, msg: &[u8], torsion: &EdwardsPoint) -> ([u8; 32], [u8; 64]) {
    let key = (a * ED25519_BASEPOINT_TABLE).compress().to_bytes();
    let r = random_scalar();
    let big_r = (&r * ED25519_BASEPOINT_TABLE + torsion)
        .compress()
        .to_bytes();
    let mut h = ring::digest::Context::new(&ring::digest::SHA512);
    h.update(&big_r);
    h.update(&key);
    h.update(msg);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(h.finish().as_ref());
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    (key, sig)
}

#[test]
fn a_signature_made_by_ring_verifies_and_nothing_else_does() {
    let pair = ring_key();
    let key = usable_key(pair.public_key().as_ref()).expect("a fresh key is usable");
    let sig = pair.sign(b"report");
    assert!(verify(key, b"report", sig.as_ref()));
    assert!(!verify(key, b"reporT", sig.as_ref()));
    assert!(!verify(key, b"report", &sig.as_ref()[..63]), "short");
    let mut flipped = sig.as_ref().to_vec();
    flipped[40] ^= 1;
    assert!(!verify(key, b"report", &flipped));
    let other = usable_key(ring_key().public_key().as_ref()).expect("key");
    assert!(!verify(other, b"report", sig.as_ref()), "another key");
    let sig64: &[u8; 64] = sig.as_ref().try_into().expect("64 bytes");
    assert!(Check::new(key, b"report", sig64).single());
}

#[test]
fn keys_that_would_not_prove_who_signed_are_refused() {
    assert_eq!(usable_key(&[0u8; 31]), Err(KeyError::NotEd25519));
    for (i, t) in EIGHT_TORSION.iter().enumerate() {
        let bytes = t.compress().to_bytes();
        assert!(usable_key(&bytes).is_err(), "small-order point {i}");
    }
    let a = random_scalar();
    let mixed = (&a * ED25519_BASEPOINT_TABLE + EIGHT_TORSION[1])
        .compress()
        .to_bytes();
    assert_eq!(usable_key(&mixed), Err(KeyError::Weak));
    // y = 1 written as p + 1: the identity, not canonically encoded.
    let mut non_canonical = [0xffu8; 32];
    non_canonical[0] = 0xee;
    non_canonical[31] = 0x7f;
    assert!(usable_key(&non_canonical).is_err());
    // The identity with its sign bit set: "negative zero".
    let mut negative_zero = [0u8; 32];
    negative_zero[0] = 1;
    negative_zero[31] = 0x80;
    assert!(usable_key(&negative_zero).is_err());
    // Not a point at all (no x for this y).
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert!(usable_key(&off_curve).is_err());
}

/// The catch batched Ed25519 has elsewhere: a signature whose `R` carries a
/// small-order part. Ring (RFC 8032, cofactorless) refuses it; our rule
/// accepts it, and — the point — accepts it the same way alone and in a
/// batch, every time.
#[test]
fn a_signature_with_a_small_order_part_is_judged_alike_alone_and_in_a_batch() {
    let a = random_scalar();
    let (key_bytes, sig) = crafted(&a, b"edge", &EIGHT_TORSION[1]);
    let key = usable_key(&key_bytes).expect("the key itself is of prime order");
    assert!(
        UnparsedPublicKey::new(&ED25519, key_bytes)
            .verify(b"edge", &sig)
            .is_err(),
        "ring's cofactorless check refuses it"
    );
    assert!(verify(key, b"edge", &sig), "the cofactored rule accepts it");
    let honest = ring_key();
    let good = usable_key(honest.public_key().as_ref()).expect("key");
    for _ in 0..32 {
        let mut checks: Vec<Check> = (0..7)
            .map(|i| {
                let msg = [i as u8; 10];
                let sig = honest.sign(&msg);
                Check::new(good, &msg, sig.as_ref().try_into().expect("64"))
            })
            .collect();
        checks.push(Check::new(key, b"edge", &sig));
        assert_eq!(check_all(checks), vec![true; 8]);
    }
    // The same with s changed is refused either way.
    let mut bad = sig;
    bad[33] ^= 1;
    assert!(!verify(key, b"edge", &bad));
    let (m1, m2) = (honest.sign(b"1"), honest.sign(b"2"));
    let checks = vec![
        Check::new(key, b"edge", &bad),
        Check::new(key, b"edge", &sig),
        Check::new(good, b"1", m1.as_ref().try_into().expect("64")),
        Check::new(good, b"2", m2.as_ref().try_into().expect("64")),
    ];
    assert!(checks.len() >= MIN_BATCH, "checked as a batch first");
    assert_eq!(check_all(checks), vec![false, true, true, true]);
    // An unmoved R is what any signer makes: valid under both rules.
    let (plain_key, plain) = crafted(&a, b"plain", &EdwardsPoint::default());
    assert!(
        UnparsedPublicKey::new(&ED25519, plain_key)
            .verify(b"plain", &plain)
            .is_ok()
    );
    assert!(verify(key, b"plain", &plain));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refuses_only_its_bad_signatures() {
    let batcher = Arc::new(Batcher::default());
    let pairs: Vec<Arc<Ed25519KeyPair>> = (0..4).map(|_| Arc::new(ring_key())).collect();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let batcher = batcher.clone();
        let pair = pairs[i % pairs.len()].clone();
        tasks.push(tokio::spawn(async move {
            let msg = i.to_le_bytes();
            let mut sig = pair.sign(&msg).as_ref().to_vec();
            let bad = i % 7 == 3;
            if bad {
                sig[5] ^= 0x20;
            }
            let key = usable_key(pair.public_key().as_ref()).expect("key");
            (bad, batcher.verify(key, &msg, &sig, true).await)
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (bad, valid) = task.await.expect("task");
        assert_eq!(valid, !bad, "item {i}");
    }
    wait_idle(&batcher);
    assert!(
        batcher.shared.state().queue.is_empty(),
        "idle once all are answered"
    );
}

/// One key, `n` one-byte messages and its signatures over them.
fn signed(n: u8) -> (PublicKey, Vec<[u8; 1]>, Vec<Vec<u8>>) {
    let pair = ring_key();
    let key = usable_key(pair.public_key().as_ref()).expect("key");
    let msgs: Vec<[u8; 1]> = (0..n).map(|i| [i]).collect();
    let sigs = msgs
        .iter()
        .map(|m| pair.sign(m).as_ref().to_vec())
        .collect();
    (key, msgs, sigs)
}

/// Makes `batcher` look busy (a lone caller checking), so the next callers
/// queue; `hand_over` then gives the queue to the checker thread.
fn hold(batcher: &Batcher) -> impl FnOnce() + '_ {
    batcher.shared.state().busy = true;
    move || drop(HandOver(&batcher.shared))
}

#[tokio::test]
async fn callers_queued_behind_a_running_check_are_checked_as_one_batch() {
    let batcher = Batcher::default();
    let (key, msgs, mut sigs) = signed(5);
    sigs[3][7] ^= 1;
    let hand_over = hold(&batcher);
    let mut waiting: Vec<_> = msgs
        .iter()
        .zip(&sigs)
        .map(|(m, s)| Box::pin(batcher.verify(key, m, s, true)))
        .collect();
    for w in &mut waiting {
        assert!(futures::poll!(w.as_mut()).is_pending(), "queued");
    }
    hand_over();
    let verdicts = futures::future::join_all(waiting).await;
    assert_eq!(verdicts, vec![true, true, true, false, true]);
    assert_eq!(
        batcher.batched(),
        5,
        "the checker thread checked all five as one batch"
    );
    wait_idle(&batcher);
    assert!(
        batcher.verify(key, &msgs[0], &sigs[0], true).await,
        "a later caller checks at once"
    );
    assert_eq!(batcher.batched(), 5, "alone");
}

#[tokio::test]
async fn a_caller_that_stops_waiting_is_not_checked_and_holds_up_nobody() {
    let batcher = Batcher::default();
    let (key, msgs, sigs) = signed(1);
    let (msg, sig) = (&msgs[0], &sigs[0]);
    let hand_over = hold(&batcher);
    let mut gone = Box::pin(batcher.verify(key, msg, sig, true));
    let mut others: Vec<_> = (0..4)
        .map(|_| Box::pin(batcher.verify(key, msg, sig, true)))
        .collect();
    assert!(futures::poll!(gone.as_mut()).is_pending(), "queued");
    for o in &mut others {
        assert!(futures::poll!(o.as_mut()).is_pending(), "queued");
    }
    drop(gone);
    hand_over();
    let checked = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures::future::join_all(others),
    )
    .await;
    assert_eq!(checked.ok(), Some(vec![true; 4]), "the others were checked");
    assert_eq!(batcher.batched(), 4, "without the one that went away");
    wait_idle(&batcher);
}

#[tokio::test]
async fn a_caller_that_is_not_alone_goes_to_the_checker_thread_even_when_idle() {
    let batcher = Batcher::default();
    let (key, msgs, sigs) = signed(6);
    // Not alone: queued although no check runs, and the thread takes them.
    let verdicts = futures::future::join_all(
        msgs.iter()
            .zip(&sigs)
            .map(|(m, s)| batcher.verify(key, m, s, false)),
    )
    .await;
    assert_eq!(verdicts, vec![true; 6]);
    assert_eq!(
        batcher
            .shared
            .by_thread
            .load(std::sync::atomic::Ordering::Relaxed),
        6,
        "every one checked by the checker thread"
    );
    wait_idle(&batcher);
}

#[tokio::test]
async fn the_checker_thread_runs_below_the_runtime_threads_priority() {
    let batcher = Batcher::default();
    let (key, msgs, sigs) = signed(1);
    let hand_over = hold(&batcher);
    let mut queued = Box::pin(batcher.verify(key, &msgs[0], &sigs[0], true));
    assert!(futures::poll!(queued.as_mut()).is_pending(), "queued");
    hand_over();
    // Answered by the checker thread, which lowered its priority first.
    assert!(queued.await);
    let mine = rustix::process::getpriority_process(None).expect("own priority");
    let tid = batcher.shared.tid.load(std::sync::atomic::Ordering::SeqCst);
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("stat");
    // The nice value is the 19th field, the 17th after the name.
    let theirs: i32 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(16))
        .and_then(|n| n.parse().ok())
        .expect("nice");
    assert_eq!(theirs, (mine + NICE).min(19), "the checker thread is niced");
}

/// Waits until the batcher is idle again (the checker thread has emptied
/// the queue and given up the batcher).
fn wait_idle(batcher: &Batcher) {
    let state = batcher.shared.state();
    let (state, waited) = batcher
        .shared
        .idle
        .wait_timeout_while(state, std::time::Duration::from_secs(10), |s| s.busy)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    drop(state);
    assert!(!waited.timed_out(), "the batcher stays busy");
}

/// What a check costs here, alone and in batches (`cargo test --release
/// --lib trust::signature::tests::cost -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check"]
fn cost() {
    let pairs: Vec<Ed25519KeyPair> = (0..64).map(|_| ring_key()).collect();
    let msg = [7u8; 1024];
    let sigs: Vec<Vec<u8>> = pairs
        .iter()
        .map(|p| p.sign(&msg).as_ref().to_vec())
        .collect();
    let keys: Vec<PublicKey> = pairs
        .iter()
        .map(|p| usable_key(p.public_key().as_ref()).expect("key"))
        .collect();
    let rounds = 20;
    let per = |t: std::time::Instant, n: usize| t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for (p, s) in pairs.iter().zip(&sigs) {
            UnparsedPublicKey::new(&ED25519, p.public_key().as_ref())
                .verify(&msg, s)
                .expect("valid");
        }
    }
    println!("ring, alone: {:.1} µs", per(t, rounds * 64));
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for (k, s) in keys.iter().zip(&sigs) {
            assert!(verify(*k, &msg, s));
        }
    }
    println!("ZIP215, alone: {:.1} µs", per(t, rounds * 64));
    for same_key in [false, true] {
        for size in [2, 4, 8, 16, 32] {
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                for chunk in 0..64 / size {
                    let checks = (0..size)
                        .map(|i| {
                            let j = if same_key { 0 } else { chunk * size + i };
                            Check::new(keys[j], &msg, sigs[j].as_slice().try_into().expect("64"))
                        })
                        .collect();
                    assert!(check_all(checks).iter().all(|v| *v));
                }
            }
            println!(
                "ZIP215, batches of {size}{}: {:.1} µs each",
                if same_key { " from one key" } else { "" },
                per(t, rounds * 64)
            );
        }
    }
}
