//! `zhibao audit verify`: reads a node's custody log — from the running
//! node, or from a stopped node's store — and checks it here, against the
//! region CA from the node's configuration: the verifier trusts nothing the
//! node says about its own log.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use prost::Message;
use zhibao::audit::{self, AuditRecord, SignedCheckpoint};
use zhibao::config::NodeConfig;
use zhibao::store::Store;
use zhibao::trust::Trust;

use super::LogBroken;
use super::args::Target;

/// Records read per request from a stopped node's store.
const BATCH: usize = 4096;

/// Verifies the log of the node `target` names; exits 0 if it holds.
pub(crate) async fn verify(target: &Target, data_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = NodeConfig::load(&target.config)
        .context("the node's configuration names its CA and node id")?;
    let trust = Trust::load(&cfg.tls.ca, None)?;
    let (records, checkpoints) = match data_dir {
        Some(dir) => from_store(&dir.join("store.redb")).await?,
        None => from_node(target).await?,
    };
    let broken = |why: String| LogBroken {
        node: cfg.node_id.clone(),
        why,
    };
    let mut decoded = Vec::with_capacity(records.len());
    for (i, bytes) in records.iter().enumerate() {
        let record = AuditRecord::decode(bytes.as_slice()).map_err(|e| {
            let after = decoded.last().map_or_else(
                || "at the start".to_string(),
                |r: &AuditRecord| format!("after record {}", r.seq),
            );
            broken(format!("stored record #{i} ({after}) does not decode: {e}"))
        })?;
        decoded.push(record);
    }
    let checkpoints = checkpoints
        .iter()
        .map(|b| SignedCheckpoint::decode(b.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| broken(format!("a stored checkpoint does not decode: {e}")))?;
    let ok = audit::verify(
        decoded,
        &checkpoints,
        &trust,
        &cfg.node_id,
        SystemTime::now(),
    )
    .map_err(|e| broken(e.to_string()))?;
    println!(
        "custody log of {} verified: {} records ({}..{}), {} signed checkpoints; the last {} records are covered by links only until the next checkpoint",
        cfg.node_id,
        ok.records,
        ok.first_seq.map_or_else(|| "-".into(), |s| s.to_string()),
        ok.last_seq.map_or_else(|| "-".into(), |s| s.to_string()),
        ok.checkpoints_checked,
        ok.unsigned_tail
    );
    Ok(ExitCode::SUCCESS)
}

/// Every record and checkpoint, from a stopped node's store.
async fn from_store(path: &Path) -> anyhow::Result<(Vec<Vec<u8>>, Vec<Vec<u8>>)> {
    let store = Store::open(path)
        .with_context(|| format!("{}: open the store of a stopped node", path.display()))?;
    let mut records = Vec::new();
    loop {
        let batch = store.audit_records(records.len() as u64, BATCH).await?;
        let last = batch.len() < BATCH;
        records.extend(batch);
        if last {
            break;
        }
    }
    let checkpoints = store.audit_checkpoints().await?;
    store.close().await;
    Ok((records, checkpoints))
}

/// Every record and checkpoint, from the running node.
async fn from_node(target: &Target) -> anyhow::Result<(Vec<Vec<u8>>, Vec<Vec<u8>>)> {
    let mut op = target.connect().await?;
    let mut stream = op.audit().await?;
    let (mut records, mut checkpoints) = (Vec::new(), Vec::new());
    while let Some(batch) = stream
        .message()
        .await
        .map_err(zhibao::client::ClientError::from)?
    {
        records.extend(batch.records);
        checkpoints.extend(batch.checkpoints);
    }
    Ok((records, checkpoints))
}
