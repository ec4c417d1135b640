//! Output for people and scripts: each view of an item, event or node as
//! text (times in the node's local time, or UTC) and as one JSON object.

use std::fmt::Write;

use prost::Message;
use serde_json::{Value, json};

use zhibao::class::Class;
use zhibao::digest::hex;
use zhibao::disposition::{kind_name, kind_name_zh};
use zhibao::proto::{
    DispositionKind, DispositionView, Event, EventKind, HopStatement, InboxItem, ItemState,
    ItemStatus, Report, ReviewOutcome, ReviewSignOff, RouteReceipt, SignedReport, Verdict,
};

use super::when::{Lang, View};

/// The name of an item state.
pub fn state_name(state: i32, v: View) -> &'static str {
    let (en, zh) = match ItemState::try_from(state).unwrap_or(ItemState::Unspecified) {
        ItemState::Queued => ("queued", "待发"),
        ItemState::InFlight => ("in flight", "发送中"),
        ItemState::Receipted => ("receipted", "已收回执"),
        ItemState::Refused => ("refused", "被拒收"),
        ItemState::Delivered => (
            "delivered (in this hub's inbox)",
            "已送达（在本枢纽收件箱）",
        ),
        ItemState::Withdrawn => (
            "withdrawn before it left (kept, not sent)",
            "发出前已撤回（保留，未发送）",
        ),
        ItemState::Superseded => (
            "corrected before it left (kept, not sent)",
            "发出前已更正（保留，未发送）",
        ),
        ItemState::HeldBelow => (
            "HELD below past its deadline (not here yet)",
            "在下级超时压存（尚未到达）",
        ),
        ItemState::AwaitingReview => (
            "awaiting review (not signed, not sent yet)",
            "待审核（尚未签发）",
        ),
        ItemState::ReturnedByReview => (
            "returned by review (kept, not sent)",
            "审核退回（保留，未发送）",
        ),
        ItemState::Unspecified => ("unknown", "未知"),
    };
    v.t(en, zh)
}

/// A state as a script reads it: `queued`, `in_flight`, …
fn state_key(state: i32) -> String {
    ItemState::try_from(state)
        .unwrap_or(ItemState::Unspecified)
        .as_str_name()
        .trim_start_matches("ITEM_STATE_")
        .to_lowercase()
}

pub(crate) fn class_of(priority: i32, v: View) -> String {
    Class::from_proto(priority).map_or_else(
        || "?".to_string(),
        |c| match v.lang {
            Lang::Zh => c.name_zh().to_string(),
            Lang::En => format!("{} ({})", c.name(), c.name_zh()),
        },
    )
}

pub(crate) fn class_key(priority: i32) -> &'static str {
    Class::from_proto(priority).map_or("unknown", Class::name)
}

/// A class in one word for a listing's column: the key `--class` takes
/// in English, the seed's name in Chinese.
fn class_word(priority: i32, v: View) -> &'static str {
    match (Class::from_proto(priority), v.lang) {
        (Some(c), Lang::Zh) => c.name_zh(),
        (Some(c), Lang::En) => c.name(),
        (None, _) => "?",
    }
}

fn receipt_kind(kind: i32) -> &'static str {
    match kind {
        1 => "custody",
        2 => "delivery",
        _ => "?",
    }
}

/// The report inside a status, if the node sent it.
fn report_of(s: &ItemStatus) -> Option<Report> {
    s.report
        .as_ref()
        .and_then(|r| Report::decode(r.report.as_slice()).ok())
}

/// `zhibao status` output.
pub fn status(s: &ItemStatus, v: View) -> String {
    let mut out = String::new();
    head(&mut out, s, v);
    receipts(&mut out, s, v);
    decisions(&mut out, s, v);
    out
}

/// One labelled line: the label padded to one width in either language.
fn line(out: &mut String, v: View, en: &str, zh: &str, value: impl std::fmt::Display) {
    let label = v.t(en, zh);
    // Chinese characters take two columns.
    let width: usize = label
        .chars()
        .map(|c| if c.is_ascii() { 1 } else { 2 })
        .sum();
    let pad = 11usize.saturating_sub(width);
    let _ = writeln!(out, "{label}{:pad$}{value}", "");
}

