//! Solicitations (约稿): published at the hub, carried down through a
//! relay to the counties they ask (also to one that comes online later),
//! answered on time, late and not at all, with the hub's per-county status,
//! its alarms and the county's reminder; extended and withdrawn; and the
//! answers that must be refused.

mod common;

use std::time::Duration;

use common::{HUB, Region};
use zhibao::class::Class;
use zhibao::client::{ClientError, Operator};
use zhibao::config::{NodeConfig, RelayListen, Role, UpstreamConfig};
use zhibao::node::RunningNode;
use zhibao::proto::{
    EventKind, NoticesRequest, SolicitRequest, SubmitRequest, solicit_request::Action,
};

const WAIT: Duration = Duration::from_secs(20);
const RELAY: &str = "region-s";

fn upstream(name: &str, addr: std::net::SocketAddr) -> Vec<UpstreamConfig> {
    vec![UpstreamConfig {
        node_id: name.into(),
        addr: addr.to_string(),
        role: Role::Primary,
    }]
}

/// A county (or relay) below `parent`, taking notices from the hub.
fn below(region: &Region, name: &str, parent: &str, addr: std::net::SocketAddr) -> NodeConfig {
    let mut cfg = region.node_config(name, addr);
    cfg.upstream = upstream(parent, addr);
    cfg.office.publishers = vec![HUB.into()];
    cfg
}

async fn start_relay(region: &Region, hub: &RunningNode) -> RunningNode {
    let mut cfg = below(region, RELAY, HUB, hub.relay_addr.unwrap());
    cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: Vec::new(),
    });
    zhibao::node::start(cfg).await.unwrap()
}

async fn start_county(region: &Region, name: &str, relay: &RunningNode) -> RunningNode {
    let cfg = below(region, name, RELAY, relay.relay_addr.unwrap());
    zhibao::node::start(cfg).await.unwrap()
}

fn answer(sol: &str, title: &str) -> SubmitRequest {
    SubmitRequest {
        title: title.into(),
        body: "本县情况如下".as_bytes().to_vec(),
        answers: sol.into(),
        ..Default::default()
    }
}

