//! Signed dispositions: an office's decisions on an item, carried down the
//! tree to the county that wrote it.
//!
//! A node's office decides on an item it holds from below — adopted (into
//! which outlet), not adopted (why), returned for more facts (the question
//! and when the answer is due), passed upward, a leader's instruction,
//! closed. The node signs each decision ([`issue`]) with its own key, numbers
//! it in its history for the item (`seq` 1, 2, 3…, each naming the digest of
//! the one before: append-only), and attaches its own receipt for the item
//! as proof that it held exactly these bytes. Every node on the way down
//! checks all of it ([`open_for`]) before keeping it.
//!
//! The signature covers [`CONTEXT`] followed by the encoded decision, so a
//! decision can never be taken for a report, hop statement or receipt
//! signed by the same key over bare bytes.
//!
//! No network and no store here: plain functions over bytes.

use std::time::SystemTime;

use prost::Message;

use crate::digest::sha256;
use crate::proto::{Disposition, DispositionKind, ReceiptKind, SignedDisposition, SignedReceipt};
use crate::receipt::{self, ReceiptError};
use crate::trust::{Identity, SignerError, Trust};

/// What a decision's signature covers before the decision's bytes.
pub const CONTEXT: &[u8] = b"zhibao.v1.Disposition\n";

/// Longest text (outlet, reason, question, instruction, note), bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Longest staff name, bytes.
pub const MAX_STAFF_BYTES: usize = 256;

/// Most decisions one node may make on one item.
pub const MAX_PER_ITEM: u32 = 1000;

/// Why a decision was refused, made or received.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispositionError {
    /// The kind is not one of the six.
    #[error(
        "unknown disposition kind {0}: use adopted, not-adopted, returned, forwarded, instruction or closed"
    )]
    UnknownKind(i32),
    /// The kind needs a text and none was given.
    #[error("a decision of kind {kind} needs {what}")]
    MissingText {
        /// The kind's name.
        kind: &'static str,
        /// What the text is for it.
        what: &'static str,
    },
    /// The text is too long.
    #[error("the text is {0} bytes, over the limit of {MAX_TEXT_BYTES}")]
    TextTooLong(usize),
    /// The staff name is too long.
    #[error("the staff name is {0} bytes, over the limit of {MAX_STAFF_BYTES}")]
    StaffTooLong(usize),
    /// A returned item needs a future answer deadline.
    #[error("a returned item needs an answer deadline in the future (--by)")]
    AnswerBy,
    /// Only a returned item has an answer deadline.
    #[error("only a returned item has an answer deadline")]
    AnswerByNotReturned,
    /// The signer's certificate or the signature did not verify.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The bytes are not a disposition.
    #[error("disposition does not decode: {0}")]
    Malformed(prost::DecodeError),
    /// The decision names a node other than its signer.
    #[error("disposition names node {named:?} but is signed by {signer:?}")]
    NodeMismatch {
        /// Node in the decision.
        named: String,
        /// Node in the signing certificate.
        signer: String,
    },
    /// The decision is about another item or other bytes.
    #[error("disposition is for item {item:?}, not this item (or for other report bytes)")]
    OtherItem {
        /// The item it names.
        item: String,
    },
    /// The decider's proof that it held the item is missing.
    #[error("disposition carries no receipt of the deciding node for the item")]
    NoReceipt,
    /// The decider's receipt does not verify for this item.
    #[error("the deciding node's receipt does not prove it held the item: {0}")]
    Receipt(#[from] ReceiptError),
    /// The receipt is someone else's.
    #[error("the receipt attached is signed by {receipt:?}, the disposition by {node:?}")]
    ReceiptSigner {
        /// Who signed the receipt.
        receipt: String,
        /// Who signed the decision.
        node: String,
    },
    /// `seq` is out of range.
    #[error("disposition number {0} is out of range (1 to {MAX_PER_ITEM})")]
    Seq(u32),
}