/// The lines every view of one item starts with.
fn head(out: &mut String, s: &ItemStatus, v: View) {
    line(out, v, "id:", "编号：", &s.id);
    line(out, v, "origin:", "报送单位：", &s.origin);
    line(out, v, "class:", "类别：", class_of(s.priority, v));
    line(out, v, "title:", "标题：", &s.title);
    let body = if !s.report_damaged.is_empty() {
        match v.lang {
            Lang::Zh => format!(
                "已损坏：本节点磁盘上保存的正文无法完整读出，不会发送或转交（{}）",
                s.report_damaged
            ),
            Lang::En => format!(
                "DAMAGED: the report kept on this node's disk cannot be read back whole; it is not sent on ({})",
                s.report_damaged
            ),
        }
    } else if s.pruned_unix_ms > 0 {
        match v.lang {
            Lang::Zh => format!(
                "已于 {} 按保留期限清理（正文和附件；摘要、回执和处理记录仍在）",
                v.show(s.pruned_unix_ms)
            ),
            Lang::En => format!(
                "pruned {} after the retention period (report and attachments; digest, receipts and decisions kept)",
                v.show(s.pruned_unix_ms)
            ),
        }
    } else {
        format!("{} {}", s.body_bytes, v.t("bytes", "字节"))
    };
    line(out, v, "body:", "正文：", body);
    line(out, v, "state:", "状态：", state_name(s.state, v));
    if s.state == ItemState::Receipted as i32 && s.delivery.is_none() {
        let holder = s
            .receipt_body
            .as_ref()
            .map_or_else(|| "?".to_string(), |r| r.receiver.clone());
        let text = match v.lang {
            Lang::Zh => format!(
                "自 {} 起由 {holder} 保管，尚未送达最终枢纽；时限 {}",
                v.show(s.receipted_unix_ms),
                v.show(s.deadline_unix_ms)
            ),
            Lang::En => format!(
                "in custody at {holder} since {}, not yet delivered to the final hub; due {}",
                v.show(s.receipted_unix_ms),
                v.show(s.deadline_unix_ms)
            ),
        };
        line(out, v, "progress:", "进度：", text);
    }
    line(out, v, "created:", "报送时间：", v.show(s.created_unix_ms));
    line(out, v, "stored:", "入库时间：", v.show(s.stored_unix_ms));
    line(out, v, "deadline:", "时限：", v.show(s.deadline_unix_ms));
    if s.receipted_unix_ms > 0 {
        let after = s.receipted_unix_ms - s.created_unix_ms;
        let text = match v.lang {
            Lang::Zh => format!("{}（报送后 {after} 毫秒）", v.show(s.receipted_unix_ms)),
            Lang::En => format!(
                "{} ({after} ms after submission)",
                v.show(s.receipted_unix_ms)
            ),
        };
        line(out, v, "receipted:", "回执时间：", text);
    }
    if s.overdue_unix_ms > 0 {
        let text = format!("{} {}", v.t("since", "自"), v.show(s.overdue_unix_ms));
        line(out, v, "OVERDUE:", "已超时：", text);
    }
    if s.escalated_unix_ms > 0 {
        line(
            out,
            v,
            "escalated:",
            "已升级：",
            v.show(s.escalated_unix_ms),
        );
    }
    if !s.pending_routes.is_empty() {
        line(
            out,
            v,
            "sending:",
            "正在发往：",
            s.pending_routes.join(", "),
        );
    }
    if !s.refusal.is_empty() {
        line(out, v, "refused:", "被拒收：", &s.refusal);
    }
    match zhibao::proto::LinkKind::try_from(s.link).unwrap_or_default() {
        zhibao::proto::LinkKind::Supplements => {
            line(out, v, "adds to:", "补充：", &s.links_to);
        }
        zhibao::proto::LinkKind::Corrects => line(out, v, "corrects:", "更正：", &s.links_to),
        zhibao::proto::LinkKind::Withdraws => line(out, v, "withdraws:", "撤回：", &s.links_to),
        zhibao::proto::LinkKind::Reviewed => {
            line(out, v, "signs off:", "审核：", &s.links_to);
        }
        zhibao::proto::LinkKind::None => {}
    }
    review_lines(out, s, v);
    if !s.withdrawn_by.is_empty() {
        line(out, v, "WITHDRAWN:", "已撤回：", &s.withdrawn_by);
    }
    if !s.corrected_by.is_empty() {
        let text = format!(
            "{} {}",
            v.t("see the newer version", "见新版本"),
            s.corrected_by
        );
        line(out, v, "CORRECTED:", "已更正：", text);
    }
    for sup in &s.supplements {
        line(out, v, "added to:", "已补充：", sup);
    }
    if s.answer_overdue_unix_ms > 0 {
        let text = format!(
            "{} {}",
            v.t("since", "自"),
            v.show(s.answer_overdue_unix_ms)
        );
        line(out, v, "ANSWER LATE:", "补充超时：", text);
    }
    if s.closed_unix_ms > 0 {
        line(out, v, "closed:", "已办结：", v.show(s.closed_unix_ms));
    } else if s.answer_by_unix_ms > 0 {
        let text = format!(
            "{} {}",
            v.t("more information is due by", "须在此前补充："),
            v.show(s.answer_by_unix_ms)
        );
        line(out, v, "RETURNED:", "已退回：", text);
    }
}

