//! Unit tests of the custody log, with a fresh region PKI: building and
//! resuming the chain, signing and opening checkpoints, and `verify`
//! catching altered, deleted, inserted, reordered and truncated records,
//! foreign or damaged checkpoints, and pruning without an anchor.

use std::path::Path;
use std::time::SystemTime;

use prost::Message;

use super::*;
use crate::trust::{Identity, SignerError, Trust};

struct Region {
    _dir: tempfile::TempDir,
    trust: Trust,
    hub: Identity,
    county: Identity,
}

/// A region `test` with hub and county-a; trust without a CRL.
fn region() -> Region {
    let dir = tempfile::tempdir().unwrap();
    crate::pki::init(
        &dir.path().join("certs"),
        "test",
        "hub",
        &["county-a".into()],
    )
    .unwrap();
    Region {
        trust: Trust::load(&dir.path().join("certs").join(crate::trust::CA_CERT), None).unwrap(),
        hub: identity(&dir.path().join("certs"), "hub"),
        county: identity(&dir.path().join("certs"), "county-a"),
        _dir: dir,
    }
}

fn identity(dir: &Path, node: &str) -> Identity {
    let (c, k) = crate::trust::node_paths(dir, node);
    Identity::load(&c, &k).unwrap()
}

const KINDS: [AuditKind; 10] = [
    AuditKind::Accepted,
    AuditKind::Forwarded,
    AuditKind::Receipted,
    AuditKind::Refused,
    AuditKind::Escalated,
    AuditKind::Overdue,
    AuditKind::Delivered,
    AuditKind::Disposed,
    AuditKind::RevokedPeer,
    AuditKind::Pruned,
];

/// The entry logged as record `seq` of the test log.
fn entry(seq: u64) -> Entry {
    Entry::new(KINDS[(seq % 10) as usize], format!("item-{}", seq / 3))
        .with_peer("county-a")
        .with_detail(format!("detail {seq}"))
}

/// When record `seq` of the test log was committed.
fn at(seq: u64) -> i64 {
    1_000 + 10 * i64::try_from(seq).unwrap()
}

/// Hub's log: 50 records, checkpoints signed at seq 19 and 39.
struct Log {
    records: Vec<AuditRecord>,
    encoded: Vec<Vec<u8>>,
    checkpoints: Vec<SignedCheckpoint>,
}

fn hub_log(r: &Region) -> Log {
    let mut chain = Chain::genesis();
    let mut log = Log {
        records: Vec::new(),
        encoded: Vec::new(),
        checkpoints: Vec::new(),
    };
    for seq in 0..50 {
        let (record, bytes) = chain.append(entry(seq), at(seq));
        log.records.push(record);
        log.encoded.push(bytes);
        if seq == 19 || seq == 39 {
            let cp = chain.checkpoint("hub", at(seq) + 5).unwrap();
            log.checkpoints.push(sign(&cp, &r.hub));
        }
    }
    log
}

fn check(
    r: &Region,
    records: Vec<AuditRecord>,
    checkpoints: &[SignedCheckpoint],
) -> Result<Verified, Broken> {
    verify(records, checkpoints, &r.trust, "hub", SystemTime::now())
}

fn broken(r: &Region, records: Vec<AuditRecord>, checkpoints: &[SignedCheckpoint]) -> Broken {
    check(r, records, checkpoints).unwrap_err()
}

/// Recomputes every link from `records[from]` on, as a forger rewriting
/// history consistently would.
fn relink(records: &mut [AuditRecord], from: usize) {
    for i in from..records.len() {
        records[i].prev_sha256 = records[i - 1].hash().to_vec();
    }
}

// ---- the chain ----

#[test]
fn appended_records_are_numbered_linked_and_encoded() {
    let r = region();
    let log = hub_log(&r);
    for (i, (record, bytes)) in log.records.iter().zip(&log.encoded).enumerate() {
        assert_eq!(record.seq, i as u64);
        assert_eq!(record.at_unix_ms, at(i as u64));
        assert_eq!(record.known_kind(), Some(KINDS[i % 10]));
        assert_eq!(&AuditRecord::decode(bytes.as_slice()).unwrap(), record);
        assert_eq!(crate::digest::sha256(bytes), record.hash());
        let prev = if i == 0 {
            GENESIS
        } else {
            log.records[i - 1].hash()
        };
        assert_eq!(record.prev_sha256, prev, "record {i}");
    }
}

