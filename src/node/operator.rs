//! `Operator`: the local operator API (a Unix socket; optionally TCP with
//! mutual TLS for listed certificates).
//!
//! In: a submission is checked against the limits, its attachments are
//! stored in chunks, then it is written up as a report with this node as
//! origin, sealed (signed) and taken into [`Custody`] — on disk before the
//! id is returned. Out: status and listings of what the node holds, live
//! events, and a wait for an item's receipt.
//!
//! Where the office reviews before sending (把关, `[review]`), a submission
//! of that class is held unsigned instead, and sealed when a director or
//! deputy approves it (see `review`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::custody::Custody;
use super::desk::Desk;
use super::error::{Error, SubmitError};
use super::events::Events;
use super::review::Reviews;
use super::routes::Routes;
use super::said::Said;
use super::status::{Check, decision_view, view};
use super::who::Actor;
use crate::class::Class;
use crate::clock::Clock;
use crate::config::{Deadlines, Limits, ReviewMode};
use crate::digest::sha256;
use crate::envelope::{self, Draft, attachments};
use crate::proto::{
    Attachment, AttachmentRef, AttachmentRequest, AuditBatch, AuditRequest, DisposeRequest,
    DispositionView, Event, ItemState, ItemStatus, LinkKind, ListRequest, ListResponse,
    NodeRequest, NodeStatus, NoticeView, NoticesRequest, NoticesResponse, PruneRequest,
    PruneResponse, Report, ReviewListRequest, ReviewListResponse, ReviewRequest, RouteStatus,
    SignedReport, SolicitRequest, SolicitationStatusRequest, SolicitationStatusResponse,
    StatsRequest, StatsResponse, StatusRequest, StoreStatsRequest, StoreStatsResponse,
    SubmitRequest, SubmitResponse, TargetRequest, TargetResponse, WatchRequest,
    operator_server::Operator,
};
use crate::store::{FROM_OPERATOR, Found, ItemRecord, RecordState, Store};
use crate::trust::{Freshness, Keys, Trust};

/// Chunks of an attachment stored per write (4 MiB at the default size).
const CHUNKS_PER_WRITE: usize = 64;

/// Items a listing returns unless asked otherwise, and at most.
const LIST_DEFAULT: usize = 1000;
const LIST_MAX: usize = 100_000;
/// Longest a `Submit` waits for its receipt (`wait_receipt_ms`).
const MAX_SUBMIT_WAIT: Duration = Duration::from_secs(600);

/// The `Operator` service of one node.
#[derive(Debug)]
pub(crate) struct OperatorService {
    pub(crate) keys: Arc<Keys>,
    pub(crate) trust: Arc<Trust>,
    pub(crate) custody: Arc<Custody>,
    pub(crate) store: Store,
    pub(crate) routes: Arc<Routes>,
    pub(crate) events: Events,
    pub(crate) desk: Arc<Desk>,
    pub(crate) office: Arc<super::office::Office>,
    pub(crate) limits: Limits,
    pub(crate) deadlines: super::live::Live<Deadlines>,
    pub(crate) clock: Clock,
    pub(crate) shutdown: CancellationToken,
    pub(crate) reviews: Arc<Reviews>,
    pub(crate) retainer: Arc<super::retention::Retainer>,
}

