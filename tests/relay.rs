//! End to end over real mTLS: a county node, a hub, receipts, the inbox.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::{HUB, Region};
use prost::Message;
use zhibao::class::Class;
use zhibao::client::Inbox;
use zhibao::proto::{
    Cursor, ItemState, Receipt, ReceiptKind, Report, SubmitRequest, VerdictOutcome,
};
use zhibao::{envelope, node, trust};

const WAIT: Duration = Duration::from_secs(20);

/// Reads the whole inbox, verifying each item; (id, origin, class) in stream order.
async fn read_inbox(region: &Region, addr: std::net::SocketAddr) -> Vec<(String, String, Class)> {
    let trust = region.trust();
    common::inbox_items(region, addr)
        .await
        .iter()
        .map(|signed| {
            let v = envelope::open(signed, &trust, &Default::default(), SystemTime::now())
                .expect("inbox item verifies");
            (v.id().to_string(), v.report().origin.clone(), v.class())
        })
        .collect()
}

#[tokio::test]
async fn each_class_is_delivered_and_receipted_with_a_valid_signature() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let node = region.start_node("county-a", hub_addr).await;
    let mut op = common::operator(&node).await;

    let mut ids = HashMap::new();
    for class in Class::ALL {
        let id = op
            .submit(
                class,
                &format!("{class} report"),
                format!("body of {class}").into_bytes(),
                0,
            )
            .await
            .unwrap();
        ids.insert(id, class);
    }
    for (id, class) in &ids {
        let st = op.wait_receipt(id, WAIT).await.unwrap();
        assert_eq!(st.state, ItemState::Receipted as i32, "{id}");
        assert_eq!(Class::from_proto(st.priority), Some(*class));
        assert!(
            st.receipt_verification.starts_with("valid"),
            "{}",
            st.receipt_verification
        );
        // The same as data: valid, signed by the hub, nothing wrong.
        let verdict = st.receipt_verdict.clone().unwrap();
        assert!(
            [
                VerdictOutcome::Valid as i32,
                VerdictOutcome::ValidWhenStored as i32
            ]
            .contains(&verdict.outcome),
            "{verdict:?}"
        );
        assert_eq!(verdict.signer, HUB);
        assert!(verdict.problem.is_empty(), "{verdict:?}");
        let receipt = Receipt::decode(st.receipt.unwrap().receipt.as_slice()).unwrap();
        assert_eq!(&receipt.item_id, id);
        assert_eq!(receipt.receiver, HUB);
        assert_eq!(receipt.kind, ReceiptKind::Delivery as i32);
        assert!(st.receipted_unix_ms >= st.created_unix_ms);
    }

    let inbox = read_inbox(&region, hub_addr).await;
    assert_eq!(inbox.len(), 3);
    // Highest class first among unread items.
    let classes: Vec<Class> = inbox.iter().map(|(_, _, c)| *c).collect();
    assert_eq!(
        classes,
        vec![Class::Emergency, Class::BadNews, Class::Routine]
    );
    for (id, origin, class) in inbox {
        assert_eq!(origin, "county-a");
        assert_eq!(ids[&id], class);
    }
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn hub_down_then_up_loses_nothing_and_delivers_once() {
    let region = Region::new(&["county-a", "county-b"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let a = region.start_node("county-a", hub_addr).await;
    let b = region.start_node("county-b", hub_addr).await;
    let (mut op_a, mut op_b) = (common::operator(&a).await, common::operator(&b).await);

    let first = op_a
        .submit(Class::Routine, "before", b"x".to_vec(), 0)
        .await
        .unwrap();
    op_a.wait_receipt(&first, WAIT).await.unwrap();

    hub.shutdown(WAIT).await;
    let mut queued = Vec::new();
    for i in 0..10 {
        let class = Class::ALL[i % 3];
        queued.push(
            op_a.submit(class, &format!("a{i}"), vec![b'a'; 100], 0)
                .await
                .unwrap(),
        );
        queued.push(
            op_b.submit(class, &format!("b{i}"), vec![b'b'; 100], 0)
                .await
                .unwrap(),
        );
    }
    for id in &queued {
        let op = if queued.iter().position(|x| x == id).unwrap() % 2 == 0 {
            &mut op_a
        } else {
            &mut op_b
        };
        let st = op.status(id).await.unwrap();
        assert_ne!(
            st.state,
            ItemState::Receipted as i32,
            "receipted with the hub down"
        );
    }

    let hub = region.restart_hub(hub_addr).await;
    for (i, id) in queued.iter().enumerate() {
        let op = if i % 2 == 0 { &mut op_a } else { &mut op_b };
        let st = op.wait_receipt(id, WAIT).await.unwrap();
        assert_eq!(st.state, ItemState::Receipted as i32);
    }
    let inbox = read_inbox(&region, hub_addr).await;
    assert_eq!(inbox.len(), 21, "every item once");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (id, _, _) in &inbox {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert!(counts.values().all(|c| *c == 1), "an item arrived twice");
    for id in queued.iter().chain([&first]) {
        assert_eq!(counts.get(id.as_str()), Some(&1), "{id} missing");
    }
    a.shutdown(WAIT).await;
    b.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn submit_waits_for_the_receipt_in_one_call_and_answers_with_the_id_when_the_wait_is_up() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let node = region.start_node("county-a", hub_addr).await;
    let mut op = common::operator(&node).await;
    let report = |title: &str| SubmitRequest {
        priority: Class::Emergency.to_proto() as i32,
        title: title.into(),
        body: b"levee breached at km 12".to_vec(),
        ..Default::default()
    };

    let (id, st) = op.submit_and_wait(report("one call"), WAIT).await.unwrap();
    assert_eq!(st.id, id);
    assert_eq!(st.state, ItemState::Receipted as i32);
    assert!(
        st.receipt_verification.starts_with("valid"),
        "{}",
        st.receipt_verification
    );

    // With the hub down the wait runs out; the answer still names the
    // stored report, which goes once the hub is back.
    hub.shutdown(WAIT).await;
    let wait = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let (id, st) = op.submit_and_wait(report("hub down"), wait).await.unwrap();
    assert!(started.elapsed() >= wait, "answered before the wait was up");
    assert_eq!(st.id, id);
    assert!(
        [ItemState::Queued as i32, ItemState::InFlight as i32].contains(&st.state),
        "state {}",
        st.state
    );
    let hub = region.restart_hub(hub_addr).await;
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

/// An upstream that refuses the urgent connection (here: one connection
/// per node) still gets the urgent items, on the routine stream.
#[tokio::test]
async fn without_an_urgent_connection_urgent_items_go_on_the_routine_stream() {
    common::init_logs();
    let region = Region::new(&["county-a"]);
    let mut hub_cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    hub_cfg.limits.max_connections_per_peer = 1;
    let hub = node::start(hub_cfg).await.unwrap();
    let hub_addr = hub.relay_addr.unwrap();
    let node = region.start_node("county-a", hub_addr).await;
    let mut op = common::operator(&node).await;
    let report = SubmitRequest {
        priority: Class::Emergency.to_proto() as i32,
        title: "levee".into(),
        body: b"levee breached at km 12".to_vec(),
        ..Default::default()
    };
    let (id, st) = op.submit_and_wait(report, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32, "{id}");
    assert!(
        !common::log_lines_with(&[
            "no urgent connection",
            "urgent items go on the routine stream",
            &format!("addr={hub_addr}"),
        ])
        .is_empty()
    );
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn emergency_is_sent_before_older_routine_items() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    hub.shutdown(WAIT).await;

    // One item in flight at a time makes the send order visible at the hub.
    let mut cfg = region.node_config("county-a", hub_addr);
    cfg.limits.max_in_flight = 1;
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    let mut routine = Vec::new();
    for i in 0..5 {
        routine.push(
            op.submit(Class::Routine, &format!("routine {i}"), vec![0; 10], 0)
                .await
                .unwrap(),
        );
    }
    let bad = op
        .submit(Class::BadNews, "bad news", vec![0; 10], 0)
        .await
        .unwrap();
    let emergency = op
        .submit(Class::Emergency, "emergency", vec![0; 10], 0)
        .await
        .unwrap();

    let hub = region.restart_hub(hub_addr).await;
    let stored_at = |st: zhibao::proto::ItemStatus| {
        Receipt::decode(st.receipt.unwrap().receipt.as_slice())
            .unwrap()
            .stored_unix_ms
    };
    let e = stored_at(op.wait_receipt(&emergency, WAIT).await.unwrap());
    let b = stored_at(op.wait_receipt(&bad, WAIT).await.unwrap());
    for id in &routine {
        let r = stored_at(op.wait_receipt(id, WAIT).await.unwrap());
        // Emergency and bad news may share the wire (both get room beyond
        // the window); neither waits for older routine items.
        assert!(e <= r && b <= r, "emergency {e}, bad news {b}, routine {r}");
    }
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn duplicate_gets_the_original_receipt_and_a_changed_copy_is_refused() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let id = region.identity("county-a");
    let report = Report {
        id: envelope::new_item_id(),
        origin: "county-a".into(),
        priority: Class::BadNews.to_proto() as i32,
        title: "dup".into(),
        body: b"same bytes".to_vec(),
        created_unix_ms: zhibao::clock::now_ms(),
        ..Default::default()
    };
    let signed = envelope::sign(&report, &id);
    let mut relay = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;
    let r1 = relay.deliver(signed.clone()).await.unwrap().into_inner();
    let r2 = relay.deliver(signed.clone()).await.unwrap().into_inner();
    assert_eq!(r1, r2, "a duplicate gets the original receipt back");

    let mut changed = report.clone();
    changed.body = b"other bytes".to_vec();
    let err = relay
        .deliver(envelope::sign(&changed, &id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    assert!(!common::log_lines_with(&["ALARM", &report.id]).is_empty());

    let inbox = read_inbox(&region, addr).await;
    assert_eq!(inbox.len(), 1, "stored once");
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn inbox_cursor_resumes_without_gaps_or_repeats() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let node = region.start_node("county-a", addr).await;
    let mut op = common::operator(&node).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        ids.push(
            op.submit(Class::ALL[i % 3], &format!("t{i}"), vec![1], 0)
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        op.wait_receipt(id, WAIT).await.unwrap();
    }
    let (cert, key) = trust::node_paths(&region.pki(), HUB);
    let ca = region.pki().join(trust::CA_CERT);
    let mut seen = Vec::new();
    let mut cursor = Cursor::default();
    // Read two items per connection, then reconnect from the last cursor.
    while seen.len() < ids.len() {
        let mut inbox = Inbox::connect(&addr.to_string(), HUB, &ca, &cert, &key)
            .await
            .unwrap();
        let mut stream = inbox.subscribe(cursor, false).await.unwrap();
        for _ in 0..2 {
            let Some(item) = stream.message().await.unwrap() else {
                break;
            };
            let r = Report::decode(item.item.unwrap().report.as_slice()).unwrap();
            seen.push(r.id);
            cursor = item.next.unwrap();
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "no repeats");
    for id in &ids {
        assert!(seen.contains(id), "gap: {id}");
    }
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn operator_api_over_mtls_admits_only_listed_certificates() {
    let region = Region::new(&["county-a", "console", "county-b"]);
    let hub = region.start_hub().await;
    let mut cfg = region.node_config("county-a", hub.relay_addr.unwrap());
    cfg.operator.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.operator.allowed = vec!["console".into()];
    let node = zhibao::node::start(cfg).await.unwrap();
    let addr = node.operator_addr.unwrap().to_string();
    let ca = region.pki().join(trust::CA_CERT);

    let (cert, key) = trust::node_paths(&region.pki(), "console");
    let mut console = zhibao::client::Operator::connect_tls(&addr, "county-a", &ca, &cert, &key)
        .await
        .unwrap();
    let id = console
        .submit(Class::Emergency, "from the console", b"x".to_vec(), 0)
        .await
        .unwrap();
    let st = console.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);

    let (cert, key) = trust::node_paths(&region.pki(), "county-b");
    let mut other = zhibao::client::Operator::connect_tls(&addr, "county-a", &ca, &cert, &key)
        .await
        .unwrap();
    let err = other
        .submit(Class::Emergency, "not mine", b"x".to_vec(), 0)
        .await
        .unwrap_err();
    match err {
        zhibao::client::ClientError::Status(s) => {
            assert_eq!(s.code(), tonic::Code::PermissionDenied)
        }
        e => panic!("{e}"),
    }
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_queued_report_damaged_on_the_countys_disk_is_refused_with_an_alarm_the_next_goes_on_and_its_state_still_shows()
 {
    common::init_logs();
    let region = Region::new(&["county-dm"]);
    let hub = region.start_hub().await;
    let link = common::LinkProxy::start(hub.relay_addr.unwrap()).await;
    link.cut();
    let county = region.start_node("county-dm", link.addr).await;
    let mut op = common::operator(&county).await;
    let marker = b"damaged-on-the-disk-0123456789";
    let damaged = op
        .submit(Class::Routine, "坏道上的报告", marker.to_vec(), 0)
        .await
        .unwrap();
    let next = op
        .submit(Class::Routine, "其后的报告", b"intact".to_vec(), 0)
        .await
        .unwrap();
    // The report's bytes, in the county's log: one of them changed.
    let log = region.data("county-dm").join("store.redb.log");
    let bytes = std::fs::read(&log).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the report is in the log");
    assert!(
        bytes[at + 1..].windows(marker.len()).all(|w| w != marker),
        "once"
    );
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.write_all_at(b"#", (at + 5) as u64).unwrap();
    }

    link.restore();
    let st = op.wait_receipt(&next, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    // Ahead of it in the queue, the damaged one was never sent: refused
    // here with an alarm that names it, before the next one went.
    let alarms = common::log_lines_with(&["ALARM", "report-damaged", &damaged]);
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert!(alarms[0].contains("CRC-32"), "{}", alarms[0]);
    let inbox = common::inbox_items(&region, hub.relay_addr.unwrap()).await;
    let titles: Vec<String> = inbox
        .iter()
        .map(|s| Report::decode(s.report.as_slice()).unwrap().title)
        .collect();
    assert_eq!(titles, vec!["其后的报告".to_string()]);
    // Its state is still shown, saying the report is damaged and where;
    // the report itself is not.
    let shown = op.show(&damaged).await.unwrap();
    assert_eq!(shown.state, ItemState::Refused as i32, "{shown:?}");
    assert!(
        shown.report_damaged.contains("store.redb.log") && shown.report_damaged.contains("CRC-32"),
        "{}",
        shown.report_damaged
    );
    assert!(shown.report.is_none() && shown.body_bytes == 0);
    // Waiting on it answers the same way, not with an error.
    let waited = op.wait_receipt(&damaged, WAIT).await.unwrap();
    assert_eq!(waited.state, ItemState::Refused as i32);
    assert!(waited.report_damaged.contains("CRC-32"), "{waited:?}");
    assert_eq!(shown.title, "坏道上的报告", "the record keeps the title");
    // The listing has both, the damaged one marked, the other whole.
    let (listed, _) = op.list(false, 10).await.unwrap();
    let marked: Vec<(&str, bool)> = listed
        .iter()
        .map(|s| (s.id.as_str(), !s.report_damaged.is_empty()))
        .collect();
    assert_eq!(marked.len(), 2, "{marked:?}");
    assert!(marked.contains(&(damaged.as_str(), true)), "{marked:?}");
    assert!(marked.contains(&(next.as_str(), false)), "{marked:?}");

    // And it can still be withdrawn: the withdrawal takes the original's
    // class and title from the record.
    let withdrawal = op.withdraw(&damaged, "磁盘损坏，另行报送").await.unwrap();
    let w = op.status(&withdrawal).await.unwrap();
    assert_eq!(w.title, "撤回：坏道上的报告");
    assert_eq!(w.priority, shown.priority);

    county.shutdown(Duration::from_secs(2)).await;
    hub.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_decision_on_a_report_since_damaged_on_the_countys_disk_still_comes_down_and_is_kept() {
    use zhibao::proto::{DisposeRequest, DispositionKind, EventKind};

    let region = Region::new(&["county-dd"]);
    let hub = region.start_hub().await;
    let county = region
        .start_node("county-dd", hub.relay_addr.unwrap())
        .await;
    let mut op = common::operator(&county).await;
    let marker = b"kept-at-the-county-then-damaged";
    let id = op
        .submit(Class::BadNews, "桥梁裂缝", marker.to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&id, WAIT).await.unwrap();
    // The county's copy of the report: one byte changed in its log.
    let log = region.data("county-dd").join("store.redb.log");
    let bytes = std::fs::read(&log).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the report is in the log");
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.write_all_at(b"#", (at + 3) as u64).unwrap();
    }

    // The office decides; the decision comes down, is checked against the
    // record's digest (not the damaged bytes) and kept.
    let mut events = op.watch().await.unwrap();
    let mut desk = common::operator(&hub).await;
    desk.dispose(DisposeRequest {
        item_id: id.clone(),
        kind: DispositionKind::Instruction as i32,
        text: "请核实裂缝宽度".into(),
        answer_by_unix_ms: 0,
        staff: String::new(),
    })
    .await
    .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Disposed as i32 && e.item_id == id
    })
    .await;
    let st = op.status(&id).await.unwrap();
    assert_eq!(st.dispositions.len(), 1, "{st:?}");
    assert!(!st.report_damaged.is_empty());
    // And the link keeps working: the next report is receipted.
    let next = op
        .submit(Class::Routine, "其后", b"x".to_vec(), 0)
        .await
        .unwrap();
    let st = op.wait_receipt(&next, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);

    county.shutdown(Duration::from_secs(2)).await;
    hub.shutdown(Duration::from_secs(2)).await;
}