#[test]
fn appending_is_deterministic_and_resume_continues_the_same_chain() {
    let mut whole = Chain::genesis();
    let mut first = Vec::new();
    for seq in 0..15 {
        first.push(whole.append(entry(seq), at(seq)));
    }

    let mut again = Chain::genesis();
    for (seq, earlier) in (0..10).zip(&first) {
        assert_eq!(&again.append(entry(seq), at(seq)), earlier);
    }
    // As after a restart: only the last stored record is known.
    let mut resumed = Chain::resume(&first[9].0);
    assert_eq!(resumed, again);
    for (seq, earlier) in (10..15).zip(&first[10..]) {
        assert_eq!(&resumed.append(entry(seq), at(seq)), earlier);
    }
    assert_eq!(resumed, whole);
    assert_eq!(resumed.next_seq(), 15);
    assert_eq!(resumed.last_seq(), Some(14));
}

#[test]
fn an_empty_chain_has_nothing_to_checkpoint() {
    let mut chain = Chain::genesis();
    assert_eq!(chain, Chain::default());
    assert_eq!(chain.last_seq(), None);
    assert_eq!(chain.head(), GENESIS);
    assert_eq!(chain.checkpoint("hub", 1), None);

    let (record, _) = chain.append(entry(0), at(0));
    let cp = chain.checkpoint("hub", 7).unwrap();
    assert_eq!(cp.seq, 0);
    assert_eq!(cp.head_sha256, record.hash());
    assert_eq!(cp.node, "hub");
    assert_eq!(cp.at_unix_ms, 7);
}

#[test]
fn resume_at_a_checkpoint_continues_after_it() {
    let mut chain = Chain::genesis();
    for seq in 0..20 {
        let _ = chain.append(entry(seq), at(seq));
    }
    let cp = chain.checkpoint("hub", 0).unwrap();
    assert_eq!(Chain::resume_at(&cp), Some(chain));

    let short = Checkpoint {
        head_sha256: vec![0; 31],
        ..cp
    };
    assert_eq!(Chain::resume_at(&short), None);
}

// ---- checkpoints ----

#[test]
fn a_signed_checkpoint_opens_for_its_node_and_signing_is_deterministic() {
    let r = region();
    let mut chain = Chain::genesis();
    let _ = chain.append(entry(0), at(0));
    let cp = chain.checkpoint("hub", 99).unwrap();
    let signed = sign(&cp, &r.hub);
    assert_eq!(sign(&cp, &r.hub), signed);
    assert_eq!(open(&signed, &r.trust, SystemTime::now()).unwrap(), cp);
    assert_eq!(
        open_for(&signed, &r.trust, SystemTime::now(), "hub").unwrap(),
        cp
    );
    let err = open_for(&signed, &r.trust, SystemTime::now(), "county-a").unwrap_err();
    assert!(
        matches!(&err, CheckpointError::OtherNode { actual, expected }
            if actual == "hub" && expected == "county-a"),
        "{err:?}"
    );
}

#[test]
fn a_checkpoint_naming_another_node_than_its_signer_is_refused() {
    let r = region();
    let mut chain = Chain::genesis();
    let _ = chain.append(entry(0), at(0));
    let forged = sign(&chain.checkpoint("hub", 1).unwrap(), &r.county);
    let err = open(&forged, &r.trust, SystemTime::now()).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::NodeMismatch { named, signer }
            if named == "hub" && signer == "county-a"),
        "{err:?}"
    );
}

#[test]
fn a_checkpoint_whose_head_is_not_a_sha256_is_refused() {
    let r = region();
    let cp = Checkpoint {
        node: "hub".into(),
        seq: 3,
        head_sha256: vec![1; 31],
        at_unix_ms: 1,
    };
    let err = open(&sign(&cp, &r.hub), &r.trust, SystemTime::now()).unwrap_err();
    assert!(matches!(err, CheckpointError::BadHead(31)), "{err:?}");
}

#[test]
fn peek_reads_a_checkpoint_without_verifying_it() {
    let r = region();
    let log = hub_log(&r);
    let mut signed = log.checkpoints[1].clone();
    signed.signature[0] ^= 0x80;
    assert!(open(&signed, &r.trust, SystemTime::now()).is_err());
    assert_eq!(peek(&signed).unwrap().seq, 39);
    signed.checkpoint = vec![0x0a, 0x05, b'x'];
    assert_eq!(peek(&signed), None);
}

