//! Retention: a county prunes the report and attachments of what the hub
//! has, keeping the proof; what is not delivered is never touched; the hub
//! archives before it prunes, and the archive holds the item whole.

mod common;

use std::time::Duration;

use common::{HUB, LinkProxy, Region};
use prost::Message;
use zhibao::audit::{AuditKind, AuditRecord};
use zhibao::class::Class;
use zhibao::client::ClientError;
use zhibao::config::HubRetention;
use zhibao::node;
use zhibao::proto::{ItemState, PruneRequest, StoreStatsRequest};

const WAIT: Duration = Duration::from_secs(20);

fn refused(r: Result<impl std::fmt::Debug, ClientError>) -> (tonic::Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn drain(op: &mut zhibao::client::Operator, id: &str) -> Result<Vec<u8>, ClientError> {
    let mut stream = op.attachment(id, 0).await?;
    let mut out = Vec::new();
    while let Some(c) = stream.message().await.map_err(ClientError::from)? {
        out.extend(c.data);
    }
    Ok(out)
}

#[tokio::test]
async fn a_delivered_item_is_pruned_its_proof_stays_and_an_undelivered_one_is_kept() {
    let region = Region::new(&["county-rp", "county-rq"]);
    let mut hub_cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    hub_cfg.retention.hub = HubRetention::Keep;
    let hub = node::start(hub_cfg).await.unwrap();
    let hub_addr = hub.relay_addr.unwrap();

    let mut cfg = region.node_config("county-rp", hub_addr);
    cfg.retention.delivered_secs = 0;
    let county = node::start(cfg).await.unwrap();
    let mut op = common::operator(&county).await;
    let scan = vec![7u8; 300 * 1024];
    let id = op
        .submit_with(
            Class::BadNews,
            "河道险情",
            b"details".to_vec(),
            0,
            vec![("scan.pdf".into(), scan.clone())],
        )
        .await
        .unwrap();
    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    // Before pruning, the attachment is here.
    assert_eq!(drain(&mut op, &id).await.unwrap(), scan);

    // A county whose hub is unreachable: its item is not delivered.
    let link = LinkProxy::start(hub_addr).await;
    link.cut();
    let mut cfg = region.node_config("county-rq", link.addr);
    cfg.retention.delivered_secs = 0;
    let cut_off = node::start(cfg).await.unwrap();
    let mut op_q = common::operator(&cut_off).await;
    let queued = op_q
        .submit(Class::Routine, "还在路上", b"queued".to_vec(), 0)
        .await
        .unwrap();

    // A pass now (the scheduled one may have come first: either way the
    // item is pruned once this returns, since passes run one at a time).
    op.prune(PruneRequest {}).await.unwrap();
    let st = op.show(&id).await.unwrap();
    assert!(st.pruned_unix_ms > 0, "{st:?}");
    assert!(st.report.is_none());
    // What a person reads of it, and the proof, stay.
    assert_eq!(st.title, "河道险情");
    assert_eq!(st.origin, "county-rp");
    let receipt = st.receipt_verification.clone();
    assert!(receipt.starts_with("valid: signed by hub"), "{receipt}");
    let (code, msg) = refused(drain(&mut op, &id).await);
    assert_eq!(code, tonic::Code::FailedPrecondition);
    assert!(msg.contains("pruned"), "{msg}");

    let stats = op.store_stats(StoreStatsRequest {}).await.unwrap();
    assert_eq!(stats.pruned_items, 1, "{stats:?}");
    assert!(stats.pruned_bytes >= scan.len() as u64, "{stats:?}");
    let chunks = stats.tables.iter().find(|t| t.name == "chunks").unwrap();
    assert_eq!(chunks.entries, 0, "{stats:?}");
    assert!(stats.files.iter().any(|f| f.path.ends_with("store.redb")));
    // The log's first segment, where the reports are kept, is listed too.
    assert!(
        stats
            .files
            .iter()
            .any(|f| f.path.ends_with("store.redb.log")),
        "{:?}",
        stats.files
    );

    // The custody log says so.
    let mut log = op.audit().await.unwrap();
    let mut disposed = false;
    while let Some(batch) = log.message().await.unwrap() {
        for bytes in batch.records {
            let r = AuditRecord::decode(bytes.as_slice()).unwrap();
            disposed |= r.item_id == id && r.kind == AuditKind::Disposed as i32;
        }
    }
    assert!(disposed, "no disposal record for {id}");

    // Never what has not arrived.
    let r = op_q.prune(PruneRequest {}).await.unwrap();
    assert_eq!(r.items, 0);
    let st = op_q.show(&queued).await.unwrap();
    assert_eq!(st.pruned_unix_ms, 0);
    assert!(st.report.is_some());

    cut_off.shutdown(Duration::from_secs(2)).await;
    county.shutdown(Duration::from_secs(2)).await;
    hub.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn the_hub_archives_whole_items_before_pruning_them() {
    let region = Region::new(&["county-ra"]);
    let mut hub_cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    hub_cfg.retention.archive_secs = 0;
    let hub_toml = region.dir.path().join("hub.toml");
    std::fs::write(&hub_toml, hub_cfg.to_toml().unwrap()).unwrap();
    let hub = node::start(hub_cfg).await.unwrap();
    let mut cfg = region.node_config("county-ra", hub.relay_addr.unwrap());
    cfg.retention.delivered = zhibao::config::DeliveredRetention::Keep;
    let county = node::start(cfg).await.unwrap();
    let mut op = common::operator(&county).await;
    let scan = (0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>();
    let id = op
        .submit_with(
            Class::Routine,
            "月度小结",
            b"body".to_vec(),
            0,
            vec![("a.bin".into(), scan.clone())],
        )
        .await
        .unwrap();
    op.wait_receipt(&id, WAIT).await.unwrap();

    let mut hub_op = common::operator(&hub).await;
    hub_op
        .dispose(zhibao::proto::DisposeRequest {
            item_id: id.clone(),
            kind: zhibao::proto::DispositionKind::Instruction as i32,
            text: "请汇总报市里".into(),
            answer_by_unix_ms: 0,
            staff: String::new(),
        })
        .await
        .unwrap();
    hub_op.prune(PruneRequest {}).await.unwrap();
    let st = hub_op.show(&id).await.unwrap();
    assert!(st.pruned_unix_ms > 0, "{st:?}");
    assert_eq!(st.title, "月度小结");

    // The archive holds the signed report, still verifiable, and the
    // attachment's bytes.
    let dir = region.data(HUB).join("archive");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "zba"));
    let items = node::read_archive(&files[0]).unwrap();
    let item = items.iter().rev().find(|i| i.id == id).unwrap();
    assert_eq!(item.attachments, vec![scan.clone()]);
    let signed = zhibao::proto::SignedReport::decode(item.signed_report.as_slice()).unwrap();
    let trust = region.trust();
    let opened = zhibao::envelope::open(
        &signed,
        &trust,
        &zhibao::envelope::Limits::default(),
        std::time::SystemTime::now(),
    )
    .unwrap();
    assert_eq!(opened.report().title, "月度小结");

    // The county kept everything (retention: keep).
    let st = op.show(&id).await.unwrap();
    assert_eq!(st.pruned_unix_ms, 0);

    // The office reads it back with zhibao, the hub still running.
    let cfg = hub_toml.to_str().unwrap();
    let listed = zhibao_cli(&["store", "archive", "list", "-c", cfg, "--json"]).await;
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let line: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(line["id"], id.as_str());
    assert_eq!(line["title"], "月度小结");
    assert_eq!(line["origin"], "county-ra");
    assert_eq!(
        (line["attachments"].as_u64(), line["decisions"].as_u64()),
        (Some(1), Some(1))
    );
    let shown = zhibao_cli(&["store", "archive", "show", &id, "-c", cfg, "--lang", "zh"]).await;
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    // The checks read in Chinese, the office's language.
    for want in [
        "月度小结",
        "签名： 入库时有效：由 county-ra 签发",
        "与报送单位签名一致",
        "批示",
        "请汇总报市里",
        "[入库时有效：由 hub 签发]",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    assert!(!shown.contains("valid"), "English words in:\n{shown}");
    let shown = zhibao_cli(&["store", "archive", "show", &id, "-c", cfg, "--lang", "en"]).await;
    let shown = text(&shown.stdout);
    for want in [
        "valid: signed by county-ra, as of when stored",
        "valid: signed by hub, as of when made",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    let saved = region.dir.path().join("a.bin");
    let out = saved.to_str().unwrap();
    let fetched = zhibao_cli(&[
        "store",
        "archive",
        "show",
        &id,
        "-c",
        cfg,
        "--attachment",
        "0",
        "-o",
        out,
    ])
    .await;
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    assert_eq!(std::fs::read(&saved).unwrap(), scan);

    // A byte changed in a copy of the archive: named, and nothing shown
    // as checked from it.
    let copy = region.dir.path().join("archive-copy");
    std::fs::create_dir(&copy).unwrap();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(copy.join(files[0].file_name().unwrap()), &bytes).unwrap();
    let dir = copy.to_str().unwrap();
    let bad = zhibao_cli(&["store", "archive", "show", &id, "-c", cfg, "--dir", dir]).await;
    assert!(!bad.status.success());
    let why = text(&bad.stderr);
    assert!(why.contains("CRC-32") && why.contains("byte 0"), "{why}");

    county.shutdown(Duration::from_secs(2)).await;
    hub.shutdown(Duration::from_secs(2)).await;
}

/// `zhibao ARGS`, off the runtime the hub in this process runs on.
async fn zhibao_cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        common::zhibao(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_report_kept_after_the_rest_is_pruned_is_moved_out_of_its_log_segment_which_goes() {
    use zhibao::proto::{DisposeRequest, DispositionKind};

    let region = Region::new(&["county-rc"]);
    let mut hub_cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    hub_cfg.retention.archive_secs = 0;
    // Small segments, so a few dozen reports fill one.
    hub_cfg.limits.log_segment_bytes = 64 << 10;
    let hub = node::start(hub_cfg).await.unwrap();
    let mut cfg = region.node_config("county-rc", hub.relay_addr.unwrap());
    cfg.retention.delivered = zhibao::config::DeliveredRetention::Keep;
    let county = node::start(cfg).await.unwrap();
    let mut op = common::operator(&county).await;
    let mut desk = common::operator(&hub).await;

    // Returned for more facts: an answer is owed on it, so it is kept.
    let kept = op
        .submit(Class::BadNews, "堤坝渗水", vec![b'k'; 1024], 0)
        .await
        .unwrap();
    op.wait_receipt(&kept, WAIT).await.unwrap();
    desk.dispose(DisposeRequest {
        item_id: kept.clone(),
        kind: DispositionKind::Returned as i32,
        text: "渗水范围？".into(),
        answer_by_unix_ms: zhibao::clock::now_ms() + 3_600_000,
        staff: String::new(),
    })
    .await
    .unwrap();
    // Enough reports after it that the hub's log goes on in a new
    // segment: the one after that is made ahead once the second is half
    // full. (The hub's scheduled passes, every second here, prune and
    // compact meanwhile.)
    let first = region.data(HUB).join("store.redb.log");
    let third = region.data(HUB).join("store.redb.log.2");
    let mut n = 0;
    while !third.exists() {
        n += 1;
        assert!(n < 400, "the hub's log never went on in a new segment");
        let id = op
            .submit(Class::Routine, &format!("日报 {n}"), vec![b'r'; 1024], 0)
            .await
            .unwrap();
        op.wait_receipt(&id, WAIT).await.unwrap();
    }
    desk.prune(PruneRequest {}).await.unwrap();
    // Every other report in the first segment was pruned, and the one
    // still kept moved out of it: its file is gone.
    assert!(!first.exists(), "the first segment is deleted");
    let files = desk.store_stats(StoreStatsRequest {}).await.unwrap().files;
    assert!(
        !files.iter().any(|f| f.path.ends_with("store.redb.log")),
        "{files:?}"
    );

    // The kept report is whole, from its row now.
    let st = desk.show(&kept).await.unwrap();
    assert_eq!(st.pruned_unix_ms, 0, "{st:?}");
    let body = |st: zhibao::proto::ItemStatus| {
        let signed = st.report.expect("the report is held");
        zhibao::proto::Report::decode(signed.report.as_slice())
            .unwrap()
            .body
    };
    assert_eq!(body(st), vec![b'k'; 1024]);

    // And after a restart.
    let hub_addr = hub.relay_addr.unwrap();
    hub.shutdown(Duration::from_secs(2)).await;
    let mut hub_cfg = region.hub_config(hub_addr);
    hub_cfg.retention.archive_secs = 0;
    hub_cfg.limits.log_segment_bytes = 64 << 10;
    let hub = node::start(hub_cfg).await.unwrap();
    let mut desk = common::operator(&hub).await;
    assert_eq!(body(desk.show(&kept).await.unwrap()), vec![b'k'; 1024]);

    county.shutdown(Duration::from_secs(2)).await;
    hub.shutdown(Duration::from_secs(2)).await;
}
