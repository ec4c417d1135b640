//! Attachments as a signed report names them: by name, size, SHA-256 and
//! chunk size. The bytes travel separately, in chunks; these rules say how
//! many chunks there are, how long each must be, and what a report may
//! announce.

use crate::proto::{AttachmentRef, Report};

/// Most attachments on one report.
pub const MAX_ATTACHMENTS: usize = 16;
/// Longest attachment name, bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Smallest and largest chunk size an origin may choose.
pub const CHUNK_BYTES: std::ops::RangeInclusive<u32> = 1024..=1024 * 1024;

/// What is wrong with a report's attachments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// More than [`MAX_ATTACHMENTS`].
    #[error("{0} attachments; at most {MAX_ATTACHMENTS}")]
    TooMany(usize),
    /// A digest, chunk size or name that cannot be right.
    #[error("attachment {index} ({name:?}) is malformed")]
    Malformed {
        /// Its position in the report.
        index: usize,
        /// Its name, as given.
        name: String,
    },
    /// More bytes than this node takes on one report.
    #[error(
        "attachments are {size} bytes, over the limit of {limit} bytes (limits.max_attachment_bytes)"
    )]
    TooLarge {
        /// All attachments together.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
}

/// Checks a report's attachment references against `max_total` bytes.
pub fn check(report: &Report, max_total: u64) -> Result<(), AttachmentError> {
    if report.attachments.len() > MAX_ATTACHMENTS {
        return Err(AttachmentError::TooMany(report.attachments.len()));
    }
    let mut total = 0u64;
    for (index, a) in report.attachments.iter().enumerate() {
        if a.sha256.len() != 32
            || !CHUNK_BYTES.contains(&a.chunk_size)
            || a.name.len() > MAX_NAME_BYTES
        {
            return Err(AttachmentError::Malformed {
                index,
                name: a.name.clone(),
            });
        }
        total = total.saturating_add(a.size);
    }
    if total > max_total {
        return Err(AttachmentError::TooLarge {
            size: total,
            limit: max_total,
        });
    }
    Ok(())
}

/// How many chunks an attachment travels in.
pub fn chunk_count(a: &AttachmentRef) -> u32 {
    u32::try_from(a.size.div_ceil(u64::from(a.chunk_size.max(1)))).unwrap_or(u32::MAX)
}

/// The length chunk `index` of an attachment must have.
pub fn chunk_len(a: &AttachmentRef, index: u32) -> u64 {
    let start = u64::from(index) * u64::from(a.chunk_size);
    a.size.saturating_sub(start).min(u64::from(a.chunk_size))
}
