//! Unit tests of issuing and opening receipts, with a fresh region PKI.

use std::path::Path;

use super::*;

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

const SHA: [u8; 32] = [7; 32];

/// A delivery receipt statement for item-1 with digest [`SHA`].
fn statement() -> Statement<'static> {
    Statement {
        item_id: "item-1",
        report_sha256: &SHA,
        stored_unix_ms: 5,
        kind: ReceiptKind::Delivery,
        on_time: true,
    }
}

/// Opens a receipt for item-1 with [`SHA`], from `receiver` if given.
fn open_item(
    signed: &SignedReceipt,
    trust: &Trust,
    receiver: Option<&str>,
) -> Result<Receipt, ReceiptError> {
    open_for(signed, trust, SystemTime::now(), "item-1", &SHA, receiver)
}

/// A receipt body signed with `signer`'s key and certificate as it stands.
fn sign_receipt(receipt: &Receipt, signer: &Identity) -> SignedReceipt {
    let bytes = receipt.encode_to_vec();
    SignedReceipt {
        signature: signer.sign(&bytes),
        signer_cert: signer.cert().to_vec(),
        receipt: bytes,
        group: None,
    }
}

#[test]
fn an_issued_receipt_opens_for_its_item() {
    let r = region();
    let signed = issue(&r.hub, &statement());
    let got = open_item(&signed, &r.trust, Some("hub")).unwrap();
    assert_eq!(got.receiver, "hub");
    assert_eq!(got.kind, ReceiptKind::Delivery as i32);
    assert!(got.on_time);
}

#[test]
fn a_receipt_carries_what_was_stated() {
    let r = region();
    let st = Statement {
        stored_unix_ms: 42,
        kind: ReceiptKind::Custody,
        on_time: false,
        ..statement()
    };
    let got = open(&issue(&r.county, &st), &r.trust, SystemTime::now()).unwrap();
    assert_eq!(got.item_id, "item-1");
    assert_eq!(got.report_sha256, SHA);
    assert_eq!(got.receiver, "county-a");
    assert_eq!(got.stored_unix_ms, 42);
    assert_eq!(got.kind, ReceiptKind::Custody as i32);
    assert!(!got.on_time);
}

#[test]
fn issuing_twice_gives_byte_identical_receipts() {
    let r = region();
    let first = issue(&r.hub, &statement());
    let again = issue(&r.hub, &statement());
    assert_eq!(first, again);
    assert_eq!(first.encode_to_vec(), again.encode_to_vec());

    let later = Statement {
        stored_unix_ms: 6,
        ..statement()
    };
    assert_ne!(issue(&r.hub, &later).signature, first.signature);
}

#[test]
fn a_receipt_for_another_item_is_refused() {
    let r = region();
    let signed = issue(&r.hub, &statement());
    let err = open_for(&signed, &r.trust, SystemTime::now(), "item-2", &SHA, None).unwrap_err();
    assert!(
        matches!(&err, ReceiptError::OtherItem(id) if id == "item-1"),
        "{err:?}"
    );
}

#[test]
fn a_receipt_for_other_report_bytes_is_refused() {
    let r = region();
    let signed = issue(&r.hub, &statement());
    let other = [8u8; 32];
    let err = open_for(&signed, &r.trust, SystemTime::now(), "item-1", &other, None).unwrap_err();
    assert!(matches!(err, ReceiptError::OtherBytes), "{err:?}");
}

#[test]
fn a_receipt_from_another_receiver_than_expected_is_refused() {
    let r = region();
    let signed = issue(&r.hub, &statement());
    let err = open_item(&signed, &r.trust, Some("hub-b")).unwrap_err();
    assert!(
        matches!(&err, ReceiptError::OtherReceiver { actual, expected }
            if actual == "hub" && expected == "hub-b"),
        "{err:?}"
    );
    open_item(&signed, &r.trust, Some("hub")).unwrap();
}

#[test]
fn with_no_expected_receiver_any_region_node_is_accepted() {
    let r = region();
    for node in [&r.hub, &r.county] {
        let got = open_item(&issue(node, &statement()), &r.trust, None).unwrap();
        assert_eq!(got.receiver, node.node_id());
    }
}

