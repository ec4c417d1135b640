//! Review before sending (把关): the office's leader checks a report before
//! it goes up, the deputy when the director is away.
//!
//! Per class (`[review]`), a submission is either sent at once (`none`),
//! held unsigned until a director or deputy approves it (`before_send`), or
//! sent at once and signed off afterwards (`after_send`, the only review an
//! emergency gets: emergencies never wait).
//!
//! A held item has its id and is on disk from the moment it is submitted
//! (`store::ReviewRecord`); its class deadline counts from then. Approval
//! seals it with the reviewer in its signed `review` field and hands it to
//! custody in the same transaction that ends its review. An emergency's
//! sign-off is a new report (`LINK_KIND_REVIEWED`) carrying the review.
//!
//! Time: the director has `timeout_secs`; then the item is offered to the
//! deputy too, who has `timeout_secs` more; then it goes with the outcome
//! `TIMED_OUT` signed into it. Whatever the timeouts, it goes at the latest
//! at its deadline less a margin (a fifth of the time from submission to
//! deadline, at least a second), and an alarm is raised when half of that
//! time has passed with no review. [`ReviewWatch`] keeps these times, from
//! what is stored, so a restart changes nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::custody::Custody;
use super::error::Error;
use super::events::Events;
use super::routes::Routes;
use super::said::Said;
use super::who::Actor;
use crate::class::Class;
use crate::clock::Clock;
use crate::config::{ClassReview, Deadlines, Limits, ReviewConfig, ReviewMode, StaffRole};
use crate::envelope::{self, Draft, MAX_REVIEW_NOTE_BYTES, Verified};
use crate::proto::{
    EventKind, ItemState, ItemStatus, LinkKind, ReviewAction, ReviewItem, ReviewListResponse,
    ReviewOutcome, ReviewRequest, ReviewSignOff,
};
use crate::store::{FROM_OPERATOR, ReviewRecord, Store};
use crate::trust::Keys;

/// Longest sleep of the watch, so a jump of the clock is caught up with soon.
const MAX_NAP: Duration = Duration::from_secs(1);

/// What the review watch and the operator API share.
#[derive(Debug)]
pub(crate) struct Reviews {
    pub(crate) policy: ReviewConfig,
    pub(crate) store: Store,
    pub(crate) custody: Arc<Custody>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) events: Events,
    pub(crate) clock: Clock,
    pub(crate) limits: Limits,
    pub(crate) deadlines: super::live::Live<Deadlines>,
    /// Rung when an item starts waiting, so the watch plans for it.
    pub(crate) wake: Notify,
}

/// When things happen to an item awaiting review, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    /// Offered to the deputy.
    deputy_from: i64,
    /// The alarm: half the time to the deadline spent with no review.
    alarm_at: i64,
    /// Sent without review.
    auto_at: i64,
}

impl Schedule {
    fn of(policy: ClassReview, created_ms: i64, deadline_ms: i64) -> Self {
        let timeout = i64::try_from(policy.timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let window = deadline_ms.saturating_sub(created_ms).max(0);
        // Room left for the trip up after the automatic send.
        let margin = (window / 5).max(1000);
        let latest = deadline_ms.saturating_sub(margin);
        let auto_at = created_ms
            .saturating_add(timeout.saturating_mul(2))
            .min(latest);
        Self {
            deputy_from: created_ms.saturating_add(timeout).min(auto_at),
            alarm_at: created_ms.saturating_add(window / 2),
            auto_at,
        }
    }
}

impl Reviews {
    /// How items of `class` are reviewed here.
    pub(crate) fn mode(&self, class: Class) -> ReviewMode {
        self.policy.of(class).mode
    }

    /// A Unix ms time for a message, in the node's local time.
    fn local(&self, ms: i64) -> String {
        crate::clock::show(ms, self.deadlines.get().offset_ms().unwrap_or(0))
    }

    fn schedule(&self, rec: &ReviewRecord) -> Schedule {
        let class = Class::from_proto(rec.priority).unwrap_or(Class::Routine);
        Schedule::of(self.policy.of(class), rec.created_ms, rec.deadline_ms)
    }

