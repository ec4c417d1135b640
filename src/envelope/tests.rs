//! Unit tests of sealing and opening reports, with a fresh region PKI.

use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::proto::{HopStatement, Priority};
use crate::trust::{Identity, Trust};

struct Region {
    dir: tempfile::TempDir,
    trust: Trust,
    county: Identity,
    relay: Identity,
    relay2: Identity,
}

/// A region `test`: hub, county-a and two relays; trust without a CRL.
fn region() -> Region {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ["county-a".into(), "relay".into(), "relay2".into()];
    crate::pki::init(&dir.path().join("certs"), "test", "hub", &nodes).unwrap();
    Region {
        trust: Trust::load(&dir.path().join("certs").join(crate::trust::CA_CERT), None).unwrap(),
        county: identity(&dir.path().join("certs"), "county-a"),
        relay: identity(&dir.path().join("certs"), "relay"),
        relay2: identity(&dir.path().join("certs"), "relay2"),
        dir,
    }
}

fn identity(dir: &Path, node: &str) -> Identity {
    let (c, k) = crate::trust::node_paths(dir, node);
    Identity::load(&c, &k).unwrap()
}

/// Seals a draft under the default limits, now.
fn sealed(draft: Draft, origin: &Identity) -> (SignedReport, Verified) {
    seal(draft, origin, &Limits::default(), SystemTime::now()).unwrap()
}

fn draft(class: Class) -> Draft {
    let now = crate::clock::now_ms();
    Draft::new(
        class,
        "flood".into(),
        b"two villages cut off".to_vec(),
        now,
        now + 60_000,
    )
}

/// A well-formed report by `origin`, to be spoiled by each test.
fn report(origin: &str) -> Report {
    Report {
        id: "item-1".into(),
        origin: origin.into(),
        priority: Priority::Emergency as i32,
        title: "flood".into(),
        body: b"two villages cut off".to_vec(),
        created_unix_ms: crate::clock::now_ms(),
        deadline_unix_ms: crate::clock::now_ms() + 60_000,
        attachments: Vec::new(),
        author: "王芳".into(),
        ..Default::default()
    }
}

fn attachment(size: u64) -> AttachmentRef {
    AttachmentRef {
        name: "scan.pdf".into(),
        size,
        sha256: vec![1; 32],
        chunk_size: 4096,
    }
}

fn open_now(signed: &SignedReport, trust: &Trust) -> Result<Verified, VerifyError> {
    open(signed, trust, &Limits::default(), SystemTime::now())
}

/// `report` by county-a with `f` applied, signed and opened.
fn open_spoiled(r: &Region, f: impl FnOnce(&mut Report)) -> Result<Verified, VerifyError> {
    let mut rep = report("county-a");
    f(&mut rep);
    open_now(&sign(&rep, &r.county), &r.trust)
}

/// `signed` with hops by relay (from county-a) at `t`, then relay2 (from relay).
fn with_two_hops(r: &Region, mut signed: SignedReport, t: i64) -> SignedReport {
    hops::add(&mut signed, &r.relay, "county-a", t);
    hops::add(&mut signed, &r.relay2, "relay", t + 1);
    signed
}

/// A sealed report that relay, then relay2 handled.
fn two_hops(r: &Region) -> SignedReport {
    with_two_hops(r, sealed(draft(Class::Routine), &r.county).0, 2_000)
}

// --- sealing, signature and signer ---

#[test]
fn a_sealed_report_opens_as_what_was_sealed() {
    let r = region();
    let (signed, sealed) = sealed(draft(Class::Emergency), &r.county);
    let opened = open(&signed, &r.trust, &Limits::default(), SystemTime::now()).unwrap();
    assert_eq!(opened.id(), sealed.id());
    assert_eq!(opened.class(), Class::Emergency);
    assert_eq!(opened.holder(), "county-a");
    assert_eq!(opened.report().origin, "county-a");
    assert_eq!(opened.sha256(), &sha256(&signed.report));
    assert_eq!(opened.report(), sealed.report());
}

#[test]
fn claimed_id_names_a_good_report_and_nothing_else() {
    let r = region();
    let (mut signed, sealed) = sealed(draft(Class::Routine), &r.county);
    assert_eq!(claimed_id(&signed).as_deref(), Some(sealed.id()));

    let bad_id = Report {
        id: "a/b".into(),
        ..report("county-a")
    };
    assert_eq!(claimed_id(&sign(&bad_id, &r.county)), None);

    signed.report = vec![0x0a, 0x05, b'x']; // a 5-byte field with 1 byte
    assert_eq!(claimed_id(&signed), None);
}

