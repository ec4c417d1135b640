//! `Operator`: the local operator API (Unix socket by default).
//!
//! Submissions are checked, written up as a [`Report`] with this node as
//! origin, signed, and stored durably before the id is returned.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use tracing::info;

use super::Shared;
use crate::class::Class;
use crate::envelope::{self, now_ms};
use std::pin::Pin;

use futures::Stream;

use crate::proto::{
    AttachmentRef, Event, EventKind, ItemState, ItemStatus, ListRequest, ListResponse, Receipt,
    Report, RouteReceipt, SignedReceipt, SignedReport, StatusRequest, SubmitRequest,
    SubmitResponse, WatchRequest, operator_server::Operator,
};
use crate::store::{ItemRecord, RecordState};

pub(crate) struct OperatorService {
    shared: Arc<Shared>,
}

impl OperatorService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn record(&self, id: &str) -> Result<ItemRecord, Status> {
        self.shared
            .store
            .get(id.to_string())
            .await?
            .ok_or_else(|| Status::not_found(format!("no item {id}")))
    }

    fn status_of(&self, id: &str, rec: &ItemRecord) -> ItemStatus {
        let report = SignedReport::decode(rec.signed.as_slice())
            .ok()
            .and_then(|s| Report::decode(s.report.as_slice()).ok())
            .unwrap_or_default();
        let state = match rec.state() {
            Some(RecordState::Queued) => {
                if self.shared.is_in_flight(id) {
                    ItemState::InFlight
                } else {
                    ItemState::Queued
                }
            }
            Some(RecordState::Receipted) => ItemState::Receipted,
            Some(RecordState::Refused) => ItemState::Refused,
            Some(RecordState::Delivered) => ItemState::Delivered,
            None => ItemState::Unspecified,
        };
        let mut status = ItemStatus {
            id: id.to_string(),
            origin: report.origin,
            priority: report.priority,
            title: report.title,
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
            ..Default::default()
        };
        if let Ok(signed) = SignedReceipt::decode(rec.delivery.as_slice())
            && !rec.delivery.is_empty()
        {
            let (verification, body) = self.verify_receipt(id, rec, &signed, None);
            status.delivery = Some(RouteReceipt {
                route: body
                    .as_ref()
                    .map(|b| b.receiver.clone())
                    .unwrap_or_default(),
                receipt_body: body,
                receipt: Some(signed),
                verification,
            });
        }
        for rr in &rec.route_receipts {
            let Ok(signed) = SignedReceipt::decode(rr.receipt.as_slice()) else {
                continue;
            };
            let (verification, _) = self.verify_receipt(id, rec, &signed, Some(&rr.route));
            status.route_receipts.push(RouteReceipt {
                route: rr.route.clone(),
                receipt_body: Receipt::decode(signed.receipt.as_slice()).ok(),
                receipt: Some(signed),
                verification,
            });
        }
        let receipt = if rec.state() == Some(RecordState::Delivered) {
            // A hub's own receipt for an item in its inbox.
            Some(self.shared.receipt_for(id, rec))
        } else if rec.receipt.is_empty() {
            None
        } else {
            SignedReceipt::decode(rec.receipt.as_slice()).ok()
        };
        if let Some(signed) = receipt {
            let (verification, body) = self.verify_receipt(id, rec, &signed, None);
            status.receipt_verification = verification;
            status.receipt_body = body;
            status.receipt = Some(signed);
        }
        status
    }

    /// Verifies a stored receipt now, against the CA and CRL, the item and,
    /// if given, the route that should have signed it.
    fn verify_receipt(
        &self,
        id: &str,
        rec: &ItemRecord,
        signed: &SignedReceipt,
        route: Option<&str>,
    ) -> (String, Option<Receipt>) {
        let trust = &self.shared.trust;
        let check = crate::receipt::open_for(signed, trust, Shared::now(), id, &rec.sha256, route);
        match check {
            Ok(r) => (
                format!(
                    "valid: signed by {}, digest matches, {}",
                    r.receiver,
                    if r.on_time { "on time" } else { "LATE" }
                ),
                Some(r),
            ),
            Err(e) => (format!("INVALID: {e}"), crate::receipt::peek(signed)),
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorService {
    type WatchStream = EventStream;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let mut events = self.shared.events.subscribe();
        let shutdown = self.shared.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                };
                let event = match event {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Event {
                        kind: EventKind::Alarm as i32,
                        message: format!("this watcher fell behind and missed {n} events"),
                        at_unix_ms: now_ms(),
                        ..Default::default()
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let req = request.into_inner();
        let limit = if req.limit == 0 {
            1000
        } else {
            req.limit.min(100_000) as usize
        };
        let records = self.shared.store.list(req.overdue_only, limit).await?;
        Ok(Response::new(ListResponse {
            items: records
                .iter()
                .map(|(id, rec)| self.status_of(id, rec))
                .collect(),
            overdue_total: self.shared.store.overdue_total().await?,
        }))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let req = request.into_inner();
        let shared = &self.shared;
        let limits = &shared.cfg.limits;
        let class = Class::from_proto(req.priority).ok_or_else(|| {
            Status::invalid_argument(format!(
                "unknown class {}: use emergency, bad_news or routine",
                req.priority
            ))
        })?;
        let title = req.title.trim();
        if title.is_empty() {
            return Err(Status::invalid_argument("title is empty"));
        }
        if title.len() > limits.max_title_bytes {
            return Err(Status::invalid_argument(format!(
                "title is {} bytes, over the limit of {} (limits.max_title_bytes)",
                title.len(),
                limits.max_title_bytes
            )));
        }
        // Room for the envelope fields around the body.
        let budget = limits.max_report_bytes.saturating_sub(title.len() + 256);
        if req.body.len() > budget {
            return Err(Status::resource_exhausted(format!(
                "body is {} bytes, over the limit of {budget} bytes for this title (limits.max_report_bytes = {})",
                req.body.len(),
                limits.max_report_bytes
            )));
        }
        if req.attachments.len() > envelope::MAX_ATTACHMENTS {
            return Err(Status::invalid_argument(format!(
                "{} attachments; at most {}",
                req.attachments.len(),
                envelope::MAX_ATTACHMENTS
            )));
        }
        let total: u64 = req.attachments.iter().map(|a| a.data.len() as u64).sum();
        if total > limits.max_attachment_bytes {
            return Err(Status::resource_exhausted(format!(
                "attachments are {total} bytes, over the limit of {} (limits.max_attachment_bytes)",
                limits.max_attachment_bytes
            )));
        }
        if req
            .attachments
            .iter()
            .any(|a| a.name.is_empty() || a.name.len() > 256)
        {
            return Err(Status::invalid_argument(
                "every attachment needs a name of 1 to 256 bytes",
            ));
        }
        let now = now_ms();
        if req.deadline_unix_ms != 0 && req.deadline_unix_ms <= now {
            return Err(Status::invalid_argument("deadline is in the past"));
        }
        let id = envelope::new_item_id();
        // The attachments go to disk first, in chunks; the item that names
        // them is stored after, so an acknowledged item always has them.
        let chunk = limits.chunk_bytes as usize;
        let mut refs = Vec::with_capacity(req.attachments.len());
        for (i, a) in req.attachments.into_iter().enumerate() {
            refs.push(AttachmentRef {
                sha256: envelope::sha256(&a.data).to_vec(),
                size: a.data.len() as u64,
                chunk_size: limits.chunk_bytes,
                name: a.name,
            });
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            // 64 chunks (4 MiB at the default size) per write.
            for (n, group) in a.data.chunks(chunk * 64).enumerate() {
                let first = u32::try_from(n * 64).unwrap_or(u32::MAX);
                let chunks = group.chunks(chunk).map(<[u8]>::to_vec).collect();
                shared
                    .store
                    .put_chunks(id.clone(), index, first, chunks)
                    .await?;
            }
        }
        let report = Report {
            id,
            origin: shared.identity.node_id().to_string(),
            priority: class.to_proto() as i32,
            title: title.to_string(),
            body: req.body,
            created_unix_ms: now,
            // Stamped at the origin so every hop measures the same deadline.
            deadline_unix_ms: shared.deadline_ms(class, now, req.deadline_unix_ms),
            attachments: refs,
        };
        let signed = envelope::seal(&report, &shared.identity);
        let verified = envelope::Verified {
            sha256: envelope::sha256(&signed.report),
            class,
            holder: report.origin.clone(),
            report,
        };
        let (rec, _) = shared
            .accept(&signed, &verified, crate::store::FROM_OPERATOR)
            .await?;
        info!(id = %verified.report.id, class = %class, bytes = verified.report.body.len(), stored_ms = rec.stored_ms, "submitted");
        Ok(Response::new(SubmitResponse {
            id: verified.report.id,
        }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<ItemStatus>, Status> {
        let id = request.into_inner().id;
        envelope::check_id(&id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rec = self.record(&id).await?;
        Ok(Response::new(self.status_of(&id, &rec)))
    }

    async fn wait_receipt(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<ItemStatus>, Status> {
        let id = request.into_inner().id;
        envelope::check_id(&id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        loop {
            let rec = self.record(&id).await?;
            if rec.state() != Some(RecordState::Queued) {
                return Ok(Response::new(self.status_of(&id, &rec)));
            }
            // Register, then look again, so a receipt stored in between is not missed.
            let changed = self.shared.store.changed(&id);
            let rec = self.record(&id).await?;
            if rec.state() != Some(RecordState::Queued) {
                return Ok(Response::new(self.status_of(&id, &rec)));
            }
            tokio::select! {
                r = changed => if r.is_err() {
                    return Err(Status::unavailable("node is shutting down"));
                },
                () = self.shared.shutdown.cancelled() => {
                    return Err(Status::unavailable("node is shutting down"));
                }
            }
        }
    }
}
