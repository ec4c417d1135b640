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
use crate::proto::{AttachmentRef, LinkKind, Report, ReviewOutcome, ReviewSignOff, SignedReport};
use crate::trust::{Identity, SignerError, Trust, signature};

/// Why a signed report was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The report is larger than this node accepts.
    #[error("report is {size} bytes, over the limit of {limit} bytes (limits.max_report_bytes)")]
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
    /// The title is longer than this node accepts.
    #[error("title is {len} bytes, over the limit of {limit} (limits.max_title_bytes)")]
    TitleTooLong {
        /// Its length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The author's name is longer than [`MAX_AUTHOR_BYTES`].
    #[error("author is {0} bytes, over the limit of {MAX_AUTHOR_BYTES}")]
    AuthorTooLong(usize),
    /// The report's link to an earlier one is not usable.
    #[error("bad link to an earlier report: {0}")]
    BadLink(&'static str),
    /// The report's review sign-off (把关) is not usable.
    #[error("bad review sign-off: {0}")]
    BadReview(&'static str),
    /// The report's class is not one of the three.
    #[error("unknown priority class {0}: use emergency, bad_news or routine")]
    UnknownClass(i32),
    /// The report says it was written after now, beyond the clock skew
    /// allowed: the origin's clock is wrong, and its deadline would be too.
    #[error(
        "report is dated {ahead_ms} ms in the future, beyond the {skew_ms} ms of clock skew allowed (limits.max_clock_skew_secs): the origin's clock is wrong"
    )]
    FromTheFuture {
        /// How far ahead of this node's clock.
        ahead_ms: i64,
        /// The skew allowed.
        skew_ms: i64,
    },
    /// The report is older than any item is kept waiting, or has no date.
    #[error(
        "report is dated {age_ms} ms ago, older than the {max_ms} ms an item may travel (limits.max_report_age_days), or not dated at all"
    )]
    TooOld {
        /// Its age by this node's clock.
        age_ms: i64,
        /// The oldest allowed.
        max_ms: i64,
    },
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

/// Longest author name in a report, bytes.
pub const MAX_AUTHOR_BYTES: usize = 256;

/// Longest reviewer name in a report's sign-off, bytes.
pub const MAX_REVIEWER_BYTES: usize = 256;

/// Longest reviewer's note in a report's sign-off, bytes.
pub const MAX_REVIEW_NOTE_BYTES: usize = 4096;

/// Longest reviewer's role in a report's sign-off, bytes.
const MAX_REVIEW_ROLE_BYTES: usize = 64;

