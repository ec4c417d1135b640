//! What one child can make this node hold in memory at once: the messages
//! it sent that are received and not yet answered, by bytes and by count,
//! all its streams and connections together.
//!
//! A message is held from the moment it is read off the stream until its
//! answer is ready. While a child is at its bound, its streams are simply
//! not read further: HTTP/2 flow control pushes back on the sender, and
//! nothing is buffered beyond the bound (plus one message per stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds per child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Bytes of messages held at once.
    pub(crate) bytes: usize,
    /// Messages held at once.
    pub(crate) items: usize,
}

/// One child's share.
#[derive(Debug)]
struct Share {
    /// In KiB, so a permit count fits a semaphore's `u32`.
    kib: Arc<Semaphore>,
    items: Arc<Semaphore>,
    max_kib: u32,
}

/// The shares of every child that has sent something.
#[derive(Debug)]
pub(crate) struct InFlight {
    bounds: Bounds,
    shares: Mutex<HashMap<String, Arc<Share>>>,
}

/// A message held against its child's share until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    // `None` only if a semaphore were closed, which these never are.
    _kib: Option<OwnedSemaphorePermit>,
    _item: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            shares: Mutex::default(),
        }
    }

    fn share(&self, child: &str) -> Arc<Share> {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares
            .entry(child.to_string())
            .or_insert_with(|| {
                let max_kib = u32::try_from(self.bounds.bytes.div_ceil(1024)).unwrap_or(u32::MAX);
                Arc::new(Share {
                    kib: Arc::new(Semaphore::new(max_kib as usize)),
                    items: Arc::new(Semaphore::new(self.bounds.items)),
                    max_kib,
                })
            })
            .clone()
    }

    /// Holds a message of `bytes` from `child`, waiting while the child is
    /// at its bound.
    pub(crate) async fn hold(&self, child: &str, bytes: usize) -> Held {
        let share = self.share(child);
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, share.max_kib);
        let item = share.items.clone().acquire_owned().await.ok();
        let kib = share.kib.clone().acquire_many_owned(kib).await.ok();
        Held {
            _kib: kib,
            _item: item,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_child_at_its_bound_waits_and_others_do_not() {
        let inflight = InFlight::new(Bounds {
            bytes: 4 * 1024,
            items: 100,
        });
        let a = inflight.hold("a", 3 * 1024).await;
        // Child a has 1 KiB left: a 2 KiB message waits for the first.
        let blocked = tokio::time::timeout(Duration::from_secs(1), inflight.hold("a", 2 * 1024));
        assert!(blocked.await.is_err(), "over its bound, a waits");
        let _b = inflight.hold("b", 3 * 1024).await;
        drop(a);
        let _a2 = tokio::time::timeout(Duration::from_secs(1), inflight.hold("a", 2 * 1024))
            .await
            .expect("room again once the first is answered");
    }
}
