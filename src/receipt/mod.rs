//! Signed receipts: a receiver's proof that it stored an item.
//!
//! A receipt names the item, the SHA-256 of the exact report bytes, the
//! receiver, the time its store committed the item, whether that was by the
//! report's deadline, and whether the receiver holds it in custody (a relay)
//! or has delivered it (the final hub).
//!
//! A receipt is signed on its own ([`issue`]) or as one of a [`Group`]: the
//! receipts of one store commit, under one signature over the root of a
//! Merkle tree of them ([`merkle`]), each carrying its inclusion path — so a
//! busy receiver signs once per commit, not once per item, and every
//! receipt still proves its own item on its own. The format is in the proto
//! (`ReceiptGroup`); any RFC 9162 implementation can check a path.
//! Receivers need not store the receipts they sign: one re-issued for a
//! duplicate states the same facts (the original commit time), signed anew.
//!
//! Receipts travel down: from the receiver to the node that handed the item
//! over and, for delivery receipts, on down the tree to the origin. Every
//! node that stores one verifies it first ([`open_for`]).

pub mod merkle;

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::SystemTime;

use prost::Message;

use crate::proto::{Receipt, ReceiptGroup, ReceiptKind, SignedReceipt};
use crate::trust::{Identity, SignerError, Trust};

/// What a group's signature is over, before the tree's size and root; a
/// `Receipt` never begins so (its first byte is a field tag, never `z`).
const ROOT_CONTEXT: &[u8] = b"zhibao.v1.ReceiptRoot\n";

/// Most receipts a group may claim: far above any commit's, and it bounds
/// a path to 32 hashes.
pub const MAX_GROUP: u64 = 1 << 32;

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
    /// The receipt's group path does not fit its group.
    #[error("receipt's group path is malformed (index {index} of {size}, {hashes} hashes)")]
    BadPath {
        /// Claimed leaf index.
        index: u64,
        /// Claimed group size.
        size: u64,
        /// Hashes in the path.
        hashes: usize,
    },
    /// The receipt is from another receiver than the one the item went to.
    #[error("receipt does not match the item: it is from {actual:?}, expected {expected:?}")]
    OtherReceiver {
        /// Who signed it.
        actual: String,
        /// Who should have.
        expected: String,
    },
}

impl ReceiptError {
    /// The reason as a stable code (`Verdict.problem` in the API).
    pub fn problem(&self) -> &'static str {
        match self {
            Self::Signer(e) => e.problem(),
            Self::Malformed(_) => "malformed",
            Self::ReceiverMismatch { .. } => "signer_mismatch",
            Self::OtherItem(_) => "other_item",
            Self::OtherBytes => "other_bytes",
            Self::BadPath { .. } => "bad_group_path",
            Self::OtherReceiver { .. } => "other_receiver",
        }
    }
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

/// The encoded receipt `receiver` makes of a statement.
pub fn encode(receiver: &str, st: &Statement<'_>) -> Vec<u8> {
    Receipt {
        item_id: st.item_id.to_string(),
        report_sha256: st.report_sha256.to_vec(),
        receiver: receiver.to_string(),
        stored_unix_ms: st.stored_unix_ms,
        kind: st.kind as i32,
        on_time: st.on_time,
    }
    .encode_to_vec()
}

/// Signs a receipt on its own as `identity`, the receiver.
pub fn issue(identity: &Identity, st: &Statement<'_>) -> SignedReceipt {
    let bytes = encode(identity.node_id(), st);
    SignedReceipt {
        signature: identity.sign(&bytes),
        signer_cert: identity.cert().to_vec(),
        receipt: bytes,
        group: None,
    }
}

/// What a group's signature is over.
fn root_statement(size: u64, root: &merkle::Hash) -> Vec<u8> {
    [ROOT_CONTEXT, &size.to_be_bytes(), root].concat()
}