#[test]
fn the_prune_point_is_the_newest_checkpoint_older_than_the_cut() {
    let cp = |seq: u64, at_unix_ms: i64| Checkpoint {
        node: "hub".into(),
        seq,
        head_sha256: vec![0; 32],
        at_unix_ms,
    };
    let cps = [cp(39, 2_000), cp(19, 1_000), cp(59, 3_000)];
    assert_eq!(prune_point(&cps, 500), None);
    assert_eq!(prune_point(&cps, 1_000), None, "made at the cut: kept");
    assert_eq!(prune_point(&cps, 1_001), Some(19));
    assert_eq!(prune_point(&cps, 2_500), Some(39));
    assert_eq!(prune_point(&cps, 9_999), Some(59));
    assert_eq!(prune_point(&[], 9_999), None);
}

// ---- verify: intact logs ----

#[test]
fn an_intact_log_verifies() {
    let r = region();
    let log = hub_log(&r);
    let expected = Verified {
        first_seq: Some(0),
        last_seq: Some(49),
        records: 50,
        checkpoints_checked: 2,
        unsigned_tail: 10,
    };
    assert_eq!(
        check(&r, log.records.clone(), &log.checkpoints).unwrap(),
        expected
    );

    // Stored order of checkpoints does not matter.
    let reversed: Vec<_> = log.checkpoints.iter().rev().cloned().collect();
    assert_eq!(check(&r, log.records.clone(), &reversed).unwrap(), expected);

    // Records decoded from their stored bytes verify the same.
    let decoded = log
        .encoded
        .iter()
        .map(|b| AuditRecord::decode(b.as_slice()).unwrap());
    assert_eq!(
        verify(
            decoded,
            &log.checkpoints,
            &r.trust,
            "hub",
            SystemTime::now()
        )
        .unwrap(),
        expected
    );
}

#[test]
fn an_empty_log_and_a_log_without_checkpoints_verify() {
    let r = region();
    let log = hub_log(&r);
    assert_eq!(
        check(&r, Vec::new(), &[]).unwrap(),
        Verified {
            first_seq: None,
            last_seq: None,
            records: 0,
            checkpoints_checked: 0,
            unsigned_tail: 0,
        }
    );
    let got = check(&r, log.records, &[]).unwrap();
    assert_eq!(got.records, 50);
    assert_eq!(got.checkpoints_checked, 0);
    assert_eq!(got.unsigned_tail, 50);
}

// ---- verify: altered records ----

#[test]
fn an_altered_record_breaks_the_link_of_the_next() {
    let r = region();
    let log = hub_log(&r);
    type Alter = fn(&mut AuditRecord);
    let alterations: [(&str, Alter); 6] = [
        ("detail", |rec| rec.detail.push('!')),
        ("item", |rec| rec.item_id = "item-x".into()),
        ("peer", |rec| rec.peer = "county-b".into()),
        ("kind", |rec| rec.kind = AuditKind::Disposed as i32),
        ("time", |rec| rec.at_unix_ms += 1),
        ("link", |rec| rec.prev_sha256[0] ^= 1),
    ];
    for (what, alter) in alterations {
        let mut records = log.records.clone();
        alter(&mut records[40]);
        let b = broken(&r, records, &log.checkpoints);
        let expected_seq = if what == "link" { 40 } else { 41 };
        assert_eq!(b.seq, expected_seq, "{what}");
        assert!(matches!(b.why, BrokenWhy::Link), "{what}: {b:?}");
    }

    let mut records = log.records.clone();
    records[40].detail = "refused: bad signature".into();
    assert_eq!(
        broken(&r, records, &log.checkpoints).to_string(),
        "record 41: its link to record 40 does not match (altered, reordered or inserted)"
    );
}

#[test]
fn an_altered_checkpointed_record_is_named_itself() {
    let r = region();
    let log = hub_log(&r);
    let mut records = log.records.clone();
    records[19].detail.push('!');
    let b = broken(&r, records, &log.checkpoints);
    assert_eq!(b.seq, 19);
    assert!(matches!(b.why, BrokenWhy::HeadMismatch), "{b:?}");
}