    /// Holds a submission for review: stored durably, unsigned, under the
    /// id it keeps. Its attachments are stored already.
    pub(crate) async fn hold(&self, draft: &Draft) -> Result<(), Error> {
        let (link, links_to) = draft
            .link
            .clone()
            .map_or((0, String::new()), |(k, to)| (k as i32, to));
        let rec = ReviewRecord {
            priority: draft.class.to_proto() as i32,
            title: draft.title.clone(),
            body: draft.body.clone(),
            created_ms: draft.created_unix_ms,
            deadline_ms: draft.deadline_unix_ms,
            attachments: draft.attachments.clone(),
            author: draft.author.clone(),
            link,
            links_to,
            ..Default::default()
        };
        let what = Said::both("awaits review (把关) by the director", "待主任审核（把关）");
        self.keep(draft.id(), &rec, what).await
    }

    /// Notes that an emergency sent at once awaits its sign-off.
    pub(crate) async fn await_sign_off(&self, item: &Verified) -> Result<(), Error> {
        let report = item.report();
        let rec = ReviewRecord {
            priority: report.priority,
            title: report.title.clone(),
            created_ms: report.created_unix_ms,
            deadline_ms: report.deadline_unix_ms,
            author: report.author.clone(),
            sign_off: true,
            ..Default::default()
        };
        let what = Said::both(
            "sent; awaits sign-off (把关) by the director",
            "已发出，待主任审核签发（把关）",
        );
        self.keep(item.id(), &rec, what).await
    }

    async fn keep(&self, id: &str, rec: &ReviewRecord, what: Said) -> Result<(), Error> {
        if !self.store.hold_for_review(id.to_string(), rec).await? {
            return Err(Error::Conflict {
                id: id.to_string(),
                stored: "(an item under this id)".into(),
                offered: "(an item for review)".into(),
            });
        }
        let at = self.schedule(rec).auto_at;
        info!(%id, author = %rec.author, auto_send_ms = at, "{}", what.en);
        self.events.emit(
            EventKind::Review,
            id,
            Class::from_proto(rec.priority),
            "",
            Said::both(
                format!("{}: {}", what.en, rec.title),
                format!("{}：{}", what.zh, rec.title),
            ),
        );
        self.wake.notify_one();
        Ok(())
    }

    /// What `zhibao review list` shows: everything awaiting review or
    /// sign-off, oldest first.
    pub(crate) async fn list(&self) -> Result<ReviewListResponse, Error> {
        let now = self.clock.now_ms();
        let items = self
            .store
            .reviews_awaiting()
            .await?
            .into_iter()
            .map(|(id, rec)| {
                let at = self.schedule(&rec);
                ReviewItem {
                    id,
                    priority: rec.priority,
                    title: rec.title,
                    author: rec.author,
                    created_unix_ms: rec.created_ms,
                    deadline_unix_ms: rec.deadline_ms,
                    offered_to: offered_to(now, at).into(),
                    deputy_from_unix_ms: at.deputy_from,
                    auto_send_unix_ms: at.auto_at,
                    sign_off: rec.sign_off,
                    preview: envelope::preview(&rec.body),
                }
            })
            .collect();
        Ok(ReviewListResponse { items })
    }

    /// An item awaiting review, or returned by it, as `status` shows it
    /// (it is not in `items` yet, or never will be).
    pub(crate) fn view(&self, id: &str, rec: &ReviewRecord) -> ItemStatus {
        let returned = rec.returned_ms != 0;
        let at = self.schedule(rec);
        ItemStatus {
            id: id.to_string(),
            origin: self.keys.current().node_id().to_string(),
            priority: rec.priority,
            title: rec.title.clone(),
            state: if returned {
                ItemState::ReturnedByReview
            } else {
                ItemState::AwaitingReview
            } as i32,
            created_unix_ms: rec.created_ms,
            deadline_unix_ms: rec.deadline_ms,
            body_bytes: rec.body.len() as u64,
            from: FROM_OPERATOR.into(),
            preview: envelope::preview(&rec.body),
            link: rec.link,
            links_to: rec.links_to.clone(),
            offered_to: if returned {
                format!("{} ({})", rec.returned_by, rec.returned_role)
            } else {
                offered_to(self.clock.now_ms(), at).into()
            },
            review_auto_send_unix_ms: if returned { 0 } else { at.auto_at },
            review_note: rec.note.clone(),
            ..Default::default()
        }
    }