/// Review before sending (把关): the sign-off in the signed report, who
/// may act on an item awaiting review, and why one was returned.
fn review_lines(out: &mut String, s: &ItemStatus, v: View) {
    if let Some(r) = &s.review {
        line(out, v, "reviewed:", "审核：", review_text(r, v));
    }
    if !s.reviewed_by.is_empty() {
        line(out, v, "signed off:", "已审核：", &s.reviewed_by);
    }
    if s.state == ItemState::ReturnedByReview as i32 {
        let text = format!("{}: {}", s.offered_to, s.review_note);
        line(out, v, "RETURNED:", "审核退回：", text);
    } else if s.review_auto_send_unix_ms > 0 {
        let who = match s.offered_to.as_str() {
            "deputy" => v.t("director or deputy", "主任或副主任"),
            _ => v.t("director", "主任"),
        };
        let text = match v.lang {
            Lang::Zh => format!(
                "由{who}审核；{} 起未审核即发出",
                v.show(s.review_auto_send_unix_ms)
            ),
            Lang::En => format!(
                "by the {who}; goes unreviewed at {}",
                v.show(s.review_auto_send_unix_ms)
            ),
        };
        line(out, v, "review:", "待审核：", text);
    }
}

/// A sign-off in words: who, in what role, when, the outcome and note.
pub(crate) fn review_text(r: &ReviewSignOff, v: View) -> String {
    let role = match (r.role.as_str(), v.lang) {
        ("director", Lang::Zh) => "主任",
        ("deputy", Lang::Zh) => "副主任",
        (role, _) => role,
    };
    let mut text = match ReviewOutcome::try_from(r.outcome).unwrap_or_default() {
        ReviewOutcome::Approved => match v.lang {
            Lang::Zh => format!("{role}{} 于 {} 审核同意", r.reviewer, v.show(r.at_unix_ms)),
            Lang::En => format!(
                "approved by {} ({role}) at {}",
                r.reviewer,
                v.show(r.at_unix_ms)
            ),
        },
        ReviewOutcome::TimedOut => match v.lang {
            Lang::Zh => format!("审核超时，于 {} 未经审核发出", v.show(r.at_unix_ms)),
            Lang::En => format!(
                "review timed out: sent unreviewed at {}",
                v.show(r.at_unix_ms)
            ),
        },
        ReviewOutcome::Unspecified => "?".into(),
    };
    if !r.note.is_empty() {
        let _ = write!(text, " — {}", r.note);
    }
    text
}

/// What checking a receipt or decision found, in the reader's language
/// (see [`zhibao::verdict`]); `receipt` as there.
fn checked(verdict: Option<&Verdict>, english: &str, receipt: bool, v: View) -> String {
    zhibao::verdict::words(verdict, english, receipt, v.lang == Lang::Zh)
}