#[test]
fn a_first_record_not_linked_to_genesis_is_caught() {
    let r = region();
    let log = hub_log(&r);
    let mut records = log.records.clone();
    records[0].prev_sha256 = vec![1; 32];
    relink(&mut records, 1);
    let b = broken(&r, records, &[]);
    assert_eq!(b.seq, 0);
    assert!(matches!(b.why, BrokenWhy::Link), "{b:?}");
    assert_eq!(
        b.to_string(),
        "record 0: its link to the start of the log does not match (altered, reordered or inserted)"
    );
}

#[test]
fn a_consistent_rewrite_contradicts_the_checkpoint_after_it() {
    let r = region();
    let log = hub_log(&r);
    for (altered, covering) in [(25, 39), (5, 19), (39, 39)] {
        let mut records = log.records.clone();
        records[altered].detail = "nothing happened".into();
        relink(&mut records, altered + 1);
        let b = broken(&r, records.clone(), &log.checkpoints);
        assert_eq!(b.seq, covering, "altered {altered}");
        assert!(matches!(b.why, BrokenWhy::HeadMismatch), "{b:?}");
        assert_eq!(
            b.to_string(),
            format!(
                "record {covering}: does not match the signed checkpoint at record {covering} \
                 (history rewritten after it was signed)"
            )
        );
        // Without the checkpoints, the rewrite is consistent: that is what
        // they are for.
        check(&r, records, &[]).unwrap();
    }
}

#[test]
fn the_unsigned_tail_is_covered_by_links_only() {
    let r = region();
    let log = hub_log(&r);
    // The newest record and a consistent rewrite after the last checkpoint
    // pass: only the next checkpoint will tell.
    let mut records = log.records.clone();
    records[49].detail.push('!');
    assert_eq!(
        check(&r, records, &log.checkpoints).unwrap().unsigned_tail,
        10
    );
    let mut records = log.records.clone();
    records[45].detail.push('!');
    relink(&mut records, 46);
    check(&r, records, &log.checkpoints).unwrap();
}

// ---- verify: deleted, inserted and reordered records ----

#[test]
fn a_deleted_record_leaves_a_gap() {
    let r = region();
    let log = hub_log(&r);
    for deleted in [1, 25, 40, 48] {
        let mut records = log.records.clone();
        records.remove(deleted);
        let b = broken(&r, records, &log.checkpoints);
        assert_eq!(b.seq, deleted as u64);
        assert!(
            matches!(b.why, BrokenWhy::Gap { expected, found }
                if expected == deleted as u64 && found == deleted as u64 + 1),
            "{b:?}"
        );
    }
    let mut records = log.records.clone();
    records.drain(25..28);
    let b = broken(&r, records, &log.checkpoints);
    assert_eq!(
        b.to_string(),
        "record 25: missing (record 28 comes next instead; deleted)"
    );
}

#[test]
fn records_deleted_from_the_end_under_a_checkpoint_are_caught() {
    let r = region();
    let log = hub_log(&r);
    let b = broken(&r, log.records[..30].to_vec(), &log.checkpoints);
    assert_eq!(b.seq, 30);
    assert!(
        matches!(b.why, BrokenWhy::Truncated { covered_to: 39 }),
        "{b:?}"
    );
    assert_eq!(
        b.to_string(),
        "record 30: missing, though a signed checkpoint covers the log up to record 39 \
         (records deleted from the end)"
    );
    // Up to and including the checkpoint is fine; past it nothing tells.
    assert_eq!(
        check(&r, log.records[..40].to_vec(), &log.checkpoints)
            .unwrap()
            .unsigned_tail,
        0
    );
    assert_eq!(
        check(&r, log.records[..45].to_vec(), &log.checkpoints)
            .unwrap()
            .last_seq,
        Some(44)
    );
}

#[test]
fn swapped_records_are_out_of_order() {
    let r = region();
    let log = hub_log(&r);
    for (a, b) in [(10, 11), (10, 30), (44, 49)] {
        let mut records = log.records.clone();
        records.swap(a, b);
        let broken = broken(&r, records, &log.checkpoints);
        assert_eq!(broken.seq, b as u64, "swap {a} {b}");
        assert!(
            matches!(broken.why, BrokenWhy::Order { expected, found }
                if expected == a as u64 && found == b as u64),
            "{broken:?}"
        );
    }
    let mut records = log.records.clone();
    records.swap(10, 11);
    assert_eq!(
        broken(&r, records, &log.checkpoints).to_string(),
        "record 11: out of order (record 10 should come next; reordered or repeated)"
    );
}

