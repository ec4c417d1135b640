//! `envelope::open` on reports the fuzzer *builds* rather than types: every
//! field of the `Report`, who signs it and with which certificate, and a
//! chain of up to 20 hop records, each signed by a fixture node, with any of
//! its fields wrong or right, then bytes tampered with after signing.
//! Signatures are real (fixture keys; `envelope::sign` and `hops::add` where
//! nothing is changed), so the fuzzer gets past the signature checks into
//! the report's fields and the custody chain.
//!
//! A model of the rules (written from the documentation, not from the code)
//! says, for each case it can reason about, whether the report must open or
//! must be refused, and which node then holds it; the target panics where
//! zhibao disagrees. Cases it cannot reason about (raw bytes, tampering,
//! another clock) only have to not panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use zhibao::digest::sha256;
use zhibao::envelope::{self, Limits, hops};
use zhibao::proto::{AttachmentRef, HopRecord, HopStatement, Report, SignedReport};
use zhibao_fuzz::{CertChoice, Clock, Expect, Fixture, Tamper, Who, fixture, id_ok, signer_expect};

#[derive(Arbitrary, Debug)]
enum Body {
    Fields(Fields),
    /// Any bytes, signed as they are: prost decodes signed garbage.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Id {
    /// A well-formed id.
    Good(u64),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Name {
    /// Whatever is right here.
    Right,
    Node(Who),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Priority {
    /// One of the three classes.
    Class(u8),
    Raw(i32),
}

#[derive(Arbitrary, Debug)]
enum Digest {
    Good([u8; 32]),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum ChunkSize {
    /// 1 KiB << (n % 11): always allowed.
    Good(u8),
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum Created {
    /// Minutes from the fixture's now (about ±22 days): mostly acceptable.
    Minutes(i16),
    Raw(i64),
}

#[derive(Arbitrary, Debug)]
struct Attachment {
    name: String,
    size: u64,
    sha256: Digest,
    chunk_size: ChunkSize,
}

#[derive(Arbitrary, Debug)]
struct Fields {
    id: Id,
    origin: Name,
    priority: Priority,
    title: String,
    body: Vec<u8>,
    created: Created,
    deadline_unix_ms: i64,
    attachments: Vec<Attachment>,
    author: String,
    /// Appended to the encoding (unknown fields, or garbage).
    trailing: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Bytes32 {
    Right,
    Empty,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Hop {
    signer: Who,
    cert: CertChoice,
    relay: Name,
    received_from: Name,
    report_sha256: Bytes32,
    previous: Bytes32,
    stored_unix_ms: i64,
    /// Appended to the statement before signing.
    trailing: Vec<u8>,
    /// Signed instead of a statement.
    raw_statement: Option<Vec<u8>>,
    /// Applied to the statement after signing.
    statement_tamper: Option<Tamper>,
    /// Applied to the signature.
    signature_tamper: Option<Tamper>,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Remove(u8),
    Swap(u8, u8),
    Duplicate(u8),
}

#[derive(Arbitrary, Debug)]
struct Case {
    body: Body,
    signer: Who,
    cert: CertChoice,
    report_tamper: Option<Tamper>,
    signature_tamper: Option<Tamper>,
    hops: Vec<Hop>,
    edits: Vec<Edit>,
    limits: Option<(u32, u32)>,
    clock: Clock,
}

/// What the case expects, and who then holds the item.
struct Model {
    expect: Expect,
    holder: String,
    id: Option<String>,
}

fn name(f: &Fixture, n: &Name, right: &str) -> String {
    match n {
        Name::Right => right.to_string(),
        Name::Node(w) => f.signer(*w).name().to_string(),
        Name::Raw(s) => s.clone(),
    }
}

fn build_report(
    f: &Fixture,
    fields: &Fields,
    signer_name: &str,
    m: &mut Model,
    limits: &Limits,
    now: std::time::SystemTime,
) -> Vec<u8> {
    let id = match &fields.id {
        Id::Good(n) => format!("{n:016x}-fuzz"),
        Id::Raw(s) => s.clone(),
    };
    let origin = name(f, &fields.origin, signer_name);
    let priority = match fields.priority {
        Priority::Class(c) => i32::from(c % 3) + 1,
        Priority::Raw(p) => p,
    };
    let attachments: Vec<AttachmentRef> = fields
        .attachments
        .iter()
        .take(20)
        .map(|a| AttachmentRef {
            name: a.name.clone(),
            size: a.size,
            sha256: match &a.sha256 {
                Digest::Good(d) => d.to_vec(),
                Digest::Raw(d) => d.clone(),
            },
            chunk_size: match a.chunk_size {
                ChunkSize::Good(n) => 1024 << (n % 11),
                ChunkSize::Raw(n) => n,
            },
        })
        .collect();
    let created_unix_ms = match fields.created {
        Created::Minutes(m) => zhibao_fuzz::unix_ms(f.now) + i64::from(m) * 60_000,
        Created::Raw(ms) => ms,
    };
    // The date rule, at the instant the case verifies at (before 1970 reads
    // as 0): not after now plus the clock skew allowed, not older than the
    // age allowed, and dated at all.
    let now_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX));
    let created = i128::from(created_unix_ms);
    let date_ok = created - now_ms <= i128::from(limits.max_clock_skew_ms)
        && created > 0
        && now_ms - created <= i128::from(limits.max_age_ms);
    let total: u128 = attachments.iter().map(|a| u128::from(a.size)).sum();
    let attachments_ok = attachments.len() <= 16
        && attachments.iter().all(|a| {
            a.sha256.len() == 32
                && (1024..=1024 * 1024).contains(&a.chunk_size)
                && a.name.len() <= 256
        })
        && total <= u128::from(limits.max_attachment_bytes);
    m.expect = m
        .expect
        .unless(origin != signer_name)
        .unless(!id_ok(&id))
        .unless(!(1..=3).contains(&priority))
        .unless(!attachments_ok)
        .unless(!date_ok)
        .unless(fields.title.len() > limits.max_title_bytes)
        .unless(fields.author.len() > zhibao::envelope::MAX_AUTHOR_BYTES)
        .doubt(!fields.trailing.is_empty());
    m.holder = origin.clone();
    m.id = Some(id.clone());
    let mut bytes = Report {
        id,
        origin,
        priority,
        title: fields.title.clone(),
        body: fields.body.clone(),
        created_unix_ms,
        deadline_unix_ms: fields.deadline_unix_ms,
        attachments,
        author: fields.author.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    bytes.extend_from_slice(&fields.trailing);
    bytes
}

fn right32(b: &Bytes32, right: &[u8]) -> Vec<u8> {
    match b {
        Bytes32::Right => right.to_vec(),
        Bytes32::Empty => Vec::new(),
        Bytes32::Raw(v) => v.clone(),
    }
}

fn add_hop(f: &Fixture, signed: &mut SignedReport, hop: &Hop, m: &mut Model, clock: Clock) {
    let signer = f.signer(hop.signer);
    let cert = hop.cert.bytes(f, signer);
    let report_sha = sha256(&signed.report);
    let previous = signed
        .hops
        .last()
        .map(|h| sha256(&h.statement).to_vec())
        .unwrap_or_default();
    let plain = matches!(hop.cert, CertChoice::Own)
        && matches!(hop.relay, Name::Right)
        && matches!(hop.received_from, Name::Right)
        && matches!(hop.report_sha256, Bytes32::Right)
        && matches!(hop.previous, Bytes32::Right)
        && hop.trailing.is_empty()
        && hop.raw_statement.is_none()
        && hop.statement_tamper.is_none()
        && hop.signature_tamper.is_none();
    let relay = name(f, &hop.relay, signer.name());
    let received_from = name(f, &hop.received_from, &m.holder);
    let st_sha = right32(&hop.report_sha256, &report_sha);
    let st_prev = right32(&hop.previous, &previous);
    m.expect = m
        .expect
        .and(signer_expect(f, signer, &cert, clock))
        .unless(relay != signer.name())
        .unless(received_from != m.holder)
        .unless(st_sha != report_sha)
        .unless(st_prev != previous)
        .doubt(!hop.trailing.is_empty() || hop.raw_statement.is_some());
    m.holder = signer.name().to_string();
    if plain && let Some(identity) = signer.identity() {
        // The real thing, as every relay does it.
        hops::add(signed, identity, &received_from, hop.stored_unix_ms);
        return;
    }
    let mut statement = match &hop.raw_statement {
        Some(raw) => raw.clone(),
        None => {
            let mut s = HopStatement {
                report_sha256: st_sha,
                relay,
                received_from,
                stored_unix_ms: hop.stored_unix_ms,
                previous_hop_sha256: st_prev,
            }
            .encode_to_vec();
            s.extend_from_slice(&hop.trailing);
            s
        }
    };
    let mut signature = signer.sign(&statement);
    if let Some(t) = &hop.statement_tamper {
        let before = statement.clone();
        t.apply(&mut statement);
        // Another statement than the one signed: the signature cannot match.
        m.expect = m.expect.unless(statement != before);
    }
    if let Some(t) = &hop.signature_tamper {
        let before = signature.clone();
        t.apply(&mut signature);
        m.expect = m.expect.doubt(signature != before);
    }
    signed.hops.push(HopRecord {
        statement,
        signature,
        signer_cert: cert,
    });
}

fuzz_target!(|case: Case| {
    let f = fixture();
    let Some(now) = case.clock.at(f) else {
        return;
    };
    let limits = match case.limits {
        None => Limits::default(),
        Some((r, a)) => Limits {
            max_report_bytes: r as usize,
            max_attachment_bytes: u64::from(a),
            ..Limits::default()
        },
    };
    let signer = f.signer(case.signer);
    let cert = case.cert.bytes(f, signer);
    let mut m = Model {
        expect: signer_expect(f, signer, &cert, case.clock),
        holder: signer.name().to_string(),
        id: None,
    };
    let mut signed = match &case.body {
        Body::Fields(fields) => {
            let bytes = build_report(f, fields, signer.name(), &mut m, &limits, now);
            match signer.identity() {
                // The real thing, as every origin does it.
                Some(identity) if fields.trailing.is_empty() => {
                    let report = Report::decode(bytes.as_slice()).expect("own encoding decodes");
                    let s = envelope::sign(&report, identity);
                    assert_eq!(s.report, bytes, "prost re-encodes differently");
                    SignedReport {
                        signer_cert: cert,
                        ..s
                    }
                }
                _ => SignedReport {
                    signature: signer.sign(&bytes),
                    signer_cert: cert,
                    report: bytes,
                    hops: Vec::new(),
                },
            }
        }
        Body::Raw(bytes) => {
            m.expect = m.expect.doubt(true);
            SignedReport {
                signature: signer.sign(bytes),
                signer_cert: cert,
                report: bytes.clone(),
                hops: Vec::new(),
            }
        }
    };
    if let Some(t) = &case.report_tamper {
        let before = signed.report.clone();
        t.apply(&mut signed.report);
        m.expect = m.expect.unless(signed.report != before);
    }
    if let Some(t) = &case.signature_tamper {
        let before = signed.signature.clone();
        t.apply(&mut signed.signature);
        m.expect = m.expect.doubt(signed.signature != before);
    }
    m.expect = m
        .expect
        .unless(signed.report.len() > limits.max_report_bytes);
    // What the report alone expects: hop edits below can undo a bad hop
    // (remove it), so after one only this part is still certain.
    let report_expect = m.expect;
    for hop in case.hops.iter().take(20) {
        add_hop(f, &mut signed, hop, &mut m, case.clock);
    }
    for edit in case.edits.iter().take(4) {
        let n = signed.hops.len();
        if n == 0 {
            break;
        }
        match *edit {
            Edit::Remove(i) => {
                signed.hops.remove(usize::from(i) % n);
            }
            Edit::Swap(i, j) => signed.hops.swap(usize::from(i) % n, usize::from(j) % n),
            Edit::Duplicate(i) => {
                let h = signed.hops[usize::from(i) % n].clone();
                signed.hops.insert(usize::from(i) % n, h);
            }
        }
        m.expect = report_expect.doubt(true);
    }
    m.expect = m.expect.unless(signed.hops.len() > envelope::MAX_HOPS);

    let _ = envelope::claimed_id(&signed);
    let result = envelope::open(&signed, &f.trust, &limits, now);
    // The same bytes, as they arrive on the wire.
    let wire = SignedReport::decode(signed.encode_to_vec().as_slice()).expect("round trip");
    let again = envelope::open(&wire, &f.trust, &limits, now);
    assert_eq!(
        result.is_ok(),
        again.is_ok(),
        "re-encoding changed the verdict"
    );
    match result {
        Ok(v) => {
            assert_ne!(
                m.expect,
                Expect::Fail,
                "opened a report the rules refuse: {case:#?}"
            );
            assert!(f.may_verify(&signed.signer_cert, case.clock));
            assert_eq!(v.sha256(), &sha256(&signed.report));
            if m.expect == Expect::Pass {
                assert_eq!(v.holder(), m.holder, "wrong holder");
                assert_eq!(Some(v.id()), m.id.as_deref());
            }
            let last = signed
                .hops
                .last()
                .map(|h| {
                    zhibao::trust::node_id_of(&h.signer_cert)
                        .expect("a hop that verified names its node")
                })
                .unwrap_or_else(|| v.report().origin.clone());
            assert_eq!(v.holder(), last, "the holder is not the last relay");
        }
        Err(e) => {
            let _ = e.to_string();
            assert_ne!(
                m.expect,
                Expect::Pass,
                "refused a report the rules accept: {e}\n{case:#?}"
            );
        }
    }
});