    /// Adds to an item's status that it awaits its sign-off, if it does.
    pub(crate) async fn annotate(&self, status: &mut ItemStatus) -> Result<(), Error> {
        if let Some(rec) = self.store.review(status.id.clone()).await?
            && rec.sign_off
            && rec.returned_ms == 0
        {
            let at = self.schedule(&rec);
            status.offered_to = offered_to(self.clock.now_ms(), at).into();
            status.review_auto_send_unix_ms = at.auto_at;
        }
        Ok(())
    }

    /// A director's or deputy's decision on an item awaiting review;
    /// returns the id of the item to show (for an emergency's sign-off,
    /// the sign-off report).
    ///
    /// # Errors
    /// Who may not review, what is not awaiting review, a rejection with
    /// no note: each its own [`Error`] with its own gRPC code.
    pub(crate) async fn decide(&self, req: ReviewRequest, actor: &Actor) -> Result<String, Error> {
        if !matches!(actor.role, StaffRole::Director | StaffRole::Deputy) {
            warn!(staff = %actor.name, id = %req.id, "refused review: not a reviewer");
            return Err(Error::NotReviewer(actor.name.clone()));
        }
        envelope::check_id(&req.id)?;
        let id = req.id;
        let Some(rec) = self.store.review(id.clone()).await? else {
            return Err(match self.store.record(id.clone()).await? {
                Some(item) if item.lane() == Class::Emergency.lane() => Error::NotAwaitingReview {
                    id,
                    why: Said::both(
                        "it is an emergency that is not awaiting sign-off (signed off already, or sent before review was configured)",
                        "它是重大紧急信息，不在等待签发（已签发，或在配置审核之前已发出）",
                    ),
                },
                Some(_) => Error::NotAwaitingReview {
                    id,
                    why: Said::both("it has been sent already", "它已经发出"),
                },
                None => Error::NotFound(id),
            });
        };
        if rec.returned_ms != 0 {
            return Err(Error::NotAwaitingReview {
                why: Said::both(
                    format!("it was returned to its author by {}", rec.returned_by),
                    format!("它已由 {} 退回给撰写人", rec.returned_by),
                ),
                id,
            });
        }
        if rec.author == actor.name {
            return Err(Error::OwnReport(id));
        }
        let at = self.schedule(&rec);
        let now = self.clock.now_ms();
        if actor.role == StaffRole::Deputy && now < at.deputy_from {
            return Err(Error::NotOfferedYet {
                id,
                until: self.local(at.deputy_from),
                in_secs: (at.deputy_from - now + 999) / 1000,
            });
        }
        let note = req.note.trim().to_string();
        if note.len() > MAX_REVIEW_NOTE_BYTES {
            return Err(Error::BadReview(Said::both(
                "the note is over 4096 bytes",
                "意见超过 4096 字节",
            )));
        }
        match ReviewAction::try_from(req.action) {
            Ok(ReviewAction::Approve) => {
                let review = ReviewSignOff {
                    reviewer: actor.name.clone(),
                    role: actor.role.name().into(),
                    at_unix_ms: now,
                    note,
                    outcome: ReviewOutcome::Approved as i32,
                };
                self.send(&id, &rec, review)
                    .await?
                    .ok_or_else(|| Error::NotAwaitingReview {
                        id,
                        why: just_reviewed(),
                    })
            }
            Ok(ReviewAction::Reject) => self.reject(id, rec, note, actor).await,
            _ => Err(Error::BadReview(Said::both(
                "say approve or reject",
                "请说明是通过（approve）还是退回（reject）",
            ))),
        }
    }

    async fn reject(
        &self,
        id: String,
        mut rec: ReviewRecord,
        note: String,
        actor: &Actor,
    ) -> Result<String, Error> {
        if note.is_empty() {
            return Err(Error::BadReview(Said::both(
                "a rejection needs a note telling the author why (--note)",
                "退回须附意见，告诉撰写人原因（--note）",
            )));
        }
        if rec.sign_off {
            return Err(Error::NotAwaitingReview {
                id,
                why: Said::both(
                    "it is an emergency that has left already: approve it, or have its author correct or withdraw it",
                    "它是已经发出的重大紧急信息：请签发通过，或请撰写人更正或撤回",
                ),
            });
        }
        rec.returned_by.clone_from(&actor.name);
        rec.returned_role = actor.role.name().into();
        rec.note.clone_from(&note);
        rec.returned_ms = self.clock.now_ms();
        if !self.store.return_review(id.clone(), &rec).await? {
            return Err(Error::NotAwaitingReview {
                id,
                why: just_reviewed(),
            });
        }
        info!(%id, reviewer = %actor.name, role = actor.role.name(), "returned to its author by review");
        self.events.emit(
            EventKind::Review,
            &id,
            Class::from_proto(rec.priority),
            "",
            Said::both(
                format!(
                    "returned to {} by {} ({}): {note}",
                    rec.author,
                    actor.name,
                    actor.role.name()
                ),
                format!(
                    "{}（{}）退回 {}：{note}",
                    actor.name,
                    actor.role.name_zh(),
                    rec.author
                ),
            ),
        );
        Ok(id)
    }

