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
    assert_eq!(
        store.next_deadline().await.unwrap(),
        None,
        "nothing left to watch"
    );
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
