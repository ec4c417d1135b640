//! What comes down from upstream unasked: delivery receipts of items a relay
//! took from us, the offices' decisions on them, the offices' notices
//! (solicitations, bulletins), and the region's newest CRL.
//!
//! When this node handed an item to a relay, the relay's receipt was only
//! custody; the final hub's delivery receipt comes down later, pushed on
//! this route's stream (`ForwardResponse.delivered`), possibly after
//! reconnections. It is checked against the item we stored, kept, passed
//! on down if the item came from a child of ours, and acknowledged.

use prost::Message;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::session::send;
use super::{Forwarder, SessionEnd};
use crate::node::said::Said;
use crate::proto::{
    DeliveryAck, DispositionRef, EventKind, ForwardRequest, NoticeRef, ReceiptKind,
    SignedDisposition, SignedNotice, SignedReceipt, forward_request,
};
use crate::store::{self, DecisionOutcome, NoticeOutcome};
use crate::{disposition, notice, receipt};

impl Forwarder {
    /// A CRL came down: put in force (and kept) if the CA signed it and it
    /// is newer than ours; our own children get it from us in turn.
    pub(super) fn on_crl(&self, der: &[u8]) {
        let up = self.name();
        match self.trust.install_crl(der) {
            Ok(true) => {
                let number = self.trust.snapshot().crl.map(|c| c.number);
                info!(upstream = %up, crl_number = number, "a newer region CRL came down; in force");
            }
            Ok(false) => {}
            Err(e) => {
                error!(alarm = "crl-push", upstream = %up, error = %e, "ALARM: a CRL pushed by the upstream was refused");
                self.events.alarm(
                    "",
                    up,
                    Said::both(e.to_string(), format!("拒收 {up} 发来的吊销列表：{e}")),
                );
            }
        }
    }

    /// Checks, keeps and acknowledges one pushed-down delivery receipt.
    pub(super) async fn on_delivered(
        &self,
        signed: &SignedReceipt,
        tx: &mpsc::Sender<ForwardRequest>,
    ) -> Result<(), SessionEnd> {
        let up = self.name();
        let Some(named) = receipt::peek(signed) else {
            error!(alarm = "bad-receipt", upstream = %up, "ALARM: pushed-down receipt does not decode; ignored");
            self.events.alarm(
                "",
                up,
                Said::both(
                    format!("delivery receipt from {up} does not decode"),
                    format!("{up} 的送达回执无法解码"),
                ),
            );
            return Ok(());
        };
        let id = named.item_id;
        let Some(rec) = self.store.record(id.clone()).await? else {
            warn!(alarm = "unknown-receipt", upstream = %up, %id, "delivery receipt for an item never sent here; ignored");
            self.events.alarm(
                &id,
                up,
                Said::both(
                    format!("{up} pushed a delivery receipt for an unknown item"),
                    format!("{up} 发来本节点没有的信息的送达回执"),
                ),
            );
            return Ok(());
        };
        let now = std::time::SystemTime::now();
        let hub = match receipt::open_for(signed, &self.trust, now, &id, &rec.sha256, None) {
            Ok(r) if r.kind == ReceiptKind::Delivery as i32 => r.receiver,
            Ok(_) => {
                warn!(alarm = "unknown-receipt", upstream = %up, %id, "custody receipt pushed down as a delivery receipt; ignored");
                return Ok(());
            }
            Err(e) => {
                error!(alarm = "bad-receipt", upstream = %up, %id, error = %e, "ALARM: pushed-down delivery receipt does not match the item");
                self.events.alarm(
                    &id,
                    up,
                    Said::both(
                        format!("delivery receipt does not match: {e}"),
                        format!(
                            "送达回执不符：{}",
                            crate::verdict::reason_zh(e.problem(), &e)
                        ),
                    ),
                );
                return Ok(());
            }
        };
        self.store
            .record_delivery(id.clone(), signed.encode_to_vec())
            .await?;
        debug!(%id, %hub, "delivery receipt came down");
        self.events.emit(
            EventKind::Delivered,
            &id,
            None,
            up,
            Said::both(
                format!("delivery receipt from {hub}"),
                format!("{hub} 的送达回执"),
            ),
        );
        let ack = forward_request::Kind::Ack(DeliveryAck {
            item_ids: vec![id],
            ..Default::default()
        });
        send(tx, ack).await
    }

