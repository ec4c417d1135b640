//! `zhibao solicitation`, `solicitations`, `stats`, `bulletin`,
//! `bulletins` and `target`: the office's asking and scoring, and what a
//! county sees of them.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;
use zhibao::class::Class;
use zhibao::proto::{
    NoticeView, NoticesRequest, SolicitRequest, StatsRequest, TargetRequest, notice::Body,
    solicit_request::Action,
};

use super::args::{Output, Period, SolicitationCommand, Target, TargetCommand};
use super::when::{Lang, View};

/// `zhibao solicitation …`.
pub(crate) async fn solicitation(action: SolicitationCommand) -> anyhow::Result<()> {
    match action {
        SolicitationCommand::Publish {
            topic,
            text,
            text_file,
            due,
            priority,
            counties,
            target,
            out,
        } => {
            let class: Class = priority.parse()?;
            let text = match (text, text_file) {
                (Some(t), _) => t,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                (None, None) => String::new(),
            };
            let mut op = target.connect().await?;
            let view = out.view(&op.node().await?)?;
            let req = SolicitRequest {
                action: Action::Publish as i32,
                topic,
                text,
                deadline_unix_ms: due_ms(view, &due)?,
                priority: class.to_proto() as i32,
                counties,
                ..Default::default()
            };
            let v = op.solicit(req).await?;
            print_one(&v, view, out.json, view.t("published:", "已发布："));
        }
        SolicitationCommand::Extend {
            id,
            due,
            note,
            target,
            out,
        } => {
            let mut op = target.connect().await?;
            let view = out.view(&op.node().await?)?;
            let req = SolicitRequest {
                action: Action::Extend as i32,
                id,
                deadline_unix_ms: due_ms(view, &due)?,
                note,
                ..Default::default()
            };
            let v = op.solicit(req).await?;
            print_one(&v, view, out.json, view.t("extended:", "已延期："));
        }
        SolicitationCommand::Withdraw {
            id,
            note,
            target,
            out,
        } => {
            let mut op = target.connect().await?;
            let view = out.view(&op.node().await?)?;
            let req = SolicitRequest {
                action: Action::Withdraw as i32,
                id,
                note,
                ..Default::default()
            };
            let v = op.solicit(req).await?;
            print_one(&v, view, out.json, view.t("withdrawn:", "已撤回："));
        }
        SolicitationCommand::Show { id, target, out } => {
            let mut op = target.connect().await?;
            let view = out.view(&op.node().await?)?;
            let req = NoticesRequest {
                id,
                ..Default::default()
            };
            for v in op.notices(req).await? {
                if out.json {
                    println!("{}", notice_json(&v));
                } else {
                    print!("{}", notice_full(&v, view));
                }
            }
        }
        SolicitationCommand::Status { id, target, out } => {
            let mut op = target.connect().await?;
            let view = out.view(&op.node().await?)?;
            let status = op.solicitation_status(&id).await?;
            if out.json {
                let rows: Vec<_> = status
                    .counties
                    .iter()
                    .map(|c| {
                        json!({
                            "county": c.county,
                            "state": c.state,
                            "item_id": c.item_id,
                            "arrived_unix_ms": c.arrived_unix_ms,
                            "items": c.items,
                        })
                    })
                    .collect();
                let head = status.solicitation.as_ref().map(notice_json);
                println!("{}", json!({ "solicitation": head, "counties": rows }));
                return Ok(());
            }
            if let Some(v) = &status.solicitation {
                println!("{}", notice_line(v, view));
            }
            let mut counts = [0usize; 5];
            for c in &status.counties {
                let (i, word) = match c.state.as_str() {
                    "on_time" => (0, view.t("answered on time", "按时报送")),
                    "late" => (1, view.t("answered late", "逾期报送")),
                    "missing" => (2, view.t("NOT ANSWERED", "未报送")),
                    "withdrawn" => (4, view.t("withdrawn", "已撤回")),
                    _ => (3, view.t("open", "待报送")),
                };
                counts[i] += 1;
                let when = if c.arrived_unix_ms > 0 {
                    format!("  {}  {}", c.item_id, view.short(c.arrived_unix_ms))
                } else {
                    String::new()
                };
                println!("  {:<24} {word}{when}", c.county);
            }
            println!(
                "{}",
                match view.lang {
                    Lang::Zh => format!(
                        "按时 {}，逾期 {}，未报 {}，待报 {}",
                        counts[0], counts[1], counts[2], counts[3]
                    ),
                    Lang::En => format!(
                        "{} on time, {} late, {} not answered, {} open",
                        counts[0], counts[1], counts[2], counts[3]
                    ),
                }
            );
        }
    }
    Ok(())
}