/// The bounds a report must keep to be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded report, bytes.
    pub max_report_bytes: usize,
    /// Largest total of the attachments it names, bytes.
    pub max_attachment_bytes: u64,
    /// Longest title, bytes.
    pub max_title_bytes: usize,
    /// How far in the future a report may be dated (the origin's clock may
    /// be ahead of ours by this much), ms.
    pub max_clock_skew_ms: i64,
    /// How old a report may be: items wait at a county through an outage,
    /// so this is days, not minutes; older is a replay or corruption, ms.
    pub max_age_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_report_bytes: 1024 * 1024,
            max_attachment_bytes: 64 * 1024 * 1024,
            max_title_bytes: 1024,
            max_clock_skew_ms: 5 * 60 * 1000,
            max_age_ms: 30 * 24 * 3600 * 1000,
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
    /// Who wrote it up.
    pub author: String,
    /// What earlier report of this origin it follows up, if any.
    pub link: Option<(LinkKind, String)>,
    /// The solicitation (约稿) it answers, if any.
    pub answers: String,
    /// Who at this office signed it off before it went (把关), if anyone.
    pub review: Option<ReviewSignOff>,
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
            author: String::new(),
            link: None,
            answers: String::new(),
            review: None,
        }
    }

    /// A draft that keeps an id given earlier: an item held for review got
    /// its id at submission and keeps it when it is sealed.
    pub fn with_id(mut self, id: String) -> Self {
        self.id = id;
        self
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
/// its bytes signed — once it keeps the same limits every receiver checks.
///
/// # Errors
/// What [`open`] would refuse it for.
pub fn seal(
    draft: Draft,
    origin: &Identity,
    limits: &Limits,
    now: SystemTime,
) -> Result<(SignedReport, Verified), VerifyError> {
    let (link, links_to) = draft
        .link
        .map_or((LinkKind::None, String::new()), |(k, to)| (k, to));
    let report = Report {
        link: link as i32,
        links_to,
        id: draft.id,
        origin: origin.node_id().to_string(),
        priority: draft.class.to_proto() as i32,
        title: draft.title,
        body: draft.body,
        created_unix_ms: draft.created_unix_ms,
        deadline_unix_ms: draft.deadline_unix_ms,
        attachments: draft.attachments,
        author: draft.author,
        answers: draft.answers,
        review: draft.review,
    };
    let signed = sign(&report, origin);
    let class = check(&report, signed.report.len(), limits, now)?;
    let verified = Verified {
        sha256: sha256(&signed.report),
        class,
        holder: report.origin.clone(),
        report,
    };
    Ok((signed, verified))
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
    bounded(signed, limits)?;
    let signer =
        trust.verify_signed(&signed.signer_cert, &signed.report, &signed.signature, now)?;
    opened(signed, signer, trust, limits, now)
}

/// [`open`], with the report's signature checked in a batch with those of
/// other reports arriving at the same time (see [`signature::Batcher`]):
/// what a busy hub does; `alone` lets it be checked at once if no check is
/// running. The verdict is the same as [`open`]'s.
///
/// # Errors
/// As [`open`].
pub async fn open_batched(
    signed: &SignedReport,
    trust: &Trust,
    limits: &Limits,
    now: SystemTime,
    batcher: &signature::Batcher,
    alone: bool,
) -> Result<Verified, VerifyError> {
    bounded(signed, limits)?;
    let signer = trust.signer(&signed.signer_cert, now)?;
    if !batcher
        .verify(signer.key, &signed.report, &signed.signature, alone)
        .await
    {
        return Err(SignerError::BadSignature.into());
    }
    opened(signed, signer.node_id, trust, limits, now)
}

/// The checks that cost nothing, before the signature's.
fn bounded(signed: &SignedReport, limits: &Limits) -> Result<(), VerifyError> {
    if signed.report.len() > limits.max_report_bytes {
        return Err(VerifyError::TooLarge {
            size: signed.report.len(),
            limit: limits.max_report_bytes,
        });
    }
    if signed.hops.len() > MAX_HOPS {
        return Err(VerifyError::TooManyHops(signed.hops.len()));
    }
    Ok(())
}

/// The checks after the signature's, of a report `signer` signed.
fn opened(
    signed: &SignedReport,
    signer: String,
    trust: &Trust,
    limits: &Limits,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    let report = Report::decode(signed.report.as_slice()).map_err(VerifyError::Malformed)?;
    if report.origin != signer {
        return Err(VerifyError::OriginMismatch {
            claimed: report.origin,
            signer,
        });
    }
    let class = check(&report, signed.report.len(), limits, now)?;
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

/// The class a report claims, read without verifying it or decoding the
/// rest: only to order work (urgent first) before the report is verified.
/// `None` if the bytes do not say one.
pub fn claimed_class(signed: &SignedReport) -> Option<Class> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    const PRIORITY: u32 = 3;
    let mut buf = signed.report.as_slice();
    let mut priority = 0;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if tag == PRIORITY && wire == WireType::Varint {
            priority = i32::try_from(decode_varint(&mut buf).ok()?).ok()?;
        } else {
            skip_field(wire, tag, &mut buf, DecodeContext::default()).ok()?;
        }
    }
    Class::from_proto(priority)
}

