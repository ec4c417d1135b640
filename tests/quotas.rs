//! Every peer bounded: a child's partial uploads are held to a quota of how
//! many and how many bytes, refused with RESOURCE_EXHAUSTED naming the
//! quota; abandoned ones are reclaimed; every limit holds at every door.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{HUB, Region};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use zhibao::config::NodeConfig;
use zhibao::envelope;
use zhibao::proto::{
    AttachmentRef, Chunk, ForwardRequest, ForwardResponse, Report, SignedReport, forward_request,
    forward_response,
};

const PATIENCE: Duration = Duration::from_secs(15);
const CHUNK: u32 = 64 * 1024;

fn hub_config(region: &Region) -> NodeConfig {
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.limits.max_attachment_bytes = 256 * 1024;
    cfg.limits.max_uploads_per_peer = 2;
    cfg.limits.max_upload_bytes_per_peer = 400 * 1024;
    cfg.limits.upload_idle_secs = 1;
    cfg
}

/// A report from county-a naming one attachment of `size` bytes.
fn with_attachment(region: &Region, size: u64) -> SignedReport {
    let report = Report {
        attachments: vec![AttachmentRef {
            name: "scan.tif".into(),
            size,
            sha256: vec![0; 32],
            chunk_size: CHUNK,
        }],
        ..common::report("county-a")
    };
    envelope::sign(&report, &region.identity("county-a"))
}

/// A `Forward` stream to the hub as county-a.
async fn stream(
    region: &Region,
    addr: SocketAddr,
) -> (
    mpsc::Sender<ForwardRequest>,
    tonic::Streaming<ForwardResponse>,
) {
    let mut client = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;
    let (tx, rx) = mpsc::channel(16);
    let responses = client
        .forward(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, responses)
}

async fn send(tx: &mpsc::Sender<ForwardRequest>, kind: forward_request::Kind) {
    tx.send(ForwardRequest { kind: Some(kind) }).await.unwrap();
}

/// The next answer to what was sent (the CRL the hub pushes unasked is
/// passed over).
async fn answer(responses: &mut tonic::Streaming<ForwardResponse>) -> forward_response::Result {
    loop {
        let result = tokio::time::timeout(PATIENCE, responses.message())
            .await
            .expect("an answer in time")
            .unwrap()
            .unwrap()
            .result
            .unwrap();
        if !matches!(result, forward_response::Result::Crl(_)) {
            return result;
        }
    }
}