#[test]
fn swapped_events_renumbered_in_place_break_the_link() {
    let r = region();
    let log = hub_log(&r);
    let mut records = log.records.clone();
    records.swap(10, 11);
    records[10].seq = 10;
    records[11].seq = 11;
    let b = broken(&r, records, &log.checkpoints);
    assert_eq!(b.seq, 10);
    assert!(matches!(b.why, BrokenWhy::Link), "{b:?}");
}

#[test]
fn a_repeated_record_is_out_of_order() {
    let r = region();
    let log = hub_log(&r);
    let mut records = log.records.clone();
    records.insert(26, records[25].clone());
    let b = broken(&r, records, &log.checkpoints);
    assert_eq!(b.seq, 25);
    assert!(
        matches!(
            b.why,
            BrokenWhy::Order {
                expected: 26,
                found: 25
            }
        ),
        "{b:?}"
    );
}

#[test]
fn an_inserted_record_breaks_the_link_after_it() {
    let r = region();
    let log = hub_log(&r);
    let mut records = log.records.clone();
    let mut forged = Chain::resume(&records[24]);
    let (inserted, _) = forged.append(Entry::new(AuditKind::Delivered, "item-x"), at(24) + 1);
    records.insert(25, inserted);
    for (seq, rec) in records.iter_mut().enumerate().skip(26) {
        rec.seq = seq as u64;
    }
    let b = broken(&r, records, &[]);
    assert_eq!(b.seq, 26);
    assert!(matches!(b.why, BrokenWhy::Link), "{b:?}");
}

// ---- verify: checkpoints ----

#[test]
fn a_checkpoint_signed_by_another_node_is_refused() {
    let r = region();
    let log = hub_log(&r);
    let hub39 = open(&log.checkpoints[1], &r.trust, SystemTime::now()).unwrap();

    // county-a's own checkpoint, offered as part of hub's log.
    let own = Checkpoint {
        node: "county-a".into(),
        ..hub39.clone()
    };
    let mut cps = log.checkpoints.clone();
    cps[1] = sign(&own, &r.county);
    let b = broken(&r, log.records.clone(), &cps);
    assert_eq!(b.seq, 39);
    assert!(
        matches!(&b.why, BrokenWhy::Checkpoint { index: 1, error: CheckpointError::OtherNode { actual, expected } }
            if actual == "county-a" && expected == "hub"),
        "{b:?}"
    );

    // county-a signing a checkpoint that claims to be hub's.
    cps[1] = sign(&hub39, &r.county);
    let b = broken(&r, log.records.clone(), &cps);
    assert_eq!(b.seq, 39);
    assert!(
        matches!(&b.why, BrokenWhy::Checkpoint { index: 1, error: CheckpointError::NodeMismatch { named, signer } }
            if named == "hub" && signer == "county-a"),
        "{b:?}"
    );
    assert_eq!(
        b.to_string(),
        "checkpoint #1 (at record 39): checkpoint names node \"hub\" but is signed by \"county-a\""
    );
}

#[test]
fn a_damaged_checkpoint_is_refused() {
    let r = region();
    let log = hub_log(&r);
    type Flip = fn(&mut SignedCheckpoint);
    let flips: [(&str, Flip); 3] = [
        ("checkpoint", |s| {
            let last = s.checkpoint.len() - 1;
            s.checkpoint[last] ^= 0x01;
        }),
        ("signature", |s| s.signature[5] ^= 0x01),
        ("certificate", |s| {
            let mid = s.signer_cert.len() / 2;
            s.signer_cert[mid] ^= 0x01;
        }),
    ];
    for (what, flip) in flips {
        let mut cps = log.checkpoints.clone();
        flip(&mut cps[0]);
        let b = broken(&r, log.records.clone(), &cps);
        assert_eq!(b.seq, 19, "{what}");
        assert!(
            matches!(
                &b.why,
                BrokenWhy::Checkpoint {
                    index: 0,
                    error: CheckpointError::Signer(_)
                }
            ),
            "{what}: {b:?}"
        );
        if what != "certificate" {
            assert!(
                matches!(
                    &b.why,
                    BrokenWhy::Checkpoint {
                        error: CheckpointError::Signer(SignerError::BadSignature),
                        ..
                    }
                ),
                "{what}: {b:?}"
            );
        }
    }
}

