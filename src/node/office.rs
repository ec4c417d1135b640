//! The office's notices: solicitations (约稿) published here and pushed
//! down to every child, the solicitations and bulletins come down from
//! above, answers to them, and the watch that raises what is due when a
//! solicitation's deadline passes.
//!
//! A solicitation is published, extended or withdrawn as a signed notice
//! ([`crate::notice`]) — each change a new version — kept on disk before
//! the caller is answered, and from there pushed down every child's stream
//! until acknowledged (`push_down`). Every node keeps every notice it takes
//! and passes it on; it shows its operators those addressed to it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::error::Error;
use super::events::Events;
use super::said::Said;
use super::who::Actor;
use crate::class::Class;
use crate::clock::Clock;
use crate::config::OfficeConfig;
use crate::notice::{self, Kind, NoticeError};
use crate::proto::{
    CountyAnswer, EventKind, Notice, NoticeView, NoticesRequest, NoticesResponse, SignedNotice,
    SolicitRequest, Solicitation, SolicitationStatusRequest, SolicitationStatusResponse,
    notice::Body, solicit_request::Action,
};
use crate::store::{self, NoticeOutcome, Store};
use crate::trust::{Keys, Trust};

/// Why an office request was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OfficeError {
    /// The request is malformed or out of range.
    #[error("{0}")]
    Invalid(Said),
    /// No such solicitation or bulletin here.
    #[error("no {what} {id} has reached this node{hint}")]
    NotFound {
        /// "solicitation" or "bulletin".
        what: &'static str,
        /// The id asked for.
        id: String,
        /// What to do.
        hint: &'static str,
    },
    /// No figures for what was asked.
    #[error("{0}")]
    NoFigures(Said),
    /// It cannot be done in the state things are in.
    #[error("{0}")]
    Precondition(Said),
    /// Too big to publish.
    #[error("{0}")]
    TooLarge(Said),
    /// A notice that does not keep the rules.
    #[error(transparent)]
    Notice(#[from] NoticeError),
}

impl OfficeError {
    /// The gRPC code the README promises for it.
    pub(crate) fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::Invalid(_) | Self::Notice(_) => Code::InvalidArgument,
            Self::NotFound { .. } | Self::NoFigures(_) => Code::NotFound,
            Self::TooLarge(_) => Code::ResourceExhausted,
            Self::Precondition(_) => Code::FailedPrecondition,
        }
    }
}

/// How long after its deadline a solicitation stays in the default listing.
const LISTED_AFTER_DEADLINE_MS: i64 = 30 * 24 * 3600 * 1000;

/// The office's notices at one node.
#[derive(Debug)]
pub(crate) struct Office {
    pub(crate) keys: Arc<Keys>,
    pub(crate) trust: Arc<Trust>,
    pub(crate) store: Store,
    pub(crate) events: Events,
    pub(crate) clock: Clock,
    /// Reloaded on SIGHUP (counties, outlets, scoring, targets; the
    /// publishers stay as at start).
    pub(crate) config: super::live::Live<OfficeConfig>,
    /// The node's local time, ms east of UTC (for messages).
    pub(crate) utc_offset_ms: i64,
    /// Whether the node has a relay listener (children to ask).
    pub(crate) has_children: bool,
    /// One publication at a time: each takes the next version.
    pub(crate) one_at_a_time: Mutex<()>,
}

impl Office {
    fn me(&self) -> String {
        self.keys.current().node_id().to_string()
    }

    /// Whose notices verify here: the configured publishers and this node.
    fn publishers(&self) -> Vec<String> {
        let mut p = self.config.get().publishers.clone();
        p.push(self.me());
        p
    }

