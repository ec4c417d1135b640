//! `zhibao demo`: a whole small region on loopback, shown working.
//!
//! Builds a temporary region (CA, hub, three county nodes with their own
//! stores), submits a mix of classes, stops the hub for a few seconds in the
//! middle so the counties queue, restarts it, waits for every receipt, reads
//! the hub's inbox, and prints one row per item. Then the office's work:
//! it adopts an emergency (the county sees the signed decision), asks every
//! county for a report (约稿; two answer), prints the month's figures
//! (采用记分) and publishes the bulletin (月度通报), which a county receives.
//! Succeeds only if every item was receipted with a valid receipt and
//! reached the inbox exactly once with a valid origin signature, and each
//! of the office's statements arrived verified where it should. It speaks
//! the language asked for (`--lang`, else the locale), and its counties
//! write their reports in it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use prost::Message;

use zhibao::class::Class;
use zhibao::client::{Inbox, Operator};
use zhibao::config::{NodeConfig, RelayListen, Role, UpstreamConfig};
use zhibao::node::{self, RunningNode};
use zhibao::proto::{Cursor, ItemState, Receipt, Report};
use zhibao::trust::Trust;
use zhibao::{pki, trust};

use super::when::Lang;

const COUNTIES: [&str; 3] = ["county-a", "county-b", "county-c"];
const HUB: &str = "hub";

/// Where the demo's nodes log (kept after the demo, unlike its region):
/// `<tmp>/zhibao-demo-<pid>.log`.
pub(crate) fn log_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zhibao-demo-{}.log", std::process::id()))
}

struct Submitted {
    id: String,
    county: &'static str,
    class: Class,
    during_outage: bool,
}

async fn start_hub(
    pki_dir: &Path,
    data: &Path,
    addr: SocketAddr,
    web: Option<SocketAddr>,
) -> anyhow::Result<RunningNode> {
    let mut cfg = NodeConfig::for_node(HUB, pki_dir, &data.join(HUB));
    cfg.web = web.map(|listen| zhibao::web::WebConfig {
        listen,
        token_file: None,
    });
    cfg.relay = Some(RelayListen {
        listen: addr,
        consumers: Vec::new(),
    });
    cfg.office.counties = COUNTIES.iter().map(|c| (*c).to_string()).collect();
    cfg.office.outlets = vec![zhibao::score::Outlet {
        key: "special".into(),
        zh: "情况专报".into(),
        en: "Special Report".into(),
    }];
    cfg.office.scoring = vec![zhibao::score::ScoringRule {
        since: "2020-01-01".into(),
        adopted: [("special".to_string(), 5)].into(),
        missing_answer: -2,
        ..Default::default()
    }];
    Ok(node::start(cfg).await?)
}

