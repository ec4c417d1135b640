//! The office's desk: decisions on items this node holds from below.
//!
//! A decision (adopted, not adopted, returned for more facts, passed
//! upward, a leader's instruction, closed) is checked, numbered after the
//! node's earlier decisions on the item, signed with the node's key
//! together with its own receipt for the item, and kept — on disk, in the
//! item's history and in the queue down to the child the item came from —
//! before the caller is answered. From there it travels down the tree
//! exactly like a delivery receipt (`push_down`), to the county that wrote
//! the report. Decisions are made one at a time per node, so numbers never
//! collide.
//!
//! The same desk serves the operator socket (`Operator.Dispose`, in the
//! name of the local user) and the hub's consumers on the relay listener
//! (`Desk.Dispose`, in the name of their certificate).

use std::sync::Arc;

use prost::Message;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::custody::Custody;
use super::error::Error;
use super::events::Events;
use super::said::Said;
use super::status::{Check, decision_view};
use super::who::Actor;
use crate::class::Class;
use crate::clock::Clock;
use crate::disposition::{self, Decision, DispositionError, Item, Place};
use crate::envelope;
use crate::proto::{
    DisposeRequest, DispositionKind, DispositionView, EventKind, Report, SignedDisposition,
    SignedReport, desk_server,
};
use crate::store::{self, DecisionOutcome, FROM_OPERATOR, Store};
use crate::tls::PeerInfo;
use crate::trust::Keys;

/// Where decisions are made.
#[derive(Debug)]
pub(crate) struct Desk {
    pub(crate) keys: Arc<Keys>,
    pub(crate) custody: Arc<Custody>,
    pub(crate) store: Store,
    pub(crate) events: Events,
    pub(crate) clock: Clock,
    /// One decision at a time: each takes the next number.
    pub(crate) one_at_a_time: Mutex<()>,
    /// The office's outlets (`office.outlets`): when there are any, an
    /// adoption must name one, so that it scores as the office means.
    /// Reloaded on SIGHUP.
    pub(crate) rules: super::live::Live<crate::score::OfficeRules>,
}

impl Desk {
    /// With outlets configured, an adoption names one of them.
    fn check_outlet(&self, decision: &Decision) -> Result<(), Error> {
        let rules = self.rules.get();
        let outlets = &rules.outlets;
        if decision.kind != DispositionKind::Adopted
            || outlets.is_empty()
            || rules.outlet_of(&decision.text).is_some()
        {
            return Ok(());
        }
        let known: Vec<String> = outlets
            .iter()
            .map(|o| format!("{} ({})", o.key, o.zh))
            .collect();
        let given = decision.text.chars().take(80).collect::<String>();
        let (known, example) = (known.join(", "), &outlets[0].key);
        Err(super::office::OfficeError::Invalid(Said::both(
            format!(
                "outlet {given:?} is not one of office.outlets: {known}; give its key, optionally with the issue, e.g. `{example}: 第12期`"
            ),
            format!(
                "刊物 {given:?} 不在 office.outlets 中：{known}；请写刊物的代号，可带期号，例如 `{example}: 第12期`"
            ),
        ))
        .into())
    }

