//! Durable consumers of a hub's inbox: named, acknowledging, resumed after
//! what they acknowledged (across reconnects and hub restarts), sent again
//! what they do not acknowledge in time, held back at their bound, apart
//! from each other, and refused when they may not read or name themselves
//! badly.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{HUB, Region};
use tonic::Code;
use tonic::transport::Channel;
use zhibao::class::Class;
use zhibao::client::{ClientError, Inbox};
use zhibao::config::NodeConfig;
use zhibao::proto::relay_client::RelayClient;
use zhibao::proto::{InboxItem, Report};
use zhibao::trust::Identity;
use zhibao::{envelope, trust};

const PATIENCE: Duration = Duration::from_secs(10);

/// A hub whose inbox `analyst` and `console` may read, acknowledgement
/// wait `ack_wait_secs`, at most `max_unacked` out per consumer.
fn hub_config(
    region: &Region,
    addr: SocketAddr,
    ack_wait_secs: u64,
    max_unacked: usize,
) -> NodeConfig {
    let mut cfg = region.hub_config(addr);
    cfg.relay.as_mut().unwrap().consumers = vec!["analyst".into(), "console".into()];
    cfg.limits.inbox_ack_wait_secs = ack_wait_secs;
    cfg.limits.inbox_max_unacked = max_unacked;
    cfg
}

async fn start_hub(
    region: &Region,
    ack_wait_secs: u64,
    max_unacked: usize,
) -> zhibao::node::RunningNode {
    let cfg = hub_config(
        region,
        "127.0.0.1:0".parse().unwrap(),
        ack_wait_secs,
        max_unacked,
    );
    zhibao::node::start(cfg).await.unwrap()
}

/// County `county-a` handing reports to the hub.
struct County {
    relay: RelayClient<Channel>,
    me: Identity,
}

impl County {
    async fn connect(region: &Region, hub: SocketAddr) -> Self {
        Self {
            relay: common::relay_as(&region.pki(), "county-a", &region.pki(), hub).await,
            me: region.identity("county-a"),
        }
    }

    /// Delivers a report of `class` titled `title`; answers once it is in
    /// the hub's inbox (the hub's receipt). Returns its id.
    async fn deliver(&mut self, class: Class, title: &str) -> String {
        let report = Report {
            priority: class.to_proto() as i32,
            title: title.into(),
            ..common::report("county-a")
        };
        self.relay
            .deliver(envelope::sign(&report, &self.me))
            .await
            .unwrap();
        report.id
    }
}

/// An inbox client with `node`'s certificate.
async fn inbox_as(region: &Region, hub: SocketAddr, node: &str) -> Inbox {
    let (cert, key) = trust::node_paths(&region.pki(), node);
    let ca = region.pki().join(trust::CA_CERT);
    Inbox::connect(&hub.to_string(), HUB, &ca, &cert, &key)
        .await
        .unwrap()
}

/// What a consumer is sent: (title, id, deliveries).
type Got = (String, String, u32);

fn got(item: InboxItem) -> Got {
    let signed = item.item.expect("an item");
    let report: Report = prost::Message::decode(signed.report.as_slice()).unwrap();
    (report.title, report.id, item.deliveries)
}

/// The next item on `stream`, waited for at most [`PATIENCE`].
async fn next(stream: &mut tonic::Streaming<InboxItem>) -> Got {
    let item = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("an item in time")
        .expect("the stream goes on")
        .expect("the stream is open");
    got(item)
}

/// Everything a subscription without follow sends, to its end.
async fn backlog(inbox: &mut Inbox, name: &str) -> Vec<Got> {
    let mut stream = inbox.subscribe_as(name, false).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the backlog in time")
        .unwrap()
    {
        out.push(got(item));
    }
    out
}

