//! A tree of relays: county → region → top hub. Custody at every hop, the
//! delivery receipt back down to the origin, and a relay that tampers
//! caught at the top.

mod common;

use std::time::{Duration, SystemTime};

use common::{HUB, Region};
use prost::Message;
use zhibao::class::Class;
use zhibao::config::{NodeConfig, RelayListen, Role, UpstreamConfig};
use zhibao::envelope;
use zhibao::proto::{EventKind, HopStatement, ItemState, ReceiptKind, Report};

const WAIT: Duration = Duration::from_secs(20);
const RELAY: &str = "region";

fn upstream(name: &str, addr: std::net::SocketAddr) -> Vec<UpstreamConfig> {
    vec![UpstreamConfig {
        node_id: name.into(),
        addr: addr.to_string(),
        role: Role::Primary,
    }]
}

#[tokio::test]
async fn custody_at_each_hop_and_delivery_back_down_to_the_origin() {
    let region = Region::new(&["county-a", RELAY]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let mut relay_cfg = NodeConfig::for_node(RELAY, &region.pki(), &region.data(RELAY));
    relay_cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: Vec::new(),
    });
    relay_cfg.upstream = upstream(HUB, hub_addr);
    let relay = zhibao::node::start(relay_cfg).await.unwrap();
    let county = zhibao::node::start({
        let mut c = NodeConfig::for_node("county-a", &region.pki(), &region.data("county-a"));
        c.upstream = upstream(RELAY, relay.relay_addr.unwrap());
        c
    })
    .await
    .unwrap();

    let mut op = common::operator(&county).await;
    let mut events = op.watch().await.unwrap();
    let id = op
        .submit(Class::BadNews, "mine collapse", b"3 trapped".to_vec(), 0)
        .await
        .unwrap();
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    let custody = st.receipt_body.unwrap();
    assert_eq!(custody.receiver, RELAY);
    assert_eq!(custody.kind, ReceiptKind::Custody as i32);

    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == id
    })
    .await;
    let st = op.status(&id).await.unwrap();
    let delivery = st.delivery.expect("delivery receipt at the origin");
    assert_eq!(delivery.route, HUB);
    assert_eq!(
        delivery.receipt_body.unwrap().kind,
        ReceiptKind::Delivery as i32
    );
    assert!(
        delivery.verification.starts_with("valid"),
        "{}",
        delivery.verification
    );

    // The top hub has the origin's signature and the relay's countersigned hop.
    let items = common::inbox_items(&region, hub_addr).await;
    assert_eq!(items.len(), 1);
    let signed = &items[0];
    let verified = envelope::open(
        signed,
        &region.trust(),
        &Default::default(),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(verified.report().origin, "county-a");
    assert_eq!(verified.holder(), RELAY);
    assert_eq!(signed.hops.len(), 1);
    let hop = HopStatement::decode(signed.hops[0].statement.as_slice()).unwrap();
    assert_eq!(
        (hop.relay.as_str(), hop.received_from.as_str()),
        (RELAY, "county-a")
    );

    county.shutdown(WAIT).await;
    relay.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

fn report() -> Report {
    Report {
        id: envelope::new_item_id(),
        origin: "county-a".into(),
        priority: Class::Emergency.to_proto() as i32,
        title: "flood".into(),
        body: b"water over the levee".to_vec(),
        created_unix_ms: zhibao::clock::now_ms(),
        deadline_unix_ms: zhibao::clock::now_ms() + 60_000,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_relay_that_tampers_is_caught_at_the_top() {
    let region = Region::new(&["county-a", RELAY]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let county = region.identity("county-a");
    let relay = region.identity(RELAY);
    let mut as_relay = common::relay_as(&region.pki(), RELAY, &region.pki(), addr).await;

    // A changed byte in the report: the origin's signature fails.
    let mut signed = envelope::sign(&report(), &county);
    signed.report[5] ^= 1;
    envelope::hops::add(&mut signed, &relay, "county-a", zhibao::clock::now_ms());
    let err = as_relay.deliver(signed).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // A changed hop: the relay's own countersignature fails.
    let mut signed = envelope::sign(&report(), &county);
    envelope::hops::add(&mut signed, &relay, "county-a", zhibao::clock::now_ms());
    let last = signed.hops[0].statement.len() - 1;
    signed.hops[0].statement[last] ^= 1;
    let err = as_relay.deliver(signed).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("custody chain"), "{}", err.message());

    // A hop that lies about where the item came from.
    let mut signed = envelope::sign(&report(), &county);
    envelope::hops::add(&mut signed, &relay, "county-b", zhibao::clock::now_ms());
    let err = as_relay.deliver(signed).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // No hop at all: the relay hands over an item its chain says it never held.
    let err = as_relay
        .deliver(envelope::sign(&report(), &county))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // An honest hop is accepted.
    let mut signed = envelope::sign(&report(), &county);
    envelope::hops::add(&mut signed, &relay, "county-a", zhibao::clock::now_ms());
    as_relay.deliver(signed).await.unwrap();
    assert_eq!(common::inbox_items(&region, addr).await.len(), 1);
    hub.shutdown(WAIT).await;
}
