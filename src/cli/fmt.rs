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
    ItemStatus, Report, RouteReceipt, SignedReport,
};

use super::when::Tz;

/// The name of an item state.
pub fn state_name(state: i32) -> &'static str {
    match ItemState::try_from(state).unwrap_or(ItemState::Unspecified) {
        ItemState::Queued => "queued",
        ItemState::InFlight => "in flight",
        ItemState::Receipted => "receipted",
        ItemState::Refused => "refused",
        ItemState::Delivered => "delivered (in this hub's inbox)",
        ItemState::Withdrawn => "withdrawn before it left (kept, not sent)",
        ItemState::Superseded => "corrected before it left (kept, not sent)",
        ItemState::HeldBelow => "HELD below past its deadline (not here yet)",
        ItemState::Unspecified => "unknown",
    }
}

/// A state as a script reads it: `queued`, `in_flight`, …
fn state_key(state: i32) -> String {
    ItemState::try_from(state)
        .unwrap_or(ItemState::Unspecified)
        .as_str_name()
        .trim_start_matches("ITEM_STATE_")
        .to_lowercase()
}

fn class_of(priority: i32) -> String {
    Class::from_proto(priority).map_or_else(
        || "?".to_string(),
        |c| format!("{} ({})", c.name(), c.name_zh()),
    )
}

fn class_key(priority: i32) -> &'static str {
    Class::from_proto(priority).map_or("unknown", Class::name)
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
pub fn status(s: &ItemStatus, tz: Tz) -> String {
    let mut out = String::new();
    head(&mut out, s, tz);
    receipts(&mut out, s, tz);
    decisions(&mut out, s, tz);
    out
}

/// The lines every view of one item starts with.
fn head(out: &mut String, s: &ItemStatus, tz: Tz) {
    let _ = writeln!(out, "id:        {}", s.id);
    let _ = writeln!(out, "origin:    {}", s.origin);
    let _ = writeln!(out, "class:     {}", class_of(s.priority));
    let _ = writeln!(out, "title:     {}", s.title);
    let _ = writeln!(out, "body:      {} bytes", s.body_bytes);
    let _ = writeln!(out, "state:     {}", state_name(s.state));
    if s.state == ItemState::Receipted as i32 && s.delivery.is_none() {
        let holder = s
            .receipt_body
            .as_ref()
            .map_or_else(|| "?".to_string(), |r| r.receiver.clone());
        let _ = writeln!(
            out,
            "progress:  in custody at {holder} since {}, not yet delivered to the final hub; due {}",
            tz.show(s.receipted_unix_ms),
            tz.show(s.deadline_unix_ms)
        );
    }
    let _ = writeln!(out, "created:   {}", tz.show(s.created_unix_ms));
    let _ = writeln!(out, "stored:    {}", tz.show(s.stored_unix_ms));
    let _ = writeln!(out, "deadline:  {}", tz.show(s.deadline_unix_ms));
    if s.receipted_unix_ms > 0 {
        let _ = writeln!(
            out,
            "receipted: {} ({} ms after submission)",
            tz.show(s.receipted_unix_ms),
            s.receipted_unix_ms - s.created_unix_ms
        );
    }
    if s.overdue_unix_ms > 0 {
        let _ = writeln!(out, "OVERDUE:   since {}", tz.show(s.overdue_unix_ms));
    }
    if s.escalated_unix_ms > 0 {
        let _ = writeln!(out, "escalated: {}", tz.show(s.escalated_unix_ms));
    }
    if !s.pending_routes.is_empty() {
        let _ = writeln!(out, "sending:   {}", s.pending_routes.join(", "));
    }
    if !s.refusal.is_empty() {
        let _ = writeln!(out, "refused:   {}", s.refusal);
    }
    let link = zhibao::proto::LinkKind::try_from(s.link).unwrap_or_default();
    match link {
        zhibao::proto::LinkKind::Supplements => {
            let _ = writeln!(out, "adds to:   {} (补充)", s.links_to);
        }
        zhibao::proto::LinkKind::Corrects => {
            let _ = writeln!(out, "corrects:  {} (更正)", s.links_to);
        }
        zhibao::proto::LinkKind::Withdraws => {
            let _ = writeln!(out, "withdraws: {} (撤回)", s.links_to);
        }
        zhibao::proto::LinkKind::None => {}
    }
    if !s.withdrawn_by.is_empty() {
        let _ = writeln!(out, "WITHDRAWN: by {}", s.withdrawn_by);
    }
    if !s.corrected_by.is_empty() {
        let _ = writeln!(out, "CORRECTED: see the newer version {}", s.corrected_by);
    }
    for sup in &s.supplements {
        let _ = writeln!(out, "added to:  by {sup} (补充)");
    }
    if s.answer_overdue_unix_ms > 0 {
        let _ = writeln!(
            out,
            "ANSWER OVERDUE: since {}",
            tz.show(s.answer_overdue_unix_ms)
        );
    }
    if s.closed_unix_ms > 0 {
        let _ = writeln!(out, "closed:    {} (办结)", tz.show(s.closed_unix_ms));
    } else if s.answer_by_unix_ms > 0 {
        let _ = writeln!(
            out,
            "RETURNED:  more information is due by {}",
            tz.show(s.answer_by_unix_ms)
        );
    }
}

