//! Unit tests of issuing and opening receipts, with a fresh region PKI.

use super::*;

#[test]
fn an_issued_receipt_opens_for_its_item() {
    let dir = tempfile::tempdir().unwrap();
    crate::pki::init(dir.path(), "test", "hub", &[]).unwrap();
    let (c, k) = crate::trust::node_paths(dir.path(), "hub");
    let hub = Identity::load(&c, &k).unwrap();
    let trust = Trust::load(&dir.path().join(crate::trust::CA_CERT), None).unwrap();
    let sha = [7u8; 32];
    let signed = issue(
        &hub,
        &Statement {
            item_id: "item-1",
            report_sha256: &sha,
            stored_unix_ms: 5,
            kind: ReceiptKind::Delivery,
            on_time: true,
        },
    );
    let r = open_for(
        &signed,
        &trust,
        SystemTime::now(),
        "item-1",
        &sha,
        Some("hub"),
    )
    .unwrap();
    assert_eq!(r.receiver, "hub");
    assert_eq!(r.kind, ReceiptKind::Delivery as i32);
    assert!(r.on_time);
}