    /// Publishes, extends or withdraws a solicitation in `actor`'s name;
    /// answers once the new version is on disk.
    pub(crate) async fn solicit(
        &self,
        req: SolicitRequest,
        actor: &Actor,
    ) -> Result<NoticeView, Error> {
        if !self.has_children {
            return Err(OfficeError::Precondition(Said::both(
                "this node has no [relay] listener, so no county below it to ask",
                "本节点没有 [relay] 监听，下面没有可约稿的县",
            ))
            .into());
        }
        let now = self.clock.now_ms();
        let action = Action::try_from(req.action).unwrap_or(Action::Unspecified);
        let _turn = self.one_at_a_time.lock().await;
        let (notice, previous) = match action {
            Action::Publish => (self.new_solicitation(req, actor, now)?, None),
            Action::Extend | Action::Withdraw => {
                let (prev, signed) = self.own_solicitation(&req.id).await?;
                let mut s = match &prev.body {
                    Some(Body::Solicitation(s)) => s.clone(),
                    _ => return Err(self.not_found("solicitation", &req.id).into()),
                };
                if s.withdrawn {
                    return Err(OfficeError::Precondition(Said::both(
                        format!(
                            "{} was withdrawn; publish a new solicitation instead",
                            req.id
                        ),
                        format!("约稿 {} 已撤回；请另发一个新的约稿", req.id),
                    ))
                    .into());
                }
                if action == Action::Extend {
                    if req.deadline_unix_ms <= s.deadline_unix_ms.max(now) {
                        return Err(OfficeError::Invalid(Said::both(
                            "an extension needs a new deadline later than the current one and in the future (--due)",
                            "延期需要一个比现在的截止时间更晚、且在将来的新截止时间（--due）",
                        ))
                        .into());
                    }
                    s.deadline_unix_ms = req.deadline_unix_ms;
                } else {
                    if req.note.trim().is_empty() {
                        return Err(OfficeError::Invalid(Said::both(
                            "a withdrawal needs a reason (--note)",
                            "撤回约稿须写明理由（--note）",
                        ))
                        .into());
                    }
                    s.withdrawn = true;
                }
                s.note = req.note.trim().to_string();
                let next = Notice {
                    id: prev.id.clone(),
                    version: prev.version + 1,
                    previous_sha256: notice::digest(&signed).to_vec(),
                    staff: actor.name.clone(),
                    at_unix_ms: now,
                    body: Some(Body::Solicitation(s)),
                    ..Default::default()
                };
                (next, Some(prev))
            }
            Action::Unspecified => {
                return Err(OfficeError::Invalid(Said::both(
                    "say publish, extend or withdraw",
                    "请说明是发布（publish）、延期（extend）还是撤回（withdraw）",
                ))
                .into());
            }
        };
        notice::check(&notice).map_err(OfficeError::from)?;
        let signed = notice::issue(&self.keys.current(), notice);
        let body = notice::peek(&signed).unwrap_or_default();
        let outcome = self
            .store
            .keep_notice(
                body.id.clone(),
                body.version,
                body.previous_sha256.clone(),
                signed.encode_to_vec(),
            )
            .await?;
        if outcome != NoticeOutcome::Stored {
            return Err(OfficeError::Precondition(Said::both(
                format!("{} changed at the same moment; try again", body.id),
                format!("{} 在同一时刻被改动；请重试", body.id),
            ))
            .into());
        }
        let what = match (action, previous) {
            (Action::Extend, _) => "extended",
            (Action::Withdraw, _) => "withdrawn",
            _ => "published",
        };
        info!(id = %body.id, version = body.version, staff = %actor.name, "solicitation {what}");
        if let Some((kind, text)) = describe(&body, "", self.utc_offset_ms) {
            self.events.emit(kind, &body.id, None, "", text);
        }
        self.view_of(signed).await
    }

    fn new_solicitation(
        &self,
        req: SolicitRequest,
        actor: &Actor,
        now: i64,
    ) -> Result<Notice, OfficeError> {
        if req.deadline_unix_ms <= now {
            return Err(OfficeError::Invalid(Said::both(
                "a solicitation needs a deadline in the future (--due)",
                "约稿需要一个在将来的截止时间（--due）",
            )));
        }
        if Class::from_proto(req.priority).is_none() {
            return Err(OfficeError::Invalid(Said::both(
                "say which class answers travel in: emergency, bad_news or routine (--priority)",
                "请说明来稿按哪一类报送：emergency（重大紧急）、bad_news（报忧）或 routine（动态）（--priority）",
            )));
        }
        let counties: BTreeSet<String> =
            req.counties.iter().map(|c| c.trim().to_string()).collect();
        if let Some(bad) = counties
            .iter()
            .find(|c| crate::trust::validate_node_id(c).is_err())
        {
            let bad = bad.chars().take(80).collect::<String>();
            return Err(OfficeError::Invalid(Said::both(
                format!("{bad:?} is not a county's node id"),
                format!("{bad:?} 不是县级节点的编号"),
            )));
        }
        Ok(Notice {
            id: notice::new_solicitation_id(now),
            version: 1,
            staff: actor.name.clone(),
            at_unix_ms: now,
            body: Some(Body::Solicitation(Solicitation {
                topic: req.topic.trim().to_string(),
                text: req.text,
                deadline_unix_ms: req.deadline_unix_ms,
                priority: req.priority,
                counties: counties.into_iter().collect(),
                withdrawn: false,
                note: String::new(),
            })),
            ..Default::default()
        })
    }