impl DispositionError {
    /// The reason as a stable code (`Verdict.problem` in the API).
    pub fn problem(&self) -> &'static str {
        match self {
            Self::Signer(e) => e.problem(),
            Self::Malformed(_) => "malformed",
            Self::NodeMismatch { .. } => "signer_mismatch",
            Self::OtherItem { .. } => "other_item",
            Self::NoReceipt => "no_receipt",
            Self::Receipt(_) | Self::ReceiptSigner { .. } => "decider_receipt",
            Self::UnknownKind(_)
            | Self::MissingText { .. }
            | Self::TextTooLong(_)
            | Self::StaffTooLong(_)
            | Self::AnswerBy
            | Self::AnswerByNotReturned
            | Self::Seq(_) => "breaks_rules",
        }
    }
}

/// What an office decided, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The kind.
    pub kind: DispositionKind,
    /// Outlet, reason, question, instruction or note.
    pub text: String,
    /// For a returned item: when the answer is due, Unix ms.
    pub answer_by_unix_ms: i64,
    /// Who decided.
    pub staff: String,
}

impl Decision {
    /// Checks the decision's fields at `now_ms`: a known kind, the text its
    /// kind needs, within bounds, and for a returned item a future answer
    /// deadline.
    pub fn check(&self, now_ms: i64) -> Result<(), DispositionError> {
        check_fields(
            self.kind as i32,
            &self.text,
            &self.staff,
            self.answer_by_unix_ms,
        )?;
        if self.kind == DispositionKind::Returned && self.answer_by_unix_ms <= now_ms {
            return Err(DispositionError::AnswerBy);
        }
        Ok(())
    }
}

/// The rules every decision keeps, whoever made it.
fn check_fields(
    kind: i32,
    text: &str,
    staff: &str,
    answer_by: i64,
) -> Result<(), DispositionError> {
    let kind = DispositionKind::try_from(kind)
        .ok()
        .filter(|k| *k != DispositionKind::Unspecified)
        .ok_or(DispositionError::UnknownKind(kind))?;
    if text.len() > MAX_TEXT_BYTES {
        return Err(DispositionError::TextTooLong(text.len()));
    }
    if staff.len() > MAX_STAFF_BYTES {
        return Err(DispositionError::StaffTooLong(staff.len()));
    }
    let needs = match kind {
        DispositionKind::Adopted => Some("the outlet it went into (--outlet)"),
        DispositionKind::NotAdopted => Some("a reason (--reason)"),
        DispositionKind::Returned => Some("the question to answer (--question)"),
        DispositionKind::Instruction => Some("the instruction's text"),
        _ => None,
    };
    if let Some(what) = needs
        && text.trim().is_empty()
    {
        return Err(DispositionError::MissingText {
            kind: kind_name(kind as i32),
            what,
        });
    }
    match kind {
        DispositionKind::Returned if answer_by <= 0 => Err(DispositionError::AnswerBy),
        DispositionKind::Returned => Ok(()),
        _ if answer_by != 0 => Err(DispositionError::AnswerByNotReturned),
        _ => Ok(()),
    }
}

/// Where a decision sits in the decider's history of the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    /// 1 for the first decision on the item, then 2, 3…
    pub seq: u32,
    /// The digest of the decision before (`None` for the first).
    pub previous: Option<&'a [u8; 32]>,
}

/// The item a decision is about.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// Its id.
    pub id: &'a str,
    /// SHA-256 of its signed report bytes.
    pub sha256: &'a [u8; 32],
    /// Its origin.
    pub origin: &'a str,
}

/// Signs `decision` on `item` as `identity`, at `at_unix_ms`, in `place`;
/// `receipt` is the signer's own receipt for the item.
pub fn issue(
    identity: &Identity,
    item: Item<'_>,
    decision: &Decision,
    place: Place<'_>,
    at_unix_ms: i64,
    receipt: SignedReceipt,
) -> SignedDisposition {
    let body = Disposition {
        item_id: item.id.to_string(),
        report_sha256: item.sha256.to_vec(),
        origin: item.origin.to_string(),
        node: identity.node_id().to_string(),
        seq: place.seq,
        kind: decision.kind as i32,
        text: decision.text.clone(),
        answer_by_unix_ms: decision.answer_by_unix_ms,
        staff: decision.staff.clone(),
        at_unix_ms,
        previous_sha256: place.previous.map(|p| p.to_vec()).unwrap_or_default(),
    };
    let bytes = body.encode_to_vec();
    SignedDisposition {
        signature: identity.sign(&signed_message(&bytes)),
        signer_cert: identity.cert().to_vec(),
        disposition: bytes,
        receipt: Some(receipt),
    }
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    crate::trust::in_context(CONTEXT, bytes)
}