/// The receipts part of a status.
fn receipts(out: &mut String, s: &ItemStatus, v: View) {
    let kind = |k: i32| match (k, v.lang) {
        (1, Lang::En) => "custody",
        (1, Lang::Zh) => "保管",
        (2, Lang::En) => "delivery",
        (2, Lang::Zh) => "送达",
        _ => "?",
    };
    if let Some(r) = &s.receipt_body {
        let text = match v.lang {
            Lang::Zh => format!(
                "{} 的{}回执，入库 {}",
                r.receiver,
                kind(r.kind),
                v.show(r.stored_unix_ms)
            ),
            Lang::En => format!(
                "{} receipt from {}, stored {}",
                kind(r.kind),
                r.receiver,
                v.show(r.stored_unix_ms)
            ),
        };
        line(out, v, "receipt:", "回执：", text);
        line(
            out,
            v,
            "  digest:",
            "  摘要：",
            format!("sha256:{}", hex(&r.report_sha256)),
        );
        let check = checked(s.receipt_verdict.as_ref(), &s.receipt_verification, true, v);
        line(out, v, "  check:", "  验证：", check);
    } else {
        line(out, v, "receipt:", "回执：", v.t("none yet", "尚无"));
    }
    for rr in &s.route_receipts {
        let at = rr.receipt_body.as_ref().map_or(0, |r| r.stored_unix_ms);
        let k = kind(rr.receipt_body.as_ref().map_or(0, |r| r.kind));
        let check = checked(rr.verdict.as_ref(), &rr.verification, true, v);
        let _ = match v.lang {
            Lang::Zh => writeln!(
                out,
                "  路由 {}：{k}，入库 {}；{check}",
                rr.route,
                v.show(at)
            ),
            Lang::En => writeln!(
                out,
                "  route {}: {k}, stored {}; {check}",
                rr.route,
                v.show(at)
            ),
        };
    }
    match &s.delivery {
        Some(d) => {
            let at = d.receipt_body.as_ref().map_or(0, |r| r.stored_unix_ms);
            let check = checked(d.verdict.as_ref(), &d.verification, true, v);
            let text = match v.lang {
                Lang::Zh => format!("已送达 {}，入库 {}；{check}", d.route, v.show(at)),
                Lang::En => format!("at hub {}, stored {}; {check}", d.route, v.show(at)),
            };
            line(out, v, "delivery:", "送达：", text);
        }
        None if s.state == ItemState::Receipted as i32 => {
            let text = v.t("not yet confirmed by the final hub", "最终枢纽尚未确认");
            line(out, v, "delivery:", "送达：", text);
        }
        None => {}
    }
}

/// One decision in one line.
pub fn decision_line(d: &DispositionView, v: View) -> String {
    let Some(b) = &d.body else {
        return format!(
            "? ({})",
            checked(d.verdict.as_ref(), &d.verification, false, v)
        );
    };
    let mut out = match v.lang {
        Lang::Zh => format!(
            "{}  {}（{}，{}）",
            v.show(b.at_unix_ms),
            kind_name_zh(b.kind),
            b.node,
            b.staff
        ),
        Lang::En => format!(
            "{}  {} ({}) by {}, {}",
            v.show(b.at_unix_ms),
            kind_name(b.kind),
            kind_name_zh(b.kind),
            b.node,
            b.staff
        ),
    };
    if !b.text.is_empty() {
        let _ = write!(out, "{}{}", v.t(": ", "："), b.text);
    }
    if b.kind == DispositionKind::Returned as i32 {
        let _ = write!(
            out,
            "{}{}",
            v.t(" — answer due ", "；补充时限 "),
            v.show(b.answer_by_unix_ms)
        );
    }
    let _ = write!(
        out,
        "  [{}]",
        checked(d.verdict.as_ref(), &d.verification, false, v)
    );
    out
}

/// The office's decisions part of a status.
fn decisions(out: &mut String, s: &ItemStatus, v: View) {
    if s.dispositions.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}", v.t("decisions:", "处理情况："));
    for d in &s.dispositions {
        let _ = writeln!(out, "  {}", decision_line(d, v));
    }
}

/// `zhibao show` output: the whole report as a person reads it.
pub fn show(s: &ItemStatus, v: View) -> String {
    let report = report_of(s).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "【{}】{}", class_of(s.priority, v), s.title);
    let _ = writeln!(out, "{}", "═".repeat(60));
    let from = match (v.lang, report.author.is_empty()) {
        (_, true) => s.origin.clone(),
        (Lang::Zh, false) => format!("{}（{}）", s.origin, report.author),
        (Lang::En, false) => format!("{}, written by {}", s.origin, report.author),
    };
    line(&mut out, v, "from:", "来自：", from);
    if s.from != s.origin && !s.from.is_empty() && s.from != "operator" {
        line(&mut out, v, "via:", "经由：", &s.from);
    }
    head(&mut out, s, v);
    let _ = writeln!(out, "── {} {}", v.t("text", "正文"), "─".repeat(52));
    let body = String::from_utf8_lossy(&report.body);
    let _ = writeln!(out, "{}", body.trim_end());
    if !report.attachments.is_empty() {
        let _ = writeln!(
            out,
            "── {} (zhibao fetch {} --attachment N -o FILE)",
            v.t("attachments", "附件"),
            s.id
        );
        for (i, a) in report.attachments.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {i}  {}  {}  sha256:{}",
                a.name,
                size(a.size),
                hex(&a.sha256)
            );
        }
    }
    let hops = s.report.as_ref().map_or(&[][..], |r| r.hops.as_slice());
    if !hops.is_empty() {
        let _ = writeln!(out, "── {}", v.t("hops", "经手节点"));
        for (i, h) in hops.iter().enumerate() {
            match HopStatement::decode(h.statement.as_slice()) {
                Ok(st) => {
                    let text = match v.lang {
                        Lang::Zh => format!(
                            "{} 于 {} 从 {} 接收",
                            st.relay,
                            v.show(st.stored_unix_ms),
                            st.received_from
                        ),
                        Lang::En => format!(
                            "{} took it from {} at {}",
                            st.relay,
                            st.received_from,
                            v.show(st.stored_unix_ms)
                        ),
                    };
                    let _ = writeln!(out, "  {}  {text}", i + 1);
                }
                Err(_) => {
                    let _ = writeln!(out, "  {}  ({})", i + 1, v.t("does not decode", "无法解码"));
                }
            }
        }
    }
    let _ = writeln!(out, "── {}", v.t("receipts", "回执"));
    receipts(&mut out, s, v);
    decision_list(&mut out, &s.dispositions, v.t("none yet", "尚无"), v);
    out
}