#[test]
fn tampered_receipt_bytes_are_refused_as_a_bad_signature() {
    let r = region();
    let mut signed = issue(&r.hub, &statement());
    let last = signed.receipt.len() - 1;
    signed.receipt[last] ^= 0x01;
    let err = open_item(&signed, &r.trust, None).unwrap_err();
    assert!(
        matches!(err, ReceiptError::Signer(SignerError::BadSignature)),
        "{err:?}"
    );
}

#[test]
fn a_receipt_with_another_nodes_certificate_is_refused_as_a_bad_signature() {
    let r = region();
    let mut signed = issue(&r.hub, &statement());
    signed.signer_cert = r.county.cert().to_vec();
    let err = open_item(&signed, &r.trust, None).unwrap_err();
    assert!(
        matches!(err, ReceiptError::Signer(SignerError::BadSignature)),
        "{err:?}"
    );
}

#[test]
fn a_receipt_from_another_region_is_refused_as_a_bad_certificate() {
    let r = region();
    let other = tempfile::tempdir().unwrap();
    crate::pki::init(&other.path().join("certs"), "other", "hub", &[]).unwrap();
    let stranger = identity(&other.path().join("certs"), "hub");
    let err = open_item(&issue(&stranger, &statement()), &r.trust, Some("hub")).unwrap_err();
    assert!(
        matches!(err, ReceiptError::Signer(SignerError::Certificate(_))),
        "{err:?}"
    );
}

#[test]
fn a_receipt_naming_a_receiver_other_than_its_signer_is_refused() {
    let r = region();
    let forged = Receipt {
        item_id: "item-1".into(),
        report_sha256: SHA.to_vec(),
        receiver: "hub".into(),
        stored_unix_ms: 5,
        kind: ReceiptKind::Delivery as i32,
        on_time: true,
    };
    let signed = sign_receipt(&forged, &r.county);
    let err = open_item(&signed, &r.trust, Some("hub")).unwrap_err();
    assert!(
        matches!(&err, ReceiptError::ReceiverMismatch { named, signer }
            if named == "hub" && signer == "county-a"),
        "{err:?}"
    );
}

#[test]
fn signed_bytes_that_are_not_a_receipt_are_refused_as_malformed() {
    let r = region();
    let bytes = vec![0x0a, 0x05, b'x']; // a 5-byte field with 1 byte
    let signed = SignedReceipt {
        signature: r.hub.sign(&bytes),
        signer_cert: r.hub.cert().to_vec(),
        receipt: bytes,
        group: None,
    };
    let err = open(&signed, &r.trust, SystemTime::now()).unwrap_err();
    assert!(matches!(err, ReceiptError::Malformed(_)), "{err:?}");
}

#[test]
fn peek_reads_a_receipt_without_verifying_it() {
    let r = region();
    let mut signed = issue(&r.hub, &statement());
    signed.signature[0] ^= 0x80;
    assert!(matches!(
        open_item(&signed, &r.trust, None),
        Err(ReceiptError::Signer(SignerError::BadSignature))
    ));
    let seen = peek(&signed).unwrap();
    assert_eq!(seen.item_id, "item-1");
    assert_eq!(seen.receiver, "hub");

    signed.receipt = vec![0x0a, 0x05, b'x'];
    assert_eq!(peek(&signed), None);
}

/// Statements for items item-0 … item-(n-1), all with digest [`SHA`].
fn group_of(n: usize, receiver: &Identity) -> (Vec<String>, Group) {
    let ids: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
    let receipts = ids
        .iter()
        .map(|id| {
            encode(
                receiver.node_id(),
                &Statement {
                    item_id: id,
                    ..statement()
                },
            )
        })
        .collect();
    (ids, Group::new(receipts))
}

#[test]
fn every_receipt_of_a_group_proves_its_own_item_under_one_signature() {
    let r = region();
    for n in [2, 3, 7, 64, 129] {
        let (ids, group) = group_of(n, &r.hub);
        let receipts: Vec<SignedReceipt> = (0..n).map(|i| group.receipt(i, &r.hub)).collect();
        assert!(
            receipts
                .iter()
                .all(|s| s.signature == receipts[0].signature)
        );
        for (i, signed) in receipts.iter().enumerate() {
            let g = signed.group.as_ref().expect("a group of several");
            assert_eq!((g.size, g.index), (n as u64, i as u64));
            let got = open_for(
                signed,
                &r.trust,
                SystemTime::now(),
                &ids[i],
                &SHA,
                Some("hub"),
            )
            .unwrap_or_else(|e| panic!("receipt {i} of {n}: {e}"));
            assert_eq!(got.item_id, ids[i]);
        }
    }
}