/// A decision that verified, with what its proof said.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The decision.
    pub body: Disposition,
    /// The kind of the decider's receipt: delivery (it is the final hub)
    /// or custody (a relay's office).
    pub receipt_kind: ReceiptKind,
}

/// Verifies a decision on item `id` with report digest `sha256` at `now`:
/// the signer's certificate (CA, CRL), the signature, that the decision
/// names its signer, the item and the bytes, that its fields keep the rules,
/// and that the signer's own receipt for the item verifies.
pub fn open_for(
    signed: &SignedDisposition,
    trust: &Trust,
    now: SystemTime,
    id: &str,
    sha256: &[u8],
) -> Result<Opened, DispositionError> {
    let signer = trust.verify_signed(
        &signed.signer_cert,
        &signed_message(&signed.disposition),
        &signed.signature,
        now,
    )?;
    let body =
        Disposition::decode(signed.disposition.as_slice()).map_err(DispositionError::Malformed)?;
    if body.node != signer {
        return Err(DispositionError::NodeMismatch {
            named: body.node,
            signer,
        });
    }
    if body.item_id != id || body.report_sha256 != sha256 {
        return Err(DispositionError::OtherItem { item: body.item_id });
    }
    if body.seq == 0 || body.seq > MAX_PER_ITEM {
        return Err(DispositionError::Seq(body.seq));
    }
    check_fields(body.kind, &body.text, &body.staff, body.answer_by_unix_ms)?;
    let proof = signed.receipt.as_ref().ok_or(DispositionError::NoReceipt)?;
    let receipt = receipt::open_for(proof, trust, now, id, sha256, None)?;
    if receipt.receiver != signer {
        return Err(DispositionError::ReceiptSigner {
            receipt: receipt.receiver,
            node: signer,
        });
    }
    let receipt_kind = ReceiptKind::try_from(receipt.kind).unwrap_or(ReceiptKind::Unspecified);
    Ok(Opened { body, receipt_kind })
}

/// Decodes a decision *without verifying it*, to route it or to show one
/// that was verified when it was stored.
pub fn peek(signed: &SignedDisposition) -> Option<Disposition> {
    Disposition::decode(signed.disposition.as_slice()).ok()
}

/// The digest the next decision of the same node names as its previous.
pub fn digest(signed: &SignedDisposition) -> [u8; 32] {
    sha256(&signed.disposition)
}

/// A kind's name for people and scripts: `adopted`, `not-adopted`,
/// `returned`, `forwarded`, `instruction`, `closed`.
pub fn kind_name(kind: i32) -> &'static str {
    match DispositionKind::try_from(kind).unwrap_or(DispositionKind::Unspecified) {
        DispositionKind::Adopted => "adopted",
        DispositionKind::NotAdopted => "not-adopted",
        DispositionKind::Returned => "returned",
        DispositionKind::Forwarded => "forwarded",
        DispositionKind::Instruction => "instruction",
        DispositionKind::Closed => "closed",
        DispositionKind::Unspecified => "unknown",
    }
}

/// A kind's name as the office says it: 采用, 不采用, 退回补充, 上报, 批示, 办结.
pub fn kind_name_zh(kind: i32) -> &'static str {
    match DispositionKind::try_from(kind).unwrap_or(DispositionKind::Unspecified) {
        DispositionKind::Adopted => "采用",
        DispositionKind::NotAdopted => "不采用",
        DispositionKind::Returned => "退回补充",
        DispositionKind::Forwarded => "上报",
        DispositionKind::Instruction => "批示",
        DispositionKind::Closed => "办结",
        DispositionKind::Unspecified => "未知",
    }
}

#[cfg(test)]
mod tests;