/// Runs the demo; returns whether every check passed. With `web`, the
/// hub also serves the office's web desk, and the region keeps running
/// after the checks until Ctrl-C, for exploring it.
pub async fn run(web: bool, lang: Lang) -> anyhow::Result<bool> {
    let t = |en: String, zh: String| lang.pick(en, zh);
    let started = Instant::now();
    let tmp = super::scratch::ScratchDir::new("run").context("creating a temporary directory")?;
    let log = log_path();
    println!(
        "{}",
        t(
            format!(
                "the nodes log to {} (what follows is the demo's own report)",
                log.display()
            ),
            format!("各节点的日志写在 {}（以下是演示本身的报告）", log.display()),
        )
    );
    let pki_dir = tmp.path().join("certs");
    let data = tmp.path().join("data");
    let counties: Vec<String> = COUNTIES.iter().map(|s| (*s).to_string()).collect();
    pki::init(&pki_dir, "demo", HUB, &counties)?;
    println!(
        "{}",
        t(
            format!(
                "region CA, hub and {} county certificates in {}",
                COUNTIES.len(),
                pki_dir.display()
            ),
            format!(
                "区域 CA、枢纽和 {} 个县的证书在 {}",
                COUNTIES.len(),
                pki_dir.display()
            ),
        )
    );

    let web_at: Option<SocketAddr> = if web {
        Some("127.0.0.1:0".parse()?)
    } else {
        None
    };
    let hub = start_hub(&pki_dir, &data, "127.0.0.1:0".parse()?, web_at).await?;
    // The restarted hub keeps the desk's address.
    let web_at = hub.web_addr;
    let hub_addr = hub.relay_addr.context("hub has no relay address")?;
    println!(
        "{}",
        t(
            format!("hub listening on {hub_addr} (mutual TLS 1.3)"),
            format!("枢纽在 {hub_addr} 监听（双向 TLS 1.3）"),
        )
    );

    let mut nodes = Vec::new();
    let mut ops = Vec::new();
    for county in COUNTIES {
        let mut cfg = NodeConfig::for_node(county, &pki_dir, &data.join(county));
        cfg.upstream = vec![UpstreamConfig {
            node_id: HUB.into(),
            addr: hub_addr.to_string(),
            role: Role::Primary,
        }];
        cfg.limits.max_backoff_secs = 1;
        cfg.office.publishers = vec![HUB.into()];
        let n = node::start(cfg).await?;
        ops.push(Operator::connect(&n.operator_socket).await?);
        nodes.push(n);
    }
    println!(
        "{}",
        t(
            format!("{} county nodes up, each with its own store", nodes.len()),
            format!("{} 个县级节点已启动，各有自己的存储", nodes.len()),
        )
    );

    let mix = match lang {
        Lang::En => [
            (
                Class::Routine,
                "Daily situation: grain procurement on schedule",
            ),
            (Class::BadNews, "Irrigation channel breach, 200 mu affected"),
            (
                Class::Emergency,
                "Flash flood on the river road, 2 villages cut off",
            ),
            (Class::Routine, "Township meeting on winter heating held"),
        ],
        Lang::Zh => [
            (Class::Routine, "今日动态：秋粮收购进度正常"),
            (Class::BadNews, "灌溉渠决口，200亩农田受淹"),
            (Class::Emergency, "沿河公路突发山洪，2个村被困"),
            (Class::Routine, "各乡镇召开冬季供暖工作会议"),
        ],
    };
    let mut items = Vec::new();
    let mut submitted_at = HashMap::new();
    for (i, op) in ops.iter_mut().enumerate() {
        for (class, title) in mix {
            let at = humantime::format_rfc3339_seconds(SystemTime::now());
            let body = t(
                format!("{title}. Reported by {} at {at}.", COUNTIES[i]),
                format!("{title}。{}于 {at} 报送。", COUNTIES[i]),
            )
            .into_bytes();
            let id = op.submit(class, title, body, 0).await?;
            submitted_at.insert(id.clone(), Instant::now());
            items.push(Submitted {
                id,
                county: COUNTIES[i],
                class,
                during_outage: false,
            });
        }
    }
    // Let the first round land before the outage, so the table shows both.
    for it in &items {
        let i = COUNTIES.iter().position(|c| *c == it.county).unwrap_or(0);
        ops[i].wait_receipt(&it.id, Duration::from_secs(20)).await?;
    }

    println!(
        "\n{}",
        t(
            "-- stopping the hub: the counties keep accepting and queue --".into(),
            "-- 停止枢纽：各县照常受理，信息排队等候 --".into(),
        )
    );
    hub.shutdown(Duration::from_secs(5)).await;
    let outage = Instant::now();
    for (i, op) in ops.iter_mut().enumerate() {
        for (class, title) in [mix[2], mix[1], mix[0]] {
            let body = t(
                format!("{title} (while the hub was down)"),
                format!("{title}（枢纽停机期间报送）"),
            )
            .into_bytes();
            let id = op.submit(class, title, body, 0).await?;
            let st = op.status(&id).await?;
            if st.state == ItemState::Receipted as i32 {
                bail!("item {id} receipted while the hub was down");
            }
            submitted_at.insert(id.clone(), Instant::now());
            items.push(Submitted {
                id,
                county: COUNTIES[i],
                class,
                during_outage: true,
            });
        }
    }
    let queued = items.iter().filter(|i| i.during_outage).count();
    println!(
        "{}",
        t(
            format!("{queued} items queued at the counties while the hub is down"),
            format!("枢纽停机期间，各县共有 {queued} 条信息排队"),
        )
    );
    // Keep the hub down for a few seconds, as a real outage would be.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(outage.elapsed())).await;
    let hub = start_hub(&pki_dir, &data, hub_addr, web_at).await?;
    let down = outage.elapsed().as_secs_f64();
    println!(
        "{}\n",
        t(
            format!("-- hub restarted on {hub_addr} after {down:.1} s --"),
            format!("-- {down:.1} 秒后枢纽在 {hub_addr} 重新启动 --"),
        )
    );

    let mut ok = true;
    let mut rows = Vec::new();
    for it in &items {
        let i = COUNTIES.iter().position(|c| *c == it.county).unwrap_or(0);
        let st = ops[i].wait_receipt(&it.id, Duration::from_secs(30)).await?;
        let receipted = st.state == ItemState::Receipted as i32;
        let receipt_ok = st.receipt_verification.starts_with("valid");
        ok &= receipted && receipt_ok;
        let latency = if receipted {
            st.receipted_unix_ms - st.created_unix_ms
        } else {
            -1
        };
        rows.push((it, latency, receipt_ok, st.receipt_body.clone()));
    }

    // What reached the hub: each item exactly once, origin signature valid.
    let trust = Trust::load(
        &pki_dir.join(trust::CA_CERT),
        Some(&pki_dir.join(trust::CRL)),
    )?;
    let (cert, key) = trust::node_paths(&pki_dir, HUB);
    let mut inbox = Inbox::connect(
        &hub_addr.to_string(),
        HUB,
        &pki_dir.join(trust::CA_CERT),
        &cert,
        &key,
    )
    .await?;
    let mut stream = inbox.subscribe(Cursor::default(), false).await?;
    let mut seen: HashMap<String, (usize, Result<(), String>)> = HashMap::new();
    let mut order = Vec::new();
    while let Some(item) = stream.message().await? {
        let Some(signed) = item.item else { continue };
        let check = zhibao::envelope::open(&signed, &trust, &Default::default(), SystemTime::now());
        let id = Report::decode(signed.report.as_slice())
            .map(|r| r.id)
            .unwrap_or_default();
        order.push(id.clone());
        let e = seen.entry(id).or_insert((0, Ok(())));
        e.0 += 1;
        e.1 = check.map(|_| ()).map_err(|e| e.to_string());
    }

    let cols = |cells: [&str; 7]| {
        let w = [14, 9, 10, 14, 9, 16, 0];
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(w).enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&zhibao::score::pad(cell, width, i != 3));
        }
        line.trim_end().to_string()
    };
    println!(
        "{}",
        match lang {
            Lang::En => cols([
                "item",
                "county",
                "class",
                "latency (ms)",
                "receipt",
                "origin signature",
                "inbox copies",
            ]),
            Lang::Zh => cols([
                "信息",
                "县",
                "类别",
                "用时（毫秒）",
                "回执",
                "原发签名",
                "收件份数",
            ]),
        }
    );
    for (it, latency, receipt_ok, receipt) in &rows {
        let (copies, sig) = seen
            .get(&it.id)
            .cloned()
            .unwrap_or((0, Err("not in inbox".into())));
        ok &= copies == 1 && sig.is_ok();
        let sig_text = match &sig {
            Ok(()) => t("valid".into(), "有效".into()),
            Err(e) => t(format!("INVALID: {e}"), format!("无效：{e}")),
        };
        let receiver = receipt
            .as_ref()
            .map_or("-", |r: &Receipt| r.receiver.as_str());
        let row = cols([
            &it.id[it.id.len().saturating_sub(12)..],
            it.county,
            match lang {
                Lang::En => it.class.name(),
                Lang::Zh => it.class.name_zh(),
            },
            &if *latency >= 0 {
                latency.to_string()
            } else {
                t("NOT RECEIPTED".into(), "未签收".into())
            },
            &if *receipt_ok {
                t(format!("{receiver} ok"), format!("{receiver} 有效"))
            } else {
                t("INVALID".into(), "无效".into())
            },
            &sig_text,
            &copies.to_string(),
        ]);
        let during = if it.during_outage {
            t(
                "  (submitted while hub was down)".into(),
                "  （枢纽停机时报送）".into(),
            )
        } else {
            String::new()
        };
        println!("{row}{during}");
    }
    let extra = seen
        .keys()
        .filter(|id| !items.iter().any(|i| &i.id == *id))
        .count();
    ok &= extra == 0 && order.len() == items.len();

    // The office's desk: the hub adopts the first emergency; the decision,
    // signed by the hub, travels back down to the county that wrote it.
    if let Some(first) = items.iter().find(|i| i.class == Class::Emergency) {
        ok &= desk(&hub, &ops, first, lang).await?;
    }
    ok &= office(&hub, &ops, lang).await?;
    if let Some(addr) = hub.web_addr {
        explore(addr, &data.join(HUB), &nodes, lang).await?;
    }

    hub.shutdown(Duration::from_secs(5)).await;
    for n in nodes {
        n.shutdown(Duration::from_secs(5)).await;
    }
    let (n, inbox, secs) = (items.len(), order.len(), started.elapsed().as_secs_f64());
    println!(
        "\n{}",
        match (lang, ok) {
            (Lang::En, true) => format!(
                "{n} items, {inbox} in the hub inbox, {extra} unexpected; {secs:.1} s in all: every item receipted once with a valid signature"
            ),
            (Lang::En, false) => format!(
                "{n} items, {inbox} in the hub inbox, {extra} unexpected; {secs:.1} s in all: FAILED"
            ),
            (Lang::Zh, true) => format!(
                "共 {n} 条信息，枢纽收件箱中 {inbox} 条，意外的 {extra} 条；共用时 {secs:.1} 秒：每条信息都签收一次，签名有效"
            ),
            (Lang::Zh, false) => format!(
                "共 {n} 条信息，枢纽收件箱中 {inbox} 条，意外的 {extra} 条；共用时 {secs:.1} 秒：未通过"
            ),
        }
    );
    println!(
        "{}",
        t(
            format!("the nodes' own log: {}", log.display()),
            format!("各节点的日志：{}", log.display()),
        )
    );
    Ok(ok)
}

