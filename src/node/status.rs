//! How an item looks to an operator: its class, state, times and receipts,
//! from its stored record.
//!
//! Every receipt in the store was verified before it was stored, so a
//! listing shows receipts as they were found then ([`Check::AsStored`]: no
//! cryptography per row); `zhibao status` asks for one item and gets every
//! receipt verified again now, against today's CA and CRL ([`Check::Now`]).

use std::time::SystemTime;

use prost::Message;

use super::custody::Custody;
use crate::proto::{
    DispositionView, ItemState, ItemStatus, Receipt, Report, RouteReceipt, SignedDisposition,
    SignedReceipt, SignedReport, Verdict, VerdictOutcome,
};
use crate::receipt;
use crate::store::{ItemRecord, RecordState};
use crate::trust::Trust;
use crate::verdict::{found, invalid};

/// How much checking a view does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check<'a> {
    /// Show receipts as verified when they were stored.
    AsStored,
    /// Verify every receipt again now; at a hub, also sign this node's own
    /// receipt for the item.
    Now(&'a Trust, &'a Custody),
}

/// What a listing says of a report the store could not read back whole;
/// `zhibao status` gives the file, offset and check instead.
const UNREADABLE: &str = "the stored report cannot be read back whole (damaged on this node's disk; the node's log names the file: ALARM report-damaged)";

/// The operator's view of a stored item; `in_flight` says whether a route
/// has it on the wire right now.
pub(crate) fn view(id: &str, rec: &ItemRecord, in_flight: bool, check: Check<'_>) -> ItemStatus {
    let report = SignedReport::decode(rec.signed.as_slice())
        .ok()
        .and_then(|s| Report::decode(s.report.as_slice()).ok())
        .unwrap_or_default();
    // Once pruned, the record's own copy of what a person reads.
    let brief = rec.brief();
    let state = item_state(rec, in_flight);
    let mut status = ItemStatus {
        id: id.to_string(),
        origin: brief.origin,
        priority: brief.priority,
        title: brief.title,
        pruned_unix_ms: rec.pruned_ms,
        state: state as i32,
        created_unix_ms: rec.created_ms,
        stored_unix_ms: rec.stored_ms,
        deadline_unix_ms: rec.deadline_ms,
        receipted_unix_ms: rec.receipted_ms,
        refusal: rec.refusal.clone(),
        body_bytes: report.body.len() as u64,
        overdue_unix_ms: rec.overdue_ms,
        escalated_unix_ms: rec.escalated_ms,
        pending_routes: rec.pending_routes.clone(),
        from: rec.from.clone(),
        preview: crate::envelope::preview(&report.body),
        decided: rec.decided,
        closed_unix_ms: rec.closed_ms,
        answer_by_unix_ms: rec.answer_by_ms,
        link: rec.link,
        links_to: rec.links_to.clone(),
        withdrawn_by: rec.withdrawn_by.clone(),
        corrected_by: rec.corrected_by.clone(),
        supplements: rec.supplements.clone(),
        answers: rec.answers.clone(),
        answer_overdue_unix_ms: rec.answer_overdue_ms,
        review: report.review,
        reviewed_by: rec.reviewed_by.clone(),
        report_damaged: if rec.unreadable() {
            UNREADABLE.to_string()
        } else {
            String::new()
        },
        ..Default::default()
    };
    if let Some(signed) = decode(&rec.delivery) {
        let (verification, verdict, body) = verify(id, rec, &signed, None, check);
        status.delivery = Some(RouteReceipt {
            route: body
                .as_ref()
                .map(|b| b.receiver.clone())
                .unwrap_or_default(),
            receipt_body: body,
            receipt: Some(signed),
            verification,
            verdict: Some(verdict),
        });
    }
    for rr in &rec.route_receipts {
        let Some(signed) = decode(&rr.receipt) else {
            continue;
        };
        let (verification, verdict, body) = verify(id, rec, &signed, Some(&rr.route), check);
        status.route_receipts.push(RouteReceipt {
            route: rr.route.clone(),
            receipt_body: body,
            receipt: Some(signed),
            verification,
            verdict: Some(verdict),
        });
    }
    if let Some(signed) = decode(&rec.receipt) {
        let (verification, verdict, body) = verify(id, rec, &signed, None, check);
        status.receipt_verification = verification;
        status.receipt_verdict = Some(verdict);
        status.receipt_body = body;
        status.receipt = Some(signed);
    } else if let (Some(RecordState::Delivered), Check::Now(_, custody)) = (rec.state(), check) {
        // At the final hub the receipt is this node's own, made on request.
        let signed = custody.receipt(id, rec);
        let body = receipt::peek(&signed);
        status.receipt_verdict = Some(found(
            VerdictOutcome::IssuedHere,
            body.as_ref().map_or("", |b| b.receiver.as_str()),
            body.as_ref().is_some_and(|b| b.on_time),
        ));
        status.receipt_body = body;
        status.receipt_verification = "issued by this node (the final hub) for its inbox".into();
        status.receipt = Some(signed);
    }
    status
}