#[tokio::test]
async fn uploads_over_the_count_quota_are_refused_naming_it() {
    let region = Region::new(&["county-a"]);
    let hub = zhibao::node::start(hub_config(&region)).await.unwrap();
    let (tx, mut responses) = stream(&region, hub.relay_addr.unwrap()).await;
    for _ in 0..2 {
        let item = with_attachment(&region, 100 * 1024);
        send(&tx, forward_request::Kind::Item(item)).await;
        let got = answer(&mut responses).await;
        assert!(
            matches!(got, forward_response::Result::Need(ref n) if n.next == 0),
            "{got:?}"
        );
    }
    // The first two left partial uploads on disk (one chunk each).
    let third = with_attachment(&region, 100 * 1024);
    send(&tx, forward_request::Kind::Item(third)).await;
    let got = answer(&mut responses).await;
    let forward_response::Result::Refusal(r) = got else {
        panic!("{got:?}");
    };
    assert_eq!(r.code, tonic::Code::ResourceExhausted as i32, "{r:?}");
    assert!(r.message.contains("limits.max_uploads_per_peer"), "{r:?}");
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn uploads_over_the_byte_quota_are_refused_naming_it() {
    let region = Region::new(&["county-a"]);
    let hub = zhibao::node::start(hub_config(&region)).await.unwrap();
    let (tx, mut responses) = stream(&region, hub.relay_addr.unwrap()).await;
    let big = with_attachment(&region, 256 * 1024);
    send(&tx, forward_request::Kind::Item(big)).await;
    assert!(matches!(
        answer(&mut responses).await,
        forward_response::Result::Need(_)
    ));
    // 256 KiB announced, 400 KiB allowed: another 256 KiB does not fit.
    let more = with_attachment(&region, 256 * 1024);
    send(&tx, forward_request::Kind::Item(more)).await;
    let got = answer(&mut responses).await;
    let forward_response::Result::Refusal(r) = got else {
        panic!("{got:?}");
    };
    assert_eq!(r.code, tonic::Code::ResourceExhausted as i32, "{r:?}");
    assert!(
        r.message.contains("limits.max_upload_bytes_per_peer"),
        "{r:?}"
    );
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn an_abandoned_upload_is_reclaimed_and_starts_again_from_nothing() {
    let region = Region::new(&["county-a"]);
    let hub = zhibao::node::start(hub_config(&region)).await.unwrap();
    let addr = hub.relay_addr.unwrap();
    let item = with_attachment(&region, 3 * u64::from(CHUNK));
    let id = envelope::claimed_id(&item).unwrap();
    {
        let (tx, mut responses) = stream(&region, addr).await;
        send(&tx, forward_request::Kind::Item(item.clone())).await;
        answer(&mut responses).await;
        for index in 0..2 {
            let chunk = Chunk {
                item_id: id.clone(),
                attachment: 0,
                index,
                data: vec![7; CHUNK as usize],
            };
            send(&tx, forward_request::Kind::Chunk(chunk)).await;
            let got = answer(&mut responses).await;
            assert!(
                matches!(got, forward_response::Result::Need(ref n) if n.next == index + 1),
                "{got:?}"
            );
        }
    } // The child goes away with two chunks of three stored.
    assert!(
        common::eventually(PATIENCE, || {
            !common::log_lines_with(&["reclaimed an abandoned partial upload", &id]).is_empty()
        })
        .await,
        "the abandoned upload was not reclaimed"
    );
    let (tx, mut responses) = stream(&region, addr).await;
    send(&tx, forward_request::Kind::Item(item)).await;
    let got = answer(&mut responses).await;
    assert!(
        matches!(got, forward_response::Result::Need(ref n) if n.next == 0),
        "its chunks are gone: {got:?}"
    );
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn the_title_limit_holds_at_the_relay_too() {
    let region = Region::new(&["county-a"]);
    let hub = zhibao::node::start(hub_config(&region)).await.unwrap();
    let mut client = common::relay_as(
        &region.pki(),
        "county-a",
        &region.pki(),
        hub.relay_addr.unwrap(),
    )
    .await;
    let report = Report {
        title: "t".repeat(900 * 1024),
        ..common::report("county-a")
    };
    let err = client
        .deliver(envelope::sign(&report, &region.identity("county-a")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("limits.max_title_bytes"), "{err}");
    assert!(
        common::inbox_items(&region, hub.relay_addr.unwrap())
            .await
            .is_empty()
    );
    let _ = HUB;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn reports_dated_far_ahead_or_far_back_are_refused_at_the_relay() {
    let region = Region::new(&["county-a"]);
    let hub = zhibao::node::start(hub_config(&region)).await.unwrap();
    let mut client = common::relay_as(
        &region.pki(),
        "county-a",
        &region.pki(),
        hub.relay_addr.unwrap(),
    )
    .await;
    let now = zhibao::clock::now_ms();
    let year = 365 * 86_400_000;
    for (created, says) in [
        (now + year, "limits.max_clock_skew_secs"),
        (now + 10 * 60_000, "limits.max_clock_skew_secs"),
        (i64::MAX, "limits.max_clock_skew_secs"),
        (now - year, "limits.max_report_age_days"),
        (0, "limits.max_report_age_days"),
        (i64::MIN, "limits.max_report_age_days"),
    ] {
        let report = Report {
            created_unix_ms: created,
            ..common::report("county-a")
        };
        let err = client
            .deliver(envelope::sign(&report, &region.identity("county-a")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{created}: {err}");
        assert!(err.message().contains(says), "{created}: {err}");
    }
    // Within the skew: taken.
    let report = Report {
        created_unix_ms: now + 60_000,
        ..common::report("county-a")
    };
    client
        .deliver(envelope::sign(&report, &region.identity("county-a")))
        .await
        .unwrap();
    assert_eq!(
        common::inbox_items(&region, hub.relay_addr.unwrap())
            .await
            .len(),
        1
    );
    hub.shutdown(PATIENCE).await;
}