#[test]
fn claimed_class_reads_the_class_a_report_states_and_nothing_else() {
    let r = region();
    for class in Class::ALL {
        let (signed, _) = sealed(draft(class), &r.county);
        assert_eq!(claimed_class(&signed), Some(class));
    }
    let unspecified = Report {
        priority: 0,
        ..report("county-a")
    };
    assert_eq!(claimed_class(&sign(&unspecified, &r.county)), None);
    let (mut signed, _) = sealed(draft(Class::Emergency), &r.county);
    signed.report = vec![0x0a, 0x05, b'x']; // a 5-byte field with 1 byte
    assert_eq!(claimed_class(&signed), None);
    signed.report = vec![0x18, 0x80]; // priority, an unfinished varint
    assert_eq!(claimed_class(&signed), None);
}

#[test]
fn a_flipped_byte_is_refused_as_a_bad_signature() {
    let r = region();
    let (mut signed, _) = sealed(draft(Class::Emergency), &r.county);
    let last = signed.report.len() - 1;
    signed.report[last] ^= 0x01;
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(err, VerifyError::Signer(SignerError::BadSignature)),
        "{err:?}"
    );
}

#[test]
fn a_flipped_signature_byte_is_refused_as_a_bad_signature() {
    let r = region();
    let (mut signed, _) = sealed(draft(Class::Emergency), &r.county);
    signed.signature[0] ^= 0x80;
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(err, VerifyError::Signer(SignerError::BadSignature)),
        "{err:?}"
    );
}

#[test]
fn a_report_claiming_another_origin_is_refused() {
    let r = region();
    let signed = sign(&report("county-b"), &r.county);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(&err, VerifyError::OriginMismatch { claimed, signer }
            if claimed == "county-b" && signer == "county-a"),
        "{err:?}"
    );
}

#[test]
fn a_signer_from_another_region_is_refused_as_a_bad_certificate() {
    let r = region();
    let other = tempfile::tempdir().unwrap();
    crate::pki::init(
        &other.path().join("certs"),
        "other",
        "hub",
        &["county-a".into()],
    )
    .unwrap();
    let stranger = identity(&other.path().join("certs"), "county-a");
    let (signed, _) = sealed(draft(Class::Emergency), &stranger);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(err, VerifyError::Signer(SignerError::Certificate(_))),
        "{err:?}"
    );
}

#[test]
fn a_revoked_signer_is_refused_as_a_bad_certificate() {
    let r = region();
    let ca = r.dir.path().join("certs").join(crate::trust::CA_CERT);
    let crl = r.dir.path().join("certs").join(crate::trust::CRL);
    let (signed, _) = sealed(draft(Class::Emergency), &r.county);
    let before = Trust::load(&ca, Some(&crl)).unwrap();
    open_now(&signed, &before).unwrap();

    crate::pki::revoke(&r.dir.path().join("certs"), "county-a").unwrap();
    let after = Trust::load(&ca, Some(&crl)).unwrap();
    let err = open_now(&signed, &after).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Signer(SignerError::Certificate(webpki::Error::CertRevoked))
        ),
        "{err:?}"
    );
}

#[test]
fn an_expired_signer_is_refused_as_a_bad_certificate() {
    let r = region();
    let now = time::OffsetDateTime::now_utc();
    let opts = crate::pki::IssueOptions {
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
        ..Default::default()
    };
    crate::pki::issue_with(&r.dir.path().join("certs"), "county-old", &opts).unwrap();
    let old = identity(&r.dir.path().join("certs"), "county-old");
    let (signed, _) = sealed(draft(Class::Emergency), &old);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Signer(SignerError::Certificate(webpki::Error::CertExpired { .. }))
        ),
        "{err:?}"
    );
}