/// `zhibao solicitations` and `zhibao bulletins` (without --output).
pub(crate) async fn list(
    target: &Target,
    out: &Output,
    req: NoticesRequest,
) -> anyhow::Result<Vec<NoticeView>> {
    let mut op = target.connect().await?;
    let view = out.view(&op.node().await?)?;
    let notices = op.notices(req).await?;
    if out.json {
        for v in &notices {
            println!("{}", notice_json(v));
        }
    } else if notices.is_empty() {
        println!("{}", view.t("(none)", "（无）"));
    } else {
        for v in &notices {
            println!("{}", notice_line(v, view));
        }
    }
    Ok(notices)
}

/// `zhibao bulletins --id X [-o file]`.
pub(crate) async fn bulletin_one(
    target: &Target,
    out: &Output,
    id: String,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let mut op = target.connect().await?;
    let view = out.view(&op.node().await?)?;
    let req = NoticesRequest {
        id,
        ..Default::default()
    };
    for v in op.notices(req).await? {
        let Some(Body::Bulletin(b)) = v.body.as_ref().and_then(|n| n.body.clone()) else {
            bail!("that is not a bulletin");
        };
        match output {
            Some(path) => {
                write_new(path, b.html.as_bytes())?;
                eprintln!("{} {}", view.t("written:", "已写入："), path.display());
            }
            None if out.json => println!("{}", b.figures_json),
            None => print!("{}", notice_full(&v, view)),
        }
    }
    Ok(())
}

/// `zhibao stats`.
pub(crate) async fn stats(
    period: &Period,
    county: Option<String>,
    csv: bool,
    target: &Target,
    out: &Output,
) -> anyhow::Result<()> {
    let mut op = target.connect().await?;
    let lang = Lang::choose(out.lang.as_deref())?;
    let format = if out.json {
        "json"
    } else if csv {
        "csv"
    } else {
        "table"
    };
    let text = op
        .stats(StatsRequest {
            period: period.text(),
            county: county.unwrap_or_default(),
            format: format.into(),
            lang: lang_name(lang).into(),
        })
        .await?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// `zhibao bulletin`: Chinese unless `--lang en` is given.
pub(crate) async fn bulletin(
    period: &Period,
    output: Option<&Path>,
    publish: bool,
    target: &Target,
    out: &Output,
) -> anyhow::Result<()> {
    let mut op = target.connect().await?;
    let view = out.view(&op.node().await?)?;
    let lang = match out.lang.as_deref() {
        Some(l) => Lang::choose(Some(l))?,
        None => Lang::Zh,
    };
    let req = StatsRequest {
        period: period.text(),
        format: "html".into(),
        lang: lang_name(lang).into(),
        ..Default::default()
    };
    if let Some(path) = output {
        let html = op.stats(req.clone()).await?;
        write_new(path, html.as_bytes())?;
        eprintln!("{} {}", view.t("written:", "已写入："), path.display());
    }
    if out.json {
        let figures = op
            .stats(StatsRequest {
                format: "json".into(),
                ..req.clone()
            })
            .await?;
        println!("{figures}");
    }
    if publish {
        let v = op.publish_bulletin(req).await?;
        println!(
            "{} {}",
            view.t("published:", "已发布："),
            notice_line(&v, view)
        );
    }
    Ok(())
}

/// `zhibao target …`.
pub(crate) async fn target(action: TargetCommand) -> anyhow::Result<()> {
    match action {
        TargetCommand::Set {
            county,
            year,
            points,
            adopted,
            target,
        } => {
            let mut op = target.connect().await?;
            op.set_target(TargetRequest {
                county: county.clone(),
                year,
                points,
                adopted,
            })
            .await?;
            let cleared = points == 0 && adopted == 0;
            match (Lang::choose(None)?, cleared) {
                (Lang::Zh, true) => println!("已清除 {county} {year} 年的目标"),
                (Lang::En, true) => println!("target of {county} for {year} cleared"),
                (Lang::Zh, false) => {
                    println!("{county} {year} 年目标：{points} 分，采用 {adopted} 篇")
                }
                (Lang::En, false) => {
                    println!("target of {county} for {year}: {points} points, {adopted} adopted")
                }
            }
        }
    }
    Ok(())
}

/// `--due`: a time or a span from now (see [`super::when::Tz::time_or_span`]).
fn due_ms(view: View, text: &str) -> anyhow::Result<i64> {
    view.tz.time_or_span(text, "--due")
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "zh",
        Lang::En => "en",
    }
}

/// Writes a new file; refuses to overwrite one.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn print_one(v: &NoticeView, view: View, json: bool, what: &str) {
    if json {
        println!("{}", notice_json(v));
    } else {
        println!("{what} {}", notice_line(v, view));
    }
}