#[test]
fn a_checkpoint_from_another_region_is_refused() {
    let r = region();
    let log = hub_log(&r);
    let other = tempfile::tempdir().unwrap();
    crate::pki::init(&other.path().join("certs"), "other", "hub", &[]).unwrap();
    let stranger = identity(&other.path().join("certs"), "hub");
    let mut cps = log.checkpoints.clone();
    cps[1] = sign(
        &open(&cps[1], &r.trust, SystemTime::now()).unwrap(),
        &stranger,
    );
    let b = broken(&r, log.records, &cps);
    assert_eq!(b.seq, 39);
    assert!(
        matches!(
            &b.why,
            BrokenWhy::Checkpoint {
                index: 1,
                error: CheckpointError::Signer(SignerError::Certificate(_))
            }
        ),
        "{b:?}"
    );
}

#[test]
fn signed_bytes_that_are_not_a_checkpoint_are_refused_as_malformed() {
    let r = region();
    let log = hub_log(&r);
    let bytes = vec![0x0a, 0x05, b'x'];
    let mut cps = log.checkpoints.clone();
    cps.push(SignedCheckpoint {
        signature: r.hub.sign(&bytes),
        signer_cert: r.hub.cert().to_vec(),
        checkpoint: bytes,
    });
    let b = broken(&r, log.records, &cps);
    assert_eq!(b.seq, 0);
    assert!(
        matches!(
            &b.why,
            BrokenWhy::Checkpoint {
                index: 2,
                error: CheckpointError::Malformed(_)
            }
        ),
        "{b:?}"
    );
    assert!(
        b.to_string()
            .starts_with("checkpoint #2: checkpoint does not decode")
    );
}

// ---- verify: pruning ----

#[test]
fn a_log_pruned_through_a_checkpoint_still_verifies() {
    let r = region();
    let log = hub_log(&r);
    let opened: Vec<_> = log
        .checkpoints
        .iter()
        .map(|s| open(s, &r.trust, SystemTime::now()).unwrap())
        .collect();
    // Keep what was logged from record 30 on.
    let cut = prune_point(&opened, at(30)).unwrap();
    assert_eq!(cut, 19);
    let kept = log.records[cut as usize + 1..].to_vec();
    assert_eq!(
        check(&r, kept.clone(), &log.checkpoints).unwrap(),
        Verified {
            first_seq: Some(20),
            last_seq: Some(49),
            records: 30,
            checkpoints_checked: 2,
            unsigned_tail: 10,
        }
    );
    // Checkpoints before the one kept may go with their records.
    let mut two_cuts = log.records.clone();
    let mut chain = Chain::resume(&two_cuts[49]);
    for seq in 50..60 {
        two_cuts.push(chain.append(entry(seq), at(seq)).0);
    }
    let cp59 = sign(&chain.checkpoint("hub", at(59)).unwrap(), &r.hub);
    check(
        &r,
        two_cuts[40..].to_vec(),
        &[log.checkpoints[1].clone(), cp59],
    )
    .unwrap();
}

#[test]
fn a_log_pruned_without_its_checkpoint_is_not_anchored() {
    let r = region();
    let log = hub_log(&r);
    let kept = log.records[20..].to_vec();
    for cps in [&[][..], &log.checkpoints[1..]] {
        let b = broken(&r, kept.clone(), cps);
        assert_eq!(b.seq, 20);
        assert!(matches!(b.why, BrokenWhy::NotAnchored), "{b:?}");
    }
    assert_eq!(
        broken(&r, kept, &[]).to_string(),
        "record 20: the log starts here, but no signed checkpoint at record 19 vouches \
         for its link (records deleted without a checkpoint)"
    );
    // Cut where there is no checkpoint.
    let b = broken(&r, log.records[25..].to_vec(), &log.checkpoints);
    assert_eq!(b.seq, 25);
    assert!(matches!(b.why, BrokenWhy::NotAnchored), "{b:?}");
}