#[test]
fn a_signer_certificate_naming_no_node_is_refused() {
    use ring::signature::Ed25519KeyPair;
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;

    let r = region();
    let opts = crate::pki::IssueOptions {
        with_node_id: false,
        ..Default::default()
    };
    crate::pki::issue_with(&r.dir.path().join("certs"), "anon", &opts).unwrap();
    // `Identity` refuses such a certificate, so sign with its key directly.
    let (c, k) = crate::trust::node_paths(&r.dir.path().join("certs"), "anon");
    let key = PrivatePkcs8KeyDer::from_pem_file(&k).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.secret_pkcs8_der()).unwrap();
    let bytes = report("anon").encode_to_vec();
    let signed = SignedReport {
        signature: pair.sign(&bytes).as_ref().to_vec(),
        signer_cert: crate::pki::read_cert_der(&c).unwrap(),
        report: bytes,
        hops: Vec::new(),
    };
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(err, VerifyError::Signer(SignerError::NoNodeId)),
        "{err:?}"
    );
}

#[test]
fn a_signer_whose_key_usage_does_not_allow_signing_is_refused() {
    let r = region();
    let opts = crate::pki::IssueOptions {
        may_sign: false,
        ..Default::default()
    };
    crate::pki::issue_with(&r.dir.path().join("certs"), "county-ka", &opts).unwrap();
    let signer = identity(&r.dir.path().join("certs"), "county-ka");
    let (signed, _) = sealed(draft(Class::Emergency), &signer);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(err, VerifyError::Signer(SignerError::KeyUsage(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("digitalSignature"), "{err}");
}

#[test]
fn signed_bytes_that_are_not_a_report_are_refused_as_malformed() {
    let r = region();
    let bytes = vec![0x0a, 0x05, b'x'];
    let signed = SignedReport {
        signature: r.county.sign(&bytes),
        signer_cert: r.county.cert().to_vec(),
        report: bytes,
        hops: Vec::new(),
    };
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed(_)), "{err:?}");
}

// --- the report's own fields ---

#[test]
fn a_report_over_the_size_limit_is_refused_and_one_at_it_opens() {
    let r = region();
    let (signed, _) = sealed(draft(Class::Emergency), &r.county);
    let size = signed.report.len();
    let at = Limits {
        max_report_bytes: size,
        ..Limits::default()
    };
    open(&signed, &r.trust, &at, SystemTime::now()).unwrap();

    let under = Limits {
        max_report_bytes: size - 1,
        ..Limits::default()
    };
    let err = open(&signed, &r.trust, &under, SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, VerifyError::TooLarge { size: s, limit } if s == size && limit == size - 1),
        "{err:?}"
    );
}

#[test]
fn an_unknown_priority_is_refused() {
    let r = region();
    for priority in [0, 99, -1] {
        let err = open_spoiled(&r, |rep| rep.priority = priority).unwrap_err();
        assert!(
            matches!(err, VerifyError::UnknownClass(p) if p == priority),
            "{priority}: {err:?}"
        );
    }
    for class in Class::ALL {
        let opened = open_spoiled(&r, |rep| rep.priority = class.to_proto() as i32).unwrap();
        assert_eq!(opened.class(), class);
    }
}

#[test]
fn a_bad_item_id_is_refused() {
    let r = region();
    let cases = [
        (String::new(), BadItemId::Length),
        ("a".repeat(MAX_ID_LEN + 1), BadItemId::Length),
        ("a/b".to_string(), BadItemId::Character),
        ("a b".to_string(), BadItemId::Character),
        ("..".to_string(), BadItemId::Character),
    ];
    for (id, why) in cases {
        let err = open_spoiled(&r, |rep| rep.id = id.clone()).unwrap_err();
        assert!(
            matches!(&err, VerifyError::BadId(e) if *e == why),
            "{id:?}: {err:?}"
        );
    }
    let longest = "a".repeat(MAX_ID_LEN);
    let opened = open_spoiled(&r, |rep| rep.id = longest.clone()).unwrap();
    assert_eq!(opened.id(), longest);
}

// --- attachments ---

#[test]
fn more_than_max_attachments_are_refused() {
    let r = region();
    let opened = open_spoiled(&r, |rep| {
        rep.attachments = vec![attachment(10); MAX_ATTACHMENTS];
    })
    .unwrap();
    assert_eq!(opened.report().attachments.len(), MAX_ATTACHMENTS);

    let err = open_spoiled(&r, |rep| {
        rep.attachments = vec![attachment(10); MAX_ATTACHMENTS + 1];
    })
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::Attachments(AttachmentError::TooMany(n)) if n == MAX_ATTACHMENTS + 1),
        "{err:?}"
    );
}