    /// Seals what awaited review with `review` in it and takes it into
    /// custody, ending the review in the same transaction: the item itself,
    /// or for an emergency that left first, its sign-off report. Returns
    /// the id sent, or `None` if someone else ended the review first.
    async fn send(
        &self,
        id: &str,
        rec: &ReviewRecord,
        review: ReviewSignOff,
    ) -> Result<Option<String>, Error> {
        let class = Class::from_proto(rec.priority).unwrap_or(Class::Routine);
        let mut draft = if rec.sign_off {
            let now = self.clock.now_ms();
            let mut title = format!("审核: {}", rec.title);
            while title.len() > self.limits.max_title_bytes {
                title.pop();
            }
            let mut d = Draft::new(
                class,
                title,
                review.note.clone().into_bytes(),
                now,
                self.deadlines.get().receipt_deadline(class, now, 0),
            );
            d.link = Some((LinkKind::Reviewed, id.to_string()));
            d
        } else {
            let mut d = Draft::new(
                class,
                rec.title.clone(),
                rec.body.clone(),
                rec.created_ms,
                rec.deadline_ms,
            )
            .with_id(id.to_string());
            d.attachments.clone_from(&rec.attachments);
            d.link = LinkKind::try_from(rec.link)
                .ok()
                .filter(|k| *k != LinkKind::None)
                .map(|k| (k, rec.links_to.clone()));
            d
        };
        draft.author.clone_from(&rec.author);
        let outcome = ReviewOutcome::try_from(review.outcome).unwrap_or_default();
        let reviewer = review.reviewer.clone();
        draft.review = Some(review);
        let may_hold_back = draft
            .link
            .as_ref()
            .is_some_and(|(_, to)| !self.routes.is_in_flight(to));
        let limits = self.limits.report_limits();
        let (signed, item) =
            envelope::seal(draft, &self.keys.current(), &limits, SystemTime::now())?;
        let Some(stored) = self
            .custody
            .keep_reviewed(&signed, &item, id, may_hold_back)
            .await?
        else {
            return Ok(None);
        };
        let what = match (outcome, rec.sign_off) {
            (ReviewOutcome::TimedOut, false) => Said::both(
                "sent without review: neither the director nor the deputy reviewed it in time",
                "主任、副主任均未按时审核，已未经审核发出",
            ),
            (ReviewOutcome::TimedOut, true) => Said::both(
                "sign-off sent as timed out: neither the director nor the deputy signed it off in time",
                "主任、副主任均未按时审核签发，已按超时发出审核报告",
            ),
            (_, false) => Said::both(
                format!("approved by {reviewer} and sent"),
                format!("{reviewer} 审核通过，已发出"),
            ),
            (_, true) => Said::both(
                format!("signed off by {reviewer}: sign-off {} sent", item.id()),
                format!("{reviewer} 已审核签发：审核报告 {} 已发出", item.id()),
            ),
        };
        info!(%id, sent = %item.id(), stored_ms = stored.stored_ms, "{}", what.en);
        self.events
            .emit(EventKind::Review, id, Some(class), "", what);
        Ok(Some(item.id().to_string()))
    }
}

/// Who may act on an item now.
fn offered_to(now: i64, at: Schedule) -> &'static str {
    if now >= at.deputy_from {
        "deputy"
    } else {
        "director"
    }
}

/// Watches the items awaiting review: offers them to the deputy, raises
/// the alarm, and sends them when their time is up.
#[derive(Debug)]
pub(crate) struct ReviewWatch {
    pub(crate) reviews: Arc<Reviews>,
}