    fn not_found(&self, what: &'static str, id: &str) -> OfficeError {
        OfficeError::NotFound {
            what,
            id: id.chars().take(40).collect(),
            hint: if what == "solicitation" {
                " (`zhibao solicitations` lists those that did)"
            } else {
                " (`zhibao bulletins` lists those that did)"
            },
        }
    }

    /// The newest version of solicitation `id` kept here (verified when it
    /// was kept).
    async fn solicitation(&self, id: &str) -> Result<(Notice, SignedNotice), Error> {
        if notice::check_id(id) != Ok(Kind::Solicitation) {
            let id = id.chars().take(40).collect::<String>();
            return Err(OfficeError::Invalid(Said::both(
                format!("a solicitation id is SOL- and 16 hex digits, not {id:?}"),
                format!("约稿编号是 SOL- 加 16 位十六进制数字，{id:?} 不是"),
            ))
            .into());
        }
        let (_, bytes) = self
            .store
            .notice(id.to_string())
            .await?
            .ok_or_else(|| self.not_found("solicitation", id))?;
        let signed = SignedNotice::decode(bytes.as_slice())
            .map_err(|e| OfficeError::from(NoticeError::Malformed(e)))?;
        let body = notice::peek(&signed).unwrap_or_default();
        Ok((body, signed))
    }

    /// The newest version of a solicitation this node published.
    async fn own_solicitation(&self, id: &str) -> Result<(Notice, SignedNotice), Error> {
        let (body, signed) = self.solicitation(id).await?;
        if body.publisher != self.me() {
            return Err(OfficeError::Precondition(Said::both(
                format!(
                    "{id} was published by {}; only its publisher can change it",
                    body.publisher
                ),
                format!("{id} 由 {} 发布；只有发布方可以改动它", body.publisher),
            ))
            .into());
        }
        Ok((body, signed))
    }

    /// A notice as an operator sees it, verified now.
    pub(super) async fn view_of(&self, signed: SignedNotice) -> Result<NoticeView, Error> {
        let me = self.me();
        let (body, verification) =
            match notice::open(&signed, &self.trust, SystemTime::now(), &self.publishers()) {
                Ok(b) => (b, "verified".to_string()),
                Err(e) => (notice::peek(&signed).unwrap_or_default(), e.to_string()),
            };
        let for_us = match &body.body {
            Some(Body::Solicitation(s)) => body.publisher != me && notice::asks(s, &me),
            Some(Body::Bulletin(_)) => body.publisher != me,
            None => false,
        };
        let answered_by = if matches!(body.body, Some(Body::Solicitation(_))) {
            self.store
                .answers_to(body.id.clone())
                .await?
                .into_iter()
                .filter(|(origin, _, _)| *origin == me)
                .map(|(_, item, _)| item)
                .collect()
        } else {
            Vec::new()
        };
        Ok(NoticeView {
            signed: Some(signed),
            body: Some(body),
            verification,
            for_us,
            answered_by,
        })
    }

    /// The notices known here, newest first: by default those addressed to
    /// this node or published by it, still current; with `all`, every one.
    pub(crate) async fn notices(&self, req: NoticesRequest) -> Result<NoticesResponse, Error> {
        let me = self.me();
        let now = self.clock.now_ms();
        let rows = if req.id.is_empty() {
            let prefix = if req.solicitations_only {
                "SOL-"
            } else if req.bulletins_only {
                "BUL-"
            } else {
                ""
            };
            self.store.notices(prefix).await?
        } else {
            let kind = notice::check_id(&req.id).map_err(|e| OfficeError::Invalid(e.into()))?;
            let what = if kind == Kind::Solicitation {
                "solicitation"
            } else {
                "bulletin"
            };
            let (version, bytes) = self
                .store
                .notice(req.id.clone())
                .await?
                .ok_or_else(|| self.not_found(what, &req.id))?;
            vec![(req.id.clone(), version, bytes)]
        };
        let mut views = Vec::new();
        for (_, _, bytes) in rows {
            let Ok(signed) = SignedNotice::decode(bytes.as_slice()) else {
                continue;
            };
            let view = self.view_of(signed).await?;
            let body = view.body.clone().unwrap_or_default();
            let current = match &body.body {
                Some(Body::Solicitation(s)) => {
                    !s.withdrawn
                        && s.deadline_unix_ms.saturating_add(LISTED_AFTER_DEADLINE_MS) > now
                }
                _ => true,
            };
            let ours = view.for_us || body.publisher == me;
            if req.all || !req.id.is_empty() || (ours && current) {
                views.push(view);
            }
        }
        views.sort_by_key(|v| std::cmp::Reverse(v.body.as_ref().map_or(0, |b| b.at_unix_ms)));
        Ok(NoticesResponse { notices: views })
    }

