//! An operator's item sent up while this node's own commit of it is still
//! going to the disk, when the route has nothing else to do.
//!
//! One operator's item crosses three durable steps: this node's commit,
//! the upstream's, and this node's commit of the upstream's receipt. Done
//! in series, the first is a third of the time the operator waits. A
//! leader in Raft writes an entry to its own disk while it sends the entry
//! to its followers (Ongaro's thesis, §10.2.1), for the same reason; so
//! does this node, with its upstream:
//!
//! - **Nobody hears anything sooner.** The operator is answered once this
//!   node's commit is on the disk, as ever ([`super::super::custody`]).
//!   The upstream's receipt is stored only after that commit has ended
//!   (the session waits for it, [`Early::stored`]), so a receipt is never
//!   kept for an item this node does not hold. Should whoever stores it
//!   give up waiting (its operator went away), the receipt is stored at
//!   once: if the item's write then commits after it, the store finds no
//!   item the receipt settles, and the item, queued, goes up again and is
//!   a duplicate there.
//! - **Nothing is lost, and nothing is kept twice.** If this node's commit
//!   fails (a full disk, a crash), the operator hears so and the item is
//!   not here, but the upstream may hold it: a copy further up, which the
//!   operator's retry (same id) meets as a duplicate there, as any resend
//!   does. A receipt for it is not kept here. The custody log records the
//!   item sent up only once it is stored here, so the log never names an
//!   item it does not hold, and before its receipt.
//! - **Order is kept.** An item is offered only while the route's session
//!   is idle — nothing on its wire, nothing queued for it — so it is the
//!   next item the session would send anyway; one item is offered at a
//!   time (the route is busy from the offer until the session says it is
//!   idle again). Under load the route is never idle, and every item goes
//!   the usual way: stored, read from the queue in schedule order, sent.
//! - **Only plain new items.** Not a follow-up (which the store may hold
//!   back behind its original), not one with attachments (whose upload is
//!   announced with the item), not one larger than [`EARLY_MAX_BYTES`]
//!   (held in memory twice meanwhile), not a child's item (its receipt
//!   from here is signed at this node's commit); and none while the store
//!   is short of its free-space floor, where the commit's failure would be
//!   certain, nor at all with `limits.send_while_storing = false`.

use tokio::sync::oneshot;

use crate::node::routes::Routes;
use crate::proto::SignedReport;
use crate::store::ItemRecord;

/// The largest item offered early, encoded: a copy is held for the
/// session while the store commits the other.
pub(crate) const EARLY_MAX_BYTES: usize = 64 * 1024;

/// An item offered to a route's session before this node's commit of it
/// has ended.
#[derive(Debug)]
pub(crate) struct Early {
    pub(crate) id: String,
    /// The item, as it goes up.
    pub(crate) item: SignedReport,
    /// What the session keeps of it while it is on the wire (lane, digest,
    /// attachments) as it will be stored; `stored_ms` is when it was
    /// offered.
    pub(crate) rec: ItemRecord,
    /// Whether this node's commit of it succeeded: `Err` if whoever was
    /// storing it gave up waiting (the write may still be committed).
    pub(crate) stored: oneshot::Receiver<bool>,
}

/// The offers made for one item: each is told how this node's commit of
/// it ended.
#[derive(Debug, Default)]
pub(crate) struct Offered(Vec<oneshot::Sender<bool>>);

impl Offered {
    /// Whether any route's session took the offer.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tells every session that took the item whether it is stored here.
    pub(crate) fn stored(self, ok: bool) {
        for tx in self.0 {
            let _ = tx.send(ok);
        }
    }
}

/// Offers the item `id`, `item`, to be stored as `rec`, to every route of
/// `to` whose session is idle (see the module's documentation for which
/// items may be); says which took it.
pub(crate) fn offer(
    routes: &Routes,
    to: &[String],
    id: &str,
    item: &SignedReport,
    rec: &ItemRecord,
) -> Offered {
    if rec.signed.len() > EARLY_MAX_BYTES {
        return Offered::default();
    }
    let mut offered = Vec::new();
    for route in to {
        let (tx, rx) = oneshot::channel();
        let made = routes.offer(route, || Early {
            id: id.to_string(),
            item: item.clone(),
            rec: ItemRecord {
                lane: rec.lane,
                sha256: rec.sha256.clone(),
                attachments: rec.attachments,
                stored_ms: crate::clock::now_ms(),
                ..ItemRecord::default()
            },
            stored: rx,
        });
        if made {
            offered.push(tx);
        }
    }
    Offered(offered)
}