fn titles(items: &[Got]) -> Vec<&str> {
    items.iter().map(|(t, _, _)| t.as_str()).collect()
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> (Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_consumer_that_reconnects_gets_exactly_what_it_did_not_acknowledge_then_new_items() {
    let region = Region::new(&["county-a", "analyst"]);
    let hub = start_hub(&region, 30, 256).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    for t in ["r0", "r1", "r2", "r3"] {
        county.deliver(Class::Routine, t).await;
    }

    let mut inbox = inbox_as(&region, addr, "analyst").await;
    let mut stream = inbox.subscribe_as("desk", true).await.unwrap();
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(next(&mut stream).await);
    }
    assert_eq!(titles(&first), ["r0", "r1", "r2", "r3"]);
    assert!(first.iter().all(|(_, _, d)| *d == 1), "{first:?}");
    let acked = inbox
        .ack("desk", vec![first[0].1.clone(), first[2].1.clone()])
        .await
        .unwrap();
    assert_eq!(acked.pending, 2);
    assert!(acked.unknown.is_empty());
    drop(stream);
    drop(inbox);

    // Reconnected: the two not acknowledged, sent a second time, then new.
    let mut inbox = inbox_as(&region, addr, "analyst").await;
    let mut stream = inbox.subscribe_as("desk", true).await.unwrap();
    let again = [next(&mut stream).await, next(&mut stream).await];
    assert_eq!(titles(&again), ["r1", "r3"]);
    assert!(again.iter().all(|(_, _, d)| *d == 2), "{again:?}");
    county.deliver(Class::Routine, "r4").await;
    let new = next(&mut stream).await;
    assert_eq!((new.0.as_str(), new.2), ("r4", 1));

    let ids = vec![again[0].1.clone(), again[1].1.clone(), new.1.clone()];
    assert_eq!(inbox.ack("desk", ids).await.unwrap().pending, 0);
    let mut other = inbox_as(&region, addr, "analyst").await;
    assert!(
        backlog(&mut other, "desk").await.is_empty(),
        "all acknowledged: nothing comes again"
    );
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn what_a_consumer_acknowledged_survives_a_hub_restart() {
    let region = Region::new(&["county-a", "analyst"]);
    let hub = start_hub(&region, 30, 256).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    for t in ["a", "b", "c"] {
        county.deliver(Class::BadNews, t).await;
    }
    let mut inbox = inbox_as(&region, addr, "analyst").await;
    let mut stream = inbox.subscribe_as("desk", true).await.unwrap();
    let sent = [
        next(&mut stream).await,
        next(&mut stream).await,
        next(&mut stream).await,
    ];
    assert_eq!(titles(&sent), ["a", "b", "c"]);
    // Sent, then the hub stops before anything is acknowledged but "b".
    inbox.ack("desk", vec![sent[1].1.clone()]).await.unwrap();
    drop((stream, inbox, county));
    hub.shutdown(PATIENCE).await;

    let hub = zhibao::node::start(hub_config(&region, addr, 30, 256))
        .await
        .unwrap();
    let mut inbox = inbox_as(&region, addr, "analyst").await;
    let listed = inbox.consumers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].pending,
            listed[0].connected
        ),
        ("desk", 2, false)
    );
    let left = backlog(&mut inbox, "desk").await;
    assert_eq!(titles(&left), ["a", "c"]);
    assert!(
        left.iter().all(|(_, _, d)| *d == 1),
        "counts start again with the hub: {left:?}"
    );
    // An acknowledgement after the restart, of an item sent before it.
    let acked = inbox.ack("desk", vec![sent[0].1.clone()]).await.unwrap();
    assert_eq!(acked.pending, 1);
    assert_eq!(titles(&backlog(&mut inbox, "desk").await), ["c"]);
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn an_item_not_acknowledged_in_time_comes_again_on_the_same_stream_and_the_bound_holds_back_more()
 {
    let region = Region::new(&["county-a", "analyst"]);
    // One second to acknowledge; two items out at most.
    let hub = start_hub(&region, 1, 2).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    for t in ["r1", "r2", "r3"] {
        county.deliver(Class::Routine, t).await;
    }
    let mut inbox = inbox_as(&region, addr, "analyst").await;
    let mut stream = inbox.subscribe_as("desk", true).await.unwrap();
    let r1 = next(&mut stream).await;
    let r2 = next(&mut stream).await;
    assert_eq!(
        (r1.0.as_str(), r1.2, r2.0.as_str(), r2.2),
        ("r1", 1, "r2", 1)
    );

    // Neither acknowledged: r3 is held back (two are out), and after the
    // wait r1 comes again on this stream, the second time.
    let again = next(&mut stream).await;
    assert_eq!((again.0.as_str(), again.2), ("r1", 2));
    assert_eq!(again.1, r1.1);
    let again = next(&mut stream).await;
    assert_eq!((again.0.as_str(), again.2), ("r2", 2));

    // An acknowledgement frees a slot: r3 comes, the first time.
    inbox.ack("desk", vec![r1.1.clone()]).await.unwrap();
    let r3 = next(&mut stream).await;
    assert_eq!((r3.0.as_str(), r3.2), ("r3", 1));
    inbox
        .ack("desk", vec![r2.1.clone(), r3.1.clone()])
        .await
        .unwrap();
    county.deliver(Class::Routine, "r4").await;
    let r4 = next(&mut stream).await;
    assert_eq!(
        (r4.0.as_str(), r4.2),
        ("r4", 1),
        "what was acknowledged is not sent again"
    );
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn an_item_damaged_on_the_hubs_disk_after_it_was_sent_is_passed_over_not_sent_again() {
    let region = Region::new(&["county-a", "analyst"]);
    // One second to acknowledge; two items out at most.
    let hub = start_hub(&region, 1, 2).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    let marker = "sent-whole-then-damaged-0123456789";
    county.deliver(Class::Routine, marker).await;
    county.deliver(Class::Routine, "r2").await;
    let mut inbox = inbox_as(&region, addr, "analyst").await;
    let mut stream = inbox.subscribe_as("desk", true).await.unwrap();
    let r1 = next(&mut stream).await;
    let r2 = next(&mut stream).await;
    assert_eq!((r1.0.as_str(), r2.0.as_str()), (marker, "r2"));

    // Neither acknowledged; the first report's bytes change on the disk.
    let log = region.data(HUB).join("store.redb.log");
    let bytes = std::fs::read(&log).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the report is in the log");
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.write_all_at(b"#", (at + 4) as u64).unwrap();
    }
    // After the wait, the stream goes on: r2 comes again, the damaged one
    // does not, and its slot is free for what comes next.
    let again = next(&mut stream).await;
    assert_eq!((again.0.as_str(), again.2), ("r2", 2));
    inbox.ack("desk", vec![r2.1.clone()]).await.unwrap();
    county.deliver(Class::Routine, "r3").await;
    let r3 = next(&mut stream).await;
    assert_eq!((r3.0.as_str(), r3.2), ("r3", 1));
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn consumers_are_apart_by_name_and_by_certificate_and_a_newer_subscription_takes_over() {
    let region = Region::new(&["county-a", "analyst", "console"]);
    let hub = start_hub(&region, 30, 256).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    county.deliver(Class::Routine, "x").await;
    county.deliver(Class::Routine, "y").await;

    let mut analyst = inbox_as(&region, addr, "analyst").await;
    let mut desk = analyst.subscribe_as("desk", true).await.unwrap();
    let x = next(&mut desk).await;
    let y = next(&mut desk).await;
    analyst.ack("desk", vec![x.1, y.1]).await.unwrap();

    // Another name of the same certificate, and the same name of another
    // certificate, have acknowledged nothing.
    assert_eq!(titles(&backlog(&mut analyst, "audit").await), ["x", "y"]);
    let mut console = inbox_as(&region, addr, "console").await;
    assert_eq!(titles(&backlog(&mut console, "desk").await), ["x", "y"]);
    let (c, _) = code(console.ack("nobody", vec![]).await);
    assert_eq!(c, Code::NotFound, "console has no consumer \"nobody\"");

    let mut listed = analyst.consumers().await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let listed: Vec<_> = listed
        .iter()
        .map(|c| (c.name.as_str(), c.pending, c.connected))
        .collect();
    assert_eq!(listed, [("audit", 2, false), ("desk", 0, true)]);

    // The same name again takes over: the older stream ends with ABORTED.
    let mut newer = inbox_as(&region, addr, "analyst").await;
    assert!(backlog(&mut newer, "desk").await.is_empty());
    let ended = tokio::time::timeout(PATIENCE, desk.message())
        .await
        .expect("the older stream ends");
    assert_eq!(ended.unwrap_err().code(), Code::Aborted);
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn counties_bad_names_and_too_many_consumers_are_refused() {
    let region = Region::new(&["county-a", "analyst"]);
    let hub = start_hub(&region, 30, 256).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    let id = county.deliver(Class::Routine, "x").await;

    let mut reader = inbox_as(&region, addr, "county-a").await;
    let (c, _) = code(reader.subscribe_as("desk", false).await);
    assert_eq!(c, Code::PermissionDenied);
    let (c, _) = code(reader.ack("desk", vec![id.clone()]).await);
    assert_eq!(c, Code::PermissionDenied);
    assert!(!common::log_lines_with(&["refused inbox access", "county-a"]).is_empty());

    let mut inbox = inbox_as(&region, addr, "analyst").await;
    for bad in ["a b", "名", "a/b", &"n".repeat(65)] {
        let (c, msg) = code(inbox.subscribe_as(bad, false).await);
        assert_eq!(c, Code::InvalidArgument, "{bad:?}: {msg}");
        let (c, _) = code(inbox.ack(bad, vec![]).await);
        assert_eq!(c, Code::InvalidArgument, "{bad:?}");
    }
    assert!(
        !common::log_lines_with(&["refused durable inbox subscription", "peer=analyst"]).is_empty()
    );
    let (c, _) = code(inbox.ack("desk", vec![id.clone()]).await);
    assert_eq!(c, Code::NotFound, "no consumer \"desk\" yet");
    assert_eq!(backlog(&mut inbox, "desk").await.len(), 1);
    let (c, _) = code(inbox.ack("desk", vec!["not an id".into()]).await);
    assert_eq!(c, Code::InvalidArgument);
    let (c, msg) = code(inbox.ack("desk", vec![id.clone(); 1025]).await);
    assert_eq!(c, Code::ResourceExhausted, "{msg}");
    let ok = inbox
        .ack("desk", vec![id, zhibao::envelope::new_item_id()])
        .await
        .unwrap();
    assert_eq!(
        (ok.pending, ok.unknown.len()),
        (0, 1),
        "an unknown id is ignored"
    );

    // 64 consumers per certificate; "desk" is one.
    for i in 1..64 {
        backlog(&mut inbox, &format!("c{i}")).await;
    }
    let (c, msg) = code(inbox.subscribe_as("one-more", false).await);
    assert_eq!(c, Code::ResourceExhausted);
    assert!(msg.contains("64"), "{msg}");
    backlog(&mut inbox, "c1").await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn among_unacknowledged_items_emergencies_come_first() {
    let region = Region::new(&["county-a", "analyst"]);
    let hub = start_hub(&region, 30, 256).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    for t in ["r1", "r2", "r3"] {
        county.deliver(Class::Routine, t).await;
    }
    let mut inbox = inbox_as(&region, addr, "analyst").await;
    let first = backlog(&mut inbox, "desk").await;
    assert_eq!(titles(&first), ["r1", "r2", "r3"]);
    inbox.ack("desk", vec![first[1].1.clone()]).await.unwrap();

    // Newer, more urgent items overtake the routine ones not acknowledged.
    county.deliver(Class::BadNews, "b1").await;
    county.deliver(Class::Emergency, "e1").await;
    let mut stream = inbox.subscribe_as("desk", true).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut stream).await);
    }
    assert_eq!(titles(&got), ["e1", "b1", "r1", "r3"]);
    let deliveries: Vec<u32> = got.iter().map(|(_, _, d)| *d).collect();
    assert_eq!(deliveries, [1, 1, 2, 2]);

    // All acknowledged; on the open stream a new emergency comes at once.
    let ids = got.iter().map(|(_, id, _)| id.clone()).collect();
    inbox.ack("desk", ids).await.unwrap();
    county.deliver(Class::Emergency, "e2").await;
    assert_eq!(next(&mut stream).await.0, "e2");
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn the_cli_acknowledges_each_item_once_printed() {
    let region = Region::new(&["county-a", "analyst"]);
    let hub = start_hub(&region, 30, 256).await;
    let addr = hub.relay_addr.unwrap();
    let mut county = County::connect(&region, addr).await;
    county.deliver(Class::Routine, "r1").await;
    county.deliver(Class::Emergency, "e1").await;
    let read = || {
        let (addr, pki) = (addr.to_string(), region.pki());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_zhibao"))
                .args(["inbox", "--hub", &addr, "--certs"])
                .arg(&pki)
                .args(["--as", "analyst", "--consumer", "desk"])
                .env_remove("ZHIBAO_LANG")
                .env_remove("LC_ALL")
                .env_remove("LANG")
                .output()
                .unwrap()
        })
    };
    let out = read().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("\te1\t") && lines[1].contains("\tr1\t"),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.ends_with("deliveries=1")), "{text}");

    let out = read().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "printed, so acknowledged: not again");
    let mut inbox = inbox_as(&region, addr, "analyst").await;
    assert_eq!(inbox.consumers().await.unwrap()[0].pending, 0);
    hub.shutdown(PATIENCE).await;
}