/// The decisions part of `show`: a heading, then one line each, or `none`.
pub(crate) fn decision_list(out: &mut String, list: &[DispositionView], none: &str, v: View) {
    let _ = writeln!(out, "── {}", v.t("decisions", "处理情况"));
    if list.is_empty() {
        let _ = writeln!(out, "  {none}");
    }
    for d in list {
        let _ = writeln!(out, "  {}", decision_line(d, v));
    }
}

/// A size for people: bytes, KiB or MiB.
pub(crate) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// One line per item for `zhibao list`: id, county, class, state,
/// deadline, marks, title and the start of the text.
pub fn status_line(s: &ItemStatus, v: View) -> String {
    let mut marks = Vec::new();
    if s.state == ItemState::HeldBelow as i32 {
        marks.push(format!(
            "{} {} {} {}: {}",
            v.t("HELD at", "压存于"),
            s.held_at,
            v.t("since", "自"),
            v.short(s.held_since_unix_ms),
            s.held_why
        ));
    } else if s.overdue_unix_ms > 0 {
        marks.push(v.t("OVERDUE", "超时").to_string());
    }
    if s.escalated_unix_ms > 0 {
        marks.push(v.t("escalated", "已升级").to_string());
    }
    if !s.report_damaged.is_empty() {
        marks.push(v.t("REPORT DAMAGED", "正文损坏").to_string());
    }
    if s.decided != 0 {
        marks.push(kind_name_zh(s.decided).to_string());
    }
    if s.answer_by_unix_ms > 0 && s.closed_unix_ms == 0 {
        let by = v.short(s.answer_by_unix_ms);
        marks.push(format!("{} {by}", v.t("answer due", "补充时限")));
    }
    if s.answer_overdue_unix_ms > 0 {
        marks.push(v.t("ANSWER LATE", "补充超时").to_string());
    }
    let linked = |en: &str, zh: &str, id: &str| format!("{} {id}", v.t(en, zh));
    if !s.withdrawn_by.is_empty() {
        marks.push(linked("withdrawn by", "已撤回，撤回报告", &s.withdrawn_by));
    }
    if !s.corrected_by.is_empty() {
        marks.push(linked("corrected by", "已更正，新版本", &s.corrected_by));
    }
    match zhibao::proto::LinkKind::try_from(s.link).unwrap_or_default() {
        zhibao::proto::LinkKind::Supplements => {
            marks.push(linked("adds to", "补充", &s.links_to));
        }
        zhibao::proto::LinkKind::Corrects => marks.push(linked("corrects", "更正", &s.links_to)),
        zhibao::proto::LinkKind::Withdraws => marks.push(linked("withdraws", "撤回", &s.links_to)),
        zhibao::proto::LinkKind::Reviewed => marks.push(linked("signs off", "审核", &s.links_to)),
        zhibao::proto::LinkKind::None => {}
    }
    if !s.reviewed_by.is_empty() {
        marks.push(linked("signed off by", "已审核", &s.reviewed_by));
    }
    format!(
        "{}\t{}\t{}\t{}\t{} {}\t{}\t{}\t{}",
        s.id,
        s.origin,
        class_word(s.priority, v),
        state_name(s.state, v),
        v.t("due", "时限"),
        v.short(s.deadline_unix_ms),
        marks.join(","),
        s.title,
        s.preview
    )
}