impl OperatorService {
    /// Checks a submission and writes it up as a draft (its attachments
    /// still to be stored). These checks come first, with the operator's
    /// words, so nothing is stored for a submission that cannot go; the
    /// same limits are checked again, as at every door, when it is sealed.
    fn draft(
        &self,
        req: SubmitRequest,
        author: &Actor,
    ) -> Result<(Draft, Vec<Attachment>), SubmitError> {
        let limits = &self.limits;
        let class =
            Class::from_proto(req.priority).ok_or(SubmitError::UnknownClass(req.priority))?;
        let title = req.title.trim();
        if title.is_empty() {
            return Err(SubmitError::EmptyTitle);
        }
        if title.len() > limits.max_title_bytes {
            return Err(SubmitError::TitleTooLong {
                len: title.len(),
                limit: limits.max_title_bytes,
            });
        }
        // Room for the envelope fields around the body.
        let budget = limits.max_report_bytes.saturating_sub(title.len() + 256);
        if req.body.len() > budget {
            return Err(SubmitError::BodyTooLarge {
                len: req.body.len(),
                budget,
                limit: limits.max_report_bytes,
            });
        }
        if req.attachments.len() > attachments::MAX_ATTACHMENTS {
            return Err(SubmitError::TooManyAttachments(req.attachments.len()));
        }
        let total: u64 = req.attachments.iter().map(|a| a.data.len() as u64).sum();
        if total > limits.max_attachment_bytes {
            return Err(SubmitError::AttachmentsTooLarge {
                total,
                limit: limits.max_attachment_bytes,
            });
        }
        if req
            .attachments
            .iter()
            .any(|a| a.name.is_empty() || a.name.len() > attachments::MAX_NAME_BYTES)
        {
            return Err(SubmitError::AttachmentName(attachments::MAX_NAME_BYTES));
        }
        let now = self.clock.now_ms();
        if req.deadline_unix_ms != 0 && req.deadline_unix_ms <= now {
            return Err(SubmitError::DeadlineInPast);
        }
        // The deadline is stamped at the origin so every hop measures the same.
        let deadline = self
            .deadlines
            .get()
            .receipt_deadline(class, now, req.deadline_unix_ms);
        let mut draft = Draft::new(class, title.to_string(), req.body, now, deadline);
        draft.author.clone_from(&author.name);
        Ok((draft, req.attachments))
    }

    /// Stores an item's attachments in chunks, before the item that names
    /// them, so an acknowledged item always has them; returns their
    /// references for the report.
    async fn store_attachments(
        &self,
        id: &str,
        attachments: Vec<Attachment>,
    ) -> Result<Vec<AttachmentRef>, Error> {
        let chunk = self.limits.chunk_bytes as usize;
        let mut refs = Vec::with_capacity(attachments.len());
        for (index, a) in (0u32..).zip(attachments) {
            refs.push(AttachmentRef {
                sha256: sha256(&a.data).to_vec(),
                size: a.data.len() as u64,
                chunk_size: self.limits.chunk_bytes,
                name: a.name,
            });
            for (n, group) in (0u32..).zip(a.data.chunks(chunk * CHUNKS_PER_WRITE)) {
                let first = n.saturating_mul(CHUNKS_PER_WRITE as u32);
                let chunks = group.chunks(chunk).map(<[u8]>::to_vec).collect();
                self.store
                    .put_chunks(id.to_string(), index, first, chunks)
                    .await?;
            }
        }
        Ok(refs)
    }

    fn view(&self, id: &str, rec: &ItemRecord, check: Check<'_>) -> ItemStatus {
        view(id, rec, self.routes.is_in_flight(id), check)
    }