/// The receipts part of a status.
fn receipts(out: &mut String, s: &ItemStatus, tz: Tz) {
    if let Some(r) = &s.receipt_body {
        let _ = writeln!(
            out,
            "receipt:   {} receipt from {}, stored {}",
            receipt_kind(r.kind),
            r.receiver,
            tz.show(r.stored_unix_ms)
        );
        let _ = writeln!(out, "  digest:  sha256:{}", hex(&r.report_sha256));
        let _ = writeln!(out, "  check:   {}", s.receipt_verification);
    } else {
        let _ = writeln!(out, "receipt:   none yet");
    }
    for rr in &s.route_receipts {
        let at = rr.receipt_body.as_ref().map_or(0, |r| r.stored_unix_ms);
        let kind = receipt_kind(rr.receipt_body.as_ref().map_or(0, |r| r.kind));
        let _ = writeln!(
            out,
            "  route {}: {kind}, stored {}; {}",
            rr.route,
            tz.show(at),
            rr.verification
        );
    }
    match &s.delivery {
        Some(d) => {
            let at = d.receipt_body.as_ref().map_or(0, |r| r.stored_unix_ms);
            let _ = writeln!(
                out,
                "delivery:  at hub {}, stored {}; {}",
                d.route,
                tz.show(at),
                d.verification
            );
        }
        None if s.state == ItemState::Receipted as i32 => {
            let _ = writeln!(out, "delivery:  not yet confirmed by the final hub");
        }
        None => {}
    }
}

/// One decision in one line.
pub fn decision_line(d: &DispositionView, tz: Tz) -> String {
    let Some(b) = &d.body else {
        return format!("? ({})", d.verification);
    };
    let mut line = format!(
        "{}  {} ({}) by {}, {}",
        tz.show(b.at_unix_ms),
        kind_name(b.kind),
        kind_name_zh(b.kind),
        b.node,
        b.staff
    );
    if !b.text.is_empty() {
        let _ = write!(line, ": {}", b.text);
    }
    if b.kind == DispositionKind::Returned as i32 {
        let _ = write!(line, " — answer due {}", tz.show(b.answer_by_unix_ms));
    }
    let _ = write!(line, "  [{}]", d.verification);
    line
}

/// The office's decisions part of a status.
fn decisions(out: &mut String, s: &ItemStatus, tz: Tz) {
    if s.dispositions.is_empty() {
        return;
    }
    let _ = writeln!(out, "decisions:");
    for d in &s.dispositions {
        let _ = writeln!(out, "  {}", decision_line(d, tz));
    }
}

/// `zhibao show` output: the whole report as a person reads it.
pub fn show(s: &ItemStatus, tz: Tz) -> String {
    let report = report_of(s).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "【{}】{}", class_of(s.priority), s.title);
    let _ = writeln!(out, "{}", "═".repeat(60));
    let author = if report.author.is_empty() {
        String::new()
    } else {
        format!(", written by {}", report.author)
    };
    let _ = writeln!(out, "from:      {}{author}", s.origin);
    if s.from != s.origin && !s.from.is_empty() && s.from != "operator" {
        let _ = writeln!(out, "via:       {}", s.from);
    }
    head(&mut out, s, tz);
    let _ = writeln!(out, "── text {}", "─".repeat(52));
    let body = String::from_utf8_lossy(&report.body);
    let _ = writeln!(out, "{}", body.trim_end());
    if !report.attachments.is_empty() {
        let _ = writeln!(
            out,
            "── attachments (zhibao fetch {} --attachment N -o FILE)",
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
        let _ = writeln!(out, "── hops");
        for (i, h) in hops.iter().enumerate() {
            match HopStatement::decode(h.statement.as_slice()) {
                Ok(st) => {
                    let _ = writeln!(
                        out,
                        "  {}  {} took it from {} at {}",
                        i + 1,
                        st.relay,
                        st.received_from,
                        tz.show(st.stored_unix_ms)
                    );
                }
                Err(_) => {
                    let _ = writeln!(out, "  {}  (does not decode)", i + 1);
                }
            }
        }
    }
    let _ = writeln!(out, "── receipts");
    receipts(&mut out, s, tz);
    let _ = writeln!(out, "── decisions");
    if s.dispositions.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for d in &s.dispositions {
        let _ = writeln!(out, "  {}", decision_line(d, tz));
    }
    out
}

