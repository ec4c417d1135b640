//! Review before sending (把关): the director checks a report before it
//! goes up, the deputy when the director is away, and nothing waits past
//! its deadline. Real nodes on loopback; the director, deputy and a member
//! of staff are consoles on the county's mutual-TLS operator listener,
//! each known by its certificate (`[[operators]] cert = …`).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::Region;
use zhibao::class::Class;
use zhibao::client::{ClientError, Operator};
use zhibao::config::{ClassReview, NodeConfig, ReviewMode, StaffRole};
use zhibao::node::RunningNode;
use zhibao::proto::{
    EventKind, ItemState, LinkKind, ListRequest, Report, ReviewAction, ReviewOutcome,
};
use zhibao::trust;

const WAIT: Duration = Duration::from_secs(30);
const DIRECTOR: &str = "console-dir";
const DEPUTY: &str = "console-dep";
const STAFF: &str = "console-staff";

fn region(county: &str) -> Region {
    Region::new(&[county, DIRECTOR, DEPUTY, STAFF])
}

/// A county whose director (张主任), deputy (李副主任) and staff member
/// (王芳) use consoles, with `bad_news` and `emergency` reviewed as given.
fn county_config(
    region: &Region,
    county: &str,
    hub: &RunningNode,
    bad_news: ClassReview,
    emergency: ClassReview,
) -> NodeConfig {
    let mut cfg = region.node_config(county, hub.relay_addr.unwrap());
    cfg.operator.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.operator.allowed = vec![DIRECTOR.into(), DEPUTY.into(), STAFF.into()];
    cfg.operators = [
        (DIRECTOR, "张主任", StaffRole::Director),
        (DEPUTY, "李副主任", StaffRole::Deputy),
        (STAFF, "王芳", StaffRole::Staff),
    ]
    .into_iter()
    .map(|(cert, name, role)| zhibao::config::Operator {
        cert: Some(cert.into()),
        name: name.into(),
        role,
        ..Default::default()
    })
    .collect();
    cfg.review.bad_news = bad_news;
    cfg.review.emergency = emergency;
    cfg
}

fn before_send(timeout_secs: u64) -> ClassReview {
    ClassReview {
        mode: ReviewMode::BeforeSend,
        timeout_secs,
    }
}

fn after_send(timeout_secs: u64) -> ClassReview {
    ClassReview {
        mode: ReviewMode::AfterSend,
        timeout_secs,
    }
}

/// The county's operator API as the holder of certificate `who`.
async fn console(region: &Region, county: &RunningNode, who: &str) -> Operator {
    let (cert, key) = trust::node_paths(&region.pki(), who);
    let ca = region.pki().join(trust::CA_CERT);
    let addr = county.operator_addr.unwrap().to_string();
    Operator::connect_tls(&addr, &county.node_id, &ca, &cert, &key)
        .await
        .unwrap()
}

async fn zhibao(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zhibao"))
            .args(&args)
            .env("ZHIBAO_LANG", "en")
            .output()
            .expect("run zhibao")
    })
    .await
    .unwrap()
}

/// `zhibao <list…>` at `county`'s operator listener as console `who`.
fn as_console(list: &[&str], region: &Region, county: &RunningNode, who: &str) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.extend([
        "--tcp".into(),
        county.operator_addr.unwrap().to_string(),
        "--node-id".into(),
        county.node_id.clone(),
        "--certs".into(),
        region.pki().display().to_string(),
        "--as".into(),
        who.into(),
    ]);
    v
}