impl ReviewWatch {
    /// Runs until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        loop {
            let next = match self.pass().await {
                Ok(next) => next,
                Err(e) => {
                    error!(error = %e, "review watch cannot act; retrying");
                    None
                }
            };
            let nap = next.map_or(MAX_NAP, |at| {
                let wait = at.saturating_sub(self.reviews.clock.now_ms());
                Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(MAX_NAP)
            });
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                () = self.reviews.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Does what is due; returns when something is due next.
    async fn pass(&self) -> Result<Option<i64>, Error> {
        let r = &self.reviews;
        let now = r.clock.now_ms();
        let mut next: Option<i64> = None;
        let mut soonest = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
        for (id, mut rec) in r.store.reviews_awaiting().await? {
            let at = r.schedule(&rec);
            let class = Class::from_proto(rec.priority);
            if now >= at.auto_at {
                let review = ReviewSignOff {
                    at_unix_ms: now,
                    note: "review timed out".into(),
                    outcome: ReviewOutcome::TimedOut as i32,
                    ..Default::default()
                };
                warn!(review = "timed-out", %id, "review timed out: sending without it");
                if let Err(e) = r.send(&id, &rec, review).await {
                    error!(alarm = "review-send", %id, error = %e, "ALARM: an item whose review timed out cannot be sent");
                    r.events.alarm(
                        &id,
                        "",
                        Said::both(
                            format!("cannot send after review timed out: {e}"),
                            format!("审核超时后未能发出：{e}"),
                        ),
                    );
                }
                continue;
            }
            soonest(at.auto_at);
            let mut marked = false;
            if rec.offered_ms == 0 {
                if now >= at.deputy_from {
                    rec.offered_ms = now;
                    marked = true;
                    info!(review = "offered-to-deputy", %id, auto_send_ms = at.auto_at, "offered to the deputy: the director did not review it in time");
                    r.events.emit(
                        EventKind::Review,
                        &id,
                        class,
                        "",
                        Said::both(
                            format!(
                                "offered to the deputy: the director did not review it in time; it goes without review at {}",
                                r.local(at.auto_at)
                            ),
                            format!(
                                "主任未按时审核，已转副主任；{} 起未经审核发出",
                                r.local(at.auto_at)
                            ),
                        ),
                    );
                } else {
                    soonest(at.deputy_from);
                }
            }
            if rec.alarmed_ms == 0 {
                if now >= at.alarm_at {
                    rec.alarmed_ms = now;
                    marked = true;
                    error!(alarm = "review-late", %id, "ALARM: half the time to its deadline has passed with no review");
                    r.events.alarm(
                        &id,
                        "",
                        Said::both(
                            format!(
                                "half the time to its deadline has passed and nobody has reviewed it; it goes without review at {}",
                                r.local(at.auto_at)
                            ),
                            format!(
                                "距时限已过半仍无人审核；{} 起未经审核发出",
                                r.local(at.auto_at)
                            ),
                        ),
                    );
                } else {
                    soonest(at.alarm_at);
                }
            }
            if marked {
                // Marked once in the store, so a restart does not repeat it.
                r.store.update_review(id, &rec).await?;
            }
        }
        Ok(next)
    }
}

/// Why an item that was awaiting review a moment ago is not now.
fn just_reviewed() -> Said {
    Said::both(
        "it was reviewed or sent a moment ago",
        "它刚刚已被审核或发出",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_never_runs_past_the_deadline() {
        let policy = |secs| ClassReview {
            mode: ReviewMode::BeforeSend,
            timeout_secs: secs,
        };
        // Plenty of time: the timeouts decide.
        let s = Schedule::of(policy(120), 0, 3_600_000);
        assert_eq!(s.deputy_from, 120_000);
        assert_eq!(s.auto_at, 240_000);
        assert_eq!(s.alarm_at, 1_800_000);
        // Timeouts longer than the deadline allows: the margin decides.
        let s = Schedule::of(policy(1800), 0, 600_000);
        assert_eq!(s.auto_at, 480_000, "a fifth of the window is kept");
        assert_eq!(s.deputy_from, 480_000);
        // A tiny window keeps at least a second.
        let s = Schedule::of(policy(10), 0, 2_000);
        assert_eq!(s.auto_at, 1_000);
        // Extreme times do not wrap (no overflow panic in debug builds).
        let s = Schedule::of(policy(10), i64::MAX - 5, i64::MIN);
        assert!(s.auto_at < 0, "the deadline, long past, decides");
        let s = Schedule::of(policy(u64::MAX / 1000), 0, i64::MAX);
        assert!(s.deputy_from <= s.auto_at);
    }
}
