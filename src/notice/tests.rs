//! Unit tests of signing and opening notices, with a fresh region PKI.

use std::path::Path;

use super::*;
use crate::proto::Priority;

struct Region {
    _dir: tempfile::TempDir,
    trust: Trust,
    hub: Identity,
    relay: Identity,
}

fn region() -> Region {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    crate::pki::init(&certs, "test", "hub", &["relay".into(), "county-a".into()]).unwrap();
    Region {
        trust: Trust::load(&certs.join(crate::trust::CA_CERT), None).unwrap(),
        hub: identity(&certs, "hub"),
        relay: identity(&certs, "relay"),
        _dir: dir,
    }
}

fn identity(dir: &Path, node: &str) -> Identity {
    let (c, k) = crate::trust::node_paths(dir, node);
    Identity::load(&c, &k).unwrap()
}

fn solicitation(id: &str) -> Notice {
    Notice {
        id: id.into(),
        version: 1,
        staff: "王芳".into(),
        at_unix_ms: 1_000,
        body: Some(notice::Body::Solicitation(Solicitation {
            topic: "秋汛防御".into(),
            text: "请报送本县秋汛防御情况".into(),
            deadline_unix_ms: 2_000_000,
            priority: Priority::Routine as i32,
            counties: vec!["county-a".into()],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn hub_only() -> Vec<String> {
    vec!["hub".into()]
}

#[test]
fn a_notice_signed_by_a_publisher_opens() {
    let r = region();
    let signed = issue(&r.hub, solicitation("SOL-0000000001abcdef"));
    let body = open(&signed, &r.trust, SystemTime::now(), &hub_only()).unwrap();
    assert_eq!(body.publisher, "hub");
    assert_eq!(body.id, "SOL-0000000001abcdef");
}

#[test]
fn a_notice_signed_by_a_relay_is_refused_naming_the_setting() {
    let r = region();
    let signed = issue(&r.relay, solicitation("SOL-0000000001abcdef"));
    let e = open(&signed, &r.trust, SystemTime::now(), &hub_only()).unwrap_err();
    assert!(matches!(e, NoticeError::NotAPublisher { .. }), "{e}");
    assert!(e.to_string().contains("office.publishers"), "{e}");
}

#[test]
fn an_altered_notice_does_not_verify() {
    let r = region();
    let mut signed = issue(&r.hub, solicitation("SOL-0000000001abcdef"));
    // A relay moves the deadline: the bytes change under the signature.
    let mut body = peek(&signed).unwrap();
    if let Some(notice::Body::Solicitation(s)) = body.body.as_mut() {
        s.deadline_unix_ms += 1;
    }
    signed.notice = body.encode_to_vec();
    let e = open(&signed, &r.trust, SystemTime::now(), &hub_only()).unwrap_err();
    assert!(matches!(e, NoticeError::Signer(_)), "{e}");
}

#[test]
fn a_notice_re_signed_by_a_relay_in_the_hubs_name_is_refused() {
    let r = region();
    let signed = issue(&r.hub, solicitation("SOL-0000000001abcdef"));
    let body = peek(&signed).unwrap();
    // The relay signs the hub's words with its own key, keeping "hub".
    let bytes = body.encode_to_vec();
    let forged = SignedNotice {
        signature: r.relay.sign(&signed_message(&bytes)),
        signer_cert: r.relay.cert().to_vec(),
        notice: bytes,
    };
    let e = open(&forged, &r.trust, SystemTime::now(), &hub_only()).unwrap_err();
    assert!(matches!(e, NoticeError::PublisherMismatch { .. }), "{e}");
}

#[test]
fn a_decision_signature_never_verifies_as_a_notice() {
    let r = region();
    let bytes = solicitation("SOL-0000000001abcdef").encode_to_vec();
    let mut with_publisher = Notice::decode(bytes.as_slice()).unwrap();
    with_publisher.publisher = "hub".into();
    let bytes = with_publisher.encode_to_vec();
    let mut other = crate::disposition::CONTEXT.to_vec();
    other.extend_from_slice(&bytes);
    let signed = SignedNotice {
        signature: r.hub.sign(&other),
        signer_cert: r.hub.cert().to_vec(),
        notice: bytes,
    };
    assert!(open(&signed, &r.trust, SystemTime::now(), &hub_only()).is_err());
}

#[test]
fn fields_are_checked() {
    let mut n = solicitation("SOL-0000000001abcdef");
    assert!(check(&n).is_ok());
    n.id = "SOL-xyz".into();
    assert!(check(&n).is_err());
    let mut n = solicitation("BUL-2026-11");
    assert!(
        check(&n)
            .unwrap_err()
            .to_string()
            .contains("does not match")
    );
    n = solicitation("SOL-0000000001abcdef");
    n.version = 2;
    assert!(check(&n).is_err(), "version 2 must name its previous");
    n.previous_sha256 = vec![1; 32];
    assert!(check(&n).is_ok());
    if let Some(notice::Body::Solicitation(s)) = n.body.as_mut() {
        s.counties.push("not a node id!".into());
    }
    assert!(check(&n).is_err());
    let b = Notice {
        id: "BUL-2026-11".into(),
        version: 1,
        body: Some(notice::Body::Bulletin(Bulletin {
            period: "2026-11".into(),
            lang: "zh".into(),
            html: "<html></html>".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(check(&b).unwrap(), Kind::Bulletin);
    let mut wrong = b.clone();
    if let Some(notice::Body::Bulletin(x)) = wrong.body.as_mut() {
        x.period = "2026-10".into();
    }
    assert!(check(&wrong).is_err());
}

#[test]
fn new_ids_are_well_formed_and_distinct() {
    let a = new_solicitation_id(1_790_000_000_000);
    let b = new_solicitation_id(1_790_000_000_000);
    assert_eq!(check_id(&a), Ok(Kind::Solicitation), "{a}");
    assert_ne!(a, b);
}
