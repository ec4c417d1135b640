//! Signed reports: sealed at the origin, opened (verified) anywhere.
//!
//! The origin signs the exact encoded bytes of a [`Report`] ([`seal`]);
//! every receiver up the tree checks, in [`open`], the signer's certificate
//! against the region CA and CRL, the signature over the bytes it received,
//! that the report's `origin` is the node the certificate names, the report's
//! fields and attachment references, and every relay's hop record. Only then
//! are the bytes trusted, as a [`Verified`] report — a type that nothing but
//! [`seal`] and [`open`] can make.
//!
//! - [`id`]: item ids;
//! - [`attachments`]: attachment references and chunk arithmetic;
//! - [`hops`]: the relays' countersigned chain of custody.
//!
//! No network and no store here: plain functions over bytes, testable alone.

pub mod attachments;
pub mod hops;
pub mod id;

use std::time::SystemTime;

use prost::Message;

pub use attachments::{AttachmentError, MAX_ATTACHMENTS, chunk_count, chunk_len};
pub use hops::{HopError, MAX_HOPS};
pub use id::{BadItemId, MAX_ID_LEN, check_id, new_item_id};

use crate::class::Class;
use crate::digest::sha256;
use crate::proto::{AttachmentRef, Report, SignedReport};
use crate::trust::{Identity, SignerError, Trust};

/// Why a signed report was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The report is larger than this node accepts.
    #[error("report is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the encoded report.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The signer's certificate or the signature did not verify.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The signed bytes are not a report.
    #[error("report bytes do not decode: {0}")]
    Malformed(prost::DecodeError),
    /// The report claims an origin other than its signer.
    #[error("report claims origin {claimed:?} but is signed by node {signer:?}")]
    OriginMismatch {
        /// The origin written in the report.
        claimed: String,
        /// The node named in the signer's certificate.
        signer: String,
    },
    /// The report's id is not a usable item id.
    #[error(transparent)]
    BadId(#[from] BadItemId),
    /// The report's class is not one of the three.
    #[error("unknown priority class {0}: use emergency, bad_news or routine")]
    UnknownClass(i32),
    /// The report's attachment references are not acceptable.
    #[error(transparent)]
    Attachments(#[from] AttachmentError),
    /// More relays than [`MAX_HOPS`] handled it.
    #[error("{0} hops; at most {MAX_HOPS} relays may handle an item")]
    TooManyHops(usize),
    /// A relay's hop record in the chain of custody does not verify.
    #[error("custody chain broken at hop {index}: {why}")]
    Hop {
        /// Which hop (0 = the first relay after the origin).
        index: usize,
        /// What is wrong with it.
        why: HopError,
    },
}

/// The bounds a report must keep to be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded report, bytes.
    pub max_report_bytes: usize,
    /// Largest total of the attachments it names, bytes.
    pub max_attachment_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_report_bytes: 1024 * 1024,
            max_attachment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A report as an operator wrote it, before it has an origin and a
/// signature.
#[derive(Debug, Clone)]
pub struct Draft {
    id: String,
    /// Its class.
    pub class: Class,
    /// The title.
    pub title: String,
    /// The text.
    pub body: Vec<u8>,
    /// When the operator submitted it, Unix ms.
    pub created_unix_ms: i64,
    /// Its receipt deadline, Unix ms, as the origin's policy resolved it.
    pub deadline_unix_ms: i64,
    /// Its attachments, already stored at the origin.
    pub attachments: Vec<AttachmentRef>,
}

impl Draft {
    /// A draft with a new item id, known before sealing so that its
    /// attachments can be stored under it first.
    pub fn new(
        class: Class,
        title: String,
        body: Vec<u8>,
        created_unix_ms: i64,
        deadline_unix_ms: i64,
    ) -> Self {
        Self {
            id: new_item_id(),
            class,
            title,
            body,
            created_unix_ms,
            deadline_unix_ms,
            attachments: Vec::new(),
        }
    }

    /// Its item id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A report whose signature, signer, fields and custody chain have been
/// checked. Made only by [`seal`] (our own) and [`open`] (anyone's).
#[derive(Debug, Clone)]
pub struct Verified {
    report: Report,
    class: Class,
    sha256: [u8; 32],
    holder: String,
}

impl Verified {
    /// The decoded report.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The item id.
    pub fn id(&self) -> &str {
        &self.report.id
    }

    /// Its class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// SHA-256 of the signed report bytes: what receipts name.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Who holds the item according to its custody chain: the last relay,
    /// or the origin if no relay has handled it. It must be the peer that
    /// handed it over.
    pub fn holder(&self) -> &str {
        &self.holder
    }
}

/// Seals a draft at its origin: our node as origin, the report encoded and
/// its bytes signed.
pub fn seal(draft: Draft, origin: &Identity) -> (SignedReport, Verified) {
    let report = Report {
        id: draft.id,
        origin: origin.node_id().to_string(),
        priority: draft.class.to_proto() as i32,
        title: draft.title,
        body: draft.body,
        created_unix_ms: draft.created_unix_ms,
        deadline_unix_ms: draft.deadline_unix_ms,
        attachments: draft.attachments,
    };
    let signed = sign(&report, origin);
    let verified = Verified {
        sha256: sha256(&signed.report),
        class: draft.class,
        holder: report.origin.clone(),
        report,
    };
    (signed, verified)
}

/// Encodes and signs any report as it stands, with `signer`'s key: what
/// every origin does, and what a test or another tool does to make reports
/// of its own. Nothing is checked here; [`open`] checks everything.
pub fn sign(report: &Report, signer: &Identity) -> SignedReport {
    let bytes = report.encode_to_vec();
    SignedReport {
        signature: signer.sign(&bytes),
        signer_cert: signer.cert().to_vec(),
        report: bytes,
        hops: Vec::new(),
    }
}

/// Verifies a signed report received from anywhere.
///
/// # Errors
/// The first failed check, cheapest first: size, signer and signature,
/// encoding, origin, id, class, attachments, custody chain.
pub fn open(
    signed: &SignedReport,
    trust: &Trust,
    limits: &Limits,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    if signed.report.len() > limits.max_report_bytes {
        return Err(VerifyError::TooLarge {
            size: signed.report.len(),
            limit: limits.max_report_bytes,
        });
    }
    if signed.hops.len() > MAX_HOPS {
        return Err(VerifyError::TooManyHops(signed.hops.len()));
    }
    let signer =
        trust.verify_signed(&signed.signer_cert, &signed.report, &signed.signature, now)?;
    let report = Report::decode(signed.report.as_slice()).map_err(VerifyError::Malformed)?;
    if report.origin != signer {
        return Err(VerifyError::OriginMismatch {
            claimed: report.origin,
            signer,
        });
    }
    check_id(&report.id)?;
    let class =
        Class::from_proto(report.priority).ok_or(VerifyError::UnknownClass(report.priority))?;
    attachments::check(&report, limits.max_attachment_bytes)?;
    let digest = sha256(&signed.report);
    let holder = hops::check(&signed.hops, &report.origin, &digest, trust, now)
        .map_err(|(index, why)| VerifyError::Hop { index, why })?;
    Ok(Verified {
        sha256: digest,
        report,
        class,
        holder,
    })
}

/// The id a report claims, decoded *without verifying anything*, only to
/// name it in a refusal; `None` if it has no usable id.
pub fn claimed_id(signed: &SignedReport) -> Option<String> {
    Report::decode(signed.report.as_slice())
        .ok()
        .map(|r| r.id)
        .filter(|id| check_id(id).is_ok())
}

#[cfg(test)]
mod tests;
