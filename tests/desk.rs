//! The office's desk: decisions on reports at the hub (and at a relay's
//! office), signed, carried down county ← region ← hub, shown and verified
//! at the county; who may decide on what; decisions that wait for a
//! county or a hub that was down; operators known by uid.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{HUB, Region};
use zhibao::class::Class;
use zhibao::config::{NodeConfig, Operator, RelayListen, Role, StaffRole, UpstreamConfig};
use zhibao::node::RunningNode;
use zhibao::proto::desk_client::DeskClient;
use zhibao::proto::{DisposeRequest, DispositionKind, EventKind, ItemStatus};

const WAIT: Duration = Duration::from_secs(20);
const RELAY: &str = "region";
const COUNTY: &str = "county-d";

fn upstream(name: &str, addr: std::net::SocketAddr) -> Vec<UpstreamConfig> {
    vec![UpstreamConfig {
        node_id: name.into(),
        addr: addr.to_string(),
        role: Role::Primary,
    }]
}

fn relay_config(region: &Region, hub: std::net::SocketAddr) -> NodeConfig {
    let mut cfg = NodeConfig::for_node(RELAY, &region.pki(), &region.data(RELAY));
    cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: Vec::new(),
    });
    cfg.upstream = upstream(HUB, hub);
    cfg.limits.max_backoff_secs = 1;
    cfg
}

fn county_config(region: &Region, relay: std::net::SocketAddr) -> NodeConfig {
    let mut cfg = NodeConfig::for_node(COUNTY, &region.pki(), &region.data(COUNTY));
    cfg.upstream = upstream(RELAY, relay);
    cfg.limits.max_backoff_secs = 1;
    cfg
}

/// The uid this test runs as (the owner of a file it creates).
fn my_uid(region: &Region) -> u32 {
    let probe = region.dir.path().join("uid-probe");
    std::fs::write(&probe, b"").unwrap();
    std::fs::metadata(&probe).unwrap().uid()
}

/// A hub whose operator socket knows this test's uid as `name`.
fn hub_with_operator(region: &Region, name: &str) -> NodeConfig {
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.operators = vec![Operator {
        uid: Some(my_uid(region)),
        name: name.into(),
        role: StaffRole::Staff,
        ..Default::default()
    }];
    cfg
}

fn decide(id: &str, kind: DispositionKind, text: &str, answer_by: i64) -> DisposeRequest {
    DisposeRequest {
        item_id: id.into(),
        kind: kind as i32,
        text: text.into(),
        answer_by_unix_ms: answer_by,
        staff: String::new(),
    }
}

/// Submits at the county and waits for the final hub's delivery receipt
/// to come back down.
async fn submit_delivered(county: &RunningNode, title: &str) -> String {
    let mut op = common::operator(county).await;
    let mut events = op.watch().await.unwrap();
    let id = op
        .submit(
            Class::BadNews,
            title,
            "两个村道路中断\n详情见附件".into(),
            0,
        )
        .await
        .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == id
    })
    .await;
    id
}

/// Waits until the county holds `n` decisions on `id`; returns its status.
async fn decisions_at(node: &RunningNode, id: &str, n: usize) -> ItemStatus {
    let mut op = common::operator(node).await;
    let mut events = op.watch().await.unwrap();
    loop {
        let st = op.status(id).await.unwrap();
        if st.dispositions.len() >= n {
            return st;
        }
        common::await_event(&mut events, WAIT, |e| {
            e.kind == EventKind::Disposed as i32 && e.item_id == id
        })
        .await;
    }
}