    /// Checks that this node may answer solicitation `id` now; returns it.
    pub(crate) async fn answerable(&self, id: &str) -> Result<Solicitation, Error> {
        let (body, _) = self.solicitation(id).await?;
        let Some(Body::Solicitation(s)) = body.body else {
            return Err(self.not_found("solicitation", id).into());
        };
        let me = self.me();
        if s.withdrawn {
            let (why_en, why_zh) = if s.note.is_empty() {
                ("no reason given", "未写理由")
            } else {
                (s.note.as_str(), s.note.as_str())
            };
            return Err(OfficeError::Precondition(Said::both(
                format!(
                    "{id} was withdrawn by {} ({why_en}); it needs no answer",
                    body.publisher
                ),
                format!("{id} 已由 {} 撤回（{why_zh}）；无需回稿", body.publisher),
            ))
            .into());
        }
        if !notice::asks(&s, &me) {
            let asked = s.counties.join(", ");
            return Err(OfficeError::Precondition(Said::both(
                format!("{id} was not addressed to {me} (it asks {asked})"),
                format!("{id} 不是发给 {me} 的（它约的是 {asked}）"),
            ))
            .into());
        }
        Ok(s)
    }

    /// Per county: answered on time, late, or not.
    pub(crate) async fn status(
        &self,
        req: SolicitationStatusRequest,
    ) -> Result<SolicitationStatusResponse, Error> {
        let view = self
            .notices(NoticesRequest {
                id: req.id.clone(),
                ..Default::default()
            })
            .await?
            .notices
            .pop()
            .ok_or_else(|| self.not_found("solicitation", &req.id))?;
        let body = view.body.clone().unwrap_or_default();
        let Some(Body::Solicitation(s)) = &body.body else {
            return Err(OfficeError::Invalid(Said::both(
                format!("{} is not a solicitation", req.id),
                format!("{} 不是约稿", req.id),
            ))
            .into());
        };
        let counties = self.counties_asked(s).await?;
        let answers = self.store.answers_to(req.id.clone()).await?;
        let rows = answer_states(s, &counties, &answers, self.clock.now_ms());
        Ok(SolicitationStatusResponse {
            solicitation: Some(view),
            counties: rows,
        })
    }

    /// The counties a solicitation asks: those it names, or for "all" the
    /// configured counties and every county that ever answered or sent.
    async fn counties_asked(&self, s: &Solicitation) -> Result<Vec<String>, store::Error> {
        if !s.counties.is_empty() {
            return Ok(s.counties.clone());
        }
        let mut all: BTreeSet<String> = self.config.get().counties.iter().cloned().collect();
        all.extend(self.store.origins().await?);
        all.remove(&self.me());
        Ok(all.into_iter().collect())
    }
}

/// Each county's answer to `s`: the first report from it, on time or late;
/// none yet (open) or none by the deadline (missing).
pub(crate) fn answer_states(
    s: &Solicitation,
    counties: &[String],
    answers: &[(String, String, i64)],
    now_ms: i64,
) -> Vec<CountyAnswer> {
    let mut by_county: BTreeMap<&str, Vec<(&str, i64)>> = BTreeMap::new();
    for (origin, item, at) in answers {
        by_county
            .entry(origin.as_str())
            .or_default()
            .push((item.as_str(), *at));
    }
    let mut names: BTreeSet<&str> = counties.iter().map(String::as_str).collect();
    // A county that answered though not asked is shown too.
    names.extend(by_county.keys().copied());
    names
        .into_iter()
        .map(|county| {
            let mut items = by_county.remove(county).unwrap_or_default();
            items.sort_by_key(|(_, at)| *at);
            let first = items.first().copied();
            let state = match first {
                Some((_, at)) if at <= s.deadline_unix_ms => "on_time",
                Some(_) => "late",
                None if s.withdrawn => "withdrawn",
                None if now_ms > s.deadline_unix_ms => "missing",
                None => "open",
            };
            CountyAnswer {
                county: county.to_string(),
                state: state.into(),
                item_id: first.map(|(i, _)| i.to_string()).unwrap_or_default(),
                arrived_unix_ms: first.map_or(0, |(_, at)| at),
                items: items.iter().map(|(i, _)| i.to_string()).collect(),
            }
        })
        .collect()
}

