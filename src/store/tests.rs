//! Unit tests of the store's rules: settling, proofs, receipts going down,
//! escalation.

use std::collections::HashSet;

use super::*;
use crate::clock::now_ms;

fn record(lane: u32, from: &str) -> ItemRecord {
    ItemRecord {
        signed: b"signed".to_vec(),
        lane,
        deadline_ms: now_ms() + 60_000,
        sha256: vec![7; 32],
        from: from.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn routes_settle_on_the_first_receipt_and_emergencies_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let routes = vec!["a".to_string(), "b".to_string()];
    store
        .put(
            "r1".into(),
            record(2, FROM_OPERATOR),
            Destination::Queue(routes.clone()),
        )
        .await
        .unwrap();
    store
        .put(
            "e1".into(),
            record(0, FROM_OPERATOR),
            Destination::Queue(routes),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .next_queued("b".into(), 10, HashSet::new())
            .await
            .unwrap()
            .len(),
        2
    );

    let first = store
        .record_receipt("r1".into(), "a".into(), b"ra".to_vec(), false)
        .await
        .unwrap();
    assert_eq!(first, ReceiptOutcome::Settled);
    let ids: Vec<String> = store
        .next_queued("b".into(), 10, HashSet::new())
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        vec!["e1".to_string()],
        "routine leaves every route once settled"
    );

    assert_eq!(
        store
            .record_receipt("e1".into(), "a".into(), b"ea".to_vec(), false)
            .await
            .unwrap(),
        ReceiptOutcome::Settled
    );
    assert_eq!(
        store
            .record_receipt("e1".into(), "b".into(), b"eb".to_vec(), false)
            .await
            .unwrap(),
        ReceiptOutcome::Proof
    );
    assert_eq!(
        store
            .record_receipt("e1".into(), "b".into(), b"eb".to_vec(), false)
            .await
            .unwrap(),
        ReceiptOutcome::NotPending
    );
    let e1 = store.get("e1".into()).await.unwrap().unwrap();
    assert_eq!(e1.route_receipts.len(), 2, "every route's receipt is kept");
    // Custody above is progress, not arrival: still watched until the
    // final hub's delivery receipt comes down.
    assert_eq!(
        store.due(i64::MAX, 10).await.unwrap().len(),
        2,
        "in custody above, not delivered: deadlines still watched"
    );
    assert!(
        store
            .record_delivery("r1".into(), b"dr".to_vec())
            .await
            .unwrap()
    );
    assert!(
        store
            .record_delivery("e1".into(), b"de".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(
        store.next_deadline().await.unwrap(),
        None,
        "delivered: nothing left to watch"
    );
}

#[tokio::test]
async fn a_delivery_receipt_from_the_final_hub_settles_at_once_and_late_arrivals_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    store
        .put(
            "d1".into(),
            record(1, FROM_OPERATOR),
            Destination::Queue(vec!["hub".into()]),
        )
        .await
        .unwrap();
    store
        .record_receipt("d1".into(), "hub".into(), b"d".to_vec(), true)
        .await
        .unwrap();
    assert_eq!(store.next_deadline().await.unwrap(), None);
    // At a hub: an item stored after its deadline is late, and listed.
    let mut late = record(2, "county-a");
    late.deadline_ms = now_ms() - 1;
    store
        .put("late".into(), late, Destination::Inbox)
        .await
        .unwrap();
    store
        .put("in-time".into(), record(2, "county-a"), Destination::Inbox)
        .await
        .unwrap();
    let overdue: Vec<String> = store
        .list(true, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(overdue, vec!["late".to_string()]);
    assert_eq!(store.overdue_total().await.unwrap(), 1);
}

#[tokio::test]
async fn delivery_receipts_go_down_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    store
        .put(
            "x".into(),
            record(1, "county-a"),
            Destination::Queue(vec!["hub".into()]),
        )
        .await
        .unwrap();
    store
        .record_receipt("x".into(), "hub".into(), b"delivery".to_vec(), true)
        .await
        .unwrap();
    let down = store.down_for("county-a".into(), 10).await.unwrap();
    assert_eq!(down, vec![("x".to_string(), b"delivery".to_vec())]);
    assert!(
        store
            .down_for("county-b".into(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .ack_down("county-a".into(), vec!["x".into()])
        .await
        .unwrap();
    assert!(
        store
            .down_for("county-a".into(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn escalation_marks_overdue_once_and_adds_routes_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let mut rec = record(1, FROM_OPERATOR);
    rec.deadline_ms = now_ms() - 1;
    store
        .put("late".into(), rec, Destination::Queue(vec!["a".into()]))
        .await
        .unwrap();
    assert_eq!(store.due(now_ms(), 10).await.unwrap().len(), 1);
    let e = store
        .escalate("late".into(), vec!["alt".into()], true)
        .await
        .unwrap();
    assert_eq!(
        e,
        Escalation {
            added: vec!["alt".into()],
            newly_overdue: true
        }
    );
    let again = store
        .escalate("late".into(), vec!["alt".into()], true)
        .await
        .unwrap();
    assert_eq!(again, Escalation::default());
    assert!(store.due(now_ms(), 10).await.unwrap().is_empty());
    assert_eq!(store.overdue_total().await.unwrap(), 1);
    assert_eq!(store.list(true, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_custody_log_is_pruned_only_through_a_signed_checkpoint_and_still_verifies() {
    use crate::audit::{self, AuditKind, AuditRecord, Checkpoint, Entry, SignedCheckpoint};
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    crate::pki::init(&certs, "test", "hub", &[]).unwrap();
    let trust = crate::trust::Trust::load(&certs.join(crate::trust::CA_CERT), None).unwrap();
    let (cert, key) = crate::trust::node_paths(&certs, "hub");
    let hub = crate::trust::Identity::load(&cert, &key).unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    let verify = |records: Vec<Vec<u8>>, checkpoints: Vec<Vec<u8>>| {
        let records: Vec<AuditRecord> = records
            .iter()
            .map(|b| AuditRecord::decode(b.as_slice()).unwrap())
            .collect();
        let checkpoints: Vec<SignedCheckpoint> = checkpoints
            .iter()
            .map(|b| SignedCheckpoint::decode(b.as_slice()).unwrap())
            .collect();
        let kinds = records.iter().map(|r| r.kind).collect::<Vec<_>>();
        let got = audit::verify(
            records,
            &checkpoints,
            &trust,
            "hub",
            std::time::SystemTime::now(),
        )
        .unwrap();
        (got, kinds)
    };

    for n in 0..10 {
        store
            .log(Entry::new(AuditKind::Accepted, format!("item-{n}")))
            .await
            .unwrap();
    }
    // Nothing is old enough to go before a checkpoint exists.
    assert_eq!(store.prune_audit(now_ms() + 60_000).await.unwrap(), None);
    let (seq, head) = store.audit_head().await.unwrap().unwrap();
    assert_eq!(seq, 9);
    let made = now_ms();
    let cp = Checkpoint {
        node: "hub".into(),
        seq,
        head_sha256: head.to_vec(),
        at_unix_ms: made,
    };
    store
        .put_checkpoint(seq, audit::sign(&cp, &hub).encode_to_vec())
        .await
        .unwrap();
    for n in 10..15 {
        store
            .log(Entry::new(AuditKind::Forwarded, format!("item-{n}")))
            .await
            .unwrap();
    }
    // Records logged after `made` are to be kept: the checkpoint is not
    // older than that, so nothing goes.
    assert_eq!(store.prune_audit(made).await.unwrap(), None);
    assert_eq!(store.prune_audit(made + 1).await.unwrap(), Some(9));
    // Done once: a second call finds nothing more to delete.
    assert_eq!(store.prune_audit(made + 1).await.unwrap(), None);

    let (got, kinds) = verify(
        store.audit_records(0, 1000).await.unwrap(),
        store.audit_checkpoints().await.unwrap(),
    );
    assert_eq!((got.first_seq, got.last_seq), (Some(10), Some(15)));
    assert_eq!(kinds.last(), Some(&(AuditKind::Pruned as i32)));

    // Reopened, the log goes on from where it was.
    store.close().await;
    let store = Store::open(&path).unwrap();
    store
        .log(Entry::new(AuditKind::Accepted, "item-16"))
        .await
        .unwrap();
    let (got, _) = verify(
        store.audit_records(0, 1000).await.unwrap(),
        store.audit_checkpoints().await.unwrap(),
    );
    assert_eq!((got.first_seq, got.last_seq), (Some(10), Some(16)));
}
