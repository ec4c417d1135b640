//! Follow-ups of a report by its county: supplements (the answer to a
//! returned report, in time and late), corrections and withdrawals before
//! and after the report left, and the follow-ups that must be refused.

mod common;

use std::time::Duration;

use common::{HUB, LinkProxy, Region};
use zhibao::class::Class;
use zhibao::client::{ClientError, Operator};
use zhibao::node::RunningNode;
use zhibao::proto::{
    DisposeRequest, DispositionKind, EventKind, ItemState, LinkKind, ListRequest, SubmitRequest,
};

const WAIT: Duration = Duration::from_secs(20);

fn follow_up(link: LinkKind, to: &str, title: &str, body: &str) -> SubmitRequest {
    SubmitRequest {
        title: title.into(),
        body: body.as_bytes().to_vec(),
        link: link as i32,
        links_to: to.into(),
        ..Default::default()
    }
}

/// Submits at `op` and waits for its receipt from the hub.
async fn delivered(op: &mut Operator, title: &str) -> String {
    let id = op
        .submit(Class::BadNews, title, b"details".to_vec(), 0)
        .await
        .unwrap();
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    id
}

fn refusal(r: Result<String, ClientError>) -> (tonic::Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn hub_status(hub: &RunningNode, id: &str) -> zhibao::proto::ItemStatus {
    common::operator(hub).await.status(id).await.unwrap()
}

#[tokio::test]
async fn withdrawn_or_corrected_before_it_left_it_never_leaves() {
    let region = Region::new(&["county-w"]);
    let hub = region.start_hub().await;
    let link = LinkProxy::start(hub.relay_addr.unwrap()).await;
    link.cut();
    let county = region.start_node("county-w", link.addr).await;
    let mut op = common::operator(&county).await;
    let wrong = op
        .submit(Class::Routine, "错报", b"wrong".to_vec(), 0)
        .await
        .unwrap();
    let old = op
        .submit(Class::Routine, "初报", b"first version".to_vec(), 0)
        .await
        .unwrap();
    let withdrawal = op.withdraw(&wrong, "报错了").await.unwrap();
    let correction = op
        .submit_request(follow_up(
            LinkKind::Corrects,
            &old,
            "更正",
            "second version",
        ))
        .await
        .unwrap();
    assert_eq!(
        op.status(&wrong).await.unwrap().state,
        ItemState::Withdrawn as i32
    );
    assert_eq!(
        op.status(&old).await.unwrap().state,
        ItemState::Superseded as i32
    );
    link.restore();
    for id in [&withdrawal, &correction] {
        let st = op.wait_receipt(id, WAIT).await.unwrap();
        assert_eq!(st.state, ItemState::Receipted as i32, "{id}");
    }
    // At the hub: the withdrawal and the correction, never the originals.
    let mut desk = common::operator(&hub).await;
    let (items, _) = desk.list(false, 100).await.unwrap();
    let ids: Vec<&str> = items.iter().map(|s| s.id.as_str()).collect();
    assert!(ids.contains(&withdrawal.as_str()) && ids.contains(&correction.as_str()));
    assert!(!ids.contains(&wrong.as_str()) && !ids.contains(&old.as_str()));
    let w = desk.status(&withdrawal).await.unwrap();
    assert_eq!(w.link, LinkKind::Withdraws as i32);
    assert_eq!(w.links_to, wrong);
    assert_eq!(w.title, "撤回：错报");
    assert_eq!(
        w.priority,
        Class::Routine.to_proto() as i32,
        "the original's class"
    );
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn withdrawn_or_corrected_after_delivery_the_hub_shows_it_with_a_link() {
    let region = Region::new(&["county-x"]);
    let hub = region.start_hub().await;
    let county = region.start_node("county-x", hub.relay_addr.unwrap()).await;
    let mut op = common::operator(&county).await;
    let a = delivered(&mut op, "甲").await;
    let b = delivered(&mut op, "乙").await;
    let w = op.withdraw(&a, "重复上报").await.unwrap();
    let c = op
        .submit_request(follow_up(LinkKind::Corrects, &b, "乙（更正）", "fixed"))
        .await
        .unwrap();
    op.wait_receipt(&w, WAIT).await.unwrap();
    op.wait_receipt(&c, WAIT).await.unwrap();
    let at_hub = hub_status(&hub, &a).await;
    assert_eq!(at_hub.withdrawn_by, w);
    let at_hub = hub_status(&hub, &b).await;
    assert_eq!(at_hub.corrected_by, c);
    // The office sees the newest version first.
    let (items, _) = common::operator(&hub).await.list(false, 10).await.unwrap();
    let pos = |id: &str| items.iter().position(|s| s.id == id).unwrap();
    assert!(pos(&c) < pos(&b));
    // Open items: not the withdrawn one nor the withdrawal, oldest first.
    let (open, _) = common::operator(&hub)
        .await
        .list_where(ListRequest {
            open_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let open: Vec<&str> = open.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(open, vec![b.as_str(), c.as_str()]);
    // At the county the originals left: receipted, and marked.
    let st = op.status(&a).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    assert_eq!(st.withdrawn_by, w);
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn follow_ups_that_cannot_be_made_are_refused_with_the_reason() {
    let region = Region::new(&["county-y", "county-z"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let county = region.start_node("county-y", hub_addr).await;
    let mut op = common::operator(&county).await;

    // A correction of a correction of a withdrawn report.
    let a = delivered(&mut op, "甲").await;
    let c1 = op
        .submit_request(follow_up(LinkKind::Corrects, &a, "甲'", "v2"))
        .await
        .unwrap();
    let (code, msg) = refusal(
        op.submit_request(follow_up(LinkKind::Corrects, &a, "甲''", "v3"))
            .await,
    );
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains(&c1), "names the newer version: {msg}");
    op.withdraw(&c1, "作废").await.unwrap();
    let (code, msg) = refusal(
        op.submit_request(follow_up(LinkKind::Corrects, &c1, "甲'''", "v4"))
            .await,
    );
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("withdrawn"), "{msg}");
    let (code, _) = refusal(op.withdraw(&c1, "again").await);
    assert_eq!(code, tonic::Code::FailedPrecondition);
    // A withdrawal without a reason; a correction in another class.
    let b = delivered(&mut op, "乙").await;
    let (code, msg) = refusal(op.withdraw(&b, " ").await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    let mut other_class = follow_up(LinkKind::Corrects, &b, "乙'", "v2");
    other_class.priority = Class::Emergency.to_proto() as i32;
    let (code, msg) = refusal(op.submit_request(other_class).await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    // A supplement after the item was closed.
    let mut desk = common::operator(&hub).await;
    let mut events = op.watch().await.unwrap();
    desk.dispose(DisposeRequest {
        item_id: b.clone(),
        kind: DispositionKind::Closed as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Disposed as i32 && e.item_id == b
    })
    .await;
    let (code, msg) = refusal(
        op.submit_request(follow_up(LinkKind::Supplements, &b, "补充", "more"))
            .await,
    );
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("closed"), "{msg}");
    // An unknown report; the hub's office withdrawing a county's report.
    let unknown = zhibao::envelope::new_item_id();
    let (code, _) = refusal(op.withdraw(&unknown, "x").await);
    assert_eq!(code, tonic::Code::NotFound);
    let (code, msg) = refusal(desk.withdraw(&b, "not yours").await);
    assert_eq!(code, tonic::Code::PermissionDenied, "{msg}");

    // Another county signs a withdrawal of county-y's report: refused at the hub.
    let mut forged = common::report("county-z");
    forged.link = LinkKind::Withdraws as i32;
    forged.links_to = b.clone();
    let signed = zhibao::envelope::sign(&forged, &region.identity("county-z"));
    let mut relay = common::relay_as(&region.pki(), "county-z", &region.pki(), hub_addr).await;
    let refused = relay.deliver(signed).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(hub_status(&hub, &b).await.withdrawn_by.is_empty());

    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_returned_report_is_answered_in_time_or_reminded_when_late() {
    let region = Region::new(&["county-r"]);
    let hub = region.start_hub().await;
    let county = region.start_node("county-r", hub.relay_addr.unwrap()).await;
    let mut op = common::operator(&county).await;
    let mut desk = common::operator(&hub).await;
    let on_time = delivered(&mut op, "甲").await;
    let late = delivered(&mut op, "乙").await;
    let mut county_events = op.watch().await.unwrap();
    let mut hub_events = desk.watch().await.unwrap();
    let ret = |id: &str, in_ms: i64| DisposeRequest {
        item_id: id.into(),
        kind: DispositionKind::Returned as i32,
        text: "伤亡人数？".into(),
        answer_by_unix_ms: zhibao::clock::now_ms() + in_ms,
        staff: String::new(),
    };
    desk.dispose(ret(&on_time, 3_600_000)).await.unwrap();
    desk.dispose(ret(&late, 1_500)).await.unwrap();
    common::await_event(&mut county_events, WAIT, |e| {
        e.kind == EventKind::Disposed as i32 && e.item_id == on_time
    })
    .await;
    let answer = op
        .submit_request(follow_up(
            LinkKind::Supplements,
            &on_time,
            "补充",
            "3人受伤",
        ))
        .await
        .unwrap();
    op.wait_receipt(&answer, WAIT).await.unwrap();
    let st = hub_status(&hub, &on_time).await;
    assert_eq!(st.supplements, vec![answer.clone()]);
    assert_eq!(st.answer_by_unix_ms, 0, "answered");
    let sup = hub_status(&hub, &answer).await;
    assert_eq!(sup.priority, Class::BadNews.to_proto() as i32, "same class");

    // The late one: an alarm at the hub, a reminder at the county.
    let alarm = common::await_event(&mut hub_events, WAIT, |e| {
        e.kind == EventKind::Alarm as i32 && e.item_id == late
    })
    .await;
    assert!(alarm.message.contains("county-r"), "{}", alarm.message);
    common::await_event(&mut county_events, WAIT, |e| {
        e.kind == EventKind::Reminder as i32 && e.item_id == late
    })
    .await;
    assert!(hub_status(&hub, &late).await.answer_overdue_unix_ms > 0);
    assert_eq!(hub_status(&hub, &on_time).await.answer_overdue_unix_ms, 0);
    let _ = HUB;
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}