/// A stored record's state as an operator sees it; `in_flight` says
/// whether a route has it on the wire right now.
pub(crate) fn item_state(rec: &ItemRecord, in_flight: bool) -> ItemState {
    match rec.state() {
        Some(RecordState::Queued) if in_flight => ItemState::InFlight,
        Some(RecordState::Queued) => ItemState::Queued,
        Some(RecordState::Receipted) => ItemState::Receipted,
        Some(RecordState::Refused) => ItemState::Refused,
        Some(RecordState::Delivered) => ItemState::Delivered,
        Some(RecordState::Withdrawn) => ItemState::Withdrawn,
        Some(RecordState::Superseded) => ItemState::Superseded,
        None => ItemState::Unspecified,
    }
}

/// An office decision on item `id` as an operator sees it: decoded and,
/// with [`Check::Now`], verified again against today's CA and CRL.
pub(crate) fn decision_view(
    id: &str,
    rec: &ItemRecord,
    bytes: &[u8],
    check: Check<'_>,
) -> DispositionView {
    let Ok(signed) = SignedDisposition::decode(bytes) else {
        return DispositionView {
            verification: "INVALID: does not decode".into(),
            verdict: Some(invalid("", "malformed")),
            ..Default::default()
        };
    };
    let (body, verification, verdict) = match check {
        Check::AsStored => match crate::disposition::peek(&signed) {
            Some(b) => {
                let words = format!("valid when stored: signed by {}", b.node);
                let verdict = found(VerdictOutcome::ValidWhenStored, &b.node, false);
                (Some(b), words, verdict)
            }
            None => (
                None,
                "INVALID: does not decode".to_string(),
                invalid("", "malformed"),
            ),
        },
        Check::Now(trust, _) => {
            match crate::disposition::open_for(&signed, trust, SystemTime::now(), id, &rec.sha256) {
                Ok(opened) => {
                    let words = format!("valid: signed by {}", opened.body.node);
                    let verdict = found(VerdictOutcome::Valid, &opened.body.node, false);
                    (Some(opened.body), words, verdict)
                }
                Err(e) => {
                    let body = crate::disposition::peek(&signed);
                    let signer = body.as_ref().map_or("", |b| b.node.as_str());
                    let verdict = invalid(signer, e.problem());
                    (body, format!("INVALID: {e}"), verdict)
                }
            }
        }
    };
    DispositionView {
        signed: Some(signed),
        body,
        verification,
        verdict: Some(verdict),
    }
}

fn decode(bytes: &[u8]) -> Option<SignedReceipt> {
    if bytes.is_empty() {
        return None;
    }
    SignedReceipt::decode(bytes).ok()
}

/// What a stored receipt proves, in words and as data, and its decoded
/// body.
fn verify(
    id: &str,
    rec: &ItemRecord,
    signed: &SignedReceipt,
    route: Option<&str>,
    check: Check<'_>,
) -> (String, Verdict, Option<Receipt>) {
    let timing = |r: &Receipt| if r.on_time { "on time" } else { "LATE" };
    match check {
        Check::AsStored => match receipt::peek(signed) {
            Some(r) => (
                format!(
                    "valid when stored: signed by {}, digest matched, {}",
                    r.receiver,
                    timing(&r)
                ),
                found(VerdictOutcome::ValidWhenStored, &r.receiver, r.on_time),
                Some(r),
            ),
            None => (
                "INVALID: does not decode".into(),
                invalid("", "malformed"),
                None,
            ),
        },
        Check::Now(trust, _) => {
            match receipt::open_for(signed, trust, SystemTime::now(), id, &rec.sha256, route) {
                Ok(r) => (
                    format!(
                        "valid: signed by {}, digest matches, {}",
                        r.receiver,
                        timing(&r)
                    ),
                    found(VerdictOutcome::Valid, &r.receiver, r.on_time),
                    Some(r),
                ),
                Err(e) => {
                    let body = receipt::peek(signed);
                    let signer = body.as_ref().map_or("", |b| b.receiver.as_str());
                    (format!("INVALID: {e}"), invalid(signer, e.problem()), body)
                }
            }
        }
    }
}
