//! Unit tests of the store's rules: settling, proofs, receipts going down,
//! escalation, durable inbox consumers, the writer cutting a routine batch
//! short for an emergency, the writer's priority while urgent writes wait.

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
        store.next_queued("b", 10, |_| false).await.unwrap().len(),
        2
    );

    let first = store
        .record_receipt("r1".into(), "a".into(), b"ra".to_vec(), false)
        .await
        .unwrap();
    assert_eq!(first, ReceiptOutcome::Settled);
    let ids: Vec<String> = store
        .next_queued("b", 10, |_| false)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
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

/// Puts inbox items `ids` of `lane`, in order.
async fn inbox(store: &Store, lane: u32, ids: &[&str]) {
    for id in ids {
        store
            .put((*id).into(), record(lane, "county-a"), Destination::Inbox)
            .await
            .unwrap();
    }
}

/// The ids of what `name` of `owner` has not acknowledged, in lane order.
async fn backlog(store: &Store, owner: &str, name: &str) -> Vec<String> {
    let b = store
        .consumer_backlog(owner.into(), name.into(), [0; 3], 100, 100)
        .await
        .unwrap();
    assert!(b.exhausted);
    b.items.into_iter().map(|(_, _, id, _)| id).collect()
}

/// `name`'s position and its rows of out-of-order acknowledgements.
fn position(store: &Store, owner: &str, name: &str) -> (ConsumerPosition, usize) {
    use redb::ReadableDatabase;
    let db = store.inner.db.get().unwrap();
    let txn = db.begin_read().unwrap();
    let consumers = txn.open_table(tables::CONSUMERS).unwrap();
    let at = ConsumerPosition::from_row(consumers.get((owner, name)).unwrap().unwrap().value());
    let acks = txn.open_table(tables::CONSUMER_ACKS).unwrap();
    let rows = acks
        .range((owner, name, 0u8, 0u64)..=(owner, name, u8::MAX, u64::MAX))
        .unwrap()
        .count();
    (at, rows)
}

#[tokio::test]
async fn consumer_acks_move_the_floor_up_as_gaps_fill() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    inbox(&store, 2, &["r1", "r2", "r3", "r4", "r5"]).await;
    inbox(&store, 0, &["e1", "e2"]).await;
    let open = |name: &str| store.open_consumer("analyst".into(), name.into(), 64);
    assert_eq!(open("desk").await.unwrap(), ConsumerOpened::Created);
    assert_eq!(open("desk").await.unwrap(), ConsumerOpened::Existing);
    assert_eq!(
        backlog(&store, "analyst", "desk").await,
        ["e1", "e2", "r1", "r2", "r3", "r4", "r5"],
        "nothing acknowledged: everything, emergencies first"
    );
    let ack = |ids: &[&str]| {
        store.ack_inbox(
            "analyst".into(),
            "desk".into(),
            ids.iter().map(|s| s.to_string()).collect(),
        )
    };

    // Out of order: kept one row each above the floor.
    let a = ack(&["r2", "r4"]).await.unwrap().unwrap();
    assert_eq!(a.pending, 5);
    assert_eq!(
        position(&store, "analyst", "desk"),
        (
            ConsumerPosition {
                floors: [0, 0, 0],
                above: 2
            },
            2
        )
    );
    assert_eq!(
        backlog(&store, "analyst", "desk").await,
        ["e1", "e2", "r1", "r3", "r5"]
    );

    // r1 fills the gap under r2: the floor passes both.
    let a = ack(&["r1", "e2"]).await.unwrap().unwrap();
    assert_eq!(a.pending, 3);
    assert_eq!(
        position(&store, "analyst", "desk"),
        (
            ConsumerPosition {
                floors: [0, 0, 2],
                above: 2
            },
            2
        )
    );
    // r3 fills the next gap: the floor passes r4 too, and its row goes.
    let a = ack(&["r3", "r3", "r1"]).await.unwrap().unwrap();
    assert_eq!(a.pending, 2, "repeats change nothing");
    assert_eq!(
        position(&store, "analyst", "desk"),
        (
            ConsumerPosition {
                floors: [0, 0, 4],
                above: 1
            },
            1
        )
    );
    assert_eq!(backlog(&store, "analyst", "desk").await, ["e1", "r5"]);
    assert_eq!(
        store
            .consumer_acked(
                "analyst".into(),
                "desk".into(),
                vec![(0, 1), (0, 2), (2, 4), (2, 5)]
            )
            .await
            .unwrap(),
        [(0, 2), (2, 4)]
    );

    let a = ack(&["e1", "r5", "nope"]).await.unwrap().unwrap();
    assert_eq!(a.pending, 0);
    assert_eq!(a.unknown, ["nope"], "an id of no inbox item is ignored");
    assert_eq!(
        position(&store, "analyst", "desk"),
        (
            ConsumerPosition {
                floors: [2, 0, 5],
                above: 0
            },
            0
        ),
        "all caught up: no rows left"
    );
    assert!(backlog(&store, "analyst", "desk").await.is_empty());

    // A new item is pending; another consumer of the same certificate
    // still has everything to read.
    inbox(&store, 1, &["b1"]).await;
    assert_eq!(backlog(&store, "analyst", "desk").await, ["b1"]);
    open("other").await.unwrap();
    assert_eq!(backlog(&store, "analyst", "other").await.len(), 8);
    assert_eq!(
        store.consumers_of("analyst".into()).await.unwrap(),
        [("desk".to_string(), 1), ("other".to_string(), 8)]
    );
    assert!(
        ack(&[]).await.unwrap().is_some(),
        "an empty acknowledgement answers the count"
    );
    assert!(
        store
            .ack_inbox("analyst".into(), "never".into(), vec!["b1".into()])
            .await
            .unwrap()
            .is_none(),
        "no acknowledgement for a consumer never opened"
    );
}

