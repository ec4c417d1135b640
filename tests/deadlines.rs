//! Time limits that hold: deadlines, overdue alarms, escalation to other
//! routes, emergencies on every route, over a link the test can cut.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{HUB, LinkProxy, Region};
use prost::Message;
use zhibao::class::Class;
use zhibao::config::{NodeConfig, Role, UpstreamConfig};
use zhibao::proto::{EventKind, ItemState, Receipt, Report};

const WAIT: Duration = Duration::from_secs(20);
const ALT: &str = "hub-b";

fn route(name: &str, addr: SocketAddr, role: Role) -> UpstreamConfig {
    UpstreamConfig {
        node_id: name.into(),
        addr: addr.to_string(),
        role,
    }
}

fn county(region: &Region, routes: Vec<UpstreamConfig>) -> NodeConfig {
    let mut cfg = NodeConfig::for_node("county-a", &region.pki(), &region.data("county-a"));
    cfg.upstream = routes;
    cfg.limits.max_backoff_secs = 1;
    cfg
}

async fn ids_in(region: &Region, hub: &str, addr: SocketAddr) -> Vec<String> {
    common::named_inbox_items(region, hub, addr)
        .await
        .iter()
        .map(|s| Report::decode(s.report.as_slice()).unwrap().id)
        .collect()
}

#[tokio::test]
async fn emergency_goes_on_every_route_and_keeps_every_receipt() {
    let region = Region::new(&["county-a", ALT]);
    let hub = region.start_hub().await;
    let alt = region.start_named_hub(ALT).await;
    let (hub_addr, alt_addr) = (hub.relay_addr.unwrap(), alt.relay_addr.unwrap());
    let node = zhibao::node::start(county(
        &region,
        vec![
            route(HUB, hub_addr, Role::Primary),
            route(ALT, alt_addr, Role::Alternate),
        ],
    ))
    .await
    .unwrap();
    let mut op = common::operator(&node).await;
    let emergency = op
        .submit(Class::Emergency, "dam breach", b"now".to_vec(), 0)
        .await
        .unwrap();
    let routine = op
        .submit(Class::Routine, "daily", b"ok".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&emergency, WAIT).await.unwrap();
    op.wait_receipt(&routine, WAIT).await.unwrap();

    // The emergency's second route may still be on its way: wait for it.
    let mut st = op.status(&emergency).await.unwrap();
    let mut events = op.watch().await.unwrap();
    st = if st.route_receipts.len() < 2 {
        let _ = tokio::time::timeout(WAIT, async {
            while op.status(&emergency).await.unwrap().route_receipts.len() < 2 {
                let _ = events.message().await;
            }
        })
        .await;
        op.status(&emergency).await.unwrap()
    } else {
        st
    };
    let routes: Vec<&str> = st.route_receipts.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(st.route_receipts.len(), 2, "{routes:?}");
    assert!(routes.contains(&HUB) && routes.contains(&ALT), "{routes:?}");
    assert!(
        st.route_receipts
            .iter()
            .all(|r| r.verification.starts_with("valid"))
    );

    assert!(ids_in(&region, HUB, hub_addr).await.contains(&emergency));
    assert!(ids_in(&region, ALT, alt_addr).await.contains(&emergency));
    // Routine news takes the primary route only.
    assert!(ids_in(&region, HUB, hub_addr).await.contains(&routine));
    assert!(!ids_in(&region, ALT, alt_addr).await.contains(&routine));
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
    alt.shutdown(WAIT).await;
}