/// A size for people: bytes, KiB or MiB.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// One line per item for `zhibao list`: id, county, class, state,
/// deadline, marks, title and the start of the text.
pub fn status_line(s: &ItemStatus, tz: Tz) -> String {
    let mut marks = Vec::new();
    if s.state == ItemState::HeldBelow as i32 {
        marks.push(format!(
            "HELD at {} since {}: {}",
            s.held_at,
            tz.short(s.held_since_unix_ms),
            s.held_why
        ));
    } else if s.overdue_unix_ms > 0 {
        marks.push("OVERDUE".to_string());
    }
    if s.escalated_unix_ms > 0 {
        marks.push("escalated".to_string());
    }
    if s.decided != 0 {
        marks.push(kind_name_zh(s.decided).to_string());
    }
    if s.answer_by_unix_ms > 0 && s.closed_unix_ms == 0 {
        marks.push(format!("answer due {}", tz.short(s.answer_by_unix_ms)));
    }
    if s.answer_overdue_unix_ms > 0 {
        marks.push("ANSWER OVERDUE".into());
    }
    if !s.withdrawn_by.is_empty() {
        marks.push(format!("withdrawn by {}", s.withdrawn_by));
    }
    if !s.corrected_by.is_empty() {
        marks.push(format!("corrected by {}", s.corrected_by));
    }
    match zhibao::proto::LinkKind::try_from(s.link).unwrap_or_default() {
        zhibao::proto::LinkKind::Supplements => marks.push(format!("adds to {}", s.links_to)),
        zhibao::proto::LinkKind::Corrects => marks.push(format!("corrects {}", s.links_to)),
        zhibao::proto::LinkKind::Withdraws => marks.push(format!("withdraws {}", s.links_to)),
        zhibao::proto::LinkKind::None => {}
    }
    format!(
        "{}\t{}\t{}\t{}\tdue {}\t{}\t{}\t{}",
        s.id,
        s.origin,
        class_key(s.priority),
        state_name(s.state),
        tz.short(s.deadline_unix_ms),
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

fn event_kind(kind: i32) -> String {
    EventKind::try_from(kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("EVENT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "?".into())
}

/// One line per event for `zhibao watch`.
pub fn event(e: &Event, tz: Tz) -> String {
    let class = Class::from_proto(e.priority).map_or("", Class::name);
    format!(
        "{}\t{}\t{}\t{class}\t{}\t{}",
        tz.show(e.at_unix_ms),
        event_kind(e.kind),
        if e.item_id.is_empty() {
            "-"
        } else {
            &e.item_id
        },
        if e.route.is_empty() { "-" } else { &e.route },
        e.message
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
    })
}

/// The report an inbox item carries (empty if it does not decode).
pub(crate) fn inbox_report(item: &InboxItem) -> Report {
    item.item
        .as_ref()
        .and_then(|s: &SignedReport| Report::decode(s.report.as_slice()).ok())
        .unwrap_or_default()
}

/// The start of a body's first non-empty line.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(60).collect()
}

/// One line per inbox item for `zhibao inbox`.
pub fn inbox_item(item: &InboxItem, tz: Tz) -> String {
    let report = inbox_report(item);
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        report.id,
        report.origin,
        class_key(report.priority),
        tz.short(report.created_unix_ms),
        report.title,
        preview(&report.body),
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
pub(crate) fn node(n: &zhibao::proto::NodeStatus, tz: Tz) -> String {
    let secs = |s: i64| tz.show(s.saturating_mul(1000));
    let mut out = String::new();
    let _ = writeln!(out, "node:      {}", n.node_id);
    let _ = writeln!(out, "cert:      valid until {}", secs(n.cert_not_after));
    let _ = writeln!(
        out,
        "crl:       number {}, next update {}, {}",
        n.crl_number,
        secs(n.crl_next_update),
        n.crl_state
    );
    if n.routes.is_empty() {
        let _ = writeln!(out, "routes:    none (a hub: items end here)");
    }
    for r in &n.routes {
        let _ = writeln!(
            out,
            "route:     {} ({}): {}, {} in flight",
            r.route, r.role, r.state, r.in_flight
        );
    }
    let _ = writeln!(
        out,
        "overdue:   {} items ever missed their deadline here",
        n.overdue_total
    );
    out
}