#[tokio::test]
async fn every_kind_of_decision_reaches_the_county_signed_and_in_order() {
    let region = Region::new(&[COUNTY, RELAY]);
    let hub = zhibao::node::start(hub_with_operator(&region, "王芳"))
        .await
        .unwrap();
    let relay = zhibao::node::start(relay_config(&region, hub.relay_addr.unwrap()))
        .await
        .unwrap();
    let county = zhibao::node::start(county_config(&region, relay.relay_addr.unwrap()))
        .await
        .unwrap();
    let id = submit_delivered(&county, "某镇山体滑坡").await;

    let mut desk = common::operator(&hub).await;
    let by = zhibao::clock::now_ms() + 3_600_000;
    let kinds = [
        decide(&id, DispositionKind::Instruction, "请速核实伤亡情况", 0),
        decide(&id, DispositionKind::Returned, "道路何时可通？", by),
        decide(&id, DispositionKind::Adopted, "《情况专报》2026年第12期", 0),
        decide(&id, DispositionKind::Forwarded, "", 0),
        decide(&id, DispositionKind::NotAdopted, "与第11期重复", 0),
        decide(&id, DispositionKind::Closed, "已办结", 0),
    ];
    for (n, req) in kinds.iter().enumerate() {
        let view = desk.dispose(req.clone()).await.unwrap();
        let body = view.body.unwrap();
        assert_eq!(body.seq, n as u32 + 1);
        assert_eq!(body.node, HUB);
        assert_eq!(body.staff, "王芳", "the hub's operator known by uid");
        assert_eq!(body.origin, COUNTY);
    }
    // Closed: nothing more.
    let after = desk
        .dispose(decide(&id, DispositionKind::Instruction, "再看看", 0))
        .await
        .unwrap_err();
    assert!(after.to_string().contains("closed"), "{after}");

    let st = decisions_at(&county, &id, kinds.len()).await;
    let got: Vec<(i32, String, bool)> = st
        .dispositions
        .iter()
        .map(|d| {
            let b = d.body.as_ref().unwrap();
            (b.kind, b.text.clone(), d.verification.starts_with("valid"))
        })
        .collect();
    let want: Vec<(i32, String, bool)> = kinds
        .iter()
        .map(|r| (r.kind, r.text.clone(), true))
        .collect();
    assert_eq!(
        got, want,
        "every decision, in order, verified at the county"
    );
    assert_eq!(st.decided, DispositionKind::Closed as i32, "{st:#?}");
    assert!(st.closed_unix_ms > 0);
    assert_eq!(st.answer_by_unix_ms, 0, "closed: no answer awaited");
    // The relay has them too, and owes the county nothing more.
    let at_relay = decisions_at(&relay, &id, kinds.len()).await;
    assert_eq!(at_relay.dispositions.len(), kinds.len());

    county.shutdown(WAIT).await;
    relay.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn decisions_wait_for_a_county_and_survive_restarts() {
    let region = Region::new(&[COUNTY, RELAY]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let relay = zhibao::node::start(relay_config(&region, hub_addr))
        .await
        .unwrap();
    let relay_addr = relay.relay_addr.unwrap();
    let county = zhibao::node::start(county_config(&region, relay_addr))
        .await
        .unwrap();
    let id = submit_delivered(&county, "水库水位超汛限").await;

    // The county and the relay go down; the office decides meanwhile, and
    // the hub restarts before anyone below is back.
    county.shutdown(WAIT).await;
    relay.shutdown(WAIT).await;
    let mut desk = common::operator(&hub).await;
    desk.dispose(decide(
        &id,
        DispositionKind::Adopted,
        "《每日要情》第3期",
        0,
    ))
    .await
    .unwrap();
    drop(desk);
    hub.shutdown(WAIT).await;
    // Everything back on fresh ports (a port just freed may be taken by a
    // test running alongside).
    let hub = region.start_hub().await;
    let relay = zhibao::node::start(relay_config(&region, hub.relay_addr.unwrap()))
        .await
        .unwrap();
    let relay_addr = relay.relay_addr.unwrap();
    let county = zhibao::node::start(county_config(&region, relay_addr))
        .await
        .unwrap();
    let st = decisions_at(&county, &id, 1).await;
    let d = st.dispositions[0].body.as_ref().unwrap();
    assert_eq!(d.kind, DispositionKind::Adopted as i32);
    assert_eq!(d.text, "《每日要情》第3期");
    assert!(st.dispositions[0].verification.starts_with("valid"));

    // Restarted again: still exactly one, not applied twice.
    county.shutdown(WAIT).await;
    let county = zhibao::node::start(county_config(&region, relay_addr))
        .await
        .unwrap();
    let st = common::operator(&county).await.status(&id).await.unwrap();
    assert_eq!(st.dispositions.len(), 1);

    county.shutdown(WAIT).await;
    relay.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_relays_office_and_the_hub_both_decide_and_the_county_sees_who() {
    let region = Region::new(&[COUNTY, RELAY]);
    let hub = region.start_hub().await;
    let relay = zhibao::node::start(relay_config(&region, hub.relay_addr.unwrap()))
        .await
        .unwrap();
    let county = zhibao::node::start(county_config(&region, relay.relay_addr.unwrap()))
        .await
        .unwrap();
    let id = submit_delivered(&county, "学校食物中毒").await;
    common::operator(&relay)
        .await
        .dispose(decide(&id, DispositionKind::Adopted, "地区《信息快报》", 0))
        .await
        .unwrap();
    common::operator(&hub)
        .await
        .dispose(decide(
            &id,
            DispositionKind::Adopted,
            "自治区《情况专报》",
            0,
        ))
        .await
        .unwrap();
    let st = decisions_at(&county, &id, 2).await;
    let mut by: Vec<(String, String)> = st
        .dispositions
        .iter()
        .map(|d| {
            assert!(d.verification.starts_with("valid"), "{}", d.verification);
            let b = d.body.as_ref().unwrap();
            (b.node.clone(), b.text.clone())
        })
        .collect();
    by.sort();
    assert_eq!(
        by,
        vec![
            (HUB.to_string(), "自治区《情况专报》".to_string()),
            (RELAY.to_string(), "地区《信息快报》".to_string()),
        ]
    );
    county.shutdown(WAIT).await;
    relay.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn bad_decisions_are_refused_with_a_named_error() {
    let region = Region::new(&[COUNTY]);
    let hub = region.start_hub().await;
    let county = region.start_node(COUNTY, hub.relay_addr.unwrap()).await;
    let mut op = common::operator(&county).await;
    let id = op
        .submit(Class::Routine, "今日动态", b"text".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&id, WAIT).await.unwrap();
    let mut desk = common::operator(&hub).await;

    let code = |r: Result<_, zhibao::client::ClientError>| match r {
        Err(zhibao::client::ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let unknown = zhibao::envelope::new_item_id();
    let (c, m) = code(
        desk.dispose(decide(&unknown, DispositionKind::Closed, "", 0))
            .await,
    );
    assert_eq!(c, tonic::Code::NotFound, "{m}");
    let (c, m) = code(
        desk.dispose(decide(&id, DispositionKind::Adopted, " ", 0))
            .await,
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    assert!(m.contains("outlet"), "{m}");
    let past = zhibao::clock::now_ms() - 1;
    let (c, m) = code(
        desk.dispose(decide(&id, DispositionKind::Returned, "why?", past))
            .await,
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    let (c, m) = code(
        desk.dispose(decide(
            &id,
            99_i32.try_into().unwrap_or(DispositionKind::Unspecified),
            "x",
            0,
        ))
        .await,
    );
    assert_eq!(c, tonic::Code::InvalidArgument, "{m}");
    let long = "x".repeat(zhibao::disposition::MAX_TEXT_BYTES + 1);
    let (c, m) = code(
        desk.dispose(decide(&id, DispositionKind::Instruction, &long, 0))
            .await,
    );
    assert_eq!(c, tonic::Code::ResourceExhausted, "{m}");
    // The county's own item, at the county: not a report from below.
    let (c, m) = code(
        op.dispose(decide(&id, DispositionKind::Closed, "", 0))
            .await,
    );
    assert_eq!(c, tonic::Code::FailedPrecondition, "{m}");
    // Nothing of that was kept.
    let st = desk.status(&id).await.unwrap();
    assert!(st.dispositions.is_empty());

    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn consumers_decide_on_the_desk_service_and_counties_may_not() {
    let region = Region::new(&[COUNTY, "console"]);
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.relay.as_mut().unwrap().consumers = vec!["console".into()];
    let hub = zhibao::node::start(cfg).await.unwrap();
    let hub_addr = hub.relay_addr.unwrap();
    let county = region.start_node(COUNTY, hub_addr).await;
    let mut op = common::operator(&county).await;
    let id = op
        .submit(Class::Emergency, "化工厂泄漏", b"text".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&id, WAIT).await.unwrap();

    let desk_as = |node: &'static str| {
        let region = &region;
        async move {
            let trust = region.trust();
            let cfg =
                zhibao::tls::client_config(&region.identity(node), &trust.snapshot(), HUB).unwrap();
            DeskClient::new(common::channel_with(hub_addr, cfg).await.unwrap())
        }
    };
    let mut console = desk_as("console").await;
    let mut req = decide(&id, DispositionKind::Instruction, "立即上报省厅", 0);
    req.staff = "李主任".into();
    let view = console.dispose(req.clone()).await.unwrap().into_inner();
    assert_eq!(view.body.unwrap().staff, "李主任 (via certificate console)");

    let mut intruder = desk_as(COUNTY).await;
    let refused = intruder.dispose(req).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(
        common::eventually(WAIT, || !common::log_lines_with(&[
            "refused decision",
            COUNTY
        ])
        .is_empty())
        .await
    );
    let st = decisions_at(&county, &id, 1).await;
    assert_eq!(st.dispositions.len(), 1);

    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn operators_are_known_by_uid_and_unlisted_ones_can_be_refused() {
    let region = Region::new(&["county-u"]);
    let hub = region.start_hub().await;
    let mut cfg = region.node_config("county-u", hub.relay_addr.unwrap());
    cfg.operators = vec![Operator {
        uid: Some(my_uid(&region)),
        name: "张三".into(),
        role: StaffRole::Staff,
        ..Default::default()
    }];
    let county = zhibao::node::start(cfg.clone()).await.unwrap();
    let mut op = common::operator(&county).await;
    let id = op
        .submit(Class::Routine, "今日动态", b"text".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&id, WAIT).await.unwrap();
    let shown = op.show(&id).await.unwrap();
    let report: zhibao::proto::Report =
        prost::Message::decode(shown.report.unwrap().report.as_slice()).unwrap();
    assert_eq!(report.author, "张三", "the signed report names its author");
    drop(op);
    county.shutdown(WAIT).await;

    // Nobody listed for this uid, and unlisted users not allowed.
    cfg.operators[0].uid = cfg.operators[0].uid.map(|u| u.wrapping_add(1));
    cfg.operator.allow_unlisted = false;
    let county = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&county).await;
    let refused = op
        .submit(Class::Routine, "今日动态", b"text".to_vec(), 0)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not in [[operators]]"),
        "{refused}"
    );
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn systems_downstream_follow_the_history_and_resume_after_their_acknowledgement() {
    let region = Region::new(&[COUNTY, "archive"]);
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.relay.as_mut().unwrap().consumers = vec!["archive".into()];
    let hub = zhibao::node::start(cfg.clone()).await.unwrap();
    let hub_addr = hub.relay_addr.unwrap();
    let county = region.start_node(COUNTY, hub_addr).await;
    let mut op = common::operator(&county).await;
    let id = op
        .submit(Class::BadNews, "森林火情", b"text".to_vec(), 0)
        .await
        .unwrap();
    op.wait_receipt(&id, WAIT).await.unwrap();
    let mut desk = common::operator(&hub).await;
    desk.dispose(decide(&id, DispositionKind::Adopted, "《每日要情》", 0))
        .await
        .unwrap();

    let pki = region.pki();
    let connect = |hub_addr: std::net::SocketAddr| {
        let pki = pki.clone();
        async move {
            let (cert, key) = zhibao::trust::node_paths(&pki, "archive");
            zhibao::client::Inbox::connect(
                &hub_addr.to_string(),
                HUB,
                &pki.join(zhibao::trust::CA_CERT),
                &cert,
                &key,
            )
            .await
            .unwrap()
        }
    };
    let mut archive = connect(hub_addr).await;
    let mut history = archive.history(0, "archive-1", true).await.unwrap();
    let first = history.message().await.unwrap().unwrap();
    assert_eq!(first.seq, 1);
    let Some(zhibao::proto::history_entry::Entry::Disposition(d)) = first.entry else {
        panic!("a decision first: {first:?}");
    };
    assert_eq!(zhibao::disposition::peek(&d).unwrap().text, "《每日要情》");
    assert_eq!(archive.history_ack("archive-1", 1).await.unwrap(), 1);
    // Live: the next decision comes on the open stream.
    desk.dispose(decide(&id, DispositionKind::Closed, "", 0))
        .await
        .unwrap();
    let second = history.message().await.unwrap().unwrap();
    assert_eq!(second.seq, 2);
    drop(history);
    drop(desk);

    // After a hub restart the consumer resumes after what it acknowledged.
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
    let hub = zhibao::node::start(cfg).await.unwrap();
    let hub_addr = hub.relay_addr.unwrap();
    let mut archive = connect(hub_addr).await;
    let mut again = archive.history(0, "archive-1", false).await.unwrap();
    let next = again.message().await.unwrap().unwrap();
    assert_eq!(next.seq, 2, "resumed after the acknowledged entry");
    assert!(again.message().await.unwrap().is_none());
    // A county may not follow the office's history.
    let trust = region.trust();
    let cfg = zhibao::tls::client_config(&region.identity(COUNTY), &trust.snapshot(), HUB).unwrap();
    let mut intruder = zhibao::proto::inbox_client::InboxClient::new(
        common::channel_with(hub_addr, cfg).await.unwrap(),
    );
    let refused = intruder
        .history(zhibao::proto::HistoryRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    hub.shutdown(WAIT).await;
}