/// What a node's watchers are told when a notice arrives or changes:
/// `me` is this node (empty at the publisher, which is told of its own).
pub(crate) fn describe(n: &Notice, me: &str, offset_ms: i64) -> Option<(EventKind, Said)> {
    match &n.body {
        Some(Body::Solicitation(s)) => {
            if !me.is_empty() && !notice::asks(s, me) {
                return None;
            }
            let class = Class::from_proto(s.priority);
            let due = crate::clock::show(s.deadline_unix_ms, offset_ms);
            let (id, topic) = (&n.id, &s.topic);
            let said = if s.withdrawn {
                Said::both(
                    format!("solicitation (约稿) {id} «{topic}» withdrawn: {}", s.note),
                    format!("约稿 {id}《{topic}》已撤回：{}", s.note),
                )
            } else if n.version > 1 {
                Said::both(
                    format!(
                        "solicitation (约稿) {id} «{topic}»: deadline now {due} ({})",
                        s.note
                    ),
                    format!("约稿 {id}《{topic}》：截止时间改为 {due}（{}）", s.note),
                )
            } else {
                Said::both(
                    format!(
                        "solicitation (约稿) {id} from {}: «{topic}», answers due {due} as {}: answer with `zhibao submit --answers {id}`",
                        n.publisher,
                        class.map_or("?", Class::name)
                    ),
                    format!(
                        "{} 约稿 {id}《{topic}》，{due} 前按「{}」报送：用 `zhibao submit --answers {id}` 报送",
                        n.publisher,
                        class.map_or("?", Class::name_zh)
                    ),
                )
            };
            Some((EventKind::Solicitation, said))
        }
        Some(Body::Bulletin(b)) => Some((
            EventKind::Bulletin,
            Said::both(
                format!(
                    "bulletin (通报) {} from {}: {} — `zhibao bulletins --id {}` shows it",
                    n.id, n.publisher, b.title, n.id
                ),
                format!(
                    "{} 发布通报 {}：{}（`zhibao bulletins --id {}` 查看）",
                    n.publisher, n.id, b.title, n.id
                ),
            ),
        )),
        None => None,
    }
}

/// Longest sleep of the watch, so a jump of the clock is caught up with.
const MAX_NAP: Duration = Duration::from_secs(30);

/// Raises what is due when a solicitation's deadline passes: at the
/// publisher, an alarm per county that has not answered; at a county asked
/// that has not answered, a reminder. Once per version (kept in the store:
/// a restart does not repeat it; an extension sets a new deadline to watch).
#[derive(Debug)]
pub(crate) struct SolicitationWatch {
    pub(crate) office: Arc<Office>,
}