#[test]
fn a_group_of_one_is_a_receipt_signed_on_its_own() {
    let r = region();
    let (_, group) = group_of(1, &r.hub);
    let signed = group.receipt(0, &r.hub);
    assert!(signed.group.is_none());
    let alone = issue(
        &r.hub,
        &Statement {
            item_id: "item-0",
            ..statement()
        },
    );
    assert_eq!(signed, alone, "the same bytes as one issued on its own");
}

#[test]
fn a_receipt_moved_to_another_place_or_group_is_refused() {
    let r = region();
    let (_, group) = group_of(5, &r.hub);
    let signed = group.receipt(2, &r.hub);
    let open0 = |s: &SignedReceipt| open(s, &r.trust, SystemTime::now());
    assert!(open0(&signed).is_ok());

    let mut moved = signed.clone();
    moved.group.as_mut().unwrap().index = 3;
    assert!(open0(&moved).is_err(), "another index");

    let mut grown = signed.clone();
    grown.group.as_mut().unwrap().size = 6;
    assert!(open0(&grown).is_err(), "another size");

    let mut swapped = signed.clone();
    swapped.receipt = group.receipt(3, &r.hub).receipt;
    assert!(open0(&swapped).is_err(), "another receipt with this path");

    let mut bare = signed.clone();
    bare.group = None;
    assert!(
        matches!(
            open0(&bare),
            Err(ReceiptError::Signer(SignerError::BadSignature))
        ),
        "the group's signature is not a signature of the receipt alone"
    );

    let mut one = signed.clone();
    one.group.as_mut().unwrap().size = 1;
    one.group.as_mut().unwrap().index = 0;
    assert!(
        matches!(open0(&one), Err(ReceiptError::BadPath { .. })),
        "a group says 2 or more"
    );

    let mut long = signed;
    long.group
        .as_mut()
        .unwrap()
        .path
        .extend(vec![vec![0; 32]; 1000]);
    assert!(
        matches!(open0(&long), Err(ReceiptError::BadPath { .. })),
        "path too long"
    );
}

#[test]
fn a_signed_root_statement_does_not_decode_as_a_receipt() {
    let r = region();
    let root = root_statement(5, &[9; 32]);
    let signed = SignedReceipt {
        signature: r.hub.sign(&root),
        signer_cert: r.hub.cert().to_vec(),
        receipt: root,
        group: None,
    };
    assert!(matches!(
        open(&signed, &r.trust, SystemTime::now()),
        Err(ReceiptError::Malformed(_))
    ));
}

#[test]
fn a_groups_signature_is_checked_once_and_its_certificate_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    crate::pki::init(&certs, "test", "hub", &["county-a".into()]).unwrap();
    let trust = Trust::load(
        &certs.join(crate::trust::CA_CERT),
        Some(&certs.join(crate::trust::CRL)),
    )
    .unwrap();
    let hub = identity(&certs, "hub");
    let (ids, group) = group_of(4, &hub);
    let open = |i: usize, signed: &SignedReceipt| {
        open_for(
            signed,
            &trust,
            SystemTime::now(),
            &ids[i],
            &SHA,
            Some("hub"),
        )
    };
    assert!(open(0, &group.receipt(0, &hub)).is_ok());
    // The same root under a changed signature is checked, not taken from
    // what was remembered.
    let mut forged = group.receipt(1, &hub);
    forged.signature[10] ^= 1;
    assert!(matches!(
        open(1, &forged),
        Err(ReceiptError::Signer(SignerError::BadSignature))
    ));
    assert!(open(1, &group.receipt(1, &hub)).is_ok());
    // Revoked: the next receipt of the group is refused at once.
    crate::pki::revoke(&certs, "hub").unwrap();
    assert!(matches!(
        trust.reload_if_changed(),
        crate::trust::Reload::Reloaded
    ));
    assert!(matches!(
        open(2, &group.receipt(2, &hub)),
        Err(ReceiptError::Signer(SignerError::Certificate(_)))
    ));
}