    /// For a follow-up of an earlier report of this node: checks that it
    /// can be made, and fills in what it takes from the original (its
    /// class; for a withdrawal, the title). Returns the link.
    async fn follow_up(
        &self,
        req: &mut SubmitRequest,
    ) -> Result<Option<(LinkKind, String)>, Error> {
        let kind = LinkKind::try_from(req.link).map_err(|_| Error::FollowUp {
            id: req.links_to.clone(),
            why: Said::both(
                format!("unknown link kind {}", req.link),
                format!("未知的关联类型 {}", req.link),
            ),
        })?;
        if kind == LinkKind::None {
            if !req.links_to.is_empty() {
                return Err(Error::FollowUp {
                    id: req.links_to.clone(),
                    why: Said::both(
                        "links_to is set but the link kind is not",
                        "给了 links_to，却没有给关联类型",
                    ),
                });
            }
            return Ok(None);
        }
        let id = req.links_to.clone();
        envelope::check_id(&id)?;
        // A report damaged on this node's disk can still be followed up
        // (corrected, withdrawn): what a follow-up takes from it, the
        // record keeps.
        let (target, _damaged) = self
            .store
            .get_or_damaged(id.clone())
            .await?
            .ok_or_else(|| Error::NotFound(id.clone()))?;
        let refuse = |why: Said| Error::FollowUp {
            id: id.clone(),
            why,
        };
        if target.from != FROM_OPERATOR {
            let origin = target.brief().origin;
            return Err(Error::NotOrigin {
                id,
                origin,
                by: self.keys.current().node_id().to_string(),
            });
        }
        let original = if target.is_pruned() || target.unreadable() {
            // What the record kept of it is what a follow-up needs.
            let brief = target.brief();
            Report {
                priority: brief.priority,
                title: brief.title,
                origin: brief.origin,
                ..Report::default()
            }
        } else {
            SignedReport::decode(target.signed.as_slice())
                .and_then(|s| Report::decode(s.report.as_slice()))
                .map_err(|source| Error::Corrupt {
                    id: id.clone(),
                    source,
                })?
        };
        if target.link == LinkKind::Withdraws as i32 {
            return Err(refuse(Said::both(
                "it is a withdrawal; a withdrawal cannot be followed up",
                "它是一份撤回；撤回不能再更正、补充或撤回",
            )));
        }
        if !target.withdrawn_by.is_empty() {
            return Err(refuse(Said::both(
                format!("it was withdrawn (by {})", target.withdrawn_by),
                format!("它已撤回（见 {}）", target.withdrawn_by),
            )));
        }
        match kind {
            LinkKind::Corrects if !target.corrected_by.is_empty() => {
                return Err(refuse(Said::both(
                    format!(
                        "it was already corrected by {c}; correct {c} instead",
                        c = target.corrected_by
                    ),
                    format!("它已由 {c} 更正；请更正 {c}", c = target.corrected_by),
                )));
            }
            LinkKind::Supplements if target.closed_ms != 0 => {
                return Err(refuse(Said::both(
                    "it is closed (办结); nothing can be added to it",
                    "它已办结；不能再补充",
                )));
            }
            LinkKind::Withdraws if req.body.iter().all(u8::is_ascii_whitespace) => {
                return Err(refuse(Said::both(
                    "a withdrawal needs a reason (--reason)",
                    "撤回须写明理由（--reason）",
                )));
            }
            LinkKind::Reviewed => {
                return Err(refuse(Said::both(
                    "a sign-off is made by a reviewer with `zhibao review approve`",
                    "把关签发由审核人用 `zhibao review approve` 完成",
                )));
            }
            _ => {}
        }
        // Corrections and withdrawals travel as the original did.
        let keeps_class = matches!(kind, LinkKind::Corrects | LinkKind::Withdraws);
        if req.priority == 0 {
            req.priority = original.priority;
        } else if keeps_class && req.priority != original.priority {
            let class = Class::from_proto(original.priority);
            return Err(refuse(Said::both(
                format!(
                    "a correction or withdrawal travels in the original's class ({})",
                    class.map_or("?", Class::name)
                ),
                format!(
                    "更正或撤回按原报告的类别（{}）报送",
                    class.map_or("?", Class::name_zh)
                ),
            )));
        }
        if kind == LinkKind::Withdraws && req.title.trim().is_empty() {
            let mut title = format!("撤回：{}", original.title);
            while title.len() > self.limits.max_title_bytes {
                title.pop();
            }
            req.title = title;
        }
        Ok(Some((kind, id)))
    }

