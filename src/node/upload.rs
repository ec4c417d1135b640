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
//!
//! Every child is held to a quota of partial uploads — how many at once and
//! how many bytes on disk — checked when an upload is announced and again
//! for every chunk; what it abandons is reclaimed ([`reclaim`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::error::{Error, UploadError};
use crate::clock::Clock;
use crate::envelope::{Verified, chunk_count, chunk_len};
use crate::proto::{Chunk, ChunkNeed, SignedReport};
use crate::store::Store;
use crate::tls::PeerInfo;

/// What one child may hold in partial uploads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    /// Partial uploads at once.
    pub(crate) uploads: usize,
    /// Bytes of partial uploads on disk.
    pub(crate) bytes: u64,
}

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
    quota: Quota,
    open: Mutex<HashMap<String, (SignedReport, Verified)>>,
}

impl Uploads {
    pub(crate) fn new(store: Store, quota: Quota) -> Self {
        Self {
            store,
            quota,
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
        if self.store.record(id.clone()).await?.is_some() {
            // Taken earlier: custody answers with the original receipt.
            self.forget(&id);
            return Ok(Step::Complete(Box::new((item, verified))));
        }
        for (a, r) in verified.report().attachments.iter().enumerate() {
            let index = u32::try_from(a).unwrap_or(u32::MAX);
            let stored = self.store.chunks_stored(id.clone(), index).await?;
            if stored < chunk_count(r) {
                if !self.with(|open| open.contains_key(&id)) {
                    self.admit(peer, &verified).await?;
                    if stored > 0 {
                        info!(peer = %peer.node_id, %id, attachment = a, chunk = stored, "resuming upload from the last stored chunk");
                    }
                    self.with(|open| open.insert(id.clone(), (item, verified)));
                }
                return Ok(Step::Need(need(&id, index, stored)));
            }
        }
        self.forget(&id);
        self.check_digests(peer, &verified).await?;
        Ok(Step::Complete(Box::new((item, verified))))
    }

    /// `peer` would hold `held` bytes of partial uploads, over its quota.
    fn over_bytes(&self, peer: &PeerInfo, held: u64) -> Error {
        UploadError::Quota {
            child: peer.node_id.clone(),
            quota: "limits.max_upload_bytes_per_peer",
            held,
            limit: self.quota.bytes,
        }
        .into()
    }

    /// Whether `peer` may start (or resume) the upload of `item` within
    /// its quota: partial uploads at once, and the bytes it would hold.
    async fn admit(&self, peer: &PeerInfo, item: &Verified) -> Result<(), Error> {
        let usage = self
            .store
            .uploads_of(peer.node_id.clone(), item.id().to_string())
            .await?;
        let new = usage.this.is_none();
        if new && usage.count >= self.quota.uploads {
            warn!(peer = %peer.node_id, id = %item.id(), held = usage.count, "refused upload: partial uploads over quota");
            return Err(UploadError::Quota {
                child: peer.node_id.clone(),
                quota: "limits.max_uploads_per_peer",
                held: usage.count as u64,
                limit: self.quota.uploads as u64,
            }
            .into());
        }
        let total: u64 = item.report().attachments.iter().map(|a| a.size).sum();
        let after = (usage.announced - usage.this.unwrap_or(0)).saturating_add(total);
        if after > self.quota.bytes {
            warn!(peer = %peer.node_id, id = %item.id(), held = usage.bytes, "refused upload: partial upload bytes over quota");
            return Err(self.over_bytes(peer, after));
        }
        self.store
            .begin_upload(peer.node_id.clone(), item.id().to_string(), total)
            .await?;
        Ok(())
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
        // The hard bound, whatever was announced: bytes on disk per child.
        let usage = self
            .store
            .uploads_of(peer.node_id.clone(), id.clone())
            .await?;
        let after = usage.bytes.saturating_add(chunk.data.len() as u64);
        if after > self.quota.bytes {
            return Err(self.over_bytes(peer, after));
        }
        self.store
            .upload_chunk(
                peer.node_id.clone(),
                id,
                chunk.attachment,
                chunk.index,
                chunk.data,
            )
            .await?;
        self.announce(peer, item, verified).await
    }

    /// Checks every stored attachment against the digest its origin
    /// signed; gives the whole upload back if one does not match.
    async fn check_digests(&self, peer: &PeerInfo, verified: &Verified) -> Result<(), Error> {
        let id = verified.id();
        for (a, r) in verified.report().attachments.iter().enumerate() {
            let index = u32::try_from(a).unwrap_or(u32::MAX);
            let (sha, len) = self.store.attachment_digest(id.to_string(), index).await?;
            if sha.as_slice() != r.sha256.as_slice() || len != r.size {
                self.store
                    .reclaim_upload(peer.node_id.clone(), id.to_string())
                    .await?;
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

/// Partial uploads reclaimed per store write.
const RECLAIM_BATCH: usize = 256;

/// Reclaims partial uploads untouched for `idle`: at start, then every
/// quarter of `idle` (at most every minute), until `shutdown`. Their chunks
/// are deleted and the space goes back to the store.
pub(crate) async fn reclaim(
    store: Store,
    clock: Clock,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        let before = clock.now_ms().saturating_sub(idle_ms);
        let abandoned = match store.idle_uploads(before, RECLAIM_BATCH).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "cannot look for abandoned uploads");
                continue;
            }
        };
        for (child, id) in abandoned {
            match store.reclaim_upload(child.clone(), id.clone()).await {
                Ok(bytes) => {
                    info!(%child, %id, bytes, "reclaimed an abandoned partial upload");
                }
                Err(e) => warn!(%child, %id, error = %e, "cannot reclaim an abandoned upload"),
            }
        }
    }
}
