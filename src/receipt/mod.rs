//! Signed receipts: a receiver's proof that it stored an item.
//!
//! A receipt names the item, the SHA-256 of the exact report bytes, the
//! receiver, the time its store committed the item, whether that was by the
//! report's deadline, and whether the receiver holds it in custody (a relay)
//! or has delivered it (the final hub). Ed25519 signatures are
//! deterministic, so a receipt re-issued for a duplicate is byte for byte
//! the original: receivers need not store the receipts they sign.
//!
//! Receipts travel down: from the receiver to the node that handed the item
//! over and, for delivery receipts, on down the tree to the origin. Every
//! node that stores one verifies it first ([`open_for`]).

use std::time::SystemTime;

use prost::Message;

use crate::proto::{Receipt, ReceiptKind, SignedReceipt};
use crate::trust::{Identity, SignerError, Trust};

/// Why a receipt was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReceiptError {
    /// The signer or signature did not verify.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The bytes are not a receipt.
    #[error("receipt does not decode: {0}")]
    Malformed(prost::DecodeError),
    /// The receipt is signed by someone other than the receiver it names.
    #[error("receipt names receiver {named:?} but is signed by {signer:?}")]
    ReceiverMismatch {
        /// Receiver in the receipt.
        named: String,
        /// Node in the signing certificate.
        signer: String,
    },
    /// The receipt is for another item.
    #[error("receipt does not match the item: it is for item {0:?}")]
    OtherItem(String),
    /// The receipt is for other report bytes.
    #[error("receipt does not match the item: the report digest differs")]
    OtherBytes,
    /// The receipt is from another receiver than the one the item went to.
    #[error("receipt does not match the item: it is from {actual:?}, expected {expected:?}")]
    OtherReceiver {
        /// Who signed it.
        actual: String,
        /// Who should have.
        expected: String,
    },
}

/// What a receiver states in a receipt.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    /// The item.
    pub item_id: &'a str,
    /// SHA-256 of the signed report bytes.
    pub report_sha256: &'a [u8; 32],
    /// When the receiver's store committed the item, Unix ms.
    pub stored_unix_ms: i64,
    /// Custody (a relay) or delivery (the final hub).
    pub kind: ReceiptKind,
    /// Whether it was stored by the report's deadline.
    pub on_time: bool,
}

/// Signs a receipt as `identity`, the receiver.
pub fn issue(identity: &Identity, st: &Statement<'_>) -> SignedReceipt {
    let receipt = Receipt {
        item_id: st.item_id.to_string(),
        report_sha256: st.report_sha256.to_vec(),
        receiver: identity.node_id().to_string(),
        stored_unix_ms: st.stored_unix_ms,
        kind: st.kind as i32,
        on_time: st.on_time,
    };
    let bytes = receipt.encode_to_vec();
    SignedReceipt {
        signature: identity.sign(&bytes),
        signer_cert: identity.cert().to_vec(),
        receipt: bytes,
    }
}

/// Verifies a receipt's signer and signature and decodes it.
pub fn open(
    signed: &SignedReceipt,
    trust: &Trust,
    now: SystemTime,
) -> Result<Receipt, ReceiptError> {
    let signer =
        trust.verify_signed(&signed.signer_cert, &signed.receipt, &signed.signature, now)?;
    let receipt = Receipt::decode(signed.receipt.as_slice()).map_err(ReceiptError::Malformed)?;
    if receipt.receiver != signer {
        return Err(ReceiptError::ReceiverMismatch {
            named: receipt.receiver,
            signer,
        });
    }
    Ok(receipt)
}

/// Decodes a receipt *without verifying it*, only to route it (which item
/// it names) or to show one that was verified when it was stored; nothing
/// in it may be trusted before [`open`] or [`open_for`].
pub fn peek(signed: &SignedReceipt) -> Option<Receipt> {
    Receipt::decode(signed.receipt.as_slice()).ok()
}

/// Verifies a receipt and that it is for `item_id` with `sha256`, from
/// `receiver` if given (any region node otherwise).
pub fn open_for(
    signed: &SignedReceipt,
    trust: &Trust,
    now: SystemTime,
    item_id: &str,
    sha256: &[u8],
    receiver: Option<&str>,
) -> Result<Receipt, ReceiptError> {
    let receipt = open(signed, trust, now)?;
    if receipt.item_id != item_id {
        return Err(ReceiptError::OtherItem(receipt.item_id));
    }
    if receipt.report_sha256 != sha256 {
        return Err(ReceiptError::OtherBytes);
    }
    if let Some(expected) = receiver
        && receipt.receiver != expected
    {
        return Err(ReceiptError::OtherReceiver {
            actual: receipt.receiver,
            expected: expected.to_string(),
        });
    }
    Ok(receipt)
}

#[cfg(test)]
mod tests;