    async fn submit(
        &self,
        mut req: SubmitRequest,
        author: &Actor,
    ) -> Result<SubmitResponse, Error> {
        let link = self.follow_up(&mut req).await?;
        if !req.answers.is_empty() {
            let asked = self.office.answerable(&req.answers).await?;
            if req.priority == 0 {
                req.priority = asked.priority;
            }
        }
        let answers = std::mem::take(&mut req.answers);
        // Held back only if the original is not on the wire right now.
        let may_hold_back = link
            .as_ref()
            .is_some_and(|(_, to)| !self.routes.is_in_flight(to));
        let (mut draft, attachments) = self.draft(req, author)?;
        draft.link = link;
        draft.answers = answers;
        draft.attachments = self.store_attachments(draft.id(), attachments).await?;
        let id = draft.id().to_string();
        // A withdrawal stops something wrong: it never waits for review.
        let reviewed = !matches!(draft.link, Some((LinkKind::Withdraws, _)));
        let mode = self.reviews.mode(draft.class);
        let limits = self.limits.report_limits();
        if reviewed && mode == ReviewMode::BeforeSend {
            // Sealed once now and thrown away, so that what the reviewer
            // approves later is known to go: every limit is checked here,
            // and the author hears of a problem at once.
            let trial = envelope::seal(
                draft.clone(),
                &self.keys.current(),
                &limits,
                SystemTime::now(),
            )
            .map_err(Error::from)
            .map(|_| ());
            if let Err(e) = match trial {
                Ok(()) => self.reviews.hold(&draft).await,
                Err(e) => Err(e),
            } {
                self.store.drop_chunks(id).await?;
                return Err(e);
            }
            info!(%id, class = %draft.class, author = %author.name, "submitted for review");
            return Ok(SubmitResponse { id, status: None });
        }
        let sealed = envelope::seal(draft, &self.keys.current(), &limits, SystemTime::now());
        let (signed, item) = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                // Its attachments went to disk first; nothing names them now.
                self.store.drop_chunks(id).await?;
                return Err(e.into());
            }
        };
        let rec = self
            .custody
            // Each operator's request is a task of its own.
            .keep(&signed, &item, FROM_OPERATOR, may_hold_back, true)
            .await?;
        info!(id = %item.id(), class = %item.class(), author = %author.name, bytes = item.report().body.len(), stored_ms = rec.stored_ms, "submitted");
        if reviewed && mode == ReviewMode::AfterSend && rec.stored_ms != 0 {
            // It is on its way; only the sign-off waits. Failing to note
            // that must not make the author think it did not go.
            if let Err(e) = self.reviews.await_sign_off(&item).await {
                tracing::error!(alarm = "sign-off", id = %item.id(), error = %e, "ALARM: sent, but its sign-off cannot be awaited");
                self.events.alarm(
                    item.id(),
                    "",
                    Said::both(
                        format!("sent, but its sign-off cannot be awaited: {e}"),
                        format!("已发出，但无法等待其审核签发：{e}"),
                    ),
                );
            }
        }
        Ok(SubmitResponse {
            id: item.id().to_string(),
            status: None,
        })
    }

    /// One item as `zhibao status` and `show` see it: every receipt and
    /// decision verified now; with `full`, the signed report too.
    async fn status(&self, id: &str, full: bool) -> Result<ItemStatus, Error> {
        envelope::check_id(id)?;
        let Some(found) = self.store.get_with_decisions(id.to_string()).await? else {
            // Not signed yet: awaiting review, or returned by it.
            return match self.store.review(id.to_string()).await? {
                Some(held) => Ok(self.reviews.view(id, &held)),
                None => Err(Error::NotFound(id.to_string())),
            };
        };
        let Found {
            rec,
            decisions,
            damaged,
        } = found;
        let check = Check::Now(&self.trust, &self.custody);
        let mut status = self.view(id, &rec, check);
        self.reviews.annotate(&mut status).await?;
        status.dispositions = decisions
            .iter()
            .map(|bytes| decision_view(id, &rec, bytes, check))
            .collect();
        if let Some(e) = damaged {
            // The state is still worth reading; the report is not there to give.
            status.report_damaged = e.to_string();
        } else if full && !rec.is_pruned() {
            status.report = SignedReport::decode(rec.signed.as_slice())
                .map(Some)
                .map_err(|source| Error::Corrupt {
                    id: id.to_string(),
                    source,
                })?;
        }
        Ok(status)
    }

    /// Items as `zhibao list` asks for them.
    async fn list(&self, req: ListRequest) -> Result<ListResponse, Error> {
        let limit = match req.limit {
            0 => LIST_DEFAULT,
            n => usize::try_from(n).unwrap_or(LIST_MAX).min(LIST_MAX),
        };
        let req_overdue = req.overdue_only;
        let filter = Filter::of(req);
        let held = self.held_for_review(&filter, limit).await?;
        let records = self
            .store
            .list_matching(
                filter.overdue_only,
                filter.open_only,
                limit,
                move |_, rec| filter.keeps(rec),
            )
            .await?;
        let mut items: Vec<ItemStatus> = held;
        items.extend(
            records
                .iter()
                .map(|(id, rec)| self.view(id, rec, Check::AsStored)),
        );
        items.truncate(limit);
        if req_overdue {
            // And what is known to be held below past its deadline, not here yet.
            let mut notices: Vec<crate::proto::HeldNotice> = self
                .store
                .held_notices(limit)
                .await?
                .iter()
                .filter_map(|bytes| {
                    crate::proto::SignedHeldNotice::decode(bytes.as_slice())
                        .ok()
                        .as_ref()
                        .and_then(crate::held::peek)
                })
                .collect();
            // The holder's own word first, then what others report of it.
            notices.sort_by_key(|n| !n.stuck_at.is_empty());
            let mut listed: std::collections::HashSet<String> =
                items.iter().map(|s| s.id.clone()).collect();
            for n in notices {
                if items.len() >= limit || !listed.insert(n.item_id.clone()) {
                    continue;
                }
                if self.store.record(n.item_id.clone()).await?.is_some() {
                    continue;
                }
                items.push(ItemStatus {
                    id: n.item_id,
                    origin: n.origin,
                    priority: n.priority,
                    state: ItemState::HeldBelow as i32,
                    deadline_unix_ms: n.deadline_unix_ms,
                    overdue_unix_ms: n.at_unix_ms,
                    held_at: if n.stuck_at.is_empty() {
                        n.holder
                    } else {
                        format!("{} (reported by {})", n.stuck_at, n.holder)
                    },
                    held_since_unix_ms: n.since_unix_ms,
                    held_why: n.why,
                    ..Default::default()
                });
            }
        }
        Ok(ListResponse {
            items,
            overdue_total: self.store.overdue_total().await?,
        })
    }

    /// Items awaiting review or returned by it that a listing keeps, newest
    /// first (none for an overdue listing: they are not late yet).
    async fn held_for_review(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<ItemStatus>, Error> {
        let wanted = [ItemState::AwaitingReview, ItemState::ReturnedByReview];
        if filter.overdue_only
            || (filter.state != 0 && !wanted.iter().any(|s| *s as i32 == filter.state))
        {
            return Ok(Vec::new());
        }
        let mut held = self.store.reviews_awaiting().await?;
        held.extend(self.store.reviews_returned().await?);
        held.retain(|(_, rec)| !rec.sign_off);
        held.sort_by_key(|(_, rec)| std::cmp::Reverse(rec.created_ms));
        let node = self.keys.current().node_id().to_string();
        Ok(held
            .iter()
            .map(|(id, rec)| self.reviews.view(id, rec))
            .filter(|s| filter.keeps_held(s, &node))
            .take(limit)
            .collect())
    }

    /// The item as [`OperatorService::wait_receipt`] answers within `wait`,
    /// else as it is once `wait` is up. The item is stored already: a
    /// failure to wait (the node shutting down) is no failure of the
    /// submit, whose answer still carries the id; it then says nothing of
    /// the item's state.
    async fn status_within(&self, id: &str, wait: Duration) -> Option<ItemStatus> {
        let waited = match tokio::time::timeout(wait, self.wait_receipt(id)).await {
            Ok(waited) => waited,
            Err(_) => self.stored_view(id).await,
        };
        waited
            .inspect_err(|e| warn!(%id, error = %e, "stored, but its receipt could not be awaited"))
            .ok()
    }

    async fn wait_receipt(&self, id: &str) -> Result<ItemStatus, Error> {
        envelope::check_id(id)?;
        // Read once here, and used as the loop's first look. The loop reads
        // the record alone; the report is read once, for the answer.
        let mut rec = match self.store.record(id.to_string()).await? {
            Some(rec) => rec,
            None => {
                return match self.store.review(id.to_string()).await? {
                    // No receipt can come before the review: say where it is.
                    Some(held) => Ok(self.reviews.view(id, &held)),
                    None => Err(Error::NotFound(id.to_string())),
                };
            }
        };
        let bare = |rec: Option<ItemRecord>| rec.ok_or_else(|| Error::NotFound(id.to_string()));
        loop {
            if rec.state() != Some(RecordState::Queued) {
                return self.stored_view(id).await;
            }
            // Register, then look again, so a receipt stored in between is not missed.
            let changed = self.store.changed(id);
            rec = bare(self.store.record(id.to_string()).await?)?;
            if rec.state() != Some(RecordState::Queued) {
                return self.stored_view(id).await;
            }
            tokio::select! {
                r = changed => r.map_err(|_| Error::ShuttingDown)?,
                () = self.shutdown.cancelled() => return Err(Error::ShuttingDown),
            }
            rec = bare(self.store.record(id.to_string()).await?)?;
        }
    }

    /// The item as stored, receipts as verified when stored; a report that
    /// cannot be read back whole is said so (`report_damaged`), not an
    /// error that hides the item's state.
    async fn stored_view(&self, id: &str) -> Result<ItemStatus, Error> {
        let Some((rec, damaged)) = self.store.get_or_damaged(id.to_string()).await? else {
            return Err(Error::NotFound(id.to_string()));
        };
        let mut status = self.view(id, &rec, Check::AsStored);
        if let Some(e) = damaged {
            status.report_damaged = e.to_string();
        }
        Ok(status)
    }
}

