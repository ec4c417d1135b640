//! What a metrics scrape reads of the store: each route's queue by class
//! (how many, and how long the head has waited), partial uploads' bytes,
//! free space. Read when scraped, so nothing is kept up to date per write.

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{ITEMS, QUEUE, UPLOADS};
use super::{Error, Store, decode};
use crate::metrics::QueueGauge;

/// The store's part of a metrics snapshot.
#[derive(Debug, Clone, Default)]
pub struct StoreGauges {
    /// Each route's queue per class (only those holding items).
    pub queues: Vec<QueueGauge>,
    /// Bytes of partial uploads from children, on disk.
    pub upload_bytes: u64,
    /// Free bytes on the store's file system, if it can be told.
    pub free_bytes: Option<u64>,
}

impl Store {
    /// Reads the gauges a scrape shows; the queue's age is measured
    /// against `now_ms`. Counting a queue walks its keys: fine once per
    /// scrape, not meant for every write.
    pub async fn gauges(&self, now_ms: i64) -> Result<StoreGauges, Error> {
        let free_bytes = super::free_bytes(&self.inner.dir);
        self.read(move |db| {
            let txn = db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            let items = txn.open_table(ITEMS)?;
            let mut queues: Vec<QueueGauge> = Vec::new();
            // Keys are (route, lane, deadline, seq): each (route, lane)'s
            // run is contiguous and starts with its head.
            let mut head: Option<(String, u8)> = None;
            for entry in queue.iter()? {
                let (key, id) = entry?;
                let (route, lane, _, _) = key.value();
                if head.as_ref().is_some_and(|(r, l)| r == route && *l == lane) {
                    if let Some(q) = queues.last_mut() {
                        q.items += 1;
                    }
                    continue;
                }
                head = Some((route.to_string(), lane));
                let Some(class) = crate::class::Class::from_lane(lane) else {
                    continue;
                };
                let stored_ms = match items.get(id.value())? {
                    Some(v) => decode(v.value())?.stored_ms,
                    None => now_ms,
                };
                queues.push(QueueGauge {
                    route: route.to_string(),
                    class,
                    items: 1,
                    oldest_secs: now_ms.saturating_sub(stored_ms).max(0) as f64 / 1000.0,
                });
            }
            let mut upload_bytes = 0u64;
            for entry in txn.open_table(UPLOADS)?.iter()? {
                let (_, value) = entry?;
                upload_bytes = upload_bytes.saturating_add(value.value().0);
            }
            Ok(StoreGauges {
                queues,
                upload_bytes,
                free_bytes,
            })
        })
        .await
    }

    /// Counts this store's commits (their time and size) in `metrics`,
    /// from now on; a second call is ignored.
    pub fn count_commits(&self, metrics: std::sync::Arc<crate::metrics::Metrics>) {
        let _ = self.inner.metrics.set(metrics);
    }
}

impl super::Inner {
    /// A commit of `writes` writes took `took`: counted, if metrics are on.
    pub(super) fn count_commit(&self, writes: usize, took: std::time::Duration) {
        if let Some(m) = self.metrics.get() {
            m.store_commit(writes, took);
        }
    }
}