impl SolicitationWatch {
    /// Runs until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let office = &self.office;
        let mut changes = office.store.notices_watch();
        loop {
            changes.borrow_and_update();
            let next = match self.pass().await {
                Ok(next) => next,
                Err(e) => {
                    error!(error = %e, "solicitation watch cannot read the store; retrying");
                    None
                }
            };
            let nap = next.map_or(MAX_NAP, |at| {
                let wait = at.saturating_sub(office.clock.now_ms());
                Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(MAX_NAP)
            });
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                r = changes.changed() => if r.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Deals with every deadline passed; returns the next one ahead.
    async fn pass(&self) -> Result<Option<i64>, Error> {
        let office = &self.office;
        let me = office.me();
        let now = office.clock.now_ms();
        let mut next: Option<i64> = None;
        let mut all_counties: Option<Vec<String>> = None;
        for (id, version, bytes) in office.store.notices("SOL-").await? {
            let Ok(signed) = SignedNotice::decode(bytes.as_slice()) else {
                continue;
            };
            let Some(n) = notice::peek(&signed) else {
                continue;
            };
            let Some(Body::Solicitation(s)) = &n.body else {
                continue;
            };
            if s.withdrawn {
                continue;
            }
            // Past its deadline once the clock is beyond it (an answer
            // stored at the deadline's very millisecond is on time), the
            // same rule `answer_states` applies.
            if now <= s.deadline_unix_ms {
                let after = s.deadline_unix_ms.saturating_add(1);
                next = Some(next.map_or(after, |t| t.min(after)));
                continue;
            }
            if office.store.notice_fired(id.clone(), version).await? {
                continue;
            }
            let answers = office.store.answers_to(id.clone()).await?;
            if n.publisher == me {
                // Every county seen sending, read once per pass: a
                // solicitation to all asks them.
                if s.counties.is_empty() && all_counties.is_none() {
                    all_counties = Some(office.counties_asked(s).await?);
                }
                let counties = if s.counties.is_empty() {
                    all_counties.clone().unwrap_or_default()
                } else {
                    s.counties.clone()
                };
                let missing: Vec<String> = answer_states(s, &counties, &answers, now)
                    .into_iter()
                    .filter(|row| row.state == "missing")
                    .map(|row| row.county)
                    .collect();
                if !missing.is_empty() {
                    let list = missing.join(", ");
                    error!(alarm = "solicitation-unanswered", %id, counties = %list, topic = %s.topic, "ALARM: counties have not answered the solicitation by its deadline");
                    office.events.alarm(
                        &id,
                        "",
                        Said::both(
                            format!(
                                "{} of {} counties asked have not answered solicitation (约稿) {id} «{}» by its deadline: {list}",
                                missing.len(),
                                counties.len(),
                                s.topic
                            ),
                            format!(
                                "约稿 {id}《{}》已到截止时间，约请的 {} 个县中 {} 个未报送：{}",
                                s.topic,
                                counties.len(),
                                missing.len(),
                                missing.join("、")
                            ),
                        ),
                    );
                }
            } else if notice::asks(s, &me) && !answers.iter().any(|(o, _, _)| *o == me) {
                warn!(reminder = "solicitation-due", %id, topic = %s.topic, "the office's solicitation is unanswered past its deadline");
                office.events.emit(
                    EventKind::Reminder,
                    &id,
                    Class::from_proto(s.priority),
                    "",
                    Said::both(
                        format!(
                            "solicitation (约稿) {id} «{}» from {} is past its deadline with no answer from here: answer with `zhibao submit --answers {id}` (it will count as late)",
                            s.topic, n.publisher
                        ),
                        format!(
                            "{} 的约稿 {id}《{}》已过截止时间，本县尚未报送：用 `zhibao submit --answers {id}` 报送（记为迟交）",
                            n.publisher, s.topic
                        ),
                    ),
                );
            }
            office.store.fire_notice(id, version).await?;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    //! Each county's answer state, at the edges of the deadline.

    use super::*;

    fn asked(deadline: i64) -> Solicitation {
        Solicitation {
            topic: "t".into(),
            deadline_unix_ms: deadline,
            priority: 3,
            counties: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        }
    }

    fn state(rows: &[CountyAnswer], county: &str) -> String {
        rows.iter()
            .find(|r| r.county == county)
            .map(|r| r.state.clone())
            .unwrap_or_default()
    }

    #[test]
    fn the_deadline_millisecond_itself_is_still_in_time() {
        let s = asked(1_000);
        let answers = vec![
            ("a".to_string(), "i1".to_string(), 1_000),
            ("b".to_string(), "i2".to_string(), 1_001),
        ];
        let counties: Vec<String> = s.counties.clone();
        let at = answer_states(&s, &counties, &answers, 1_000);
        assert_eq!(state(&at, "a"), "on_time");
        assert_eq!(state(&at, "b"), "late");
        assert_eq!(
            state(&at, "c"),
            "open",
            "not missing at the deadline itself"
        );
        let after = answer_states(&s, &counties, &answers, 1_001);
        assert_eq!(state(&after, "c"), "missing");
    }

    #[test]
    fn the_first_answer_counts_and_an_unasked_county_is_shown() {
        let s = asked(1_000);
        let answers = vec![
            ("a".to_string(), "late".to_string(), 2_000),
            ("a".to_string(), "early".to_string(), 500),
            ("z".to_string(), "extra".to_string(), 600),
        ];
        let at = answer_states(&s, &s.counties.clone(), &answers, 5_000);
        let a = at.iter().find(|r| r.county == "a").unwrap();
        assert_eq!((a.state.as_str(), a.item_id.as_str()), ("on_time", "early"));
        assert_eq!(a.items, vec!["early".to_string(), "late".to_string()]);
        assert_eq!(state(&at, "z"), "on_time");
        let mut withdrawn = s.clone();
        withdrawn.withdrawn = true;
        let w = answer_states(&withdrawn, &s.counties.clone(), &[], 5_000);
        assert!(w.iter().all(|r| r.state == "withdrawn"));
    }
}
