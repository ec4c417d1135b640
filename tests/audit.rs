//! The custody log is tamper-evident: a node logs what it accepted,
//! forwarded and got receipts for, signs checkpoints of the log's head, and
//! `zhibao audit verify` checks the whole chain — and names the first bad
//! record when one is altered, deleted or moved.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::Region;
use common::{stderr, zhibao};
use prost::Message;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use zhibao::audit::{AuditKind, AuditRecord};
use zhibao::class::Class;

const PATIENCE: Duration = Duration::from_secs(20);
const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");

/// The stored log: (seq key, encoded record).
type Rows = Vec<(u64, Vec<u8>)>;

fn verify(config: &Path, data_dir: Option<&Path>) -> Output {
    let config = config.to_str().unwrap();
    let mut args = vec!["audit", "verify", "-c", config];
    if let Some(d) = data_dir {
        args.extend(["--data-dir", d.to_str().unwrap()]);
    }
    zhibao(&args)
}

/// Rewrites the county's stored log with `change` (the node is stopped).
fn tamper(store: &Path, change: impl FnOnce(&mut Rows)) {
    let db = redb::Database::create(store).unwrap();
    let mut rows: Rows = {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(AUDIT).unwrap();
        table
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect()
    };
    change(&mut rows);
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(AUDIT).unwrap();
        table.retain(|_, _| false).unwrap();
        for (k, v) in &rows {
            table.insert(*k, v.as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

fn decode(bytes: &[u8]) -> AuditRecord {
    AuditRecord::decode(bytes).unwrap()
}

#[tokio::test]
async fn the_custody_log_verifies_and_any_tampering_is_named() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let mut cfg = region.node_config("county-a", hub.relay_addr.unwrap());
    cfg.limits.audit_checkpoint_secs = 1;
    let config: PathBuf = region.dir.path().join("county-a.toml");
    std::fs::write(&config, cfg.to_toml().unwrap()).unwrap();
    let store = cfg.data_dir.join("store.redb");
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    for n in 0..5 {
        let id = op
            .submit(Class::Routine, &format!("item {n}"), b"x".to_vec(), 0)
            .await
            .unwrap();
        op.wait_receipt(&id, PATIENCE).await.unwrap();
    }
    // Wait until a checkpoint covers the log (one a second while it grows).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let config_ = config.clone();
    loop {
        let out = tokio::task::spawn_blocking({
            let config = config_.clone();
            move || verify(&config, None)
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{}{}", text, stderr(&out));
        if text.contains("signed checkpoints") && !text.contains(" 0 signed checkpoints") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.shutdown(PATIENCE).await;
    hub.shutdown(PATIENCE).await;

    // What was logged: accepted from the operator, forwarded, receipted.
    let data = store.parent().unwrap().to_path_buf();
    let mut original = Vec::new();
    tamper(&store, |rows| original = rows.clone());
    let kinds: Vec<i32> = original.iter().map(|(_, v)| decode(v).kind).collect();
    for kind in [
        AuditKind::Accepted,
        AuditKind::Forwarded,
        AuditKind::Receipted,
    ] {
        assert!(kinds.contains(&(kind as i32)), "{kind:?} not logged");
    }
    let out = verify(&config, Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));

    // Each case starts again from the log as the node wrote it.
    let case = |change: &dyn Fn(&mut Rows)| {
        tamper(&store, |rows| {
            rows.clone_from(&original);
            change(rows);
        });
        let out = verify(&config, Some(&data));
        assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
        stderr(&out)
    };
    // Altered: the record after it no longer links.
    let said = case(&|rows| {
        let mut r = decode(&rows[3].1);
        r.detail = "rewritten".into();
        rows[3].1 = r.encode_to_vec();
    });
    assert!(said.contains("record 4:"), "{said}");
    // Deleted: a gap where it was.
    let said = case(&|rows| {
        rows.remove(2);
    });
    assert!(
        said.contains("record 2:") && said.contains("missing"),
        "{said}"
    );
    // Reordered: two records swapped in place.
    let said = case(&|rows| {
        let (a, b) = (rows[5].1.clone(), rows[6].1.clone());
        rows[5].1 = b;
        rows[6].1 = a;
    });
    assert!(
        said.contains("record 6:") && said.contains("out of order"),
        "{said}"
    );
    // Put back as written, it verifies again.
    tamper(&store, |rows| rows.clone_from(&original));
    let out = verify(&config, Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
}