/// The one check of a report's contents against the limits, made wherever a
/// report comes in — sealed by a local operator, or opened from a child —
/// so that every limit holds at every door. Returns its class.
fn check(
    report: &Report,
    encoded_len: usize,
    limits: &Limits,
    now: SystemTime,
) -> Result<Class, VerifyError> {
    if encoded_len > limits.max_report_bytes {
        return Err(VerifyError::TooLarge {
            size: encoded_len,
            limit: limits.max_report_bytes,
        });
    }
    check_id(&report.id)?;
    let class =
        Class::from_proto(report.priority).ok_or(VerifyError::UnknownClass(report.priority))?;
    if report.title.len() > limits.max_title_bytes {
        return Err(VerifyError::TitleTooLong {
            len: report.title.len(),
            limit: limits.max_title_bytes,
        });
    }
    if report.author.len() > MAX_AUTHOR_BYTES {
        return Err(VerifyError::AuthorTooLong(report.author.len()));
    }
    match LinkKind::try_from(report.link) {
        Ok(LinkKind::None) if report.links_to.is_empty() => {}
        Ok(LinkKind::None) => return Err(VerifyError::BadLink("links_to without a link kind")),
        Ok(_) if report.links_to == report.id => {
            return Err(VerifyError::BadLink("a report cannot follow up itself"));
        }
        Ok(_) => check_id(&report.links_to)
            .map_err(|_| VerifyError::BadLink("links_to is not an item id"))?,
        Err(_) => return Err(VerifyError::BadLink("unknown link kind")),
    }
    if !report.answers.is_empty()
        && crate::notice::check_id(&report.answers) != Ok(crate::notice::Kind::Solicitation)
    {
        return Err(VerifyError::BadLink("answers is not a solicitation id"));
    }
    check_review(report)?;
    check_date(report.created_unix_ms, limits, now)?;
    attachments::check(report, limits.max_attachment_bytes)?;
    Ok(class)
}

/// A sign-off (把关) is bounded and says what happened; a sign-off report
/// (`LINK_KIND_REVIEWED`) must carry one. Hostile bytes from the network
/// are refused here, before anything is stored.
fn check_review(report: &Report) -> Result<(), VerifyError> {
    let Some(review) = &report.review else {
        if report.link == LinkKind::Reviewed as i32 {
            return Err(VerifyError::BadReview(
                "a sign-off report carries no review",
            ));
        }
        return Ok(());
    };
    if review.reviewer.len() > MAX_REVIEWER_BYTES {
        return Err(VerifyError::BadReview("reviewer is over 256 bytes"));
    }
    if review.role.len() > MAX_REVIEW_ROLE_BYTES {
        return Err(VerifyError::BadReview("role is over 64 bytes"));
    }
    if review.note.len() > MAX_REVIEW_NOTE_BYTES {
        return Err(VerifyError::BadReview("note is over 4096 bytes"));
    }
    match ReviewOutcome::try_from(review.outcome) {
        Ok(ReviewOutcome::Approved) if review.reviewer.trim().is_empty() => Err(
            VerifyError::BadReview("an approval does not name its reviewer"),
        ),
        Ok(ReviewOutcome::Approved | ReviewOutcome::TimedOut) => Ok(()),
        Ok(ReviewOutcome::Unspecified) | Err(_) => {
            Err(VerifyError::BadReview("unknown review outcome"))
        }
    }
}

/// Checks a report's date against this node's clock at `now`.
fn check_date(created_ms: i64, limits: &Limits, now: SystemTime) -> Result<(), VerifyError> {
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let ahead_ms = created_ms.saturating_sub(now_ms);
    if ahead_ms > limits.max_clock_skew_ms {
        return Err(VerifyError::FromTheFuture {
            ahead_ms,
            skew_ms: limits.max_clock_skew_ms,
        });
    }
    let age_ms = now_ms.saturating_sub(created_ms);
    if created_ms <= 0 || age_ms > limits.max_age_ms {
        return Err(VerifyError::TooOld {
            age_ms,
            max_ms: limits.max_age_ms,
        });
    }
    Ok(())
}

/// Longest preview of a report's text in a listing, characters.
pub const PREVIEW_CHARS: usize = 60;

/// The start of a report's first non-empty line of text, for listings
/// ("…" when cut short).
pub fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = line.chars().take(PREVIEW_CHARS).collect();
    if line.chars().nth(PREVIEW_CHARS).is_some() {
        out.push('…');
    }
    out
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
