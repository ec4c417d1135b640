//! Taking an item into custody, and the receipt that says so.
//!
//! Every item that enters a node — from a local operator or from a child —
//! passes through [`Custody::keep`]: it is stored durably, queued on its
//! routes (or, at the final hub, put in the inbox), and only then does
//! anyone hear that the node has it. A child hears this node's signed
//! receipt: [`Custody::keep_receipted`] signs it together with the other
//! receipts of its commit (one signature per commit, each receipt with its
//! inclusion path); a duplicate gets the original's facts, signed anew.

use std::sync::Arc;

use prost::Message;
use tracing::{error, info};

use super::error::Error;
use super::events::Events;
use super::forward::early::{self, Offered};
use super::live::Live;
use super::routes::Routes;
use super::said::Said;
use crate::config::Deadlines;
use crate::digest::hex;
use crate::envelope::Verified;
use crate::proto::{EventKind, SignedReceipt, SignedReport};
use crate::receipt;
use crate::store::{Destination, FROM_OPERATOR, ItemRecord, PutOutcome, Store};
use crate::trust::Keys;

/// Stores items and vouches for them.
#[derive(Debug)]
pub(crate) struct Custody {
    store: Store,
    keys: Arc<Keys>,
    routes: Arc<Routes>,
    events: Events,
    /// Reloaded on SIGHUP.
    deadlines: Live<Deadlines>,
    /// Whether an operator's new item may go up while it is being stored
    /// (`limits.send_while_storing`, see `early`).
    send_while_storing: bool,
}

impl Custody {
    pub(crate) fn new(
        store: Store,
        keys: Arc<Keys>,
        routes: Arc<Routes>,
        events: Events,
        deadlines: Deadlines,
        send_while_storing: bool,
    ) -> Self {
        Self {
            store,
            keys,
            routes,
            events,
            deadlines: Live::new(deadlines),
            send_while_storing,
        }
    }

    /// The store, as a handle for a caller with nothing else under way if
    /// `alone`.
    fn store_for(&self, alone: bool) -> Store {
        if alone {
            self.store.alone()
        } else {
            self.store.clone()
        }
    }

    /// The deadlines in force, shared with whoever else computes them.
    pub(crate) fn deadlines(&self) -> Live<Deadlines> {
        self.deadlines.clone()
    }

    /// Stores a verified item durably (or finds it already stored with the
    /// same bytes), handed over by `from`; returns its record. A follow-up
    /// of an earlier report is noted on it (see [`Store::put_with`] for
    /// `may_hold_back`). `alone`: the caller has nothing else under way
    /// (see [`Store::alone`]).
    ///
    /// # Errors
    /// [`Error::Conflict`] (and an alarm) if the id is stored with other
    /// bytes; [`Error::NotOrigin`] for a follow-up of another origin's
    /// report; [`Error::Store`] if the store cannot take it.
    pub(crate) async fn keep(
        &self,
        signed: &SignedReport,
        item: &Verified,
        from: &str,
        may_hold_back: bool,
        alone: bool,
    ) -> Result<ItemRecord, Error> {
        let (record, dest) = self.prepare(signed, item, from).await?;
        let report = item.report();
        let offered = match &dest {
            // A plain new item of this node's own operators, offered to
            // the routes with nothing else to do before it is on this
            // node's disk (see `early`).
            Destination::Queue(to)
                if self.send_while_storing
                    && from == FROM_OPERATOR
                    && !may_hold_back
                    && report.link == 0
                    && report.attachments.is_empty()
                    && self.store.has_room() =>
            {
                early::offer(&self.routes, to, item.id(), signed, &record)
            }
            _ => Offered::default(),
        };
        // Committed on this task only if no session took it: one that did
        // is woken on this thread, and sends it while the store's own
        // thread commits.
        let store = self.store_for(alone && offered.is_empty());
        let put = store.put_with(item.id().to_string(), record, dest, may_hold_back);
        let outcome = put.await;
        offered.stored(matches!(
            outcome,
            Ok(PutOutcome::Stored(_) | PutOutcome::Duplicate(_))
        ));
        self.settle(outcome?, item, from)
    }

    /// Like [`Custody::keep`], with this node's receipt for the item, signed
    /// together with the other receipts of its commit.
    pub(crate) async fn keep_receipted(
        &self,
        signed: &SignedReport,
        item: &Verified,
        from: &str,
        alone: bool,
    ) -> Result<SignedReceipt, Error> {
        let (record, dest) = self.prepare(signed, item, from).await?;
        let identity = self.keys.current();
        let store = self.store_for(alone);
        let put = store.put_receipted(item.id().to_string(), record, dest, false, identity.clone());
        let (outcome, receipt) = put.await?;
        let rec = self.settle(outcome, item, from)?;
        Ok(match receipt {
            Some(r) => r.receipt(&identity),
            None => self.receipt(item.id(), &rec),
        })
    }

