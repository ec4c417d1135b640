//! Signed receipts: a receiver's proof that it stored an item.
//!
//! A receipt names the item, the SHA-256 of the exact report bytes, the
//! receiver and the time its store committed the item. Ed25519 signatures
//! are deterministic, so a receipt re-issued for a duplicate is byte for
//! byte the original: receivers need not store the receipts they sign.

use std::time::SystemTime;

use prost::Message;

use crate::proto::{Receipt, ReceiptKind, SignedReceipt};
use crate::trust::{Identity, SignerError, Trust};

/// Why a receipt was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReceiptError {
    /// The signer or signature did not verify.
    #[error("{0}")]
    Signer(#[from] SignerError),
    /// The bytes are not a receipt.
    #[error("receipt does not decode: {0}")]
    Malformed(String),
    /// The receipt is signed by someone other than the receiver it names.
    #[error("receipt names receiver {named:?} but is signed by {signer:?}")]
    ReceiverMismatch {
        /// Receiver in the receipt.
        named: String,
        /// Node in the signing certificate.
        signer: String,
    },
    /// The receipt is for other bytes or another item than ours.
    #[error("receipt does not match the item: {0}")]
    Mismatch(String),
}

/// Signs a receipt for an item stored at `stored_unix_ms`.
pub fn issue(
    identity: &Identity,
    item_id: &str,
    report_sha256: &[u8; 32],
    stored_unix_ms: i64,
    kind: ReceiptKind,
    on_time: bool,
) -> SignedReceipt {
    let receipt = Receipt {
        item_id: item_id.to_string(),
        report_sha256: report_sha256.to_vec(),
        receiver: identity.node_id().to_string(),
        stored_unix_ms,
        kind: kind as i32,
        on_time,
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
    let receipt = Receipt::decode(signed.receipt.as_slice())
        .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if receipt.receiver != signer {
        return Err(ReceiptError::ReceiverMismatch {
            named: receipt.receiver,
            signer,
        });
    }
    Ok(receipt)
}

/// Decodes a receipt *without verifying it*, only to route it (which item
/// it names); nothing in it may be trusted before [`open`] or [`open_for`].
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
        return Err(ReceiptError::Mismatch(format!(
            "it is for item {:?}",
            receipt.item_id
        )));
    }
    if receipt.report_sha256 != sha256 {
        return Err(ReceiptError::Mismatch("the report digest differs".into()));
    }
    if let Some(receiver) = receiver
        && receipt.receiver != receiver
    {
        return Err(ReceiptError::Mismatch(format!(
            "it is from {:?}, expected {receiver:?}",
            receipt.receiver
        )));
    }
    Ok(receipt)
}
