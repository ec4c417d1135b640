//! `audit::verify` over a custody log and its signed checkpoints: a valid
//! log built with `audit::Chain` from the fuzzer's events, checkpoints
//! signed by fixture nodes (`audit::sign`) at any records, optionally pruned
//! at a checkpoint, then edited — records replaced by any bytes that decode
//! as an `AuditRecord`, removed, swapped, duplicated, altered — and raw
//! checkpoints of any bytes. `verify` promises never to panic.
//!
//! The model: an untouched log (pruned only at a good checkpoint) must
//! verify, to its last record; a single removal, swap or duplication inside
//! it, or a checkpoint that does not open as the node's, must be refused.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use zhibao::audit::{self, AuditRecord, Chain, Checkpoint, Entry, SignedCheckpoint};
use zhibao_fuzz::{CertChoice, Clock, Expect, Tamper, Who, fixture, signer_expect};

#[derive(Arbitrary, Debug)]
struct Event {
    kind: u8,
    item_id: String,
    peer: String,
    detail: String,
    at_unix_ms: i64,
}

#[derive(Arbitrary, Debug)]
enum Cp {
    At {
        record: u8,
        signer: Option<Who>,
        cert: CertChoice,
        node: Option<String>,
        head: Option<Vec<u8>>,
        at_unix_ms: i64,
        tamper: Option<Tamper>,
    },
    Raw {
        checkpoint: Vec<u8>,
        signature: Vec<u8>,
        signer_cert: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Edit {
    /// Replace record `at` by these bytes, if they decode.
    Raw(u8, Vec<u8>),
    Remove(u8),
    Swap(u8, u8),
    Duplicate(u8),
    Detail(u8, String),
    Seq(u8, u64),
}

#[derive(Arbitrary, Debug)]
struct Case {
    node: Who,
    events: Vec<Event>,
    checkpoints: Vec<Cp>,
    /// Prune up to the checkpoint with this index, if it is one.
    prune_at: Option<u8>,
    edits: Vec<Edit>,
    clock: Clock,
}

fuzz_target!(|case: Case| {
    let f = fixture();
    let Some(now) = case.clock.at(f) else {
        return;
    };
    let owner = f.signer(case.node);
    let node = owner.name().to_string();
    let mut chain = Chain::genesis();
    let mut records: Vec<AuditRecord> = case
        .events
        .iter()
        .take(64)
        .map(|e| {
            let kind = audit::AuditKind::try_from(i32::from(e.kind % 11)).unwrap_or_default();
            let entry = Entry::new(kind, e.item_id.clone())
                .with_peer(e.peer.clone())
                .with_detail(e.detail.clone());
            let (record, bytes) = chain.append(entry, e.at_unix_ms);
            assert_eq!(AuditRecord::decode(bytes.as_slice()).as_ref(), Ok(&record));
            record
        })
        .collect();
    // Whether the checkpoints open: a checkpoint that does not fails the
    // whole log, whatever the records.
    let mut cp_expect = Expect::Pass;
    // A checkpoint with a wrong head that opens (its signer is the node)
    // can make any log pass or fail: no opinion about the records then.
    let mut wrong_head = false;
    let mut signed = Vec::new();
    // (seq, good) of each checkpoint, for pruning.
    let mut at_seq = Vec::new();
    for cp in case.checkpoints.iter().take(8) {
        match cp {
            Cp::At {
                record,
                signer,
                cert,
                node: named,
                head,
                at_unix_ms,
                tamper,
            } => {
                let Some(r) = records.get(usize::from(*record) % records.len().max(1)) else {
                    continue;
                };
                let s = f.signer(signer.unwrap_or(case.node));
                let cert = cert.bytes(f, s);
                let named = named.clone().unwrap_or_else(|| node.clone());
                let head = head.clone().unwrap_or_else(|| r.hash().to_vec());
                let checkpoint = Checkpoint {
                    node: named.clone(),
                    seq: r.seq,
                    head_sha256: head.clone(),
                    at_unix_ms: *at_unix_ms,
                };
                let mut sc = match s.identity() {
                    Some(identity) => audit::sign(&checkpoint, identity),
                    None => {
                        let bytes = checkpoint.encode_to_vec();
                        SignedCheckpoint {
                            signature: s.sign(&bytes),
                            signer_cert: Vec::new(),
                            checkpoint: bytes,
                        }
                    }
                };
                sc.signer_cert = cert.clone();
                let before = sc.checkpoint.clone();
                if let Some(t) = tamper {
                    t.apply(&mut sc.checkpoint);
                }
                let e = signer_expect(f, s, &cert, case.clock)
                    .unless(s.name() != node || named != node || head.len() != 32)
                    .unless(sc.checkpoint != before);
                wrong_head |= head != r.hash();
                at_seq.push((r.seq, e == Expect::Pass && head == r.hash()));
                cp_expect = cp_expect.and(e);
                signed.push(sc);
            }
            Cp::Raw {
                checkpoint,
                signature,
                signer_cert,
            } => {
                // Nobody can sign for a fixture node without its key.
                cp_expect = cp_expect.and(Expect::Fail);
                signed.push(SignedCheckpoint {
                    checkpoint: checkpoint.clone(),
                    signature: signature.clone(),
                    signer_cert: signer_cert.clone(),
                });
            }
        }
    }
    let mut expect = Expect::Pass;
    if let Some(i) = case.prune_at {
        if let Some(&(seq, good)) = at_seq.get(usize::from(i) % at_seq.len().max(1)) {
            records.retain(|r| r.seq > seq);
            expect = expect.doubt(!good || records.is_empty());
        }
    }
    let untouched = records.len();
    let single = case.edits.len() == 1;
    for edit in case.edits.iter().take(4) {
        let n = records.len();
        if n == 0 {
            break;
        }
        let inner = |i: u8| usize::from(i) % n;
        match edit {
            Edit::Raw(i, bytes) => {
                if let Ok(r) = AuditRecord::decode(bytes.as_slice()) {
                    records[inner(*i)] = r;
                }
                expect = expect.doubt(true);
            }
            Edit::Remove(i) => {
                let i = inner(*i);
                records.remove(i);
                // Deleting the last record of an unsigned tail leaves no
                // trace, nor does deleting the first under a checkpoint
                // (that is pruning): only one from the middle must show.
                expect = if single && i > 0 && i + 1 < n {
                    expect.unless(true)
                } else {
                    expect.doubt(true)
                };
            }
            Edit::Swap(i, j) => {
                let (i, j) = (inner(*i), inner(*j));
                records.swap(i, j);
                expect = if single && i != j {
                    expect.unless(true)
                } else {
                    expect.doubt(true)
                };
            }
            Edit::Duplicate(i) => {
                let i = inner(*i);
                let r = records[i].clone();
                records.insert(i, r);
                expect = if single {
                    expect.unless(true)
                } else {
                    expect.doubt(true)
                };
            }
            Edit::Detail(i, d) => {
                let i = inner(*i);
                let changed = records[i].detail != *d;
                records[i].detail = d.clone();
                expect = if single && changed && i + 1 < n {
                    expect.unless(true)
                } else {
                    expect.doubt(changed)
                };
            }
            Edit::Seq(i, s) => {
                let i = inner(*i);
                let changed = records[i].seq != *s;
                records[i].seq = *s;
                expect = if single && changed {
                    expect.unless(true)
                } else {
                    expect.doubt(changed)
                };
            }
        }
    }
    let expect = match cp_expect {
        Expect::Pass if wrong_head => Expect::Unknown,
        Expect::Pass => expect,
        other => other,
    };
    let result = audit::verify(records.clone(), &signed, &f.trust, &node, now);
    match &result {
        Ok(v) => {
            let _ = format!("{v:?}");
            assert_ne!(
                expect,
                Expect::Fail,
                "verified a log the rules refuse: {case:#?}"
            );
            if expect == Expect::Pass && untouched > 0 {
                assert_eq!(v.records, untouched as u64);
                assert_eq!(v.last_seq, records.last().map(|r| r.seq));
            }
        }
        Err(broken) => {
            let _ = broken.to_string();
            assert_ne!(
                expect,
                Expect::Pass,
                "refused an untouched log: {broken}\n{case:#?}"
            );
        }
    }
    for sc in &signed {
        let _ = audit::peek(sc);
        let _ = audit::open(sc, &f.trust, now);
    }
});