fn refusal(r: Result<String, ClientError>) -> (tonic::Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn publish(desk: &mut Operator, topic: &str, due_ms: i64, counties: &[&str]) -> String {
    let view = desk
        .solicit(SolicitRequest {
            action: Action::Publish as i32,
            topic: topic.into(),
            text: "请各县报送".into(),
            deadline_unix_ms: due_ms,
            priority: Class::Routine.to_proto() as i32,
            counties: counties.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(view.verification, "verified");
    view.body.unwrap().id
}

#[tokio::test]
async fn a_solicitation_through_a_relay_answered_on_time_late_and_not_at_all() {
    let (a, b, c) = ("county-s1", "county-s2", "county-s3");
    let region = Region::new(&[RELAY, a, b, c]);
    let hub = region.start_hub().await;
    let relay = start_relay(&region, &hub).await;
    let county_a = start_county(&region, a, &relay).await;
    let county_b = start_county(&region, b, &relay).await;
    let mut desk = common::operator(&hub).await;
    let mut hub_events = desk.watch().await.unwrap();
    let mut a_events = common::operator(&county_a).await.watch().await.unwrap();
    let mut b_events = common::operator(&county_b).await.watch().await.unwrap();

    let due = zhibao::clock::now_ms() + 6_000;
    let sol = publish(&mut desk, "秋汛防御情况", due, &[a, b, c]).await;
    for events in [&mut a_events, &mut b_events] {
        let e = common::await_event(events, WAIT, |e| {
            e.kind == EventKind::Solicitation as i32 && e.item_id == sol
        })
        .await;
        assert!(e.message.contains("秋汛防御情况"), "{}", e.message);
    }
    // The relay keeps it too, and shows it as not for itself.
    let at_relay = common::operator(&relay)
        .await
        .notices(NoticesRequest {
            id: sol.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(at_relay.len(), 1);
    assert!(!at_relay[0].for_us);
    assert_eq!(at_relay[0].verification, "verified");

    // County A answers at once, in the class the solicitation asks for.
    let mut op_a = common::operator(&county_a).await;
    let on_time = op_a.submit_request(answer(&sol, "甲县秋汛")).await.unwrap();
    let st = op_a.status(&on_time).await.unwrap();
    assert_eq!(st.priority, Class::Routine.to_proto() as i32);
    assert_eq!(st.answers, sol);
    common::await_event(&mut a_events, WAIT, |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == on_time
    })
    .await;
    let listed = op_a
        .notices(NoticesRequest {
            solicitations_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].for_us);
    assert_eq!(listed[0].answered_by, vec![on_time.clone()]);

    // County C comes online only now: the open solicitation reaches it.
    let county_c = start_county(&region, c, &relay).await;
    let mut c_events = common::operator(&county_c).await.watch().await.unwrap();
    let mut op_c = common::operator(&county_c).await;
    let got = tokio::time::timeout(WAIT, async {
        loop {
            let n = op_c.notices(NoticesRequest::default()).await.unwrap();
            if !n.is_empty() {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the open solicitation reaches a county that comes online late");
    assert_eq!(got[0].body.as_ref().unwrap().id, sol);

    // The deadline passes: an alarm at the hub for each county that has
    // not answered (B and C), a reminder at C.
    let e = common::await_event(&mut hub_events, WAIT, |e| {
        e.kind == EventKind::Alarm as i32 && e.item_id == sol
    })
    .await;
    assert!(
        e.message.contains(b) && e.message.contains(c) && !e.message.contains(a),
        "{}",
        e.message
    );
    common::await_event(&mut c_events, WAIT, |e| {
        e.kind == EventKind::Reminder as i32 && e.item_id == sol
    })
    .await;

    // B answers late.
    let mut op_b = common::operator(&county_b).await;
    let late = op_b.submit_request(answer(&sol, "乙县秋汛")).await.unwrap();
    common::await_event(&mut b_events, WAIT, |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == late
    })
    .await;

    let status = desk.solicitation_status(&sol).await.unwrap();
    let state = |county: &str| {
        status
            .counties
            .iter()
            .find(|r| r.county == county)
            .map(|r| (r.state.clone(), r.item_id.clone()))
            .unwrap()
    };
    assert_eq!(state(a), ("on_time".to_string(), on_time));
    assert_eq!(state(b), ("late".to_string(), late));
    assert_eq!(state(c), ("missing".to_string(), String::new()));

    for n in [county_a, county_b, county_c, relay, hub] {
        n.shutdown(WAIT).await;
    }
}

#[tokio::test]
async fn extended_withdrawn_and_answers_that_are_refused() {
    let (a, b) = ("county-s4", "county-s5");
    let region = Region::new(&[RELAY, a, b]);
    let hub = region.start_hub().await;
    let relay = start_relay(&region, &hub).await;
    let county_a = start_county(&region, a, &relay).await;
    let mut desk = common::operator(&hub).await;
    let mut events = common::operator(&county_a).await.watch().await.unwrap();
    let mut op = common::operator(&county_a).await;
    let due = zhibao::clock::now_ms() + 3_600_000;

    // Not addressed to A.
    let for_b = publish(&mut desk, "只问乙县", due, &[b]).await;
    // To every county, then extended, then withdrawn.
    let all = publish(&mut desk, "全区情况", due, &[]).await;
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Solicitation as i32 && e.item_id == all
    })
    .await;
    let later = due + 86_400_000;
    let v2 = desk
        .solicit(SolicitRequest {
            action: Action::Extend as i32,
            id: all.clone(),
            deadline_unix_ms: later,
            note: "延期一天".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(v2.body.as_ref().unwrap().version, 2);
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Solicitation as i32
            && e.item_id == all
            && e.message.contains("延期一天")
    })
    .await;
    let mine = op
        .notices(NoticesRequest {
            id: all.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = mine[0].body.clone().unwrap();
    assert_eq!(body.version, 2);
    match body.body {
        Some(zhibao::proto::notice::Body::Solicitation(s)) => {
            assert_eq!(s.deadline_unix_ms, later);
        }
        other => panic!("not a solicitation: {other:?}"),
    }

    // Refused answers: unknown, not addressed, malformed.
    let (code, msg) = refusal(
        op.submit_request(answer("SOL-00000000000000ff", "无此约稿"))
            .await,
    );
    assert_eq!(code, tonic::Code::NotFound, "{msg}");
    let (code, msg) = refusal(op.submit_request(answer(&for_b, "不是问我")).await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("not addressed"), "{msg}");
    let (code, msg) = refusal(op.submit_request(answer("SOL-nonsense", "乱填")).await);
    assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");

    // Withdrawn: no answer is taken any more.
    desk.solicit(SolicitRequest {
        action: Action::Withdraw as i32,
        id: all.clone(),
        note: "不再需要".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Solicitation as i32
            && e.item_id == all
            && e.message.contains("withdrawn")
    })
    .await;
    let (code, msg) = refusal(op.submit_request(answer(&all, "已撤回")).await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("withdrawn"), "{msg}");
    // A withdrawn one cannot change again; an extension must be later.
    let again = desk
        .solicit(SolicitRequest {
            action: Action::Extend as i32,
            id: all.clone(),
            deadline_unix_ms: later + 1,
            ..Default::default()
        })
        .await;
    assert!(
        matches!(again, Err(ClientError::Status(s)) if s.code() == tonic::Code::FailedPrecondition)
    );
    let earlier = desk
        .solicit(SolicitRequest {
            action: Action::Extend as i32,
            id: for_b.clone(),
            deadline_unix_ms: due - 1,
            ..Default::default()
        })
        .await;
    assert!(
        matches!(earlier, Err(ClientError::Status(s)) if s.code() == tonic::Code::InvalidArgument)
    );
    // Only a node with counties below it publishes.
    let (code, _) = match op
        .solicit(SolicitRequest {
            action: Action::Publish as i32,
            topic: "县里也想约稿".into(),
            deadline_unix_ms: due,
            priority: Class::Routine.to_proto() as i32,
            ..Default::default()
        })
        .await
    {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("{other:?}"),
    };
    assert_eq!(code, tonic::Code::FailedPrecondition);

    for n in [county_a, relay, hub] {
        n.shutdown(WAIT).await;
    }
}
