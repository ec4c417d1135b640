//! Attachments coming up a `Forward` stream, one upload per item, on the
//! receiving side.
//!
//! An item that names attachments is verified when it is announced, but
//! taken into custody only once every chunk is stored and every attachment
//! matches the digest its origin signed. Until then the receiver answers
//! with the next chunk it needs ([`ChunkNeed`]): after the announcement
//! (where to start, or resume after a reconnect) and after every chunk. The
//! sender sends one chunk at a time, always of its most urgent upload, so
//! an urgent item waits behind at most one chunk of bulk.

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::{info, warn};

use super::error::{Error, UploadError};
use crate::envelope::{Verified, chunk_count, chunk_len};
use crate::proto::{Chunk, ChunkNeed, SignedReport};
use crate::store::Store;
use crate::tls::PeerInfo;

/// Most incomplete uploads one stream may have open.
const MAX_OPEN: usize = 64;

/// Where an upload stands after a step.
#[derive(Debug)]
pub(crate) enum Step {
    /// The receiver wants this chunk next.
    Need(ChunkNeed),
    /// Every attachment is stored and matches: the item may be taken.
    Complete(Box<(SignedReport, Verified)>),
}

/// The uploads announced on one stream and not complete yet.
#[derive(Debug)]
pub(crate) struct Uploads {
    store: Store,
    open: Mutex<HashMap<String, (SignedReport, Verified)>>,
}

impl Uploads {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            open: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (SignedReport, Verified)>) -> T) -> T {
        f(&mut self.open.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Forgets an upload (it completed, or failed).
    pub(crate) fn forget(&self, id: &str) {
        self.with(|open| open.remove(id));
    }

    /// An item with attachments arrived (again, after a reconnect): asks
    /// for the first chunk missing, or completes it if nothing is.
    pub(crate) async fn announce(
        &self,
        peer: &PeerInfo,
        item: SignedReport,
        verified: Verified,
    ) -> Result<Step, Error> {
        let id = verified.id().to_string();
        if self.store.get(id.clone()).await?.is_some() {
            // Taken earlier: custody answers with the original receipt.
            self.forget(&id);
            return Ok(Step::Complete(Box::new((item, verified))));
        }
        for (a, r) in verified.report().attachments.iter().enumerate() {
            let index = u32::try_from(a).unwrap_or(u32::MAX);
            let stored = self.store.chunks_stored(id.clone(), index).await?;
            if stored < chunk_count(r) {
                self.with(|open| {
                    if open.contains_key(&id) {
                        return Ok(());
                    }
                    if open.len() >= MAX_OPEN {
                        return Err(UploadError::TooMany(MAX_OPEN));
                    }
                    if stored > 0 {
                        info!(peer = %peer.node_id, %id, attachment = a, chunk = stored, "resuming upload from the last stored chunk");
                    }
                    open.insert(id.clone(), (item, verified));
                    Ok(())
                })?;
                return Ok(Step::Need(need(&id, index, stored)));
            }
        }
        self.forget(&id);
        self.check_digests(peer, &verified).await?;
        Ok(Step::Complete(Box::new((item, verified))))
    }

    /// Stores one chunk of an announced upload and says what comes next.
    pub(crate) async fn chunk(&self, peer: &PeerInfo, chunk: Chunk) -> Result<Step, Error> {
        let id = chunk.item_id.clone();
        let upload = self.with(|open| open.get(&id).cloned());
        let Some((item, verified)) = upload else {
            return Err(UploadError::NotAnnounced(id).into());
        };
        let Some(r) = usize::try_from(chunk.attachment)
            .ok()
            .and_then(|a| verified.report().attachments.get(a))
        else {
            return Err(UploadError::NoAttachment {
                id,
                index: chunk.attachment,
            }
            .into());
        };
        let stored = self
            .store
            .chunks_stored(id.clone(), chunk.attachment)
            .await?;
        if chunk.index != stored {
            // Out of step (a resend after a reconnect): say where we are.
            return Ok(Step::Need(need(&id, chunk.attachment, stored)));
        }
        if chunk.index >= chunk_count(r) || chunk.data.len() as u64 != chunk_len(r, chunk.index) {
            warn!(peer = %peer.node_id, %id, attachment = chunk.attachment, index = chunk.index, "refused chunk of the wrong size");
            return Err(UploadError::ChunkSize {
                id,
                attachment: chunk.attachment,
                index: chunk.index,
            }
            .into());
        }
        self.store
            .put_chunks(id, chunk.attachment, chunk.index, vec![chunk.data])
            .await?;
        self.announce(peer, item, verified).await
    }

    /// Checks every stored attachment against the digest its origin
    /// signed; forgets them all if one does not match.
    async fn check_digests(&self, peer: &PeerInfo, verified: &Verified) -> Result<(), Error> {
        let id = verified.id();
        for (a, r) in verified.report().attachments.iter().enumerate() {
            let index = u32::try_from(a).unwrap_or(u32::MAX);
            let (sha, len) = self.store.attachment_digest(id.to_string(), index).await?;
            if sha.as_slice() != r.sha256.as_slice() || len != r.size {
                self.store.drop_chunks(id.to_string()).await?;
                warn!(peer = %peer.node_id, %id, attachment = a, "refused item: attachment does not match its signed digest");
                return Err(UploadError::Digest {
                    index,
                    name: r.name.clone(),
                }
                .into());
            }
        }
        Ok(())
    }
}

fn need(item_id: &str, attachment: u32, next: u32) -> ChunkNeed {
    ChunkNeed {
        item_id: item_id.to_string(),
        attachment,
        next,
    }
}