    /// Like [`Custody::keep`] for an item sealed at the end of its review
    /// (把关): the review of `review_id` ends in the same transaction that
    /// stores it. `None` if it no longer awaits review (another reviewer,
    /// or the review watch, acted first): nothing is stored then.
    pub(crate) async fn keep_reviewed(
        &self,
        signed: &SignedReport,
        item: &Verified,
        review_id: &str,
        may_hold_back: bool,
    ) -> Result<Option<ItemRecord>, Error> {
        let (record, dest) = self.prepare(signed, item, FROM_OPERATOR).await?;
        let put = self.store.send_reviewed(
            review_id.to_string(),
            item.id().to_string(),
            record,
            dest,
            may_hold_back,
        );
        match put.await? {
            Some(outcome) => self.settle(outcome, item, FROM_OPERATOR).map(Some),
            None => Ok(None),
        }
    }

    /// The record to store for a verified item, and where it goes.
    async fn prepare(
        &self,
        signed: &SignedReport,
        item: &Verified,
        from: &str,
    ) -> Result<(ItemRecord, Destination), Error> {
        let report = item.report();
        if report.link != 0 {
            self.check_link_origin(report).await?;
        }
        let record = ItemRecord {
            signed: signed.encode_to_vec(),
            lane: u32::from(item.class().lane()),
            created_ms: report.created_unix_ms,
            deadline_ms: self.deadlines.get().receipt_deadline(
                item.class(),
                report.created_unix_ms,
                report.deadline_unix_ms,
            ),
            sha256: item.sha256().to_vec(),
            from: from.to_string(),
            attachments: u32::try_from(report.attachments.len()).unwrap_or(u32::MAX),
            link: report.link,
            links_to: report.links_to.clone(),
            answers: report.answers.clone(),
            origin: report.origin.clone(),
            title: report.title.clone(),
            priority: report.priority,
            ..Default::default()
        };
        let dest = if self.routes.is_final() {
            Destination::Inbox
        } else {
            Destination::Queue(self.routes.initial(item.class()))
        };
        Ok((record, dest))
    }

    /// What a put did, told to watchers (and an alarm for a conflict).
    fn settle(
        &self,
        outcome: PutOutcome,
        item: &Verified,
        from: &str,
    ) -> Result<ItemRecord, Error> {
        let report = item.report();
        match outcome {
            PutOutcome::Stored(rec) => {
                self.events.emit(
                    EventKind::Submitted,
                    item.id(),
                    Some(item.class()),
                    "",
                    Said::both(
                        format!("from {from}: {}", report.title),
                        if from == FROM_OPERATOR {
                            format!("本节点报送：{}", report.title)
                        } else {
                            format!("来自 {from}：{}", report.title)
                        },
                    ),
                );
                Ok(rec)
            }
            PutOutcome::Duplicate(rec) => {
                info!(id = %item.id(), %from, "duplicate item; answering with the original receipt");
                Ok(rec)
            }
            PutOutcome::Conflict(old) => {
                let e = Error::Conflict {
                    id: item.id().to_string(),
                    stored: hex(&old.sha256),
                    offered: hex(item.sha256()),
                };
                error!(alarm = "id-conflict", item = %item.id(), %from, origin = %report.origin, stored = %hex(&old.sha256), offered = %hex(item.sha256()), "ALARM: an item id arrived again with different bytes; the stored one is kept, the new one refused");
                self.events.alarm(
                    item.id(),
                    "",
                    Said::both(
                        e.to_string(),
                        format!(
                            "同一编号的信息再次到达但内容不同：保留原有的，拒收新的（来自 {from}）"
                        ),
                    ),
                );
                Err(e)
            }
        }
    }

    /// Only the origin of a report may follow it up: a withdrawal,
    /// correction or supplement of a report held here must come from the
    /// same origin. (One this node does not hold is taken as it is: the
    /// hub will judge it against the original.)
    async fn check_link_origin(&self, report: &crate::proto::Report) -> Result<(), Error> {
        let Some(target) = self.store.record(report.links_to.clone()).await? else {
            return Ok(());
        };
        let origin = target.brief().origin;
        if origin != report.origin {
            return Err(Error::NotOrigin {
                id: report.links_to.clone(),
                origin,
                by: report.origin.clone(),
            });
        }
        Ok(())
    }

    /// Tells this node's watchers that an item is held below past its
    /// deadline (an overdue event for the office, before the item arrives).
    pub(crate) fn held_below(&self, notice: &crate::proto::HeldNotice) {
        self.events.emit(
            EventKind::Overdue,
            &notice.item_id,
            crate::class::Class::from_proto(notice.priority),
            &notice.holder,
            Said::both(
                format!(
                    "from {}: held at {} past its deadline: {}",
                    notice.origin, notice.holder, notice.why
                ),
                format!(
                    "来自 {}：超过时限仍滞留在 {}：{}",
                    notice.origin, notice.holder, notice.why
                ),
            ),
        );
    }

    /// The node's metrics.
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        self.events.metrics()
    }

    /// Where held notices go from here: up every route (none at the final
    /// hub, where they end).
    pub(crate) fn onward(&self) -> Vec<String> {
        self.routes.all()
    }

    /// This node's signed receipt for an item it keeps: custody while the
    /// item is on its way further up, delivery once it is in this (final)
    /// node's inbox.
    pub(crate) fn receipt(&self, id: &str, rec: &ItemRecord) -> SignedReceipt {
        let digest = rec.digest().unwrap_or_default();
        receipt::issue(&self.keys.current(), &rec.statement(id, &digest))
    }
}