#[tokio::test]
async fn consumer_positions_survive_a_reopen_and_a_queued_item_is_not_in_the_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    inbox(&store, 2, &["r1", "r2", "r3"]).await;
    store
        .put(
            "q".into(),
            record(0, FROM_OPERATOR),
            Destination::Queue(vec!["up".into()]),
        )
        .await
        .unwrap();
    store
        .open_consumer("analyst".into(), "desk".into(), 64)
        .await
        .unwrap();
    let a = store
        .ack_inbox(
            "analyst".into(),
            "desk".into(),
            vec!["r1".into(), "r3".into(), "q".into()],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.unknown, ["q"], "a queued item is not an inbox item");
    store.close().await;
    let store = Store::open(&path).unwrap();
    assert_eq!(backlog(&store, "analyst", "desk").await, ["r2"]);
}

#[tokio::test]
async fn consumers_per_certificate_are_bounded_and_a_backlog_read_is_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    for i in 0..3 {
        assert_eq!(
            store
                .open_consumer("a".into(), format!("c{i}"), 3)
                .await
                .unwrap(),
            ConsumerOpened::Created
        );
    }
    let open = |owner: &str, name: &str| store.open_consumer(owner.into(), name.into(), 3);
    assert_eq!(open("a", "c3").await.unwrap(), ConsumerOpened::TooMany);
    assert_eq!(open("a", "c1").await.unwrap(), ConsumerOpened::Existing);
    assert_eq!(open("b", "c3").await.unwrap(), ConsumerOpened::Created);
    assert_eq!(open("a-", "c3").await.unwrap(), ConsumerOpened::Created);

    // Acknowledged far ahead: a read looks at `budget` rows at most, and
    // says where it stopped.
    let ids: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    for id in &ids {
        store
            .put(id.clone(), record(2, "county-a"), Destination::Inbox)
            .await
            .unwrap();
    }
    store
        .ack_inbox("a".into(), "c0".into(), ids[1..9].to_vec())
        .await
        .unwrap();
    let b = store
        .consumer_backlog("a".into(), "c0".into(), [0; 3], 10, 4)
        .await
        .unwrap();
    assert_eq!(b.items.len(), 1);
    assert_eq!((b.upto, b.exhausted), ([0, 0, 4], false));
    let b = store
        .consumer_backlog("a".into(), "c0".into(), b.upto, 10, 4)
        .await
        .unwrap();
    assert_eq!((b.items.len(), b.upto, b.exhausted), (0, [0, 0, 8], false));
    let b = store
        .consumer_backlog("a".into(), "c0".into(), b.upto, 10, 4)
        .await
        .unwrap();
    assert_eq!(b.items[0].2, "r9");
    assert_eq!((b.upto, b.exhausted), ([0, 0, 10], true));
}

/// A decision by `node`, number `seq`, linking to `previous` (as the store
/// sees it: not signed, the store checks order, not signatures).
fn decision(node: &str, seq: u32, previous: &[u8], text: &str) -> Decision {
    use prost::Message;
    let body = crate::proto::Disposition {
        item_id: "x".into(),
        node: node.into(),
        seq,
        kind: crate::proto::DispositionKind::Instruction as i32,
        text: text.into(),
        previous_sha256: previous.to_vec(),
        ..Default::default()
    };
    let signed = crate::proto::SignedDisposition {
        disposition: body.encode_to_vec(),
        ..Default::default()
    };
    Decision {
        signed: signed.encode_to_vec(),
        node: node.into(),
        seq,
        previous: previous.to_vec(),
        kind: body.kind,
        at_ms: 1,
        answer_by_ms: 0,
        delivery: None,
        text: body.text.clone(),
    }
}

fn digest_of(d: &Decision) -> Vec<u8> {
    let signed: crate::proto::SignedDisposition =
        prost::Message::decode(d.signed.as_slice()).unwrap();
    crate::disposition::digest(&signed).to_vec()
}

#[tokio::test]
async fn decisions_keep_each_deciders_order_and_go_down_once_with_their_proof() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    store
        .put(
            "x".into(),
            record(1, "county-a"),
            Destination::Queue(vec!["region".into()]),
        )
        .await
        .unwrap();
    let one = decision("hub", 1, &[], "first");
    // Before its delivery receipt came: the decision brings the hub's.
    let mut with_proof = one.clone();
    with_proof.delivery = Some(b"hub's delivery receipt".to_vec());
    assert_eq!(
        store.decide("x".into(), with_proof.clone()).await.unwrap(),
        DecisionOutcome::Stored(1)
    );
    let rec = store.get("x".into()).await.unwrap().unwrap();
    assert_eq!(rec.delivery, b"hub's delivery receipt".to_vec());
    assert_eq!(
        store.down_for("county-a".into(), 10).await.unwrap().len(),
        1,
        "the delivery receipt goes down too"
    );
    // Again: not applied twice; other bytes under the same number: refused.
    assert_eq!(
        store.decide("x".into(), with_proof).await.unwrap(),
        DecisionOutcome::Duplicate
    );
    assert_eq!(
        store
            .decide("x".into(), decision("hub", 1, &[], "forged"))
            .await
            .unwrap(),
        DecisionOutcome::Conflict
    );
    // A gap, and a wrong link to the one before: out of order.
    assert_eq!(
        store
            .decide("x".into(), decision("hub", 3, &digest_of(&one), "third"))
            .await
            .unwrap(),
        DecisionOutcome::OutOfOrder { expected: 2 }
    );
    assert_eq!(
        store
            .decide("x".into(), decision("hub", 2, &[9; 32], "second"))
            .await
            .unwrap(),
        DecisionOutcome::OutOfOrder { expected: 2 }
    );
    let two = decision("hub", 2, &digest_of(&one), "second");
    assert_eq!(
        store.decide("x".into(), two).await.unwrap(),
        DecisionOutcome::Stored(2)
    );
    // Another node's history is its own.
    assert_eq!(
        store
            .decide("x".into(), decision("region", 1, &[], "regional"))
            .await
            .unwrap(),
        DecisionOutcome::Stored(3)
    );
    assert_eq!(
        store
            .decide("y".into(), decision("hub", 1, &[], "nothing"))
            .await
            .unwrap(),
        DecisionOutcome::UnknownItem
    );
    assert_eq!(store.decisions("x".into()).await.unwrap().len(), 3);
    let down = store
        .down_decisions_for("county-a".into(), 10)
        .await
        .unwrap();
    assert_eq!(down.len(), 3, "all three owed to the child");
    store
        .ack_down_decisions(
            "county-a".into(),
            vec![
                ("x".into(), "hub".into(), 1),
                ("x".into(), "region".into(), 1),
            ],
        )
        .await
        .unwrap();
    let down = store
        .down_decisions_for("county-a".into(), 10)
        .await
        .unwrap();
    assert_eq!(down.len(), 1, "only hub #2 still owed");
}

