//! `zhibao bench --stats`: the office's figures over a year of history.
//!
//! A hub's store is given a year of facts for many counties (reports,
//! decisions, solicitations — the rows the statistics read, written
//! directly rather than by sending each report), then a real `zhibao
//! serve` runs on it and the `stats` and `bulletin` commands are timed as
//! an operator runs them: a fresh `zhibao` process each, over the socket.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use prost::Message;
use zhibao::class::Class;
use zhibao::config::{NodeConfig, RelayListen};
use zhibao::proto::{Notice, Solicitation, notice::Body};
use zhibao::store::{DecisionFact, Facts, ItemFact, Store};
use zhibao::{notice, pki, trust};

use super::bench::Daemon;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Size {
    /// Counties.
    pub(crate) counties: usize,
    /// Reports over the year.
    pub(crate) items: usize,
    /// Decisions over the year.
    pub(crate) decisions: usize,
    /// Solicitations over the year.
    pub(crate) solicitations: usize,
}

/// A small deterministic generator: the same history every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const YEAR: i32 = 2025;
/// 2025-01-01T00:00+08:00, Unix ms.
const YEAR_START_MS: i64 = 1_735_660_800_000;
const YEAR_MS: i64 = 365 * 24 * 3600 * 1000;

pub(crate) async fn run(size: Size) -> anyhow::Result<()> {
    zhibao::tls::install_crypto_provider();
    let tmp = super::scratch::ScratchDir::new("stats")?;
    let dir = tmp.path();
    let pki_dir = dir.join("certs");
    pki::init(&pki_dir, "bench", "hub", &[])?;
    let counties: Vec<String> = (1..=size.counties)
        .map(|i| format!("county-{i:03}"))
        .collect();
    let data = dir.join("data/hub");
    let started = Instant::now();
    fill(&data, &pki_dir, &counties, size).await?;
    let filled = started.elapsed();
    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut cfg = NodeConfig::for_node("hub", &pki_dir, &data);
    cfg.relay = Some(RelayListen {
        listen: free,
        consumers: Vec::new(),
    });
    cfg.office.counties.clone_from(&counties);
    cfg.office.outlets = vec![
        outlet("daily", "每日要情", "Daily Report"),
        outlet("special", "专报", "Special Report"),
    ];
    cfg.office.scoring = vec![zhibao::score::ScoringRule {
        since: format!("{YEAR}-01-01"),
        adopted: [("daily".to_string(), 2), ("special".to_string(), 5)].into(),
        adopted_above: 5,
        instruction: 10,
        late_answer: -1,
        missing_answer: -2,
        ..Default::default()
    }];
    cfg.office.targets = counties
        .iter()
        .map(|c| zhibao::score::Target {
            county: c.clone(),
            year: YEAR,
            points: Some(400),
            adopted: Some(150),
        })
        .collect();
    let hub = Daemon::start(&cfg, dir)?;
    println!(
        "history: {} counties, {} reports, {} decisions, {} solicitations in {YEAR} (written in {:.1} s)",
        size.counties,
        size.items,
        size.decisions,
        size.solicitations,
        filled.as_secs_f64()
    );
    let socket = hub.socket.display().to_string();
    let runs: [(&str, Vec<String>); 5] = [
        ("stats --year (table)", args(&["stats", "--year", "2025"])),
        (
            "stats --month (table)",
            args(&["stats", "--month", "2025-11"]),
        ),
        (
            "stats --year --json",
            args(&["stats", "--year", "2025", "--json"]),
        ),
        (
            "bulletin --month -o",
            args(&["bulletin", "--month", "2025-11", "-o"]),
        ),
        (
            "bulletin --quarter -o",
            args(&["bulletin", "--quarter", "2025Q4", "-o"]),
        ),
    ];
    for (i, (name, mut a)) in runs.into_iter().enumerate() {
        if a.last().is_some_and(|x| x == "-o") {
            a.push(dir.join(format!("bulletin-{i}.html")).display().to_string());
        }
        a.extend(["--socket".to_string(), socket.clone()]);
        // The first run warms the page cache as an office's daily use would.
        let mut best = f64::MAX;
        let mut bytes = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let out = Command::new(std::env::current_exe()?)
                .args(&a)
                .output()
                .context("running zhibao")?;
            let secs = t.elapsed().as_secs_f64();
            if !out.status.success() {
                bail!("{name}: {}", String::from_utf8_lossy(&out.stderr));
            }
            bytes = out.stdout.len();
            best = best.min(secs);
            if let Some(path) = a.iter().position(|x| x == "-o").and_then(|p| a.get(p + 1)) {
                bytes = std::fs::metadata(path).map_or(0, |m| m.len() as usize);
                let _ = std::fs::remove_file(path);
            }
        }
        println!(
            "{name:<24} {:>7.0} ms (best of 3, whole command), {bytes} bytes out",
            best * 1e3
        );
    }
    Ok(())
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn outlet(key: &str, zh: &str, en: &str) -> zhibao::score::Outlet {
    zhibao::score::Outlet {
        key: key.into(),
        zh: zh.into(),
        en: en.into(),
    }
}