/// Leaves the region running with the web desk open until Ctrl-C.
async fn explore(
    addr: SocketAddr,
    hub_data: &Path,
    nodes: &[RunningNode],
    lang: Lang,
) -> anyhow::Result<()> {
    let token_file = hub_data.join("web.token");
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the web desk's token {}", token_file.display()))?;
    let (token, file) = (token.trim(), token_file.display());
    let socket = nodes
        .first()
        .map_or_else(String::new, |n| n.operator_socket.display().to_string());
    let submit =
        format!("zhibao submit --socket {socket} -p emergency -t \"山洪\" --body \"两个村被困\"");
    match lang {
        Lang::En => println!(
            "\nThe region keeps running. The office's web desk (信息科网页工作台):\n\
             \n    http://{addr}/login?token={token}\n\
             \nOpen it in a browser on this machine, give your name and log in (the token is\n\
             also in {file}). Submit from a county and watch it arrive, e.g.:\n\
             \n    {submit}\n\
             \nCtrl-C stops the region."
        ),
        Lang::Zh => println!(
            "\n本区域继续运行。信息科网页工作台：\n\
             \n    http://{addr}/login?token={token}\n\
             \n请在本机的浏览器中打开，填写姓名后登录（令牌也在 {file}）。\n\
             从一个县报送一条信息，看着它到达，例如：\n\
             \n    {submit}\n\
             \n按 Ctrl-C 停止本区域。"
        ),
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("{}", lang.pick("stopping the region", "正在停止本区域"));
    Ok(())
}

/// The hub's office adopts `item`; returns whether the county it came from
/// holds the decision, verified, within a few seconds.
async fn desk(
    hub: &RunningNode,
    ops: &[Operator],
    item: &Submitted,
    lang: Lang,
) -> anyhow::Result<bool> {
    use zhibao::proto::{DisposeRequest, DispositionKind, EventKind};
    let i = COUNTIES.iter().position(|c| *c == item.county).unwrap_or(0);
    let mut county = ops[i].clone();
    let mut events = county.watch().await?;
    let mut office = Operator::connect(&hub.operator_socket).await?;
    office
        .dispose(DisposeRequest {
            item_id: item.id.clone(),
            kind: DispositionKind::Adopted as i32,
            text: "special: 《情况专报》2026年第1期".into(),
            ..Default::default()
        })
        .await?;
    let short = &item.id[item.id.len().saturating_sub(12)..];
    println!(
        "\n{}",
        lang.pick(
            format!("-- the office adopts {short} into 《情况专报》2026年第1期 --"),
            format!("-- 信息科将 {short} 采用于《情况专报》2026年第1期 --"),
        )
    );
    let arrived = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.message().await? {
            if e.kind == EventKind::Disposed as i32 && e.item_id == item.id {
                return Ok::<bool, anyhow::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .unwrap_or(Ok(false))?;
    let st = county.status(&item.id).await?;
    let seen = st.dispositions.first();
    let valid = seen.is_some_and(|d| d.verification.starts_with("valid"));
    let county = item.county;
    match (seen, seen.and_then(|d| d.body.as_ref())) {
        (Some(d), Some(b)) if arrived => {
            let check = zhibao::verdict::words(
                d.verdict.as_ref(),
                &d.verification,
                false,
                lang == Lang::Zh,
            );
            let (node, text) = (&b.node, &b.text);
            println!(
                "{}",
                lang.pick(
                    format!(
                        "{county} sees: {} ({}) by {node}: {text} [{check}]",
                        zhibao::disposition::kind_name(b.kind),
                        zhibao::disposition::kind_name_zh(b.kind),
                    ),
                    format!(
                        "{county} 收到 {node} 的处理决定「{}」：{text}［{check}］",
                        zhibao::disposition::kind_name_zh(b.kind),
                    ),
                )
            );
        }
        _ => println!(
            "{}",
            lang.pick(
                format!("{county} has NOT received the decision"),
                format!("{county} 没有收到处理决定"),
            )
        ),
    }
    Ok(arrived && valid)
}

/// The office asks every county for a report on a topic (约稿); two answer,
/// one does not. Then it prints the month's figures (采用记分) and
/// publishes the bulletin (月度通报), which a county receives verified.
/// Returns whether every step arrived where it should.
async fn office(hub: &RunningNode, ops: &[Operator], lang: Lang) -> anyhow::Result<bool> {
    use zhibao::proto::{
        EventKind, NoticesRequest, SolicitRequest, StatsRequest, SubmitRequest,
        solicit_request::Action,
    };
    let mut desk = Operator::connect(&hub.operator_socket).await?;
    let mut watches = Vec::new();
    for op in ops {
        watches.push(op.clone().watch().await?);
    }
    let sol = desk
        .solicit(SolicitRequest {
            action: Action::Publish as i32,
            topic: "冬季安全生产情况".into(),
            text: "请各县报送本县冬季安全生产情况。".into(),
            deadline_unix_ms: zhibao::clock::now_ms() + 3_600_000,
            priority: Class::Routine.to_proto() as i32,
            ..Default::default()
        })
        .await?
        .body
        .unwrap_or_default()
        .id;
    println!(
        "\n{}",
        lang.pick(
            format!("-- the office asks every county for a report (约稿 {sol}) --"),
            format!("-- 信息科向各县约稿（{sol}）--"),
        )
    );
    let mut ok = true;
    for (i, events) in watches.iter_mut().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(e) = events.message().await? {
                if e.kind == EventKind::Solicitation as i32 && e.item_id == sol {
                    return Ok::<bool, anyhow::Error>(true);
                }
            }
            Ok(false)
        })
        .await
        .unwrap_or(Ok(false))?;
        ok &= got;
        if !got {
            let county = COUNTIES[i];
            println!(
                "{}",
                lang.pick(
                    format!("{county} has NOT received the solicitation"),
                    format!("{county} 没有收到约稿"),
                )
            );
        }
    }
    // Two counties answer; the third does not (yet).
    for (i, op) in ops.iter().enumerate().take(2) {
        let mut op = op.clone();
        let id = op
            .submit_request(SubmitRequest {
                title: format!("{}冬季安全生产情况", COUNTIES[i]),
                body: "总体平稳。".as_bytes().to_vec(),
                answers: sol.clone(),
                ..Default::default()
            })
            .await?;
        op.wait_receipt(&id, Duration::from_secs(10)).await?;
    }
    let status = desk.solicitation_status(&sol).await?;
    for c in &status.counties {
        let state = match (lang, c.state.as_str()) {
            (Lang::En, s) => s,
            (Lang::Zh, "on_time") => "按时报送",
            (Lang::Zh, "late") => "迟报",
            (Lang::Zh, "missing") => "未报送",
            (Lang::Zh, "open") => "未到期，尚未报送",
            (Lang::Zh, s) => s,
        };
        println!("{:<9} {state}", c.county);
    }
    ok &= status
        .counties
        .iter()
        .filter(|c| c.state == "on_time")
        .count()
        == 2;
    let month = desk
        .notices(NoticesRequest {
            id: sol.clone(),
            ..Default::default()
        })
        .await?
        .first()
        .and_then(|v| v.body.as_ref())
        .map(|n| n.at_unix_ms)
        .unwrap_or_default();
    let period = zhibao::score::Period::month_of(month, 8 * 3_600_000).to_string();
    let table = desk
        .stats(StatsRequest {
            period: period.clone(),
            format: "table".into(),
            lang: match lang {
                Lang::En => "en".into(),
                Lang::Zh => "zh".into(),
            },
            ..Default::default()
        })
        .await?;
    println!(
        "\n{}\n{table}",
        lang.pick(
            format!("-- the month's figures (采用记分, {period}) --"),
            format!("-- 本月采用记分（{period}）--"),
        )
    );
    let mut third = ops[2].clone();
    let mut events = third.watch().await?;
    let published = desk
        .publish_bulletin(StatsRequest {
            period,
            ..Default::default()
        })
        .await?;
    let bid = published.body.map(|b| b.id).unwrap_or_default();
    let arrived = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.message().await? {
            if e.kind == EventKind::Bulletin as i32 && e.item_id == bid {
                return Ok::<bool, anyhow::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .unwrap_or(Ok(false))?;
    let seen = third
        .notices(NoticesRequest {
            id: bid.clone(),
            ..Default::default()
        })
        .await?;
    let verified = seen.first().is_some_and(|v| v.verification == "verified");
    let county = COUNTIES[2];
    println!(
        "{}",
        match (lang, arrived && verified) {
            (Lang::En, true) => format!("bulletin {bid} published; {county} holds it, verified"),
            (Lang::En, false) => {
                format!("bulletin {bid} published; {county} has NOT received it verified")
            }
            (Lang::Zh, true) => format!("月度通报 {bid} 已发布；{county} 已收到，验证有效"),
            (Lang::Zh, false) => {
                format!("月度通报 {bid} 已发布；{county} 没有收到经验证的通报")
            }
        }
    );
    Ok(ok && arrived && verified)
}