/// Receipts signed together: the receipts of one commit. The signature is
/// made once: by [`Group::sign`] if the store's writer signs the group,
/// else by whichever receipt is asked for first.
#[derive(Debug)]
pub struct Group {
    receipts: Vec<Vec<u8>>,
    /// The tree, the signature and the signer's certificate, made once:
    /// by the store's writer while the commit goes to the disk (see
    /// [`Group::sign`]), else by the first receipt asked for.
    signed: OnceLock<Signed>,
}

#[derive(Debug)]
struct Signed {
    tree: merkle::Tree,
    signature: Vec<u8>,
    cert: Vec<u8>,
}

impl Group {
    /// A group of encoded receipts (see [`encode`]); at least one.
    pub fn new(receipts: Vec<Vec<u8>>) -> Self {
        Self {
            receipts,
            signed: OnceLock::new(),
        }
    }

    /// Receipt `index`, signed as `identity` (the receiver the receipts
    /// name). A group of one is a receipt signed on its own.
    ///
    /// # Panics
    /// If `index` is not in the group.
    pub fn receipt(&self, index: usize, identity: &Identity) -> SignedReceipt {
        let size = self.receipts.len();
        let signed = self.signed(identity);
        SignedReceipt {
            receipt: self.receipts[index].clone(),
            signature: signed.signature.clone(),
            signer_cert: signed.cert.clone(),
            group: (size > 1).then(|| ReceiptGroup {
                size: size as u64,
                index: index as u64,
                path: signed.tree.path(index).iter().map(|h| h.to_vec()).collect(),
            }),
        }
    }

    /// Signs the group as `identity` now, if it is not signed yet: its
    /// receipts are then handed out without a signature to wait for.
    pub fn sign(&self, identity: &Identity) {
        self.signed(identity);
    }

    /// Whether the group is signed already.
    #[cfg(test)]
    pub(crate) fn is_signed(&self) -> bool {
        self.signed.get().is_some()
    }

    /// The tree and signature, made by the first caller.
    fn signed(&self, identity: &Identity) -> &Signed {
        let size = self.receipts.len();
        self.signed.get_or_init(|| {
            let tree = merkle::Tree::new(self.receipts.iter().map(|r| merkle::leaf(r)).collect());
            let signature = if size == 1 {
                identity.sign(&self.receipts[0])
            } else {
                identity.sign(&root_statement(size as u64, &tree.root()))
            };
            Signed {
                tree,
                signature,
                cert: identity.cert().to_vec(),
            }
        })
    }
}

/// One receipt of a [`Group`], to be signed when asked for.
#[derive(Debug, Clone)]
pub struct InGroup {
    /// The group.
    pub group: std::sync::Arc<Group>,
    /// The receipt's place in it.
    pub index: usize,
}

impl InGroup {
    /// The receipt, signed as `identity` (with its group, if first asked).
    pub fn receipt(&self, identity: &Identity) -> SignedReceipt {
        self.group.receipt(self.index, identity)
    }
}

/// What a receipt's signature is over: the receipt itself, or the root
/// statement of its group.
fn signed_message(signed: &SignedReceipt) -> Result<Cow<'_, [u8]>, ReceiptError> {
    let Some(g) = &signed.group else {
        return Ok(Cow::Borrowed(&signed.receipt));
    };
    let bad = || ReceiptError::BadPath {
        index: g.index,
        size: g.size,
        hashes: g.path.len(),
    };
    if g.size < 2 || g.size > MAX_GROUP {
        return Err(bad());
    }
    let root = merkle::root_from_path(g.index, g.size, merkle::leaf(&signed.receipt), &g.path)
        .ok_or_else(bad)?;
    Ok(Cow::Owned(root_statement(g.size, &root)))
}

/// Verifies a receipt's signer and signature and decodes it.
pub fn open(
    signed: &SignedReceipt,
    trust: &Trust,
    now: SystemTime,
) -> Result<Receipt, ReceiptError> {
    let msg = signed_message(signed)?;
    // A group's root is signed once for all its receipts: its signature
    // is checked once for all of them too.
    let signer = if signed.group.is_some() {
        trust.verify_shared(&signed.signer_cert, &msg, &signed.signature, now)?
    } else {
        trust.verify_signed(&signed.signer_cert, &msg, &signed.signature, now)?
    };
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
