//! Human-readable output for the command line and the demo.

use std::fmt::Write;

use prost::Message;

use zhibao::class::Class;
use zhibao::proto::{Event, EventKind, InboxItem, ItemState, ItemStatus, Report};

fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// The name of an item state.
pub fn state_name(state: i32) -> &'static str {
    match ItemState::try_from(state).unwrap_or(ItemState::Unspecified) {
        ItemState::Queued => "queued",
        ItemState::InFlight => "in flight",
        ItemState::Receipted => "receipted",
        ItemState::Refused => "refused",
        ItemState::Delivered => "delivered (in this hub's inbox)",
        ItemState::Unspecified => "unknown",
    }
}

/// `zhibao status` output.
pub fn status(s: &ItemStatus) -> String {
    let class = Class::from_proto(s.priority).map_or("?", Class::name);
    let mut out = String::new();
    let _ = writeln!(out, "id:        {}", s.id);
    let _ = writeln!(out, "origin:    {}", s.origin);
    let _ = writeln!(out, "class:     {class}");
    let _ = writeln!(out, "title:     {}", s.title);
    let _ = writeln!(out, "body:      {} bytes", s.body_bytes);
    let _ = writeln!(out, "state:     {}", state_name(s.state));
    let _ = writeln!(out, "created:   {}", time(s.created_unix_ms));
    let _ = writeln!(out, "stored:    {}", time(s.stored_unix_ms));
    let _ = writeln!(out, "deadline:  {}", time(s.deadline_unix_ms));
    if s.receipted_unix_ms > 0 {
        let _ = writeln!(
            out,
            "receipted: {} ({} ms after submission)",
            time(s.receipted_unix_ms),
            s.receipted_unix_ms - s.created_unix_ms
        );
    }
    if s.overdue_unix_ms > 0 {
        let _ = writeln!(out, "OVERDUE:   since {}", time(s.overdue_unix_ms));
    }
    if s.escalated_unix_ms > 0 {
        let _ = writeln!(out, "escalated: {}", time(s.escalated_unix_ms));
    }
    if !s.pending_routes.is_empty() {
        let _ = writeln!(out, "sending:   {}", s.pending_routes.join(", "));
    }
    if !s.refusal.is_empty() {
        let _ = writeln!(out, "refused:   {}", s.refusal);
    }
    if let Some(r) = &s.receipt_body {
        let kind = match r.kind {
            1 => "custody",
            2 => "delivery",
            _ => "?",
        };
        let _ = writeln!(
            out,
            "receipt:   {kind} receipt from {}, stored {}",
            r.receiver,
            time(r.stored_unix_ms)
        );
        let _ = writeln!(
            out,
            "  digest:  sha256:{}",
            zhibao::digest::hex(&r.report_sha256)
        );
        let _ = writeln!(out, "  check:   {}", s.receipt_verification);
    } else {
        let _ = writeln!(out, "receipt:   none yet");
    }
    for rr in &s.route_receipts {
        let at = rr.receipt_body.as_ref().map_or(0, |r| r.stored_unix_ms);
        let kind = match rr.receipt_body.as_ref().map(|r| r.kind) {
            Some(2) => "delivery",
            Some(1) => "custody",
            _ => "?",
        };
        let _ = writeln!(
            out,
            "  route {}: {kind}, stored {}; {}",
            rr.route,
            time(at),
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
                time(at),
                d.verification
            );
        }
        None if s.state == ItemState::Receipted as i32 => {
            let _ = writeln!(out, "delivery:  not yet confirmed by the final hub");
        }
        None => {}
    }
    out
}

/// One line per item for `zhibao list`.
pub fn status_line(s: &ItemStatus) -> String {
    let class = Class::from_proto(s.priority).map_or("?", Class::name);
    format!(
        "{}\t{class}\t{}\tdeadline {}\t{}{}\t{}",
        s.id,
        state_name(s.state),
        time(s.deadline_unix_ms),
        if s.overdue_unix_ms > 0 {
            "OVERDUE "
        } else {
            ""
        },
        if s.escalated_unix_ms > 0 {
            "escalated"
        } else {
            ""
        },
        s.title
    )
}

/// One line per event for `zhibao watch`.
pub fn event(e: &Event) -> String {
    let kind = EventKind::try_from(e.kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("EVENT_KIND_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| "?".into());
    let class = Class::from_proto(e.priority).map_or("", Class::name);
    format!(
        "{}\t{kind}\t{}\t{class}\t{}\t{}",
        time(e.at_unix_ms),
        if e.item_id.is_empty() {
            "-"
        } else {
            &e.item_id
        },
        if e.route.is_empty() { "-" } else { &e.route },
        e.message
    )
}

/// One line per inbox item for `zhibao inbox`.
pub fn inbox_item(item: &InboxItem) -> String {
    let report = item
        .item
        .as_ref()
        .and_then(|s| Report::decode(s.report.as_slice()).ok())
        .unwrap_or_default();
    let class = Class::from_proto(report.priority).map_or("?", Class::name);
    let c = item.next.unwrap_or_default();
    format!(
        "{}\t{}\t{class}\t{}\t{} bytes\tcursor={},{},{}",
        report.id,
        report.origin,
        report.title,
        report.body.len(),
        c.emergency,
        c.bad_news,
        c.routine
    )
}

/// `zhibao status` without an id: the node itself.
pub(crate) fn node(n: &zhibao::proto::NodeStatus) -> String {
    let secs = |s: i64| time(s.saturating_mul(1000));
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