/// One line per notice, for listings.
pub(crate) fn notice_line(v: &NoticeView, view: View) -> String {
    let n = v.body.clone().unwrap_or_default();
    let checked = if v.verification == "verified" {
        String::new()
    } else {
        format!(
            "  [{}: {}]",
            view.t("NOT VERIFIED", "验证失败"),
            v.verification
        )
    };
    match &n.body {
        Some(Body::Solicitation(s)) => {
            let class = Class::from_proto(s.priority).map_or("?", |c| match view.lang {
                Lang::Zh => c.name_zh(),
                Lang::En => c.name(),
            });
            let asked = if s.counties.is_empty() {
                view.t("all counties", "全部县").to_string()
            } else {
                s.counties.join(",")
            };
            let state = if s.withdrawn {
                format!("{} ({})", view.t("withdrawn", "已撤回"), s.note)
            } else if !v.answered_by.is_empty() {
                format!(
                    "{} {}",
                    view.t("answered by", "已报送"),
                    v.answered_by.join(",")
                )
            } else {
                view.t("open", "待报送").to_string()
            };
            format!(
                "{}  {} «{}»  {} {}  {}  {} {}  {}: {asked}  v{}  {state}{checked}",
                n.id,
                view.t("solicitation", "约稿"),
                s.topic,
                view.t("due", "截止"),
                view.short(s.deadline_unix_ms),
                class,
                view.t("from", "发布"),
                n.publisher,
                view.t("asks", "报送单位"),
                n.version,
            )
        }
        Some(Body::Bulletin(b)) => format!(
            "{}  {} «{}»  {} {}  {}{checked}",
            n.id,
            view.t("bulletin", "通报"),
            b.title,
            view.t("from", "发布"),
            n.publisher,
            view.short(n.at_unix_ms),
        ),
        None => format!("{}  ?{checked}", n.id),
    }
}

/// A notice in full.
fn notice_full(v: &NoticeView, view: View) -> String {
    let n = v.body.clone().unwrap_or_default();
    let mut s = format!("{}\n", notice_line(v, view));
    s.push_str(&format!(
        "  {} {} ({}) {}\n  {}: {}\n",
        view.t("signed by", "签发"),
        n.publisher,
        n.staff,
        view.show(n.at_unix_ms),
        view.t("signature", "签名"),
        if v.verification == "verified" {
            view.t("verified", "有效")
        } else {
            &v.verification
        }
    ));
    match &n.body {
        Some(Body::Solicitation(sol)) => {
            for line in sol.text.lines() {
                s.push_str(&format!("  | {line}\n"));
            }
            if !sol.note.is_empty() {
                s.push_str(&format!("  {}: {}\n", view.t("note", "说明"), sol.note));
            }
            if v.for_us && !sol.withdrawn {
                s.push_str(&format!(
                    "  {}: zhibao submit --answers {} …\n",
                    view.t("answer with", "报送方式"),
                    n.id
                ));
            }
        }
        Some(Body::Bulletin(b)) => {
            s.push_str(&format!(
                "  {} {}, {} {} bytes (zhibao bulletins --id {} -o FILE)\n",
                view.t("period", "期间"),
                b.period,
                view.t("document", "文档"),
                b.html.len(),
                n.id
            ));
        }
        None => {}
    }
    s
}

/// A notice as JSON, for scripts.
pub(crate) fn notice_json(v: &NoticeView) -> serde_json::Value {
    let n = v.body.clone().unwrap_or_default();
    let mut o = json!({
        "id": n.id,
        "version": n.version,
        "publisher": n.publisher,
        "staff": n.staff,
        "at_unix_ms": n.at_unix_ms,
        "verification": v.verification,
        "for_us": v.for_us,
    });
    match &n.body {
        Some(Body::Solicitation(s)) => {
            o["kind"] = json!("solicitation");
            o["topic"] = json!(s.topic);
            o["text"] = json!(s.text);
            o["deadline_unix_ms"] = json!(s.deadline_unix_ms);
            o["class"] = json!(Class::from_proto(s.priority).map(Class::name));
            o["counties"] = json!(s.counties);
            o["withdrawn"] = json!(s.withdrawn);
            o["note"] = json!(s.note);
            o["answered_by"] = json!(v.answered_by);
        }
        Some(Body::Bulletin(b)) => {
            o["kind"] = json!("bulletin");
            o["period"] = json!(b.period);
            o["title"] = json!(b.title);
            o["lang"] = json!(b.lang);
            o["html_bytes"] = json!(b.html.len());
        }
        None => {}
    }
    o
}