    /// Checks, keeps and acknowledges one pushed-down decision of an office
    /// above: it must be signed by a node of the region that holds exactly
    /// this item (its receipt proves it) and follow that node's earlier
    /// decisions on it. Kept, it goes on down to the child the item came
    /// from. A decision that does not check out is not acknowledged, and
    /// raises an alarm.
    pub(super) async fn on_disposition(
        &self,
        signed: &SignedDisposition,
        tx: &mpsc::Sender<ForwardRequest>,
    ) -> Result<(), SessionEnd> {
        let up = self.name();
        let Some(named) = disposition::peek(signed) else {
            error!(alarm = "bad-disposition", upstream = %up, "ALARM: pushed-down decision does not decode; ignored");
            self.events.alarm(
                "",
                up,
                Said::both(
                    format!("a decision from {up} does not decode"),
                    format!("{up} 发来的处理意见无法解码"),
                ),
            );
            return Ok(());
        };
        let id = named.item_id;
        let Some(rec) = self.store.record(id.clone()).await? else {
            warn!(alarm = "unknown-disposition", upstream = %up, %id, "decision on an item never sent here; ignored");
            self.events.alarm(
                &id,
                up,
                Said::both(
                    format!("{up} pushed a decision on an unknown item"),
                    format!("{up} 发来本节点没有的信息的处理意见"),
                ),
            );
            return Ok(());
        };
        let now = std::time::SystemTime::now();
        let opened = match disposition::open_for(signed, &self.trust, now, &id, &rec.sha256) {
            Ok(o) => o,
            Err(e) => {
                error!(alarm = "bad-disposition", upstream = %up, %id, error = %e, "ALARM: pushed-down decision does not verify; not taken");
                self.events.alarm(
                    &id,
                    up,
                    Said::both(
                        format!("a decision from {up} does not verify: {e}"),
                        format!(
                            "{up} 发来的处理意见未通过验证：{}",
                            crate::verdict::reason_zh(e.problem(), &e)
                        ),
                    ),
                );
                return Ok(());
            }
        };
        let body = opened.body;
        let delivery = (opened.receipt_kind == ReceiptKind::Delivery)
            .then(|| signed.receipt.as_ref().map(Message::encode_to_vec))
            .flatten();
        let outcome = self
            .store
            .decide(
                id.clone(),
                store::Decision {
                    signed: signed.encode_to_vec(),
                    node: body.node.clone(),
                    seq: body.seq,
                    previous: body.previous_sha256.clone(),
                    kind: body.kind,
                    text: body.text.clone(),
                    at_ms: body.at_unix_ms,
                    answer_by_ms: body.answer_by_unix_ms,
                    delivery,
                },
            )
            .await?;
        match outcome {
            DecisionOutcome::Stored(_) => {
                let what =
                    super::super::desk::describe(body.kind, &body.text, &body.node, &body.staff);
                info!(%id, node = %body.node, seq = body.seq, kind = disposition::kind_name(body.kind), "decision came down");
                self.events.emit(
                    EventKind::Disposed,
                    &id,
                    crate::class::Class::from_lane(rec.lane()),
                    up,
                    what,
                );
            }
            DecisionOutcome::Duplicate => {}
            DecisionOutcome::UnknownItem => return Ok(()),
            DecisionOutcome::Conflict => {
                error!(alarm = "bad-disposition", upstream = %up, %id, node = %body.node, seq = body.seq, "ALARM: a different decision with this number is already kept; not taken");
                self.events.alarm(
                    &id,
                    up,
                    Said::both(
                        format!(
                            "{up} pushed decision #{} of {} that differs from the one kept",
                            body.seq, body.node
                        ),
                        format!(
                            "{up} 发来的 {} 第 {} 号处理意见与本节点所存不同",
                            body.node, body.seq
                        ),
                    ),
                );
                return Ok(());
            }
            DecisionOutcome::OutOfOrder { expected } => {
                error!(alarm = "bad-disposition", upstream = %up, %id, node = %body.node, seq = body.seq, expected, "ALARM: decision out of order; not taken");
                self.events.alarm(
                    &id,
                    up,
                    Said::both(
                        format!(
                            "{up} pushed decision #{} of {} where #{expected} was due (or its link to the one before is wrong)",
                            body.seq, body.node
                        ),
                        format!(
                            "{up} 发来 {} 第 {} 号处理意见，应为第 {expected} 号（或与前一号的链接不符）",
                            body.node, body.seq
                        ),
                    ),
                );
                return Ok(());
            }
        }
        let ack = forward_request::Kind::Ack(DeliveryAck {
            dispositions: vec![DispositionRef {
                item_id: id,
                node: body.node,
                seq: body.seq,
            }],
            ..Default::default()
        });
        send(tx, ack).await
    }