/// What a listing keeps, from a `ListRequest`.
struct Filter {
    overdue_only: bool,
    open_only: bool,
    priority: i32,
    origin: String,
    state: i32,
    from_ms: i64,
    until_ms: i64,
    title: String,
}

impl Filter {
    fn of(req: ListRequest) -> Self {
        Self {
            overdue_only: req.overdue_only,
            open_only: req.open_only,
            priority: req.priority,
            origin: req.origin,
            state: req.state,
            from_ms: req.from_unix_ms,
            until_ms: req.until_unix_ms,
            title: req.title_contains.to_lowercase(),
        }
    }

    /// Whether a listing keeps an item held for review (`status`, made by
    /// `Reviews::view`) of this node.
    fn keeps_held(&self, status: &ItemStatus, node: &str) -> bool {
        (self.state == 0 || status.state == self.state)
            && !(self.open_only && status.state == ItemState::ReturnedByReview as i32)
            && (self.from_ms == 0 || status.created_unix_ms >= self.from_ms)
            && (self.until_ms == 0 || status.created_unix_ms < self.until_ms)
            && (self.priority == 0 || status.priority == self.priority)
            && (self.origin.is_empty() || self.origin == node)
            && (self.title.is_empty() || status.title.to_lowercase().contains(&self.title))
    }