#[test]
fn altering_the_first_kept_record_is_caught() {
    let r = region();
    let log = hub_log(&r);

    let mut kept = log.records[20..].to_vec();
    kept[0].detail.push('!');
    let b = broken(&r, kept, &log.checkpoints);
    assert_eq!(b.seq, 21);
    assert!(matches!(b.why, BrokenWhy::Link), "{b:?}");

    // Its link to the checkpoint.
    let mut kept = log.records[20..].to_vec();
    kept[0].prev_sha256[31] ^= 1;
    let b = broken(&r, kept, &log.checkpoints);
    assert_eq!(b.seq, 20);
    assert!(matches!(b.why, BrokenWhy::Link), "{b:?}");

    // A rewrite from the first kept record on, links and all.
    let mut kept = log.records[20..].to_vec();
    kept[0].detail.push('!');
    relink(&mut kept, 1);
    let b = broken(&r, kept, &log.checkpoints);
    assert_eq!(b.seq, 39);
    assert!(matches!(b.why, BrokenWhy::HeadMismatch), "{b:?}");
}

#[test]
fn a_log_pruned_to_nothing_resumes_at_its_checkpoint() {
    let r = region();
    let log = hub_log(&r);
    // Everything up to the checkpoint at 39 deleted, and (as if) nothing after.
    let cps = &log.checkpoints[1..];
    let empty = check(&r, Vec::new(), cps).unwrap();
    assert_eq!((empty.records, empty.checkpoints_checked), (0, 1));

    let cp = open(&cps[0], &r.trust, SystemTime::now()).unwrap();
    let mut chain = Chain::resume_at(&cp).unwrap();
    let (record, _) = chain.append(entry(40), at(40));
    assert_eq!(record, log.records[40]);
    let got = check(&r, vec![record], cps).unwrap();
    assert_eq!(got.first_seq, Some(40));
    assert_eq!(got.unsigned_tail, 1);
}

// ---- verify: hostile input ----

#[test]
fn hostile_records_and_checkpoints_are_refused_without_panicking() {
    let r = region();
    let log = hub_log(&r);
    let rec = |seq: u64, prev: Vec<u8>| AuditRecord {
        seq,
        prev_sha256: prev,
        kind: 12345,
        ..AuditRecord::default()
    };

    let b = broken(&r, vec![rec(0, Vec::new())], &[]);
    assert!(matches!((b.seq, &b.why), (0, BrokenWhy::Link)), "{b:?}");
    let b = broken(&r, vec![rec(u64::MAX, vec![0; 32])], &[]);
    assert!(
        matches!((b.seq, &b.why), (u64::MAX, BrokenWhy::NotAnchored)),
        "{b:?}"
    );
    assert!(b.to_string().contains(&format!("record {}", u64::MAX - 1)));

    // The highest seq there is, then anything at all.
    let mut records = log.records[..1].to_vec();
    records.push(rec(u64::MAX, records[0].hash().to_vec()));
    records.push(rec(u64::MAX, Vec::new()));
    let b = broken(&r, records, &[]);
    assert!(
        matches!(b.why, BrokenWhy::Gap { .. } | BrokenWhy::Order { .. }),
        "{b:?}"
    );

    // A genuine checkpoint for a record far beyond the log.
    let far = Checkpoint {
        node: "hub".into(),
        seq: u64::MAX,
        head_sha256: vec![0; 32],
        at_unix_ms: i64::MIN,
    };
    let b = broken(&r, log.records.clone(), &[sign(&far, &r.hub)]);
    assert!(
        matches!(
            b.why,
            BrokenWhy::Truncated {
                covered_to: u64::MAX
            }
        ),
        "{b:?}"
    );

    // Empty and garbage signed checkpoints.
    let b = broken(&r, log.records.clone(), &[SignedCheckpoint::default()]);
    assert!(
        matches!(b.why, BrokenWhy::Checkpoint { index: 0, .. }),
        "{b:?}"
    );
    let garbage = SignedCheckpoint {
        checkpoint: vec![0xff; 40],
        signature: vec![0xff; 3],
        signer_cert: vec![0x30, 0x82, 0xff],
    };
    let b = broken(&r, log.records, &[garbage]);
    assert!(
        matches!(b.why, BrokenWhy::Checkpoint { index: 0, .. }),
        "{b:?}"
    );
}