    /// Checks, keeps and acknowledges one pushed-down notice (a
    /// solicitation or bulletin): signed by one of this node's publishers
    /// (`office.publishers`), unaltered, and the next version of what is
    /// kept. Kept, it goes on down to every child of ours. One that does
    /// not check out is not acknowledged, and raises an alarm.
    pub(super) async fn on_notice(
        &self,
        signed: &SignedNotice,
        tx: &mpsc::Sender<ForwardRequest>,
    ) -> Result<(), SessionEnd> {
        let up = self.name();
        let now = std::time::SystemTime::now();
        let body = match notice::open(signed, &self.trust, now, &self.publishers) {
            Ok(b) => b,
            Err(e) => {
                let id = notice::peek(signed).map(|n| n.id).unwrap_or_default();
                error!(alarm = "bad-notice", upstream = %up, id = %id.chars().take(40).collect::<String>(), error = %e, "ALARM: pushed-down notice does not verify; not taken");
                self.events.alarm(
                    "",
                    up,
                    Said::both(
                        format!("a notice from {up} was refused: {e}"),
                        format!("拒收 {up} 发来的通知（约稿或通报）：{e}"),
                    ),
                );
                return Ok(());
            }
        };
        let outcome = self
            .store
            .keep_notice(
                body.id.clone(),
                body.version,
                body.previous_sha256.clone(),
                signed.encode_to_vec(),
            )
            .await?;
        match outcome {
            NoticeOutcome::Stored => {
                info!(id = %body.id, version = body.version, publisher = %body.publisher, "notice came down");
                let me = self.keys.current().node_id().to_string();
                if let Some((kind, what)) =
                    super::super::office::describe(&body, &me, self.utc_offset_ms)
                {
                    self.events.emit(kind, &body.id, None, up, what);
                }
            }
            NoticeOutcome::Duplicate => {}
            NoticeOutcome::Conflict | NoticeOutcome::OutOfOrder { .. } => {
                error!(alarm = "bad-notice", upstream = %up, id = %body.id, version = body.version, ?outcome, "ALARM: notice conflicts with the versions kept; not taken");
                self.events.alarm(
                    "",
                    up,
                    Said::both(
                        format!(
                            "{up} pushed version {} of {} that does not follow the versions kept here ({outcome:?})",
                            body.version, body.id
                        ),
                        format!(
                            "{up} 发来 {} 的第 {} 版，与本节点所存各版不衔接",
                            body.id, body.version
                        ),
                    ),
                );
                return Ok(());
            }
        }
        let ack = forward_request::Kind::Ack(DeliveryAck {
            notices: vec![NoticeRef {
                id: body.id,
                version: body.version,
            }],
            ..Default::default()
        });
        send(tx, ack).await
    }
}