#[test]
fn a_malformed_attachment_ref_is_refused_with_its_index() {
    let r = region();
    let short_digest = AttachmentRef {
        sha256: vec![1; 31],
        ..attachment(10)
    };
    let tiny_chunks = AttachmentRef {
        chunk_size: 10,
        ..attachment(10)
    };
    let huge_chunks = AttachmentRef {
        chunk_size: 1024 * 1024 + 1,
        ..attachment(10)
    };
    let long_name = AttachmentRef {
        name: "n".repeat(attachments::MAX_NAME_BYTES + 1),
        ..attachment(10)
    };
    for bad in [short_digest, tiny_chunks, huge_chunks, long_name] {
        let err = open_spoiled(&r, |rep| {
            rep.attachments = vec![attachment(10), bad.clone()]
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::Attachments(AttachmentError::Malformed { index: 1, .. })
            ),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn attachments_over_the_total_limit_are_refused() {
    let r = region();
    let limits = Limits {
        max_attachment_bytes: 1_000,
        ..Limits::default()
    };
    let open_with = |sizes: &[u64]| {
        let mut rep = report("county-a");
        rep.attachments = sizes.iter().map(|&s| attachment(s)).collect();
        open(&sign(&rep, &r.county), &r.trust, &limits, SystemTime::now())
    };
    open_with(&[600, 400]).unwrap();
    let err = open_with(&[600, 401]).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Attachments(AttachmentError::TooLarge {
                size: 1_001,
                limit: 1_000
            })
        ),
        "{err:?}"
    );
    // A sum that would wrap round to 1 byte must not slip under the limit.
    let err = open_with(&[u64::MAX, 2]).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Attachments(AttachmentError::TooLarge { size: u64::MAX, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn chunks_split_an_attachment_with_a_short_last_one() {
    let a = attachment(10_000);
    assert_eq!(chunk_count(&a), 3);
    let lens: Vec<u64> = (0..4).map(|i| chunk_len(&a, i)).collect();
    assert_eq!(lens, [4096, 4096, 1808, 0]);
    assert_eq!(lens.iter().sum::<u64>(), 10_000);

    let exact = attachment(8192);
    assert_eq!(chunk_count(&exact), 2);
    assert_eq!(chunk_len(&exact, 1), 4096);

    let empty = attachment(0);
    assert_eq!(chunk_count(&empty), 0);
    assert_eq!(chunk_len(&empty, 0), 0);

    assert_eq!(chunk_count(&attachment(1)), 1);
    assert_eq!(chunk_len(&attachment(1), 0), 1);
}

// --- the chain of custody ---

#[test]
fn a_relay_hop_makes_the_relay_the_holder() {
    let r = region();
    let (mut signed, sealed) = sealed(draft(Class::Routine), &r.county);
    hops::add(&mut signed, &r.relay, "county-a", 2_000);
    let opened = open_now(&signed, &r.trust).unwrap();
    assert_eq!(opened.holder(), "relay");
    assert_eq!(opened.report().origin, "county-a");
    assert_eq!(opened.sha256(), sealed.sha256());
}

#[test]
fn two_hops_make_the_second_relay_the_holder() {
    let r = region();
    let opened = open_now(&two_hops(&r), &r.trust).unwrap();
    assert_eq!(opened.holder(), "relay2");
}

#[test]
fn a_hop_naming_the_wrong_sender_is_refused() {
    let r = region();
    let (mut signed, _) = sealed(draft(Class::Routine), &r.county);
    hops::add(&mut signed, &r.relay, "county-b", 2_000);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Hop { index: 0, why: HopError::WrongSender { said, held } }
            if said == "county-b" && held == "county-a"),
        "{err:?}"
    );
}

#[test]
fn reordered_hops_are_refused_at_the_first() {
    let r = region();
    let mut signed = two_hops(&r);
    signed.hops.swap(0, 1);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Hop {
                index: 0,
                why: HopError::WrongSender { .. }
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_dropped_first_hop_is_refused() {
    let r = region();
    let mut signed = two_hops(&r);
    signed.hops.remove(0);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Hop { index: 0, why: HopError::WrongSender { said, held } }
            if said == "relay" && held == "county-a"),
        "{err:?}"
    );
}

#[test]
fn a_hop_from_another_chain_is_refused_as_not_linked() {
    let r = region();
    // Two chains over the same report bytes, their first hops at other times.
    let (sealed, _) = sealed(draft(Class::Routine), &r.county);
    let mut signed = with_two_hops(&r, sealed.clone(), 2_000);
    let other = with_two_hops(&r, sealed, 5_000);
    signed.hops[1] = other.hops[1].clone();
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Hop {
                index: 1,
                why: HopError::NotLinked
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_flipped_hop_statement_byte_is_refused_as_a_bad_signature() {
    let r = region();
    let mut signed = two_hops(&r);
    let last = signed.hops[1].statement.len() - 1;
    signed.hops[1].statement[last] ^= 0x01;
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Hop {
                index: 1,
                why: HopError::Signer(SignerError::BadSignature)
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_hop_signed_by_another_region_is_refused_as_a_bad_certificate() {
    let r = region();
    let other = tempfile::tempdir().unwrap();
    crate::pki::init(
        &other.path().join("certs"),
        "other",
        "hub",
        &["relay".into()],
    )
    .unwrap();
    let stranger = identity(&other.path().join("certs"), "relay");
    let (mut signed, _) = sealed(draft(Class::Routine), &r.county);
    hops::add(&mut signed, &stranger, "county-a", 2_000);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Hop {
                index: 0,
                why: HopError::Signer(SignerError::Certificate(_))
            }
        ),
        "{err:?}"
    );
}

#[test]
fn hops_copied_from_another_report_are_refused() {
    let r = region();
    let (mut signed, _) = sealed(draft(Class::Routine), &r.county);
    let (mut other, _) = sealed(draft(Class::Routine), &r.county);
    hops::add(&mut other, &r.relay, "county-a", 2_000);
    signed.hops = other.hops;
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Hop {
                index: 0,
                why: HopError::OtherReport
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_hop_signed_by_one_relay_naming_another_is_refused() {
    let r = region();
    let (mut signed, _) = sealed(draft(Class::Routine), &r.county);
    let statement = HopStatement {
        report_sha256: sha256(&signed.report).to_vec(),
        relay: "relay2".into(),
        received_from: "county-a".into(),
        stored_unix_ms: 2_000,
        previous_hop_sha256: Vec::new(),
    }
    .encode_to_vec();
    signed.hops.push(crate::proto::HopRecord {
        signature: r.relay.sign(&statement),
        signer_cert: r.relay.cert().to_vec(),
        statement,
    });
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Hop { index: 0, why: HopError::RelayMismatch { signer, named } }
            if signer == "relay" && named == "relay2"),
        "{err:?}"
    );
}

#[test]
fn a_hop_statement_that_does_not_decode_is_refused() {
    let r = region();
    let (mut signed, _) = sealed(draft(Class::Routine), &r.county);
    let statement = vec![0x0a, 0x05, b'x'];
    signed.hops.push(crate::proto::HopRecord {
        signature: r.relay.sign(&statement),
        signer_cert: r.relay.cert().to_vec(),
        statement,
    });
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Hop {
                index: 0,
                why: HopError::Malformed(_)
            }
        ),
        "{err:?}"
    );
}

#[test]
fn more_than_max_hops_are_refused() {
    let r = region();
    let (mut signed, _) = sealed(draft(Class::Routine), &r.county);
    let mut holder = "county-a";
    for i in 0..MAX_HOPS {
        let relay = if i % 2 == 0 { &r.relay } else { &r.relay2 };
        hops::add(&mut signed, relay, holder, 2_000 + i as i64);
        holder = relay.node_id();
    }
    let opened = open_now(&signed, &r.trust).unwrap();
    assert_eq!(opened.holder(), "relay2");

    hops::add(&mut signed, &r.relay, "relay2", 9_000);
    let err = open_now(&signed, &r.trust).unwrap_err();
    assert!(
        matches!(err, VerifyError::TooManyHops(n) if n == MAX_HOPS + 1),
        "{err:?}"
    );
}

#[test]
fn a_report_dated_in_the_future_beyond_the_skew_is_refused() {
    let r = region();
    let limits = Limits::default();
    let mut rep = report("county-a");
    rep.created_unix_ms = crate::clock::now_ms() + limits.max_clock_skew_ms + 60_000;
    let err = open(&sign(&rep, &r.county), &r.trust, &limits, SystemTime::now()).unwrap_err();
    assert!(matches!(err, VerifyError::FromTheFuture { .. }), "{err}");
    rep.created_unix_ms = crate::clock::now_ms() + limits.max_clock_skew_ms - 60_000;
    assert!(open(&sign(&rep, &r.county), &r.trust, &limits, SystemTime::now()).is_ok());
}

#[test]
fn a_report_older_than_the_maximum_age_or_undated_is_refused() {
    let r = region();
    let limits = Limits::default();
    for created in [
        0,
        -1,
        i64::MIN,
        crate::clock::now_ms() - limits.max_age_ms - 60_000,
    ] {
        let mut rep = report("county-a");
        rep.created_unix_ms = created;
        let err = open(&sign(&rep, &r.county), &r.trust, &limits, SystemTime::now()).unwrap_err();
        assert!(
            matches!(err, VerifyError::TooOld { .. }),
            "{created}: {err}"
        );
    }
    let mut rep = report("county-a");
    rep.created_unix_ms = i64::MAX;
    let err = open(&sign(&rep, &r.county), &r.trust, &limits, SystemTime::now()).unwrap_err();
    assert!(matches!(err, VerifyError::FromTheFuture { .. }), "{err}");
    // A day at a county behind a broken link is normal.
    rep.created_unix_ms = crate::clock::now_ms() - 24 * 3600 * 1000;
    assert!(open(&sign(&rep, &r.county), &r.trust, &limits, SystemTime::now()).is_ok());
}

#[test]
fn sealing_checks_the_limits_every_receiver_checks() {
    let r = region();
    let mut d = draft(Class::Routine);
    d.title = "t".repeat(2000);
    let err = seal(d, &r.county, &Limits::default(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::TitleTooLong {
                len: 2000,
                limit: 1024
            }
        ),
        "{err}"
    );
    // And a receiver refuses the same title from a report made elsewhere.
    let mut rep = report("county-a");
    rep.title = "t".repeat(2000);
    let err = open(
        &sign(&rep, &r.county),
        &r.trust,
        &Limits::default(),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::TitleTooLong { .. }), "{err}");
}

// --- review sign-off (把关) ---

#[test]
fn a_review_travels_signed_and_hostile_ones_are_refused() {
    let r = region();
    let review = ReviewSignOff {
        reviewer: "张主任".into(),
        role: "director".into(),
        at_unix_ms: crate::clock::now_ms(),
        note: "同意上报".into(),
        outcome: ReviewOutcome::Approved as i32,
    };
    let good = Report {
        review: Some(review.clone()),
        ..report("county-a")
    };
    let opened = open_now(&sign(&good, &r.county), &r.trust).unwrap();
    assert_eq!(opened.report().review.as_ref(), Some(&review));

    let spoiled = [
        ReviewSignOff {
            reviewer: "x".repeat(MAX_REVIEWER_BYTES + 1),
            ..review.clone()
        },
        ReviewSignOff {
            note: "x".repeat(MAX_REVIEW_NOTE_BYTES + 1),
            ..review.clone()
        },
        ReviewSignOff {
            outcome: 0,
            ..review.clone()
        },
        ReviewSignOff {
            outcome: 99,
            ..review.clone()
        },
        ReviewSignOff {
            reviewer: String::new(),
            ..review.clone()
        },
    ];
    for bad in spoiled {
        let report = Report {
            review: Some(bad),
            ..report("county-a")
        };
        let err = open_now(&sign(&report, &r.county), &r.trust).unwrap_err();
        assert!(matches!(err, VerifyError::BadReview(_)), "{err}");
    }
    // A sign-off report must carry the sign-off.
    let bare = Report {
        link: LinkKind::Reviewed as i32,
        links_to: "item-0".into(),
        ..report("county-a")
    };
    let err = open_now(&sign(&bare, &r.county), &r.trust).unwrap_err();
    assert!(matches!(err, VerifyError::BadReview(_)), "{err}");
    // Timed out: nobody named, and that is fine.
    let timed_out = Report {
        link: LinkKind::Reviewed as i32,
        links_to: "item-0".into(),
        review: Some(ReviewSignOff {
            outcome: ReviewOutcome::TimedOut as i32,
            at_unix_ms: crate::clock::now_ms(),
            ..Default::default()
        }),
        ..report("county-a")
    };
    open_now(&sign(&timed_out, &r.county), &r.trust).unwrap();
}