#[tokio::test]
async fn held_notices_are_bounded_and_go_when_the_item_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let up = vec!["hub".to_string()];
    let hold = |id: &str, max| {
        store.hold(
            id.into(),
            "region".into(),
            b"notice".to_vec(),
            up.clone(),
            max,
        )
    };
    assert_eq!(hold("a", 2).await.unwrap(), HoldOutcome::Kept);
    assert_eq!(hold("b", 2).await.unwrap(), HoldOutcome::Kept);
    assert_eq!(
        hold("c", 2).await.unwrap(),
        HoldOutcome::Full,
        "a third is refused"
    );
    assert_eq!(
        hold("a", 2).await.unwrap(),
        HoldOutcome::Kept,
        "a known one still is"
    );
    assert_eq!(store.held_up_for("hub".into(), 10).await.unwrap().len(), 2);
    // The item arrives here (the hub): its notice goes, and no new one is kept.
    store
        .put("a".into(), record(1, "region"), Destination::Inbox)
        .await
        .unwrap();
    assert_eq!(store.held_notices(10).await.unwrap().len(), 1);
    assert_eq!(hold("a", 2).await.unwrap(), HoldOutcome::Arrived);
}

/// New items are made durable by the write-ahead log: a store found at its
/// last full commit, with the log beside it, is the store as answered —
/// the same items, sequence numbers, commit times and custody log.
/// A store's directory and another to copy its files into, if the disk
/// has room for the log to be used at all (else the test is skipped).
fn two_dirs_with_room_for_the_log() -> Option<(tempfile::TempDir, tempfile::TempDir)> {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    if free_bytes(a.path()).is_none_or(|free| free < wal::ROOM) {
        eprintln!("SKIPPED: too little free space for the log to be used");
        return None;
    }
    Some((a, b))
}

/// A store in `a` and, in `b`, a copy of its database as at its last full
/// commit (the one made at open); `None` where the log is not used.
fn store_and_its_last_full_commit() -> Option<(tempfile::TempDir, tempfile::TempDir, Store)> {
    let (a, b) = two_dirs_with_room_for_the_log()?;
    let path = a.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    std::fs::copy(&path, b.path().join("s.redb")).unwrap();
    Some((a, b, store))
}

/// Opens the database copied to `b` with the log segments `segments` of
/// the store at `path` beside it: the store as a crash would leave it,
/// since the last full commit only in its log.
fn open_as_after_a_crash(path: &std::path::Path, b: &std::path::Path, segments: &[u64]) -> Store {
    let copy = b.join("s.redb");
    for &n in segments {
        std::fs::copy(
            bodies::segment_path(path, n),
            bodies::segment_path(&copy, n),
        )
        .unwrap();
    }
    Store::open(&copy).unwrap()
}

#[tokio::test]
async fn items_only_in_the_log_are_applied_again_at_open() {
    let Some((a, b, store)) = store_and_its_last_full_commit() else {
        return;
    };
    let path = a.path().join("s.redb");
    let mut stored = Vec::new();
    for (i, lane) in [2, 0, 2].into_iter().enumerate() {
        let id = format!("w{i}");
        let PutOutcome::Stored(rec) = store
            .put(
                id.clone(),
                record(lane, "county-a"),
                Destination::Queue(vec!["hub".into()]),
            )
            .await
            .unwrap()
        else {
            panic!("stored")
        };
        stored.push((id, rec));
    }
    inbox(&store, 1, &["i1"]).await;
    let outcome = store
        .record_receipt("w0".into(), "hub".into(), b"receipt".to_vec(), false)
        .await
        .unwrap();
    assert_eq!(outcome, ReceiptOutcome::Settled);
    store.log_soon(
        crate::audit::Entry::new(crate::audit::AuditKind::Forwarded, "w1").with_peer("hub"),
    );
    store
        .ack_down("county-a".into(), vec!["i1".into()])
        .await
        .unwrap();
    for (id, rec) in &mut stored {
        *rec = store.get(id.clone()).await.unwrap().unwrap();
    }
    // Six writes awaited one by one (three items, one for the inbox, the
    // receipt, the acknowledgement) and the forwarded record, which is not
    // awaited: in the acknowledgement's batch, or alone when the writer
    // took it before the acknowledgement came (a busy machine).
    let logged = wal::Wal::open(&path, 0, 0, wal::CHECKPOINT_BYTES)
        .unwrap()
        .1
        .len();
    assert!(
        (6..=7).contains(&logged),
        "the batches went to the log: {logged}"
    );
    let head = store.audit_head().await.unwrap();

    let again = open_as_after_a_crash(&path, b.path(), &[0]);
    for (id, rec) in &stored {
        let back = again.get(id.clone()).await.unwrap().expect("applied again");
        assert_eq!(&back, rec, "{id}");
    }
    assert!(again.get("i1".into()).await.unwrap().is_some());
    assert_eq!(
        again.audit_head().await.unwrap(),
        head,
        "the same custody log"
    );
    // Applied once: opening again changes nothing.
    again.close().await;
    let third = Store::open(&b.path().join("s.redb")).unwrap();
    assert_eq!(third.audit_head().await.unwrap(), head);
}