pub fn decision_json(d: &DispositionView) -> Value {
    let b = d.body.clone().unwrap_or_default();
    json!({
        "node": b.node,
        "seq": b.seq,
        "kind": kind_name(b.kind),
        "text": b.text,
        "staff": b.staff,
        "at_unix_ms": b.at_unix_ms,
        "answer_by_unix_ms": b.answer_by_unix_ms,
        "verification": d.verification,
    })
}

fn route_receipt_json(r: &RouteReceipt) -> Value {
    let b = r.receipt_body.clone().unwrap_or_default();
    json!({
        "route": r.route,
        "kind": receipt_kind(b.kind),
        "receiver": b.receiver,
        "stored_unix_ms": b.stored_unix_ms,
        "on_time": b.on_time,
        "verification": r.verification,
    })
}

/// An item as one JSON object (`list --json`, `status --json`, `show
/// --json`); with the report, its text and attachments too.
pub fn status_json(s: &ItemStatus) -> Value {
    let mut v = json!({
        "id": s.id,
        "origin": s.origin,
        "from": s.from,
        "class": class_key(s.priority),
        "state": state_key(s.state),
        "title": s.title,
        "preview": s.preview,
        "body_bytes": s.body_bytes,
        "pruned_unix_ms": s.pruned_unix_ms,
        "report_damaged": s.report_damaged,
        "created_unix_ms": s.created_unix_ms,
        "stored_unix_ms": s.stored_unix_ms,
        "deadline_unix_ms": s.deadline_unix_ms,
        "receipted_unix_ms": s.receipted_unix_ms,
        "overdue_unix_ms": s.overdue_unix_ms,
        "escalated_unix_ms": s.escalated_unix_ms,
        "refusal": s.refusal,
        "pending_routes": s.pending_routes,
        "decided": if s.decided == 0 { Value::Null } else { kind_name(s.decided).into() },
        "closed_unix_ms": s.closed_unix_ms,
        "answer_by_unix_ms": s.answer_by_unix_ms,
        "answer_overdue_unix_ms": s.answer_overdue_unix_ms,
        "held_at": s.held_at,
        "held_since_unix_ms": s.held_since_unix_ms,
        "held_why": s.held_why,
        "link": match zhibao::proto::LinkKind::try_from(s.link).unwrap_or_default() {
            zhibao::proto::LinkKind::None => Value::Null,
            k => k.as_str_name().trim_start_matches("LINK_KIND_").to_lowercase().into(),
        },
        "links_to": s.links_to,
        "withdrawn_by": s.withdrawn_by,
        "corrected_by": s.corrected_by,
        "supplements": s.supplements,
        "review": s.review.as_ref().map(review_json),
        "reviewed_by": s.reviewed_by,
        "offered_to": s.offered_to,
        "review_auto_send_unix_ms": s.review_auto_send_unix_ms,
        "review_note": s.review_note,
        "receipts": s.route_receipts.iter().map(route_receipt_json).collect::<Vec<_>>(),
        "delivery": s.delivery.as_ref().map(route_receipt_json),
        "decisions": s.dispositions.iter().map(decision_json).collect::<Vec<_>>(),
    });
    if let Some(report) = report_of(s) {
        v["author"] = report.author.into();
        v["text"] = String::from_utf8_lossy(&report.body).into_owned().into();
        v["attachments"] = report
            .attachments
            .iter()
            .map(|a| json!({"name": a.name, "size": a.size, "sha256": hex(&a.sha256)}))
            .collect::<Vec<_>>()
            .into();
    }
    v
}

/// A sign-off as JSON.
pub(crate) fn review_json(r: &ReviewSignOff) -> Value {
    json!({
        "reviewer": r.reviewer,
        "role": r.role,
        "at_unix_ms": r.at_unix_ms,
        "note": r.note,
        "outcome": ReviewOutcome::try_from(r.outcome)
            .unwrap_or_default()
            .as_str_name()
            .trim_start_matches("REVIEW_OUTCOME_")
            .to_lowercase(),
    })
}