    /// Records `actor`'s decision; answers once it is on disk.
    pub(crate) async fn decide(
        &self,
        req: DisposeRequest,
        actor: &Actor,
    ) -> Result<DispositionView, Error> {
        envelope::check_id(&req.item_id)?;
        let kind = DispositionKind::try_from(req.kind)
            .map_err(|_| DispositionError::UnknownKind(req.kind))?;
        let decision = Decision {
            kind,
            text: req.text.trim().to_string(),
            answer_by_unix_ms: req.answer_by_unix_ms,
            staff: actor.name.clone(),
        };
        decision.check(self.clock.now_ms())?;
        self.check_outlet(&decision)?;
        let id = req.item_id;
        let _turn = self.one_at_a_time.lock().await;
        let rec = self
            .store
            .get(id.clone())
            .await?
            .ok_or_else(|| Error::NotFound(id.clone()))?;
        let not = |why| Error::NotDecidable {
            id: id.clone(),
            why,
        };
        if rec.from == FROM_OPERATOR || rec.from.is_empty() {
            return Err(not(Said::both(
                "it was written at this node; an office decides on reports from below",
                "它是本节点撰写的；信息科只对下面报来的信息作处理决定",
            )));
        }
        if rec.closed_ms != 0 {
            return Err(not(Said::both(
                "it is closed (办结); nothing more can be decided on it",
                "它已办结；不能再作处理决定",
            )));
        }
        if rec.is_pruned() {
            return Err(Error::Pruned {
                id: id.clone(),
                at_ms: rec.pruned_ms,
            });
        }
        let signed_report =
            SignedReport::decode(rec.signed.as_slice()).map_err(|source| Error::Corrupt {
                id: id.clone(),
                source,
            })?;
        let report =
            Report::decode(signed_report.report.as_slice()).map_err(|source| Error::Corrupt {
                id: id.clone(),
                source,
            })?;
        let sha256 = crate::digest::sha256(&signed_report.report);
        let me = self.keys.current();
        let (seq, previous) = self.history_of(&id, me.node_id()).await?;
        if seq > disposition::MAX_PER_ITEM {
            return Err(DispositionError::Seq(seq).into());
        }
        let at = self.clock.now_ms();
        let signed = disposition::issue(
            &me,
            Item {
                id: &id,
                sha256: &sha256,
                origin: &report.origin,
            },
            &decision,
            Place {
                seq,
                previous: previous.as_ref(),
            },
            at,
            self.custody.receipt(&id, &rec),
        );
        let bytes = signed.encode_to_vec();
        let outcome = self
            .store
            .decide(
                id.clone(),
                store::Decision {
                    signed: bytes.clone(),
                    node: me.node_id().to_string(),
                    seq,
                    previous: previous.map(|p| p.to_vec()).unwrap_or_default(),
                    kind: kind as i32,
                    text: decision.text.clone(),
                    at_ms: at,
                    answer_by_ms: decision.answer_by_unix_ms,
                    delivery: None,
                },
            )
            .await?;
        match outcome {
            DecisionOutcome::Stored(_) | DecisionOutcome::Duplicate => {}
            DecisionOutcome::UnknownItem => return Err(Error::NotFound(id)),
            DecisionOutcome::Conflict | DecisionOutcome::OutOfOrder { .. } => {
                return Err(Error::DecisionRace(id));
            }
        }
        let what = describe(kind as i32, &decision.text, me.node_id(), &actor.name);
        info!(%id, kind = disposition::kind_name(kind as i32), seq, staff = %actor.name, origin = %report.origin, "decided");
        self.events.emit(
            EventKind::Disposed,
            &id,
            Class::from_proto(report.priority),
            "",
            what,
        );
        Ok(decision_view(&id, &rec, &bytes, Check::AsStored))
    }

    /// The number this node's next decision on `id` takes, and the digest
    /// of its decision before.
    async fn history_of(&self, id: &str, node: &str) -> Result<(u32, Option<[u8; 32]>), Error> {
        let mut seq = 1;
        let mut previous = None;
        for bytes in self.store.decisions(id.to_string()).await? {
            let Ok(signed) = SignedDisposition::decode(bytes.as_slice()) else {
                continue;
            };
            if disposition::peek(&signed).is_some_and(|b| b.node == node) {
                seq += 1;
                previous = Some(disposition::digest(&signed));
            }
        }
        Ok((seq, previous))
    }
}

/// A decision in one line, for events: "adopted (采用) by hub, 王芳:
/// 《情况专报》第12期", and in Chinese "采用（hub，王芳）：《情况专报》第12期".
pub(crate) fn describe(kind: i32, text: &str, node: &str, staff: &str) -> Said {
    let mut en = format!(
        "{} ({}) by {node}, {staff}",
        disposition::kind_name(kind),
        disposition::kind_name_zh(kind)
    );
    let mut zh = format!("{}（{node}，{staff}）", disposition::kind_name_zh(kind));
    if !text.is_empty() {
        en.push_str(": ");
        en.push_str(text);
        zh.push('：');
        zh.push_str(text);
    }
    Said::both(en, zh)
}

/// `Desk` on the relay listener: the hub's own certificate and its
/// consumers (`[relay] consumers`) record decisions, in the name of their
/// certificate (and of the member of staff they say they act for).
#[derive(Debug)]
pub(crate) struct DeskService {
    pub(crate) desk: Arc<Desk>,
    pub(crate) node_id: String,
    pub(crate) consumers: Vec<String>,
}

#[tonic::async_trait]
impl desk_server::Desk for DeskService {
    async fn dispose(
        self: Arc<Self>,
        request: Request<DisposeRequest>,
    ) -> Result<Response<DispositionView>, Status> {
        let peer = PeerInfo::of(&request).ok_or(Error::NoPeer)?;
        if peer.node_id != self.node_id && !self.consumers.contains(&peer.node_id) {
            warn!(peer = %peer.node_id, addr = %peer.addr, "refused decision: not a consumer of this hub (relay.consumers)");
            return Err(Error::NotConsumer(peer.node_id).into());
        }
        let req = request.into_inner();
        if req.staff.len() > disposition::MAX_STAFF_BYTES {
            let e = Error::from(DispositionError::StaffTooLong(req.staff.len()));
            warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused decision");
            return Err(e.into());
        }
        let actor = Actor::certificate(&peer.node_id, &req.staff);
        match self.desk.decide(req, &actor).await {
            Ok(view) => Ok(Response::new(view)),
            Err(e) => {
                warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused decision");
                Err(e.into())
            }
        }
    }
}