#[tokio::test]
async fn overdue_item_raises_an_alarm_is_listed_and_still_delivered() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let link = LinkProxy::start(hub_addr).await;
    link.cut();
    let mut cfg = county(&region, vec![route(HUB, link.addr, Role::Primary)]);
    cfg.deadlines.bad_news_secs = 1;
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    let mut events = op.watch().await.unwrap();

    let id = op
        .submit(Class::BadNews, "landslide", b"road blocked".to_vec(), 0)
        .await
        .unwrap();
    let e = common::await_event(&mut events, WAIT, |e| e.kind == EventKind::Overdue as i32).await;
    assert_eq!(e.item_id, id);
    assert!(!common::log_lines_with(&["ALARM", "overdue", &id]).is_empty());
    let (overdue, total) = op.list(true, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(total, 1, "the overdue counter");
    assert_eq!(overdue[0].id, id);
    assert!(overdue[0].overdue_unix_ms > 0);

    // Never dropped: when the link returns, it is delivered, marked late.
    link.restore();
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    let receipt = Receipt::decode(st.receipt.unwrap().receipt.as_slice()).unwrap();
    assert!(!receipt.on_time, "a receipt after the deadline says so");
    assert_eq!(
        op.list(true, 10).await.unwrap().0.len(),
        1,
        "still listed as having been overdue"
    );
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn cut_primary_link_escalates_to_the_alternate_and_nothing_arrives_twice() {
    let region = Region::new(&["county-a", ALT]);
    let hub = region.start_hub().await;
    let alt = region.start_named_hub(ALT).await;
    let (hub_addr, alt_addr) = (hub.relay_addr.unwrap(), alt.relay_addr.unwrap());
    let link = LinkProxy::start(hub_addr).await;
    let mut cfg = county(
        &region,
        vec![
            route(HUB, link.addr, Role::Primary),
            route(ALT, alt_addr, Role::Alternate),
        ],
    );
    cfg.deadlines.bad_news_secs = 2;
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    let mut events = op.watch().await.unwrap();

    // The link works at first.
    let before = op
        .submit(Class::BadNews, "before the cut", b"x".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&before, WAIT).await.unwrap();

    link.cut();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::RouteDown as i32 && e.route == HUB
    })
    .await;
    let id = op
        .submit(Class::BadNews, "bridge down", b"east span".to_vec(), 0)
        .await
        .unwrap();
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    let receipt = Receipt::decode(st.receipt.unwrap().receipt.as_slice()).unwrap();
    assert_eq!(
        receipt.receiver, ALT,
        "receipted through the alternate route"
    );
    assert!(st.escalated_unix_ms > 0);

    // The link returns; the primary gets new items, and not the settled one.
    link.restore();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::RouteUp as i32 && e.route == HUB
    })
    .await;
    let after = op
        .submit(Class::BadNews, "after the cut", b"y".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&after, WAIT).await.unwrap();
    let primary = ids_in(&region, HUB, hub_addr).await;
    let alternate = ids_in(&region, ALT, alt_addr).await;
    for inbox in [&primary, &alternate] {
        let mut sorted = inbox.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            inbox.len(),
            "an item arrived twice in one inbox"
        );
    }
    assert!(alternate.contains(&id));
    assert!(
        !primary.contains(&id),
        "settled before the link returned; not sent again"
    );
    assert!(primary.contains(&before) && primary.contains(&after));
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
    alt.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_silently_dead_link_is_found_by_keepalive_and_the_emergency_goes_through() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let link = LinkProxy::start(hub.relay_addr.unwrap()).await;
    let mut cfg = county(&region, vec![route(HUB, link.addr, Role::Primary)]);
    cfg.limits.keepalive_secs = 1;
    cfg.limits.keepalive_timeout_secs = 1;
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    let mut events = op.watch().await.unwrap();
    let before = op
        .submit(Class::Routine, "before", b"x".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&before, WAIT).await.unwrap();

    // The open connection now swallows everything, both ways, without
    // closing; only keepalive can tell. A new connection would get through.
    link.stall();
    let stalled = std::time::Instant::now();
    let id = op
        .submit(Class::Emergency, "levee breach", b"now".to_vec(), 0)
        .await
        .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::RouteDown as i32 && e.route == HUB
    })
    .await;
    let found = stalled.elapsed();
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    let receipted = stalled.elapsed();
    assert_eq!(st.state, ItemState::Receipted as i32);
    eprintln!("dead link found after {found:?}; emergency receipted after {receipted:?}");
    // Pings every second, one second to answer: found in about two, not
    // in TCP's own time (minutes). The bound is loose for a busy machine.
    assert!(found < Duration::from_secs(8), "found after {found:?}");
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn escalation_resumes_after_a_restart() {
    let region = Region::new(&["county-a", ALT]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let link = LinkProxy::start(hub_addr).await;
    link.cut();
    let alt_addr: SocketAddr = {
        // The alternate is down too at first: the item is escalated, not delivered.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = county(
        &region,
        vec![
            route(HUB, link.addr, Role::Primary),
            route(ALT, alt_addr, Role::Alternate),
        ],
    );
    cfg.deadlines.bad_news_secs = 1;
    let node = zhibao::node::start(cfg.clone()).await.unwrap();
    let mut op = common::operator(&node).await;
    let mut events = op.watch().await.unwrap();
    let id = op
        .submit(Class::BadNews, "flood", b"rising".to_vec(), 0)
        .await
        .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Overdue as i32 && e.item_id == id
    })
    .await;
    let st = op.status(&id).await.unwrap();
    assert!(
        st.pending_routes.contains(&ALT.to_string()),
        "{:?}",
        st.pending_routes
    );
    drop(events);
    drop(op);
    node.shutdown(WAIT).await;

    // Restarted, with the alternate now up: the escalation carries on from the store.
    let alt = zhibao::node::start(region.named_hub_config(ALT, alt_addr))
        .await
        .unwrap();
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    let receipt = Receipt::decode(st.receipt.unwrap().receipt.as_slice()).unwrap();
    assert_eq!(receipt.receiver, ALT);
    node.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
    alt.shutdown(WAIT).await;
}

#[tokio::test]
async fn bad_submissions_get_clear_errors_and_nothing_is_stored() {
    let region = Region::new(&["county-a"]);
    let mut cfg = NodeConfig::for_node("county-a", &region.pki(), &region.data("county-a"));
    cfg.limits.max_attachment_bytes = 100 * 1024;
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    let code = |e: zhibao::client::ClientError| match e {
        zhibao::client::ClientError::Status(s) => (s.code(), s.message().to_string()),
        other => panic!("{other}"),
    };

    let past = zhibao::clock::now_ms() - 1000;
    let (c, m) = code(
        op.submit(Class::BadNews, "late", b"x".to_vec(), past)
            .await
            .unwrap_err(),
    );
    assert_eq!(c, tonic::Code::InvalidArgument);
    assert!(m.contains("deadline is in the past"), "{m}");

    let big = vec![("scan".to_string(), vec![0u8; 100 * 1024 + 1])];
    let (c, m) = code(
        op.submit_with(Class::Routine, "scan", b"x".to_vec(), 0, big)
            .await
            .unwrap_err(),
    );
    assert_eq!(c, tonic::Code::ResourceExhausted);
    assert!(m.contains("limits.max_attachment_bytes"), "{m}");

    let (c, _) = code(
        op.submit(Class::Routine, "   ", b"x".to_vec(), 0)
            .await
            .unwrap_err(),
    );
    assert_eq!(c, tonic::Code::InvalidArgument);
    assert!(
        op.list(false, 10).await.unwrap().0.is_empty(),
        "nothing refused was stored"
    );
    node.shutdown(WAIT).await;
}