#[tokio::test]
async fn a_write_alone_on_a_quiet_store_is_committed_by_its_caller() {
    use std::sync::atomic::Ordering;

    use futures::FutureExt;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let put = |id: &str, store: &Store| {
        let (id, store) = (id.to_string(), store.clone());
        async move {
            store
                .put(id, record(2, FROM_OPERATOR), Destination::Inbox)
                .await
        }
    };
    let inline = || store.inner.pending.inline.load(Ordering::Relaxed);
    // Done within its first poll: no hand-off to the writer thread.
    let first = put("a1", &store.alone()).now_or_never();
    assert!(
        matches!(first, Some(Ok(PutOutcome::Stored(_)))),
        "committed on the caller's thread"
    );
    assert_eq!(inline(), 1);
    assert!(store.get("a1".into()).await.unwrap().is_some());

    // A handle not said to be alone hands its writes over.
    assert!(matches!(put("p1", &store).await, Ok(PutOutcome::Stored(_))));
    assert_eq!(inline(), 1, "the writer thread committed it");

    // Another write pending (counted as a write handed to the writer
    // thread is): even a write alone waits its turn behind it.
    assert!(store.inner.pending.arrive());
    assert!(matches!(
        put("a2", &store.alone()).await,
        Ok(PutOutcome::Stored(_))
    ));
    store.inner.pending.done(1);
    assert_eq!(inline(), 1, "the writer thread committed it");
    assert!(store.get("a2".into()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_told_of_many_writes_under_way_still_commits_the_few_that_come() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let put = |id: &str, lane: u32| {
        let (id, store) = (id.to_string(), store.clone());
        tokio::spawn(async move {
            store
                .put(id, record(lane, FROM_OPERATOR), Destination::Inbox)
                .await
        })
    };
    for round in 0..20 {
        // The writer gathers before its next commit; far fewer writes come
        // than it gathers for, and one is an emergency.
        store.under_way(1000);
        let writes: Vec<_> = [("r1", 2), ("r2", 2), ("e", 0), ("b", 1)]
            .into_iter()
            .map(|(id, lane)| put(&format!("{id}-{round}"), lane))
            .collect();
        for w in writes {
            let stored = tokio::time::timeout(std::time::Duration::from_secs(60), w)
                .await
                .expect("a write waited for writes that never came")
                .unwrap();
            assert!(matches!(stored, Ok(PutOutcome::Stored(_))));
        }
    }
    assert!(store.get("e-19".into()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_load_that_ends_unannounced_is_forgotten_after_one_wait() {
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    // Told of a load whose items then never come.
    store.under_way(1000);
    let stored = store
        .put("a".into(), record(2, FROM_OPERATOR), Destination::Inbox)
        .await
        .unwrap();
    assert!(matches!(stored, PutOutcome::Stored(_)));
    // The writer waited once, for nothing, before committing it.
    assert_eq!(store.inner.under_way.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn receipts_are_signed_by_a_quiet_or_urgent_commit_and_a_busy_routine_ones_by_their_callers()
{
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    crate::pki::init(&certs, "test", "hub", &["county-a".into()]).unwrap();
    let (cert, key) = crate::trust::node_paths(&certs, "hub");
    let hub = Arc::new(crate::trust::Identity::load(&cert, &key).unwrap());
    let trust = crate::trust::Trust::load(&certs.join(crate::trust::CA_CERT), None).unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let put = |id: &str, lane: u32, store: Store| {
        let (id, hub) = (id.to_string(), hub.clone());
        async move {
            let (outcome, receipt) = store
                .put_receipted(id, record(lane, "county-a"), Destination::Inbox, false, hub)
                .await
                .unwrap();
            assert!(matches!(outcome, PutOutcome::Stored(_)));
            receipt.expect("a receipt")
        }
    };
    // A quiet store's write alone, committed by its caller: signed by the
    // commit, while its log frame went to the disk.
    let alone = put("a1", 2, store.alone()).await;
    assert!(alone.group.is_signed(), "signed by the commit");
    // A routine write through the writer thread: left to its caller, off
    // the thread every commit waits for.
    let routine = put("r1", 2, store.clone()).await;
    assert!(!routine.group.is_signed(), "left to the caller");
    // An emergency through the writer thread: signed by its commit.
    let urgent = put("e1", 0, store.clone()).await;
    assert!(urgent.group.is_signed(), "signed by the commit");
    // Signed either way by the hub, over the item's statement.
    for (id, r) in [("a1", &alone), ("r1", &routine), ("e1", &urgent)] {
        let signed = r.receipt(&hub);
        let opened = crate::receipt::open(&signed, &trust, std::time::SystemTime::now()).unwrap();
        assert_eq!(
            (opened.item_id.as_str(), opened.receiver.as_str()),
            (id, "hub")
        );
    }
}

/// A write that records when it is applied and, with a gate, says so and
/// waits there (holding the writer thread) until the gate opens.
struct Gated {
    n: u32,
    lane: u8,
    applied: Arc<Mutex<Vec<u32>>>,
    gate: Option<Arc<Gate>>,
}

#[derive(Default)]
struct Gate {
    entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn new() -> (Arc<Self>, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gate = Self::default();
        *gate.entered.lock().unwrap() = Some(tx);
        (Arc::new(gate), rx)
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Says so to whoever waits for the writer to come here, and holds the
    /// writer thread until the gate opens.
    fn pass(&self) {
        if let Some(tx) = self.entered.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

/// Urgent writes that joined a batch cut short for them, so far.
fn joined(store: &Store) -> usize {
    store.inner.core.lock().unwrap().joined
}

/// Runs a test whose gates hold the writer thread: a step that never
/// comes must fail the test, not hang it.
async fn gated(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(std::time::Duration::from_secs(60), test)
        .await
        .expect("the writes were not applied within 60 s");
}

/// Puts `write` in the writer's channel at once, as `Store::write` does
/// when it cannot commit on the caller's thread: writes sent one after the
/// other by one task are there in that order once this returns. (Writes
/// from tasks of their own, counted by the channel's capacity, were not: a
/// sender counts once it has its permit, before its write is in the
/// channel, and a loaded machine once let later ones in first.)
fn send<W: writer::Write>(
    store: &Store,
    write: W,
) -> tokio::sync::oneshot::Receiver<Result<W::Out, Error>> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Box<dyn writer::Job> = Box::new(writer::Pending {
        write,
        out: None,
        reply,
        pressed: None,
    });
    let _ = store.inner.pending.arrive();
    // Far below the channel's bound: `try_send` never finds it full.
    if store.inner.ops.try_send(job).is_err() {
        panic!("the writer's channel took no write");
    }
    answer
}

impl writer::Write for Gated {
    type Out = ();

    fn grows(&self) -> bool {
        true
    }

    fn lane(&self) -> u8 {
        self.lane
    }

    fn apply(&self, _: &mut txn::Txn<'_>) -> Result<(), Error> {
        self.applied.lock().unwrap().push(self.n);
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_cuts_short_the_routine_batch_being_applied() {
    gated(emergency_cuts_short_the_batch()).await;
}

async fn emergency_cuts_short_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    // Each write is put in the writer's channel by this task, one after
    // the other (see `send`).
    let write = |n: u32, lane: u8, gate: Option<&Arc<Gate>>| {
        send(
            &store,
            Gated {
                n,
                lane,
                applied: applied.clone(),
                gate: gate.cloned(),
            },
        )
    };
    // Write 0 holds the writer while routine writes 1 to 5 queue behind
    // it, so that they make the next batch together.
    let (first, entered) = Gate::new();
    let mut done = vec![write(0, 2, Some(&first))];
    entered.await.unwrap();
    let (second, entered) = Gate::new();
    done.push(write(1, 2, Some(&second)));
    for n in 2..=5 {
        done.push(write(n, 2, None));
    }
    first.open();
    // Write 1, the first of that batch, is being applied: an emergency
    // comes.
    entered.await.unwrap();
    done.push(write(100, 0, None));
    second.open();
    for d in done {
        d.await.unwrap().unwrap();
    }
    assert_eq!(
        *applied.lock().unwrap(),
        vec![0, 1, 100, 2, 3, 4, 5],
        "the emergency is applied right after the write in progress"
    );
    assert_eq!(joined(&store), 1, "and committed with it");
}

/// A real write that, with a gate, holds the writer thread once applied,
/// as [`Gated`] does.
struct Held<W> {
    write: W,
    gate: Option<Arc<Gate>>,
}

impl<W: writer::Write> writer::Write for Held<W> {
    type Out = W::Out;

    fn bytes(&self) -> usize {
        self.write.bytes()
    }

    fn grows(&self) -> bool {
        self.write.grows()
    }

    fn lane(&self) -> u8 {
        self.write.lane()
    }

    fn apply(&self, txn: &mut txn::Txn<'_>) -> Result<W::Out, Error> {
        let out = self.write.apply(txn)?;
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        Ok(out)
    }

    fn logged(&self) -> Option<wal::Logged> {
        self.write.logged()
    }

    fn logs(&self) -> bool {
        self.write.logs()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_joined_to_a_cut_batch_is_in_its_log_frame_and_applied_again_at_open() {
    gated(emergency_joined_and_applied_again()).await;
}

async fn emergency_joined_and_applied_again() {
    let Some((a, b, store)) = store_and_its_last_full_commit() else {
        return;
    };
    let path = a.path().join("s.redb");
    let reports: Vec<(&str, u32, Vec<u8>)> = vec![
        ("r0", 2, b"the first routine report".to_vec()),
        ("r1", 2, b"the second".to_vec()),
        ("r2", 2, vec![2; 300]),
        ("r3", 2, vec![3; 5]),
        (
            "u",
            0,
            b"an emergency, of another length than the rest".to_vec(),
        ),
    ];
    // Put in the writer's channel by this task, one after the other (see
    // `send`).
    let put = |n: usize, gate: Option<&Arc<Gate>>| {
        let (id, lane, body) = &reports[n];
        send(
            &store,
            Held {
                write: write::Put {
                    id: (*id).to_string(),
                    record: ItemRecord {
                        signed: body.clone(),
                        ..record(*lane, "county-a")
                    },
                    dest: Destination::Queue(vec!["hub".into()]),
                    may_hold_back: false,
                },
                gate: gate.cloned(),
            },
        )
    };
    // r0 holds the writer while r1 to r3 queue behind it, to make the
    // next batch; r1, the first of it, holds it again while the emergency
    // comes.
    let (first, entered) = Gate::new();
    let mut done = vec![put(0, Some(&first))];
    entered.await.unwrap();
    let (second, entered) = Gate::new();
    done.push(put(1, Some(&second)));
    done.push(put(2, None));
    done.push(put(3, None));
    first.open();
    entered.await.unwrap();
    done.push(put(4, None));
    second.open();
    for d in done {
        assert!(matches!(d.await.unwrap().unwrap(), PutOutcome::Stored(_)));
    }
    assert_eq!(joined(&store), 1, "the emergency joined the batch");
    let frames: Vec<Vec<String>> = wal::Wal::open(&path, 0, 0, wal::CHECKPOINT_BYTES)
        .unwrap()
        .1
        .iter()
        .map(|batch| {
            batch
                .writes
                .iter()
                .filter_map(|w| match &w.kind {
                    Some(wal::Kind::Put(put)) => Some(put.id.clone()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    assert_eq!(
        frames,
        [vec!["r0"], vec!["r1", "u"], vec!["r2", "r3"]],
        "the emergency in the frame of the write it cut short"
    );

    let again = open_as_after_a_crash(&path, b.path(), &[0]);
    for (id, lane, body) in &reports {
        let back = again
            .get((*id).to_string())
            .await
            .unwrap()
            .expect("applied again");
        assert_eq!(&back.signed, body, "{id}");
        assert_eq!(back.lane, *lane, "{id}");
        assert_eq!(
            Some(back),
            store.get((*id).to_string()).await.unwrap(),
            "{id} as it was"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_runs_at_a_higher_priority_while_a_pressing_write_waits() {
    gated(writer_priority_follows_pressing_writes()).await;
}

async fn writer_priority_follows_pressing_writes() {
    use futures::FutureExt;
    let nice_of = |tid| rustix::process::getpriority_process(Some(tid)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb")).unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let gated = |n: u32, lane: u8, gate: Option<&Arc<Gate>>| Gated {
        n,
        lane,
        applied: applied.clone(),
        gate: gate.cloned(),
    };
    // A routine write holds the writer.
    let (gate, entered) = Gate::new();
    let held = tokio::spawn({
        let (store, write) = (store.clone(), gated(0, 2, Some(&gate)));
        async move { store.write(write).await }
    });
    entered.await.unwrap();
    let priority = &store.inner.priority;
    let (writer, _) = priority.writer().expect("the writer thread has started");
    let own = nice_of(writer);
    assert!(!priority.raised(), "no pressing write yet");
    // Polled once, each write is in the writer's channel (the channel has
    // room), waiting for its commit.
    let mut emergency = Box::pin(store.write(gated(1, 0, None)));
    assert!((&mut emergency).now_or_never().is_none());
    assert_eq!(priority.waiting(), 1, "an urgent item is pressing");
    let pressing = store.pressing();
    let mut receipt = Box::pin(pressing.write(gated(2, 2, None)));
    assert!((&mut receipt).now_or_never().is_none());
    let mut routine = Box::pin(store.write(gated(3, 2, None)));
    assert!((&mut routine).now_or_never().is_none());
    assert_eq!(
        priority.waiting(),
        2,
        "a write through a pressing handle is pressing, a routine one is not"
    );
    let (_, refused) = priority.writer().unwrap();
    if refused {
        // Without CAP_SYS_NICE or RLIMIT_NICE: the writer keeps its own.
        assert_eq!(nice_of(writer), own);
    } else {
        assert!(priority.raised());
        assert_eq!(nice_of(writer), priority::NICE, "raised while they wait");
    }
    gate.open();
    held.await.unwrap().unwrap();
    emergency.await.unwrap();
    receipt.await.unwrap();
    routine.await.unwrap();
    assert_eq!(priority.waiting(), 0);
    assert!(!priority.raised());
    assert_eq!(
        nice_of(writer),
        own,
        "back at its own once they are answered"
    );
    assert_eq!(applied.lock().unwrap()[..2], [0, 1], "the emergency first");
}

#[tokio::test]
async fn close_waits_for_the_file_though_a_store_thread_holds_the_store_a_moment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    // As the flusher or the writer thread does, for a moment.
    let held = store.inner.0.clone();
    let closed = store.closed();
    let mut close = Box::pin(store.close());
    assert!(
        futures::FutureExt::now_or_never(close.as_mut()).is_none(),
        "the last handle's close waits for the file"
    );
    drop(held);
    close.await;
    assert!(*closed.borrow());
    Store::open(&path).expect("the file can be opened again");
}

#[tokio::test]
async fn reports_stay_in_the_log_and_a_segment_goes_once_nothing_points_into_it() {
    use redb::ReadableDatabase;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    inbox(&store, 1, &["a", "b"]).await;
    // From now on a segment is full once it holds a frame: the next batch
    // is a full commit, which starts a new segment.
    store.inner.core.lock().unwrap().wal.set_rotate_at(1);
    let row = |id: &str| {
        let db = store.inner.db.get().unwrap();
        let txn = db.begin_read().unwrap();
        let items = txn.open_table(tables::ITEMS).unwrap();
        decode(items.get(id).unwrap().unwrap().value()).unwrap()
    };
    let a = row("a");
    assert!(a.signed.is_empty(), "the row does not hold the report");
    assert_eq!(a.body.map(|b| (b.segment, b.len)), Some((0, 6)));
    assert_eq!(
        store.get("a".into()).await.unwrap().unwrap().signed,
        b"signed"
    );

    let archive = Retention::Archive { keep_ms: 0 };
    let pruned = store
        .prune(vec!["a".into()], archive, "test".into())
        .await
        .unwrap();
    assert_eq!(pruned, vec![("a".to_string(), 6)]);
    assert_eq!(store.inner.core.lock().unwrap().wal.segment(), 1);
    assert!(
        bodies::segment_path(&path, 0).exists(),
        "b's report is in it"
    );
    assert_eq!(
        store.get("b".into()).await.unwrap().unwrap().signed,
        b"signed"
    );

    inbox(&store, 1, &["c"]).await;
    assert_eq!(row("c").body.map(|b| b.segment), Some(1));
    store
        .prune(vec!["b".into()], archive, "test".into())
        .await
        .unwrap();
    assert!(
        !bodies::segment_path(&path, 0).exists(),
        "nothing points into it"
    );
    assert!(
        bodies::segment_path(&path, 1).exists(),
        "c's report is in it"
    );
    let b = store.get("b".into()).await.unwrap().unwrap();
    assert!(b.is_pruned() && !b.has_body());
    store.close().await;

    let again = Store::open(&path).unwrap();
    assert_eq!(
        again.get("c".into()).await.unwrap().unwrap().signed,
        b"signed"
    );
    let stats = again.stats().await.unwrap();
    assert_eq!(stats.report_bytes, 6);
}

#[tokio::test]
async fn a_report_damaged_in_the_log_is_an_error_not_a_report() {
    use std::os::unix::fs::FileExt as _;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    inbox(&store, 1, &["a"]).await;
    let at = store.get("a".into()).await.unwrap().unwrap();
    assert_eq!(at.signed, b"signed");
    let at = {
        let db = store.inner.db.get().unwrap();
        let txn = redb::ReadableDatabase::begin_read(&*db).unwrap();
        let items = txn.open_table(tables::ITEMS).unwrap();
        decode(items.get("a").unwrap().unwrap().value())
            .unwrap()
            .body
            .unwrap()
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(bodies::segment_path(&path, 0))
        .unwrap();
    file.write_all_at(b"S", at.offset).unwrap();
    let e = store.get("a".into()).await.unwrap_err();
    assert!(matches!(e, Error::Body { .. }), "{e}");
    assert!(e.to_string().contains("CRC-32"), "{e}");

    // In the inbox, it is passed over without its report; what comes
    // after it is read whole.
    inbox(&store, 1, &["b"]).await;
    let read = store.inbox_after([0; 3], 10).await.unwrap();
    let seen: Vec<(&str, bool, &[u8])> = read
        .iter()
        .map(|(_, _, id, rec)| (id.as_str(), rec.unreadable(), rec.signed.as_slice()))
        .collect();
    assert_eq!(
        seen,
        vec![("a", true, &b""[..]), ("b", false, &b"signed"[..])]
    );
    let backlog = store
        .consumer_backlog("office".into(), "desk".into(), [0; 3], 10, 10)
        .await
        .unwrap();
    assert_eq!(backlog.items.len(), 2);
    assert!(backlog.items[0].3.unreadable() && !backlog.items[1].3.unreadable());
}

#[tokio::test]
async fn items_in_a_new_segment_are_applied_again_at_open_beside_the_old_ones() {
    let Some((a, b)) = two_dirs_with_room_for_the_log() else {
        return;
    };
    let path = a.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    store.inner.core.lock().unwrap().wal.set_rotate_at(1);
    inbox(&store, 1, &["x1"]).await;
    // A write the log does not take: a full commit, which starts segment 1.
    store
        .set_target("county-a".into(), 2026, 10, 1)
        .await
        .unwrap();
    assert_eq!(store.inner.core.lock().unwrap().wal.segment(), 1);
    // The state of that full commit, then an item only in segment 1's log.
    std::fs::copy(&path, b.path().join("s.redb")).unwrap();
    inbox(&store, 1, &["x2"]).await;
    let x2 = store.get("x2".into()).await.unwrap().unwrap();
    assert_eq!(x2.body.map(|at| at.segment), Some(1));
    let again = open_as_after_a_crash(&path, b.path(), &[0, 1]);
    assert_eq!(
        again.get("x2".into()).await.unwrap(),
        Some(x2),
        "applied again"
    );
    let x1 = again.get("x1".into()).await.unwrap().unwrap();
    assert_eq!(
        (x1.signed.as_slice(), x1.body.map(|at| at.segment)),
        (&b"signed"[..], Some(0))
    );
    // Both segments hold a report: neither is deleted.
    again.close().await;
    assert!(bodies::segment_path(&b.path().join("s.redb"), 0).exists());
    let third = Store::open(&b.path().join("s.redb")).unwrap();
    assert!(third.get("x1".into()).await.unwrap().unwrap().has_body());
}

#[tokio::test]
async fn the_last_reports_of_a_mostly_pruned_segment_move_into_their_rows_and_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("i{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let rec = ItemRecord {
            signed: vec![i as u8; 4096],
            ..record(1, "county-a")
        };
        store
            .put(id.clone(), rec, Destination::Inbox)
            .await
            .unwrap();
    }
    store.inner.core.lock().unwrap().wal.set_rotate_at(1);
    // A write the log does not take: a full commit, which starts segment 1.
    store
        .set_target("county-a".into(), 2026, 10, 1)
        .await
        .unwrap();
    assert_eq!(store.inner.core.lock().unwrap().wal.segment(), 1);
    let first = bodies::segment_path(&path, 0);
    let file_bytes = std::fs::metadata(&first).unwrap().len();
    let keep_all = Retention::Archive { keep_ms: i64::MAX };
    let scan = |mut sparse: Sparse| async {
        let found = store
            .prunable(keep_all, now_ms(), String::new(), &mut sparse)
            .await
            .unwrap();
        assert!(found.ids.is_empty() && found.next.is_none());
        sparse
    };

    // Every report still kept: nothing to gain.
    let sparse = scan(store.sparse_segments().await.unwrap()).await;
    assert!(!sparse.is_empty(), "segment 0 is a candidate");
    assert!(sparse.worth_it().is_empty());
    assert_eq!(store.compact(sparse).await.unwrap(), Compacted::default());

    // All but one pruned: that one keeps the whole file, until moved.
    let gone: Vec<String> = ids.iter().filter(|id| *id != "i07").cloned().collect();
    let pruned = store
        .prune(gone, Retention::Archive { keep_ms: 0 }, "test".into())
        .await
        .unwrap();
    assert_eq!(pruned.len(), 39);
    assert!(first.exists(), "i07's report is in it");
    let sparse = scan(store.sparse_segments().await.unwrap()).await;
    assert_eq!(sparse.worth_it(), vec![0]);
    // A reader whose snapshot is from before the move.
    let before = std::cell::Cell::new(Some(
        redb::ReadableDatabase::begin_read(&*store.inner.db.get().unwrap()).unwrap(),
    ));
    let done = store.compact(sparse).await.unwrap();
    assert_eq!(
        done,
        Compacted {
            segments: vec![0],
            reports: 1,
            bytes: 4096,
            freed_bytes: file_bytes,
        }
    );
    assert!(!first.exists(), "deleted once nothing points into it");
    let row = {
        use redb::ReadableDatabase;
        let db = store.inner.db.get().unwrap();
        let txn = db.begin_read().unwrap();
        let items = txn.open_table(tables::ITEMS).unwrap();
        decode(items.get("i07").unwrap().unwrap().value()).unwrap()
    };
    assert_eq!((row.body, row.signed.len()), (None, 4096), "in its row");
    // The reader from before finds the segment gone, and reads again from
    // a snapshot that has the report in its row.
    let tries = std::cell::Cell::new(0);
    let read = store
        .lookup_reports(|db| {
            tries.set(tries.get() + 1);
            let txn = match before.take() {
                Some(old) => old,
                None => redb::ReadableDatabase::begin_read(db)?,
            };
            let items = txn.open_table(tables::ITEMS)?;
            let v = items.get("i07")?.unwrap();
            store.inner.bodies.decode(v.value())
        })
        .unwrap();
    assert_eq!((read.signed, tries.get()), (vec![7; 4096], 2));
    let i07 = store.get("i07".into()).await.unwrap().unwrap();
    assert_eq!(i07.signed, vec![7; 4096]);
    assert!(i07.has_body() && !i07.is_pruned());
    // Nothing is left to compact, and the next pass finds nothing.
    assert!(store.sparse_segments().await.unwrap().is_empty());
    store.close().await;

    let again = Store::open(&path).unwrap();
    assert_eq!(
        again.get("i07".into()).await.unwrap().unwrap().signed,
        vec![7; 4096]
    );
    assert_eq!(again.stats().await.unwrap().report_bytes, 4096);
}

#[tokio::test]
async fn a_queued_report_damaged_in_the_log_is_named_and_holds_up_nothing_behind_it() {
    use std::os::unix::fs::FileExt as _;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    for id in ["q1", "q2"] {
        store
            .put(
                id.into(),
                record(2, FROM_OPERATOR),
                Destination::Queue(vec!["up".into()]),
            )
            .await
            .unwrap();
    }
    let at = {
        use redb::ReadableDatabase;
        let db = store.inner.db.get().unwrap();
        let txn = db.begin_read().unwrap();
        let items = txn.open_table(tables::ITEMS).unwrap();
        decode(items.get("q1").unwrap().unwrap().value())
            .unwrap()
            .body
            .unwrap()
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(bodies::segment_path(&path, at.segment))
        .unwrap()
        .write_all_at(b"X", at.offset + 1)
        .unwrap();

    let next = store.next_queued("up", 10, |_| false).await.unwrap();
    assert_eq!(next.len(), 2);
    assert_eq!(next[0].id, "q1");
    let e = next[0].damaged.as_ref().expect("q1 is damaged");
    assert!(matches!(e, Error::Body { .. }), "{e}");
    assert!(next[0].rec.signed.is_empty(), "nothing to send of it");
    assert_eq!(next[1].id, "q2");
    assert!(next[1].damaged.is_none());
    assert_eq!(next[1].rec.signed, b"signed");

    // Nor does it stop the deadlines behind it, which read no reports.
    let due = store.due(i64::MAX, 10).await.unwrap();
    let due: Vec<&str> = due.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(due, ["q1", "q2"]);
    // Nor a listing: it is there without its report, the other whole.
    let listed = store.list(false, 10).await.unwrap();
    let listed: Vec<(&str, bool)> = listed
        .iter()
        .map(|(id, rec)| (id.as_str(), rec.unreadable()))
        .collect();
    assert_eq!(listed, [("q2", false), ("q1", true)]);
    // Nor its own status: the record, saying why its report is not there.
    let found = store
        .get_with_decisions("q1".into())
        .await
        .unwrap()
        .unwrap();
    assert!(found.rec.unreadable());
    assert!(matches!(found.damaged, Some(Error::Body { .. })));
    let found = store
        .get_with_decisions("q2".into())
        .await
        .unwrap()
        .unwrap();
    assert!(found.damaged.is_none() && found.rec.signed == b"signed");
}

#[tokio::test]
async fn a_data_directory_it_creates_is_closed_to_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").join("hub");
    let _store = Store::open(&data.join("store.redb")).unwrap();
    for d in [&data, &dir.path().join("data")] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "{} is {mode:o}", d.display());
        assert_eq!(mode & 0o700, 0o700, "{} is {mode:o}", d.display());
    }
}
