//! Deadlines measure arrival at the final hub: a relay's custody is
//! progress, not arrival. An item stuck at the region past its deadline is
//! overdue at the county and at the region, shown as "in custody at region",
//! and listed as late at the hub when it finally arrives.

mod common;

use std::time::Duration;

use common::{HUB, LinkProxy, Region};
use zhibao::config::{NodeConfig, RelayListen, Role, UpstreamConfig};
use zhibao::proto::{EventKind, ItemState, SubmitRequest};

const WAIT: Duration = Duration::from_secs(20);
const RELAY: &str = "region-h";
const COUNTY: &str = "county-h";

fn upstream(name: &str, addr: std::net::SocketAddr) -> Vec<UpstreamConfig> {
    vec![UpstreamConfig {
        node_id: name.into(),
        addr: addr.to_string(),
        role: Role::Primary,
    }]
}

#[tokio::test]
async fn an_item_held_at_the_region_is_overdue_below_and_late_at_the_hub() {
    let region = Region::new(&[COUNTY, RELAY]);
    let hub = region.start_hub().await;
    let link = LinkProxy::start(hub.relay_addr.unwrap()).await;
    link.cut();
    let mut relay_cfg = NodeConfig::for_node(RELAY, &region.pki(), &region.data(RELAY));
    relay_cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: Vec::new(),
    });
    relay_cfg.upstream = upstream(HUB, link.addr);
    relay_cfg.limits.max_backoff_secs = 1;
    let relay = zhibao::node::start(relay_cfg).await.unwrap();
    let mut county_cfg = NodeConfig::for_node(COUNTY, &region.pki(), &region.data(COUNTY));
    county_cfg.upstream = upstream(RELAY, relay.relay_addr.unwrap());
    let county = zhibao::node::start(county_cfg).await.unwrap();

    let mut op = common::operator(&county).await;
    let mut county_events = op.watch().await.unwrap();
    let mut relay_events = common::operator(&relay).await.watch().await.unwrap();
    let id = op
        .submit_request(SubmitRequest {
            priority: zhibao::class::Class::BadNews.to_proto() as i32,
            title: "尾矿库渗漏".into(),
            body: b"details".to_vec(),
            deadline_unix_ms: zhibao::clock::now_ms() + 1_500,
            ..Default::default()
        })
        .await
        .unwrap();
    // Custody at the region: progress, not arrival.
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    assert!(st.delivery.is_none());
    let overdue = common::await_event(&mut county_events, WAIT, |e| {
        e.kind == EventKind::Overdue as i32 && e.item_id == id
    })
    .await;
    assert!(
        overdue.message.contains("in custody at region-h"),
        "{}",
        overdue.message
    );
    common::await_event(&mut relay_events, WAIT, |e| {
        e.kind == EventKind::Overdue as i32 && e.item_id == id
    })
    .await;
    let (late, _) = op.list(true, 10).await.unwrap();
    assert_eq!(late.len(), 1, "overdue at the county");

    // The link comes back: delivered, late, and the hub lists it so.
    link.restore();
    common::await_event(&mut county_events, WAIT, |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == id
    })
    .await;
    let st = op.status(&id).await.unwrap();
    let d = st.delivery.unwrap().receipt_body.unwrap();
    assert!(!d.on_time, "the hub's receipt says late");
    let (at_hub, total) = common::operator(&hub).await.list(true, 10).await.unwrap();
    assert_eq!(at_hub.len(), 1);
    assert_eq!(at_hub[0].id, id);
    assert_eq!(total, 1);

    county.shutdown(WAIT).await;
    relay.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn the_hub_sees_an_item_held_at_the_region_before_it_arrives() {
    use common::Shape;
    let region = Region::new(&["county-n", "region-n"]);
    let hub = region.start_hub().await;
    // A slow link from the region up: a 1 MiB scan takes seconds.
    let link = LinkProxy::shaped(
        hub.relay_addr.unwrap(),
        Shape {
            bits_per_sec: Some(2_000_000),
            latency: Duration::ZERO,
        },
    )
    .await;
    let mut relay_cfg = NodeConfig::for_node("region-n", &region.pki(), &region.data("region-n"));
    relay_cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: Vec::new(),
    });
    relay_cfg.upstream = upstream(HUB, link.addr);
    let relay = zhibao::node::start(relay_cfg).await.unwrap();
    let mut county_cfg = NodeConfig::for_node("county-n", &region.pki(), &region.data("county-n"));
    county_cfg.upstream = upstream("region-n", relay.relay_addr.unwrap());
    let county = zhibao::node::start(county_cfg).await.unwrap();

    let mut op = common::operator(&county).await;
    let mut county_events = op.watch().await.unwrap();
    let mut hub_op = common::operator(&hub).await;
    let scan: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let id = op
        .submit_request(SubmitRequest {
            priority: zhibao::class::Class::BadNews.to_proto() as i32,
            title: "堤坝裂缝".into(),
            body: b"see the scan".to_vec(),
            deadline_unix_ms: zhibao::clock::now_ms() + 1_000,
            attachments: vec![zhibao::proto::Attachment {
                name: "scan.pdf".into(),
                data: scan,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    // The region holds it past the deadline: the hub hears of it first.
    let mut hub_events = hub_op.watch().await.unwrap();
    let held = loop {
        let (items, _) = hub_op.list(true, 10).await.unwrap();
        if let Some(h) = items.into_iter().find(|s| s.id == id) {
            break h;
        }
        // Woken by whatever the hub does next (the notice, or the item).
        let _ = tokio::time::timeout(WAIT, hub_events.message()).await;
    };
    assert_eq!(held.state, ItemState::HeldBelow as i32, "{held:?}");
    // Told by the region itself, or by the county that handed it over.
    // (Under load the county may not have finished handing it over by the
    // deadline, and it is then the county that holds it.)
    assert!(
        held.held_at.starts_with("region-n") || held.held_at.starts_with("county-n"),
        "{}",
        held.held_at
    );
    assert_eq!(held.origin, "county-n");
    // Systems following the office's history see the notice too.
    let (cert, key) = zhibao::trust::node_paths(&region.pki(), HUB);
    let mut inbox = zhibao::client::Inbox::connect(
        &hub.relay_addr.unwrap().to_string(),
        HUB,
        &region.pki().join(zhibao::trust::CA_CERT),
        &cert,
        &key,
    )
    .await
    .unwrap();
    let mut history = inbox.history(0, "", false).await.unwrap();
    let entry = history.message().await.unwrap().unwrap();
    let Some(zhibao::proto::history_entry::Entry::Held(notice)) = entry.entry else {
        panic!("a held notice: {entry:?}");
    };
    assert_eq!(zhibao::held::peek(&notice).unwrap().item_id, id);
    // When the item arrives the notice is gone; the item is listed late.
    common::await_event(&mut county_events, Duration::from_secs(60), |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == id
    })
    .await;
    let (items, _) = hub_op.list(true, 10).await.unwrap();
    let listed: Vec<_> = items.iter().filter(|s| s.id == id).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ItemState::Delivered as i32);
    county.shutdown(WAIT).await;
    relay.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}