/// Writes the year's facts and signed solicitations into the hub's store.
async fn fill(data: &Path, pki_dir: &Path, counties: &[String], size: Size) -> anyhow::Result<()> {
    let store = Store::open(&data.join("store.redb"))?;
    let (cert, key) = trust::node_paths(pki_dir, "hub");
    let hub = trust::Identity::load(&cert, &key)?;
    let mut rng = Lcg(7);
    let mut sols = Vec::new();
    for i in 0..size.solicitations {
        let at = YEAR_START_MS + (YEAR_MS / size.solicitations.max(1) as i64) * i as i64;
        let mut picked: Vec<String> = Vec::new();
        if i % 3 != 0 {
            for c in counties {
                if rng.below(4) == 0 {
                    picked.push(c.clone());
                }
            }
        }
        let n = Notice {
            id: notice::new_solicitation_id(at + i as i64),
            version: 1,
            staff: "bench".into(),
            at_unix_ms: at,
            body: Some(Body::Solicitation(Solicitation {
                topic: format!("专题 {i}"),
                text: "请报送".into(),
                deadline_unix_ms: at + 7 * 86_400_000,
                priority: Class::Routine.to_proto() as i32,
                counties: picked,
                ..Default::default()
            })),
            ..Default::default()
        };
        let signed = notice::issue(&hub, n);
        let body = notice::peek(&signed).context("own notice")?;
        store
            .keep_notice(body.id.clone(), 1, Vec::new(), signed.encode_to_vec())
            .await?;
        sols.push(body);
    }
    let mut facts = Facts::default();
    for i in 0..size.items {
        let created = YEAR_START_MS + rng.below(YEAR_MS as u64) as i64;
        let lane = match rng.below(20) {
            0 => 0,
            1..=4 => 1,
            _ => 2,
        };
        let arrived = created + rng.below(3_600_000) as i64;
        let answers = if rng.below(40) == 0 && !sols.is_empty() {
            sols[rng.below(sols.len() as u64) as usize].id.clone()
        } else {
            String::new()
        };
        facts.items.push(ItemFact {
            id: format!("{created:016x}{i:016x}"),
            origin: counties[rng.below(counties.len() as u64) as usize].clone(),
            lane,
            title: format!("县情况报告第{i}号"),
            created_ms: created,
            arrived_ms: arrived,
            deadline_ms: created + 1_800_000,
            link: u8::from(rng.below(25) == 0),
            answers,
        });
    }
    let mut seqs: std::collections::HashMap<(usize, &str), u32> = Default::default();
    for _ in 0..size.decisions {
        let which = rng.below(facts.items.len() as u64) as usize;
        let item = &facts.items[which];
        let (kind, text, node) = match rng.below(10) {
            0..=3 => (1, "daily: 第12期", "hub"),
            4 => (1, "special: 第3期", "hub"),
            5 => (1, "《要情》", "autonomous-region"),
            6 => (5, "请速核实", "hub"),
            7 => (2, "重复", "hub"),
            _ => (6, "", "hub"),
        };
        let seq = seqs.entry((which, node)).or_insert(0);
        *seq += 1;
        facts.decisions.push(DecisionFact {
            item_id: item.id.clone(),
            node: node.into(),
            seq: *seq,
            kind,
            text: text.into(),
            at_ms: item.arrived_ms + rng.below(86_400_000) as i64,
            item_created_ms: item.created_ms,
        });
    }
    // In batches, so no one commit holds the whole year.
    let (mut items, mut decisions) = (facts.items, facts.decisions);
    while !items.is_empty() || !decisions.is_empty() {
        let batch = Facts {
            items: items.split_off(items.len().saturating_sub(20_000)),
            decisions: decisions.split_off(decisions.len().saturating_sub(20_000)),
        };
        store.import_facts(batch).await?;
    }
    store.close().await;
    Ok(())
}