    fn keeps(&self, rec: &ItemRecord) -> bool {
        if self.open_only
            && (rec.closed_ms != 0
                || !rec.withdrawn_by.is_empty()
                || rec.link == LinkKind::Withdraws as i32
                || matches!(
                    rec.state(),
                    Some(RecordState::Withdrawn | RecordState::Superseded)
                ))
        {
            return false;
        }
        if self.from_ms != 0 && rec.created_ms < self.from_ms {
            return false;
        }
        if self.until_ms != 0 && rec.created_ms >= self.until_ms {
            return false;
        }
        if self.state != 0 {
            // In flight is queued with a route sending it: both are "queued" here.
            let state = super::status::item_state(rec, false);
            let asked = match ItemState::try_from(self.state) {
                Ok(ItemState::InFlight) => ItemState::Queued,
                Ok(s) => s,
                Err(_) => return false,
            };
            if state != asked {
                return false;
            }
        }
        if self.priority == 0 && self.origin.is_empty() && self.title.is_empty() {
            return true;
        }
        let report = rec.brief();
        (self.priority == 0 || report.priority == self.priority)
            && (self.origin.is_empty() || report.origin == self.origin)
            && (self.title.is_empty() || report.title.to_lowercase().contains(&self.title))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;
type AuditStream = Pin<Box<dyn Stream<Item = Result<AuditBatch, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorService {
    type WatchStream = EventStream;
    type AuditStream = AuditStream;
    type AttachmentStream = super::inbox::ChunkStream;

    async fn submit(
        self: Arc<Self>,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let author = Actor::of(&request);
        let req = request.into_inner();
        let class = crate::class::Class::from_proto(req.priority);
        // Until answered, its receipt included when waited for.
        let _raised = class
            .is_some_and(crate::class::Class::is_urgent)
            .then(super::boost::hold);
        let wait = Duration::from_millis(req.wait_receipt_ms.into()).min(MAX_SUBMIT_WAIT);
        match OperatorService::submit(&self, req, &author).await {
            Ok(mut done) => {
                if !wait.is_zero() {
                    done.status = self.status_within(&done.id, wait).await;
                }
                Ok(Response::new(done))
            }
            Err(e) => {
                let status = Status::from(e);
                self.custody.metrics().refused(class, status.code());
                Err(status)
            }
        }
    }

    async fn status(
        self: Arc<Self>,
        request: Request<StatusRequest>,
    ) -> Result<Response<ItemStatus>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            OperatorService::status(&self, &req.id, req.full).await?,
        ))
    }

    async fn dispose(
        self: Arc<Self>,
        request: Request<DisposeRequest>,
    ) -> Result<Response<DispositionView>, Status> {
        let actor = Actor::of(&request);
        match self.desk.decide(request.into_inner(), &actor).await {
            Ok(view) => Ok(Response::new(view)),
            Err(e) => {
                tracing::warn!(staff = %actor.name, error = %e, "refused decision");
                Err(e.into())
            }
        }
    }

    async fn attachment(
        self: Arc<Self>,
        request: Request<AttachmentRequest>,
    ) -> Result<Response<Self::AttachmentStream>, Status> {
        let req = request.into_inner();
        envelope::check_id(&req.item_id).map_err(Error::from)?;
        let a =
            super::inbox::attachment_ref(&self.store, &req.item_id, req.attachment, false).await?;
        Ok(Response::new(super::inbox::chunk_stream(
            self.store.clone(),
            req.item_id,
            req.attachment,
            &a,
        )))
    }

    async fn wait_receipt(
        self: Arc<Self>,
        request: Request<StatusRequest>,
    ) -> Result<Response<ItemStatus>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(
            OperatorService::wait_receipt(&self, &id).await?,
        ))
    }

    async fn list(
        self: Arc<Self>,
        request: Request<ListRequest>,
    ) -> Result<Response<ListResponse>, Status> {
        Ok(Response::new(
            OperatorService::list(&self, request.into_inner()).await?,
        ))
    }

    async fn review_list(
        self: Arc<Self>,
        _: Request<ReviewListRequest>,
    ) -> Result<Response<ReviewListResponse>, Status> {
        Ok(Response::new(self.reviews.list().await?))
    }

    async fn review(
        self: Arc<Self>,
        request: Request<ReviewRequest>,
    ) -> Result<Response<ItemStatus>, Status> {
        let actor = Actor::of(&request);
        let req = request.into_inner();
        let asked = req.id.clone();
        match self.reviews.decide(req, &actor).await {
            Ok(id) => Ok(Response::new(
                OperatorService::status(&self, &id, false).await?,
            )),
            Err(e) => {
                tracing::warn!(staff = %actor.name, id = %asked, error = %e, "refused review");
                Err(e.into())
            }
        }
    }

    async fn store_stats(
        self: Arc<Self>,
        _: Request<StoreStatsRequest>,
    ) -> Result<Response<StoreStatsResponse>, Status> {
        use crate::proto::store_stats_response::{Count, File, Table};
        let stats = self.store.stats().await.map_err(Error::from)?;
        // The database and its log's segments, which hold the reports.
        let mut files: Vec<File> = self
            .store
            .files()
            .into_iter()
            .filter_map(|path| {
                let meta = std::fs::metadata(&path).ok()?;
                Some(File {
                    path: path.display().to_string(),
                    bytes: meta.len(),
                })
            })
            .collect();
        if let Ok(dir) = std::fs::read_dir(self.retainer.archive_dir()) {
            let mut archives: Vec<File> = dir
                .flatten()
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    meta.is_file().then(|| File {
                        path: e.path().display().to_string(),
                        bytes: meta.len(),
                    })
                })
                .collect();
            archives.sort_by(|a, b| a.path.cmp(&b.path));
            files.extend(archives);
        }
        Ok(Response::new(StoreStatsResponse {
            tables: stats
                .tables
                .into_iter()
                .map(|t| Table {
                    name: t.name,
                    entries: t.entries,
                    stored_bytes: t.stored_bytes,
                    overhead_bytes: t.overhead_bytes,
                })
                .collect(),
            items_by_state: stats
                .items_by_state
                .into_iter()
                .map(|(state, items)| Count { state, items })
                .collect(),
            pruned_items: stats.pruned_items,
            pruned_bytes: stats.pruned_bytes,
            report_bytes: stats.report_bytes,
            files,
            retention: self.retainer.describe(),
        }))
    }

    async fn prune(
        self: Arc<Self>,
        request: Request<PruneRequest>,
    ) -> Result<Response<PruneResponse>, Status> {
        let actor = Actor::of(&request);
        match self.retainer.pass().await {
            Ok(pass) => {
                tracing::info!(staff = %actor.name, items = pass.items, bytes = pass.bytes, "retention pass asked for by command");
                Ok(Response::new(PruneResponse {
                    items: pass.items,
                    bytes: pass.bytes,
                    archived_to: pass
                        .archived_to
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                    retention: self.retainer.describe(),
                    compacted_reports: pass.compacted,
                    log_bytes_freed: pass.segment_bytes_freed,
                }))
            }
            Err(super::retention::PassError::Store(e)) => Err(Error::from(e).into()),
            Err(e) => {
                tracing::error!(staff = %actor.name, error = %e, "retention pass failed");
                Err(Status::internal(e.to_string()))
            }
        }
    }

    async fn audit(
        self: Arc<Self>,
        request: Request<AuditRequest>,
    ) -> Result<Response<AuditStream>, Status> {
        const BATCH: usize = 1024;
        let mut from = request.into_inner().from_seq;
        let store = self.store.clone();
        let mut checkpoints = Some(store.audit_checkpoints().await.map_err(Error::from)?);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let records = match store.audit_records(from, BATCH).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(Error::from(e).into())).await;
                        return;
                    }
                };
                let last = records.len() < BATCH;
                from += records.len() as u64;
                let batch = AuditBatch {
                    records,
                    checkpoints: checkpoints.take().unwrap_or_default(),
                };
                if tx.send(Ok(batch)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn node(
        self: Arc<Self>,
        _: Request<NodeRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        let snap = self.trust.snapshot();
        let crl = snap.crl;
        let crl_state = match self.trust.freshness(SystemTime::now()) {
            Freshness::None => "none configured".to_string(),
            Freshness::Fresh => "fresh".to_string(),
            Freshness::Grace { refuse_at, .. } => {
                let offset = self.deadlines.get().offset_ms().unwrap_or(0);
                format!(
                    "expired, tolerated until {}",
                    crate::clock::show(refuse_at.saturating_mul(1000), offset)
                )
            }
            Freshness::Stale { .. } => "stale: relay traffic refused".to_string(),
        };
        let cert_not_after = x509_parser::parse_x509_certificate(self.keys.current().cert())
            .map_or(0, |(_, c)| c.validity().not_after.timestamp());
        let routes = self
            .routes
            .report()
            .into_iter()
            .map(|(route, role, up, in_flight)| RouteStatus {
                route,
                role: format!("{role:?}").to_lowercase(),
                state: match up {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "not tried yet",
                }
                .into(),
                in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(NodeStatus {
            node_id: self.keys.current().node_id().to_string(),
            crl_number: crl.map_or(0, |c| c.number),
            crl_next_update: crl.and_then(|c| c.next_update).unwrap_or(0),
            crl_state,
            cert_not_after,
            routes,
            overdue_total: self.store.overdue_total().await.map_err(Error::from)?,
            utc_offset_ms: self.deadlines.get().offset_ms().unwrap_or(0),
        }))
    }

    async fn solicit(
        self: Arc<Self>,
        request: Request<SolicitRequest>,
    ) -> Result<Response<NoticeView>, Status> {
        let actor = Actor::of(&request);
        match self.office.solicit(request.into_inner(), &actor).await {
            Ok(view) => Ok(Response::new(view)),
            Err(e) => {
                tracing::warn!(staff = %actor.name, error = %e, "refused solicitation");
                Err(e.into())
            }
        }
    }

    async fn notices(
        self: Arc<Self>,
        request: Request<NoticesRequest>,
    ) -> Result<Response<NoticesResponse>, Status> {
        Ok(Response::new(
            self.office.notices(request.into_inner()).await?,
        ))
    }

    async fn solicitation_status(
        self: Arc<Self>,
        request: Request<SolicitationStatusRequest>,
    ) -> Result<Response<SolicitationStatusResponse>, Status> {
        Ok(Response::new(
            self.office.status(request.into_inner()).await?,
        ))
    }

    async fn stats(
        self: Arc<Self>,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(
            self.office.stats(request.into_inner()).await?,
        ))
    }

    async fn publish_bulletin(
        self: Arc<Self>,
        request: Request<StatsRequest>,
    ) -> Result<Response<NoticeView>, Status> {
        let actor = Actor::of(&request);
        match self
            .office
            .publish_bulletin(request.into_inner(), &actor)
            .await
        {
            Ok(view) => Ok(Response::new(view)),
            Err(e) => {
                tracing::warn!(staff = %actor.name, error = %e, "refused bulletin");
                Err(e.into())
            }
        }
    }

    async fn set_target(
        self: Arc<Self>,
        request: Request<TargetRequest>,
    ) -> Result<Response<TargetResponse>, Status> {
        let actor = Actor::of(&request);
        let req = request.into_inner();
        tracing::info!(staff = %actor.name, county = %req.county, year = req.year, points = req.points, adopted = req.adopted, "target set");
        self.office.set_target(req).await?;
        Ok(Response::new(TargetResponse {}))
    }

    async fn watch(
        self: Arc<Self>,
        _: Request<WatchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let mut events = self.events.subscribe();
        let missed = self.events.clone();
        let shutdown = self.shutdown.clone();
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
                    Err(RecvError::Lagged(n)) => missed.missed(n),
                    Err(RecvError::Closed) => return,
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
}