fn event_kind(kind: i32) -> String {
    EventKind::try_from(kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("EVENT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "?".into())
}

/// One line per event for `zhibao watch`: in English, the kind and class
/// as `--json` and `--class` name them; in Chinese, in words.
pub fn event(e: &Event, v: View) -> String {
    let kind = match (v.lang, EventKind::try_from(e.kind)) {
        (Lang::Zh, Ok(k)) => k.words().1.to_string(),
        _ => event_kind(e.kind),
    };
    let class = if e.priority == 0 {
        ""
    } else {
        class_word(e.priority, v)
    };
    format!(
        "{}\t{kind}\t{}\t{class}\t{}\t{}",
        v.show(e.at_unix_ms),
        if e.item_id.is_empty() {
            "-"
        } else {
            &e.item_id
        },
        if e.route.is_empty() { "-" } else { &e.route },
        e.said(v.lang == Lang::Zh)
    )
}

/// An event as one JSON object.
pub fn event_json(e: &Event) -> Value {
    json!({
        "at_unix_ms": e.at_unix_ms,
        "kind": event_kind(e.kind),
        "item_id": e.item_id,
        "class": Class::from_proto(e.priority).map(Class::name),
        "route": e.route,
        "message": e.message,
        "message_zh": e.message_zh,
    })
}

/// The report an inbox item carries (empty if it does not decode).
pub(crate) fn inbox_report(item: &InboxItem) -> Report {
    item.item
        .as_ref()
        .and_then(|s: &SignedReport| Report::decode(s.report.as_slice()).ok())
        .unwrap_or_default()
}

/// One line per inbox item for `zhibao inbox`.
pub fn inbox_item(item: &InboxItem, v: View) -> String {
    let report = inbox_report(item);
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        report.id,
        report.origin,
        class_word(report.priority, v),
        v.short(report.created_unix_ms),
        report.title,
        zhibao::envelope::preview(&report.body),
        position(item)
    )
}

/// Where an inbox item leaves its reader: the cursor after it, or, for a
/// durable consumer (whose position the hub keeps), how many times it was
/// sent.
fn position(item: &InboxItem) -> String {
    if item.deliveries > 0 {
        format!("deliveries={}", item.deliveries)
    } else {
        let c = item.next.unwrap_or_default();
        format!("cursor={},{},{}", c.emergency, c.bad_news, c.routine)
    }
}

/// An inbox item as one JSON object.
pub fn inbox_json(item: &InboxItem) -> Value {
    let report = inbox_report(item);
    let c = item.next.unwrap_or_default();
    json!({
        "id": report.id,
        "origin": report.origin,
        "author": report.author,
        "class": class_key(report.priority),
        "title": report.title,
        "text": String::from_utf8_lossy(&report.body),
        "created_unix_ms": report.created_unix_ms,
        "deadline_unix_ms": report.deadline_unix_ms,
        "attachments": report.attachments.iter()
            .map(|a| json!({"name": a.name, "size": a.size, "sha256": hex(&a.sha256)}))
            .collect::<Vec<_>>(),
        "cursor": format!("{},{},{}", c.emergency, c.bad_news, c.routine),
        "deliveries": item.deliveries,
    })
}

/// `zhibao status` without an id: the node itself.
pub(crate) fn node(n: &zhibao::proto::NodeStatus, v: View) -> String {
    let secs = |s: i64| v.show(s.saturating_mul(1000));
    let mut out = String::new();
    line(&mut out, v, "node:", "节点：", &n.node_id);
    let cert = match v.lang {
        Lang::Zh => format!("有效期至 {}", secs(n.cert_not_after)),
        Lang::En => format!("valid until {}", secs(n.cert_not_after)),
    };
    line(&mut out, v, "cert:", "证书：", cert);
    let crl = match v.lang {
        Lang::Zh => format!(
            "第 {} 号，下次更新 {}，{}",
            n.crl_number,
            secs(n.crl_next_update),
            crl_state_zh(&n.crl_state)
        ),
        Lang::En => format!(
            "number {}, next update {}, {}",
            n.crl_number,
            secs(n.crl_next_update),
            n.crl_state
        ),
    };
    line(&mut out, v, "crl:", "吊销列表：", crl);
    if n.routes.is_empty() {
        let none = v.t(
            "none (a hub: items end here)",
            "无（最终枢纽：信息在此入库）",
        );
        line(&mut out, v, "routes:", "上报路由：", none);
    }
    for r in &n.routes {
        let text = match v.lang {
            Lang::Zh => format!(
                "{}（{}）：{}，在途 {} 条",
                r.route,
                route_word_zh(&r.role),
                route_word_zh(&r.state),
                r.in_flight
            ),
            Lang::En => format!(
                "{} ({}): {}, {} in flight",
                r.route, r.role, r.state, r.in_flight
            ),
        };
        line(&mut out, v, "route:", "上报路由：", text);
    }
    let overdue = match v.lang {
        Lang::Zh => format!("本节点累计 {} 条信息超时", n.overdue_total),
        Lang::En => format!("{} items ever missed their deadline here", n.overdue_total),
    };
    line(&mut out, v, "overdue:", "超时：", overdue);
    out
}

/// The CRL's state as the node says it (`NodeStatus.crl_state`), in
/// Chinese; anything this build does not know stays as said.
fn crl_state_zh(state: &str) -> String {
    match state {
        "none configured" => "未配置".into(),
        "fresh" => "有效".into(),
        "stale: relay traffic refused" => "已失效，拒收中继流量".into(),
        s => match s.strip_prefix("expired, tolerated until ") {
            Some(until) => format!("已过期，宽限至 {until}"),
            None => s.into(),
        },
    }
}

/// A route's role or state as the node says it (`RouteStatus`), in
/// Chinese; anything this build does not know stays as said.
fn route_word_zh(word: &str) -> &str {
    match word {
        "primary" => "主路由",
        "alternate" => "同级备用",
        "skip" => "越级",
        "up" => "连通",
        "down" => "中断",
        "not tried yet" => "尚未连接",
        w => w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::when::Tz;

    #[test]
    fn a_damaged_report_is_said_in_both_languages_and_marked_in_a_listing() {
        let s = ItemStatus {
            id: "x1".into(),
            title: "河道险情".into(),
            report_damaged: "store: report bytes at offset 12 of /d/store.redb.log: damaged".into(),
            ..Default::default()
        };
        let en = View {
            tz: Tz::UTC,
            lang: Lang::En,
        };
        let zh = View {
            tz: Tz::UTC,
            lang: Lang::Zh,
        };
        let text = status(&s, en);
        assert!(
            text.contains("DAMAGED") && text.contains("store.redb.log"),
            "{text}"
        );
        let text = status(&s, zh);
        assert!(text.contains("正文：") && text.contains("已损坏"), "{text}");
        assert!(status_line(&s, zh).contains("正文损坏"));
        assert!(status_line(&s, en).contains("REPORT DAMAGED"));
        let whole = ItemStatus {
            report_damaged: String::new(),
            ..s
        };
        assert!(!status_line(&whole, en).contains("DAMAGED"));
        assert_eq!(status_json(&whole)["report_damaged"], "");
    }

    #[test]
    fn a_watcher_in_chinese_reads_events_and_the_node_in_chinese() {
        let (en, zh) = (
            View {
                tz: Tz::UTC,
                lang: Lang::En,
            },
            View {
                tz: Tz::UTC,
                lang: Lang::Zh,
            },
        );
        let e = Event {
            kind: EventKind::Receipted as i32,
            item_id: "x1".into(),
            priority: Class::Emergency.to_proto() as i32,
            route: "hub".into(),
            message: "receipt from hub, on time".into(),
            message_zh: "hub 的回执，按时".into(),
            at_unix_ms: 0,
        };
        let line = event(&e, zh);
        for want in ["已收回执", "重大紧急", "hub 的回执，按时"] {
            assert!(line.contains(want), "{want:?} not in {line}");
        }
        let line = event(&e, en);
        for want in [
            "\treceipted\t",
            "\temergency\t",
            "receipt from hub, on time",
        ] {
            assert!(line.contains(want), "{want:?} not in {line}");
        }
        // A node that gave no Chinese words: its English ones.
        let old = Event {
            message_zh: String::new(),
            ..e
        };
        assert!(event(&old, zh).ends_with("receipt from hub, on time"));

        let node_status = zhibao::proto::NodeStatus {
            node_id: "county-a".into(),
            crl_number: 3,
            crl_state: "expired, tolerated until 2026-12-01 08:00".into(),
            routes: vec![zhibao::proto::RouteStatus {
                route: "hub".into(),
                role: "primary".into(),
                state: "down".into(),
                in_flight: 2,
            }],
            ..Default::default()
        };
        let text = node(&node_status, zh);
        for want in [
            "第 3 号",
            "已过期，宽限至 2026-12-01 08:00",
            "hub（主路由）：中断，在途 2 条",
            "本节点累计 0 条信息超时",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        assert!(!text.contains("route"), "{text}");
        let text = node(&node_status, en);
        assert!(text.contains("hub (primary): down, 2 in flight"), "{text}");
    }
}
