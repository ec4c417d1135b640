//! Unit tests of signing and opening dispositions, with a fresh region PKI.

use std::path::Path;

use super::*;
use crate::receipt::Statement;

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

const SHA: [u8; 32] = [7; 32];

fn item() -> Item<'static> {
    Item {
        id: "item-1",
        sha256: &SHA,
        origin: "county-a",
    }
}

fn receipt_of(signer: &Identity, sha: &[u8; 32]) -> SignedReceipt {
    receipt::issue(
        signer,
        &Statement {
            item_id: "item-1",
            report_sha256: sha,
            stored_unix_ms: 5,
            kind: ReceiptKind::Delivery,
            on_time: true,
        },
    )
}

fn adopted() -> Decision {
    Decision {
        kind: DispositionKind::Adopted,
        text: "《情况专报》第12期".into(),
        answer_by_unix_ms: 0,
        staff: "王芳".into(),
    }
}

fn first() -> Place<'static> {
    Place {
        seq: 1,
        previous: None,
    }
}

fn open(r: &Region, signed: &SignedDisposition) -> Result<Opened, DispositionError> {
    open_for(signed, &r.trust, SystemTime::now(), "item-1", &SHA)
}

#[test]
fn an_issued_disposition_opens_with_its_fields() {
    let r = region();
    let signed = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &SHA),
    );
    let opened = open(&r, &signed).unwrap();
    assert_eq!(opened.body.node, "hub");
    assert_eq!(opened.body.origin, "county-a");
    assert_eq!(opened.body.kind, DispositionKind::Adopted as i32);
    assert_eq!(opened.body.text, "《情况专报》第12期");
    assert_eq!(opened.body.staff, "王芳");
    assert_eq!(opened.body.at_unix_ms, 42);
    assert_eq!(opened.receipt_kind, ReceiptKind::Delivery);
}

#[test]
fn a_changed_byte_or_signature_is_refused() {
    let r = region();
    let good = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &SHA),
    );
    let mut text = good.clone();
    let last = text.disposition.len() - 1;
    text.disposition[last] ^= 1;
    assert!(matches!(open(&r, &text), Err(DispositionError::Signer(_))));
    let mut sig = good;
    sig.signature[0] ^= 1;
    assert!(matches!(open(&r, &sig), Err(DispositionError::Signer(_))));
}

#[test]
fn the_signature_does_not_cover_bare_bytes() {
    // Signed like a receipt (no context): must not verify as a decision.
    let r = region();
    let mut signed = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &SHA),
    );
    signed.signature = r.hub.sign(&signed.disposition);
    assert!(matches!(
        open(&r, &signed),
        Err(DispositionError::Signer(_))
    ));
}

#[test]
fn a_decision_for_another_item_or_other_bytes_is_refused() {
    let r = region();
    let signed = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &SHA),
    );
    let other = open_for(&signed, &r.trust, SystemTime::now(), "item-2", &SHA);
    assert!(matches!(other, Err(DispositionError::OtherItem { .. })));
    let bytes = open_for(&signed, &r.trust, SystemTime::now(), "item-1", &[8; 32]);
    assert!(matches!(bytes, Err(DispositionError::OtherItem { .. })));
}

#[test]
fn the_proof_must_be_the_deciders_own_receipt_for_the_item() {
    let r = region();
    let mut none = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &SHA),
    );
    none.receipt = None;
    assert!(matches!(open(&r, &none), Err(DispositionError::NoReceipt)));
    // A relay signs a decision with the hub's receipt: not its own proof.
    let borrowed = issue(
        &r.relay,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &SHA),
    );
    assert!(matches!(
        open(&r, &borrowed),
        Err(DispositionError::ReceiptSigner { .. })
    ));
    // A receipt for other bytes proves nothing about these.
    let other = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &[9; 32]),
    );
    assert!(matches!(
        open(&r, &other),
        Err(DispositionError::Receipt(_))
    ));
}

#[test]
fn a_decision_naming_another_node_is_refused() {
    let r = region();
    let signed = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        42,
        receipt_of(&r.hub, &SHA),
    );
    let mut body = peek(&signed).unwrap();
    body.node = "relay".into();
    let bytes = body.encode_to_vec();
    let forged = SignedDisposition {
        signature: r.hub.sign(&signed_message(&bytes)),
        disposition: bytes,
        ..signed
    };
    assert!(matches!(
        open(&r, &forged),
        Err(DispositionError::NodeMismatch { .. })
    ));
}

#[test]
fn each_kind_needs_its_text_and_only_returned_has_a_deadline() {
    let now = 1_000;
    let d = |kind, text: &str, by| Decision {
        kind,
        text: text.into(),
        answer_by_unix_ms: by,
        staff: "s".into(),
    };
    use DispositionKind::*;
    assert!(d(Adopted, "bulletin 3", 0).check(now).is_ok());
    assert!(matches!(
        d(Adopted, " ", 0).check(now),
        Err(DispositionError::MissingText { .. })
    ));
    assert!(d(NotAdopted, "", 0).check(now).is_err());
    assert!(d(Instruction, "", 0).check(now).is_err());
    assert!(d(Returned, "which roads?", 2_000).check(now).is_ok());
    assert!(matches!(
        d(Returned, "which roads?", 0).check(now),
        Err(DispositionError::AnswerBy)
    ));
    assert!(matches!(
        d(Returned, "which roads?", 500).check(now),
        Err(DispositionError::AnswerBy)
    ));
    assert!(matches!(
        d(Closed, "", 2_000).check(now),
        Err(DispositionError::AnswerByNotReturned)
    ));
    assert!(d(Forwarded, "", 0).check(now).is_ok());
    assert!(d(Closed, "", 0).check(now).is_ok());
    assert!(matches!(
        d(Unspecified, "x", 0).check(now),
        Err(DispositionError::UnknownKind(0))
    ));
    let long = "x".repeat(MAX_TEXT_BYTES + 1);
    assert!(matches!(
        d(Closed, &long, 0).check(now),
        Err(DispositionError::TextTooLong(_))
    ));
}

#[test]
fn the_history_links_each_decision_to_the_one_before() {
    let r = region();
    let one = issue(
        &r.hub,
        item(),
        &adopted(),
        first(),
        1,
        receipt_of(&r.hub, &SHA),
    );
    let d1 = digest(&one);
    let close = Decision {
        kind: DispositionKind::Closed,
        text: String::new(),
        answer_by_unix_ms: 0,
        staff: "王芳".into(),
    };
    let two = issue(
        &r.hub,
        item(),
        &close,
        Place {
            seq: 2,
            previous: Some(&d1),
        },
        2,
        receipt_of(&r.hub, &SHA),
    );
    let body = open(&r, &two).unwrap().body;
    assert_eq!(body.seq, 2);
    assert_eq!(body.previous_sha256, d1.to_vec());
}