fn socket(list: &[&str], sock: &Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.extend(["--socket".into(), sock.display().to_string()]);
    v
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (tonic::Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Ids in the hub's store, as its office lists them.
async fn hub_ids(hub: &RunningNode) -> Vec<String> {
    let mut desk = common::operator(hub).await;
    let (items, _) = desk.list(false, 1000).await.unwrap();
    items.into_iter().map(|s| s.id).collect()
}

/// The report the hub holds under `id`, verified again here against the
/// region's CA: its review is what the county signed.
async fn verified_at_hub(region: &Region, hub: &RunningNode, id: &str) -> Report {
    let shown = common::operator(hub).await.show(id).await.unwrap();
    let signed = shown.report.unwrap();
    let opened = zhibao::envelope::open(
        &signed,
        &region.trust(),
        &zhibao::envelope::Limits::default(),
        SystemTime::now(),
    )
    .expect("the hub's copy verifies");
    assert_eq!(shown.review.as_ref(), opened.report().review.as_ref());
    opened.report().clone()
}

#[tokio::test]
async fn bad_news_waits_for_the_director_and_the_hub_sees_who_signed_it_off() {
    let region = region("county-ra");
    let hub = region.start_hub().await;
    let cfg = county_config(
        &region,
        "county-ra",
        &hub,
        before_send(120),
        ClassReview::default(),
    );
    let county = zhibao::node::start(cfg).await.unwrap();

    // The staff member submits: it gets its id, and waits, unsigned.
    let submitted = zhibao(as_console(
        &[
            "submit",
            "-p",
            "bad_news",
            "-t",
            "某镇山体滑坡",
            "--body",
            "三户受损",
        ],
        &region,
        &county,
        STAFF,
    ))
    .await;
    assert!(submitted.status.success(), "{}", err(&submitted));
    let text = out(&submitted);
    let id = text.lines().next().unwrap().trim().to_string();
    assert!(text.contains("awaiting review"), "{text}");
    let mut staff = console(&region, &county, STAFF).await;
    let st = staff.status(&id).await.unwrap();
    assert_eq!(st.state, ItemState::AwaitingReview as i32);
    assert_eq!(st.offered_to, "director");
    let listed = staff
        .list_where(ListRequest {
            state: ItemState::AwaitingReview as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.0.len(), 1, "the county's list shows it");
    assert!(!hub_ids(&hub).await.contains(&id), "nothing at the hub yet");

    // The director's list, then the approval with a note.
    let list = zhibao(as_console(
        &["review", "list", "--json"],
        &region,
        &county,
        DIRECTOR,
    ))
    .await;
    assert!(list.status.success(), "{}", err(&list));
    let row: serde_json::Value = serde_json::from_str(out(&list).lines().next().unwrap()).unwrap();
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["author"], "王芳");
    assert_eq!(row["class"], "bad_news");
    assert_eq!(row["offered_to"], "director");
    assert!(row["auto_send_unix_ms"].as_i64().unwrap() > st.created_unix_ms);
    let approved = zhibao(as_console(
        &["review", "approve", &id, "--note", "同意上报"],
        &region,
        &county,
        DIRECTOR,
    ))
    .await;
    assert!(approved.status.success(), "{}", err(&approved));
    assert!(
        out(&approved).contains("approved and sent"),
        "{}",
        out(&approved)
    );

    let st = staff.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    let report = verified_at_hub(&region, &hub, &id).await;
    let review = report.review.expect("the signed report carries the review");
    assert_eq!(review.reviewer, "张主任");
    assert_eq!(review.role, "director");
    assert_eq!(review.note, "同意上报");
    assert_eq!(review.outcome, ReviewOutcome::Approved as i32);
    assert_eq!(report.author, "王芳");
    assert_eq!(
        report.created_unix_ms, st.created_unix_ms,
        "dated at submission"
    );
    // And the office reads it so.
    let shown = zhibao(socket(&["show", &id], &hub.operator_socket)).await;
    assert!(shown.status.success(), "{}", err(&shown));
    for want in ["approved by 张主任 (director)", "同意上报"] {
        assert!(
            out(&shown).contains(want),
            "{want:?} missing from:\n{}",
            out(&shown)
        );
    }
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn with_the_director_away_the_deputy_reviews_once_it_is_offered() {
    let region = region("county-rb");
    let hub = region.start_hub().await;
    let cfg = county_config(
        &region,
        "county-rb",
        &hub,
        before_send(2),
        ClassReview::default(),
    );
    let county = zhibao::node::start(cfg).await.unwrap();
    let mut staff = console(&region, &county, STAFF).await;
    let mut deputy = console(&region, &county, DEPUTY).await;
    let mut events = staff.watch().await.unwrap();
    let id = staff
        .submit(Class::BadNews, "道路中断", b"G205 k31".to_vec(), 0)
        .await
        .unwrap();

    // Before the offer: the director's, not the deputy's.
    let (code, msg) = refusal(deputy.review(&id, ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("with the director until"), "{msg}");

    let offered = common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Review as i32
            && e.item_id == id
            && e.message.contains("offered to the deputy")
    })
    .await;
    assert!(
        offered.message.contains("goes without review"),
        "{}",
        offered.message
    );
    let listed = deputy.review_list().await.unwrap();
    assert_eq!(listed[0].offered_to, "deputy");

    let st = deputy
        .review(&id, ReviewAction::Approve, "副主任代审")
        .await
        .unwrap();
    assert_eq!(st.id, id);
    let st = staff.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    let review = verified_at_hub(&region, &hub, &id).await.review.unwrap();
    assert_eq!(review.reviewer, "李副主任");
    assert_eq!(review.role, "deputy");
    assert_eq!(review.note, "副主任代审");
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn when_nobody_reviews_it_goes_before_its_deadline_with_timed_out_signed() {
    let region = region("county-rc");
    let hub = region.start_hub().await;
    // Timeouts far longer than the 10 s deadline: the deadline decides.
    let mut cfg = county_config(
        &region,
        "county-rc",
        &hub,
        before_send(600),
        ClassReview::default(),
    );
    cfg.deadlines.bad_news_secs = 10;
    let county = zhibao::node::start(cfg.clone()).await.unwrap();
    let mut staff = console(&region, &county, STAFF).await;
    let id = staff
        .submit(Class::BadNews, "无人审核", b"text".to_vec(), 0)
        .await
        .unwrap();
    let deadline = staff.status(&id).await.unwrap().deadline_unix_ms;
    // A restart on the way changes nothing: the times are in the store.
    county.shutdown(WAIT).await;
    let county = zhibao::node::start(cfg).await.unwrap();
    let mut staff = console(&region, &county, STAFF).await;
    let mut events = staff.watch().await.unwrap();
    let alarm = common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Alarm as i32 && e.item_id == id
    })
    .await;
    assert!(
        alarm.message.contains("nobody has reviewed it"),
        "{}",
        alarm.message
    );
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Review as i32
            && e.item_id == id
            && e.message.contains("sent without review")
    })
    .await;
    let st = staff.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    let receipt = st.receipt_body.unwrap();
    assert!(receipt.on_time, "received by its deadline");
    assert!(receipt.stored_unix_ms <= deadline);
    let review = verified_at_hub(&region, &hub, &id).await.review.unwrap();
    assert_eq!(review.outcome, ReviewOutcome::TimedOut as i32);
    assert_eq!(review.note, "review timed out");
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn an_emergency_leaves_at_once_and_its_sign_off_follows_it() {
    let region = region("county-rd");
    let hub = region.start_hub().await;
    let cfg = county_config(
        &region,
        "county-rd",
        &hub,
        ClassReview::default(),
        after_send(120),
    );
    let county = zhibao::node::start(cfg).await.unwrap();
    let mut staff = console(&region, &county, STAFF).await;
    let mut director = console(&region, &county, DIRECTOR).await;
    let id = staff
        .submit(
            Class::Emergency,
            "化工厂爆炸",
            "伤亡不明".as_bytes().to_vec(),
            0,
        )
        .await
        .unwrap();
    let st = staff.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(
        st.state,
        ItemState::Receipted as i32,
        "left before any review"
    );
    assert!(hub_ids(&hub).await.contains(&id));

    let listed = director.review_list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].sign_off);
    assert_eq!(listed[0].id, id);
    let sign_off = director
        .review(&id, ReviewAction::Approve, "已核实")
        .await
        .unwrap();
    assert_ne!(sign_off.id, id, "a report of its own");
    assert_eq!(sign_off.link, LinkKind::Reviewed as i32);
    assert_eq!(sign_off.links_to, id);
    staff.wait_receipt(&sign_off.id, WAIT).await.unwrap();

    let report = verified_at_hub(&region, &hub, &sign_off.id).await;
    assert_eq!(report.priority, Class::Emergency.to_proto() as i32);
    assert_eq!(report.title, "审核: 化工厂爆炸");
    assert_eq!(report.link, LinkKind::Reviewed as i32);
    assert_eq!(report.links_to, id);
    assert_eq!(report.review.unwrap().reviewer, "张主任");
    let original = common::operator(&hub).await.status(&id).await.unwrap();
    assert_eq!(
        original.reviewed_by, sign_off.id,
        "the hub shows the sign-off on it"
    );

    let (code, msg) = refusal(director.review(&id, ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("not awaiting"), "{msg}");
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn reviews_that_cannot_be_done_are_refused_with_their_reason() {
    let region = region("county-re");
    let hub = region.start_hub().await;
    let cfg = county_config(
        &region,
        "county-re",
        &hub,
        before_send(120),
        ClassReview::default(),
    );
    let county = zhibao::node::start(cfg.clone()).await.unwrap();
    let mut staff = console(&region, &county, STAFF).await;
    let mut director = console(&region, &county, DIRECTOR).await;
    let id = staff
        .submit(Class::BadNews, "待审", b"text".to_vec(), 0)
        .await
        .unwrap();

    let (code, msg) = refusal(staff.review(&id, ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::PermissionDenied, "not a reviewer: {msg}");
    let own = director
        .submit(Class::BadNews, "主任自己写的", b"text".to_vec(), 0)
        .await
        .unwrap();
    let (code, msg) = refusal(director.review(&own, ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::PermissionDenied, "own report: {msg}");
    assert!(msg.contains("your own report"), "{msg}");
    // The reason by name and in Chinese, in the status's details, for any
    // gRPC client to read.
    let Err(ClientError::Status(s)) = director.review(&own, ReviewAction::Approve, "").await else {
        panic!("expected a refusal");
    };
    assert_eq!(
        zhibao::client::refusal_reason(&s).as_deref(),
        Some("OWN_REPORT")
    );
    assert_eq!(
        zhibao::client::refusal_in_chinese(&s).as_deref(),
        Some(format!("信息 {own} 是您本人的报告：须由另一位审核人把关").as_str())
    );
    let (code, msg) = refusal(director.review(&id, ReviewAction::Reject, "  ").await);
    assert_eq!(code, tonic::Code::InvalidArgument, "no note: {msg}");
    let unknown = zhibao::envelope::new_item_id();
    let (code, _) = refusal(director.review(&unknown, ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::NotFound);
    let (code, _) = refusal(director.review("../x", ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::InvalidArgument);
    // An emergency is not reviewed here at all.
    let emergency = staff
        .submit(Class::Emergency, "紧急", b"text".to_vec(), 0)
        .await
        .unwrap();
    let (code, msg) = refusal(director.review(&emergency, ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");

    // Returned to its author, from the command line: kept, never sent.
    let no_note = zhibao(as_console(
        &["review", "reject", &id],
        &region,
        &county,
        DIRECTOR,
    ))
    .await;
    assert!(!no_note.status.success());
    assert!(err(&no_note).contains("needs a note"), "{}", err(&no_note));
    let rejected = zhibao(as_console(
        &["review", "reject", &id, "--note", "数字需核实"],
        &region,
        &county,
        DIRECTOR,
    ))
    .await;
    assert!(rejected.status.success(), "{}", err(&rejected));
    let st = staff.status(&id).await.unwrap();
    assert_eq!(st.state, ItemState::ReturnedByReview as i32);
    assert_eq!(st.review_note, "数字需核实");
    let shown = zhibao(as_console(&["status", &id], &region, &county, STAFF)).await;
    assert!(out(&shown).contains("数字需核实"), "{}", out(&shown));
    let (code, msg) = refusal(director.review(&id, ReviewAction::Approve, "").await);
    assert_eq!(code, tonic::Code::FailedPrecondition, "{msg}");
    assert!(!hub_ids(&hub).await.contains(&id), "never sent");
    county.shutdown(WAIT).await;

    // Emergencies never wait: a configuration that says so is refused.
    let mut bad = cfg;
    bad.review.emergency = before_send(60);
    let e = zhibao::node::start(bad.clone()).await.unwrap_err();
    assert!(e.to_string().contains("review.emergency.mode"), "{e}");
    let file = region.dir.path().join("bad.toml");
    std::fs::write(&file, bad.to_toml().unwrap()).unwrap();
    let served = zhibao(vec![
        "serve".into(),
        "-c".into(),
        file.display().to_string(),
    ])
    .await;
    assert_eq!(served.status.code(), Some(64), "{}", err(&served));
    assert!(
        err(&served).contains("review.emergency.mode"),
        "{}",
        err(&served)
    );
    hub.shutdown(WAIT).await;
}
