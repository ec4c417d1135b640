//! `zhibao store stats` and `zhibao store prune`: what a node's store
//! holds, and retention run now (`store archive`: see [`super::archive`]).

use serde_json::json;
use zhibao::proto::{PruneRequest, StoreStatsRequest};

use super::args::{Output, StoreCommand, Target};
use super::fmt::size;

/// Runs a `zhibao store` command.
pub(crate) async fn run(action: StoreCommand) -> anyhow::Result<()> {
    match action {
        StoreCommand::Stats { target, out } => stats(&target, &out).await,
        StoreCommand::Prune { target, out } => prune(&target, &out).await,
        StoreCommand::Archive { action } => super::archive::run(action),
    }
}

async fn stats(target: &Target, out: &Output) -> anyhow::Result<()> {
    let mut op = target.connect().await?;
    let v = out.view(&op.node().await?)?;
    let s = op.store_stats(StoreStatsRequest {}).await?;
    if out.json {
        let tables: Vec<_> = s
            .tables
            .iter()
            .map(|t| {
                json!({"name": t.name, "entries": t.entries, "stored_bytes": t.stored_bytes, "overhead_bytes": t.overhead_bytes})
            })
            .collect();
        let states: serde_json::Map<_, _> = s
            .items_by_state
            .iter()
            .map(|c| (c.state.clone(), json!(c.items)))
            .collect();
        let files: Vec<_> = s
            .files
            .iter()
            .map(|f| json!({"path": f.path, "bytes": f.bytes}))
            .collect();
        println!(
            "{}",
            json!({
                "tables": tables,
                "items_by_state": states,
                "pruned_items": s.pruned_items,
                "pruned_bytes": s.pruned_bytes,
                "report_bytes": s.report_bytes,
                "files": files,
                "retention": s.retention,
            })
        );
        return Ok(());
    }
    println!("{}", v.t("files:", "文件："));
    for f in &s.files {
        println!("  {:>10}  {}", size(f.bytes), f.path);
    }
    println!("{}", v.t("items:", "条目："));
    for c in &s.items_by_state {
        println!("  {:>10}  {}", c.items, c.state);
    }
    println!(
        "  {} {}, {} {}",
        v.t("reports held:", "在库正文："),
        size(s.report_bytes),
        v.t("pruned:", "已清理："),
        match v.lang {
            super::when::Lang::Zh => format!("{} 条，{}", s.pruned_items, size(s.pruned_bytes)),
            super::when::Lang::En => format!("{} items, {}", s.pruned_items, size(s.pruned_bytes)),
        }
    );
    println!(
        "{}",
        v.t(
            "tables (data, B-tree overhead, rows):",
            "表（数据、索引开销、行数）："
        )
    );
    for t in &s.tables {
        println!(
            "  {:<20} {:>10} {:>10} {:>9}",
            t.name,
            size(t.stored_bytes),
            size(t.overhead_bytes),
            t.entries
        );
    }
    println!("{} {}", v.t("retention:", "保留规则："), s.retention);
    Ok(())
}

async fn prune(target: &Target, out: &Output) -> anyhow::Result<()> {
    let mut op = target.connect().await?;
    let v = out.view(&op.node().await?)?;
    let r = op.prune(PruneRequest {}).await?;
    if out.json {
        println!(
            "{}",
            json!({"items": r.items, "bytes": r.bytes, "archived_to": r.archived_to, "retention": r.retention,
                "compacted_reports": r.compacted_reports, "log_bytes_freed": r.log_bytes_freed})
        );
        return Ok(());
    }
    match v.lang {
        super::when::Lang::Zh => {
            println!("已清理 {} 条的正文和附件，释放 {}", r.items, size(r.bytes))
        }
        super::when::Lang::En => println!(
            "pruned the reports and attachments of {} items, {}",
            r.items,
            size(r.bytes)
        ),
    }
    for f in &r.archived_to {
        println!("{} {f}", v.t("archived to", "已归档至"));
    }
    if r.compacted_reports > 0 || r.log_bytes_freed > 0 {
        match v.lang {
            super::when::Lang::Zh => println!(
                "日志段整理：{} 条正文移入数据库，删除日志文件 {}",
                r.compacted_reports,
                size(r.log_bytes_freed)
            ),
            super::when::Lang::En => println!(
                "log compacted: {} reports moved into the database, {} of log files deleted",
                r.compacted_reports,
                size(r.log_bytes_freed)
            ),
        }
    }
    println!("{} {}", v.t("retention:", "保留规则："), r.retention);
    Ok(())
}
