//! What children can make this node hold in memory, and how much of its CPU
//! routine work may take at once.
//!
//! - **Per child**: the messages it sent that are received and not yet
//!   answered, by bytes and by count, all its streams and connections
//!   together. Its routine messages may fill only part of that share (see
//!   [`Bounds::routine_part`]): the rest is kept for its emergencies and bad
//!   news, so a child that floods routine news never makes its own urgent
//!   items wait for room.
//! - **Per node**: the bytes of routine messages of all children together
//!   (`limits.max_bytes_in_flight`), so memory is bounded by configuration,
//!   not by how many children push at once. Urgent messages (emergency,
//!   bad news) are held only against their child's share: they never wait
//!   for room behind routine ones.
//! - **Work**: at most [`ROUTINE_WORKERS`] routine items are being verified
//!   at once, node-wide; urgent ones do not wait for a turn. So however many
//!   routine items are queued, an emergency finds at most that many ahead
//!   of it for the CPU, and it is committed ahead of them by the store.
//!
//! A message is held from the moment it is read off the stream until its
//! answer is ready. While a child, or the node, is at its bound, streams are
//! simply not read further: HTTP/2 flow control pushes back on the sender,
//! and nothing is buffered beyond the bound (plus one message per stream).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Routine items verified at once, node-wide: as many as one batch of
/// signature checks takes. The checks run on a thread of lower priority
/// than the runtime's (see `trust::signature`), so an emergency finds
/// little CPU work ahead of it whatever this is. Eight made batches too
/// small: with 32, a hub took 106–122 µs of CPU per item against 132–134 µs
/// with eight (three alternating pairs, 64 streams × 1 in flight).
pub(crate) const ROUTINE_WORKERS: usize = crate::trust::signature::MAX_BATCH;

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Bytes of one child's messages held at once.
    pub(crate) bytes: usize,
    /// One child's messages held at once.
    pub(crate) items: usize,
    /// Bytes of routine messages held at once, all children together.
    pub(crate) node_bytes: usize,
}

impl Bounds {
    /// What of a child's share its routine messages may hold: all but a
    /// reserve for urgent ones — a quarter of the items
    /// ([`Bounds::routine_items`]), half the bytes
    /// ([`Bounds::routine_kib`]). Half the bytes is at least one message of
    /// the largest size, as the configuration's check makes the share at
    /// least twice that. A share of one item is routine's too: an urgent
    /// message then waits for it, as it would have to anyway.
    ///
    /// Measured before the reserve: with 64 streams × 32 in flight from
    /// one county, its emergencies on a stream of their own waited 4–5 ms
    /// (median) for room behind its routine messages, most of their 6–7 ms
    /// at the hub.
    fn routine_part(total: u32, reserve: u32) -> u32 {
        total.saturating_sub(reserve).max(1)
    }

    /// The routine part of a share of `items` (see [`Bounds::routine_part`]).
    pub(crate) fn routine_items(items: u32) -> u32 {
        Self::routine_part(items, (items / 4).max(1))
    }

    /// The routine part of a share of `kib` (see [`Bounds::routine_part`]).
    pub(crate) fn routine_kib(kib: u32) -> u32 {
        Self::routine_part(kib, kib / 2)
    }
}

/// One child's share: every message holds against `all`, a routine one
/// first against the smaller `routine` as well (see
/// [`Bounds::routine_part`]).
#[derive(Debug)]
struct Share {
    all: Part,
    routine: Part,
}

/// Items and bytes, each a semaphore.
#[derive(Debug)]
struct Part {
    items: Arc<Semaphore>,
    /// In KiB, so a permit count fits a semaphore's `u32`.
    kib: Arc<Semaphore>,
    max_kib: u32,
}

impl Part {
    fn new(items: u32, max_kib: u32) -> Self {
        Self {
            items: Arc::new(Semaphore::new(items as usize)),
            kib: Arc::new(Semaphore::new(max_kib as usize)),
            max_kib,
        }
    }

    /// Holds one message of `kib` (at most the whole part), waiting for
    /// room.
    async fn hold(&self, kib: u32) -> PartHeld {
        let item = self.items.clone().acquire_owned().await.ok();
        let kib = self
            .kib
            .clone()
            .acquire_many_owned(kib.clamp(1, self.max_kib))
            .await
            .ok();
        PartHeld {
            _item: item,
            _kib: kib,
        }
    }
}

/// A message held against a [`Part`] until dropped.
#[derive(Debug)]
struct PartHeld {
    // `None` only if a semaphore were closed, which these never are.
    _item: Option<OwnedSemaphorePermit>,
    _kib: Option<OwnedSemaphorePermit>,
}

/// The shares of every child that has sent something, and the node's.
#[derive(Debug)]
pub(crate) struct InFlight {
    bounds: Bounds,
    shares: Mutex<HashMap<String, Arc<Share>>>,
    /// The node's bytes for routine messages, in KiB.
    node_kib: Arc<Semaphore>,
    node_max_kib: u32,
    /// Turns for routine items to be verified.
    work: Arc<Semaphore>,
    /// Routine messages held now, node-wide.
    routine: Arc<AtomicUsize>,
    /// Messages of every class held now, node-wide.
    all: Arc<AtomicUsize>,
}

/// A message held against its child's share (and, if routine, the node's)
/// until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    // The routine part and the node's: `None` if the message is urgent
    // (or, the node's, if its semaphore were closed, which it never is).
    _routine_part: Option<PartHeld>,
    _share: PartHeld,
    _node: Option<OwnedSemaphorePermit>,
    _routine: Option<Counted>,
    _all: Counted,
}

/// One message counted in [`InFlight::routine_in_flight`] or
/// [`InFlight::in_flight`] until dropped.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A routine item's turn to be verified (none for an urgent item).
#[derive(Debug)]
pub(crate) struct Turn {
    _permit: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    pub(crate) fn new(bounds: Bounds) -> Self {
        let node_max_kib = u32::try_from(bounds.node_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        Self {
            bounds,
            shares: Mutex::default(),
            node_kib: Arc::new(Semaphore::new(node_max_kib as usize)),
            node_max_kib,
            work: Arc::new(Semaphore::new(ROUTINE_WORKERS)),
            routine: Arc::default(),
            all: Arc::default(),
        }
    }

    /// Routine messages received from every child and not yet answered: a
    /// node with more than one checks their signatures in batches (see
    /// `trust::signature::Batcher`).
    pub(crate) fn routine_in_flight(&self) -> usize {
        self.routine.load(Ordering::Relaxed)
    }

    /// Messages of every class received from every child and not yet
    /// answered: a message alone may be stored on its stream's own task
    /// (see `Store::alone`).
    pub(crate) fn in_flight(&self) -> usize {
        self.all.load(Ordering::Relaxed)
    }

    /// Waits for a routine item's turn to be verified; an urgent one has
    /// its turn at once.
    pub(crate) async fn turn(&self, urgent: bool) -> Turn {
        if urgent {
            return Turn { _permit: None };
        }
        Turn {
            _permit: self.work.clone().acquire_owned().await.ok(),
        }
    }

    fn share(&self, child: &str) -> Arc<Share> {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares
            .entry(child.to_string())
            .or_insert_with(|| {
                let max_kib = u32::try_from(self.bounds.bytes.div_ceil(1024)).unwrap_or(u32::MAX);
                let items = u32::try_from(self.bounds.items).unwrap_or(u32::MAX);
                Arc::new(Share {
                    all: Part::new(items, max_kib),
                    routine: Part::new(Bounds::routine_items(items), Bounds::routine_kib(max_kib)),
                })
            })
            .clone()
    }

    /// Holds a message of `bytes` from `child`, waiting while the child is
    /// at its bound and, for a routine message, while the child's routine
    /// part or the node is at its.
    pub(crate) async fn hold(&self, child: &str, bytes: usize, urgent: bool) -> Held {
        let share = self.share(child);
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        // The routine part first, so a routine message waiting for it holds
        // nothing of the reserve; every holder takes the parts in this order.
        let routine_part = if urgent {
            None
        } else {
            Some(share.routine.hold(kib).await)
        };
        let held = share.all.hold(kib).await;
        let (node, routine) = if urgent {
            (None, None)
        } else {
            let node = self
                .node_kib
                .clone()
                .acquire_many_owned(kib.clamp(1, self.node_max_kib))
                .await
                .ok();
            (node, Some(Counted::new(&self.routine)))
        };
        Held {
            _routine_part: routine_part,
            _share: held,
            _node: node,
            _routine: routine,
            _all: Counted::new(&self.all),
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
            bytes: 8 * 1024,
            items: 100,
            node_bytes: 1 << 20,
        });
        let a = inflight.hold("a", 3 * 1024, false).await;
        // Child a has 1 KiB left of its routine part (half its 8 KiB): a
        // 2 KiB message waits for the first.
        let blocked =
            tokio::time::timeout(Duration::from_secs(1), inflight.hold("a", 2 * 1024, false));
        assert!(blocked.await.is_err(), "over its bound, a waits");
        let _b = inflight.hold("b", 3 * 1024, false).await;
        drop(a);
        let _a2 = tokio::time::timeout(Duration::from_secs(1), inflight.hold("a", 2 * 1024, false))
            .await
            .expect("room again once the first is answered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_at_its_routine_part_still_has_room_for_its_urgent_messages() {
        let inflight = InFlight::new(Bounds {
            bytes: 8 * 1024,
            items: 4,
            node_bytes: 1 << 20,
        });
        let wait = Duration::from_secs(1);
        // Three items of four are routine's part.
        let mut routine = Vec::new();
        for _ in 0..3 {
            routine.push(inflight.hold("a", 1024, false).await);
        }
        assert!(
            tokio::time::timeout(wait, inflight.hold("a", 1024, false))
                .await
                .is_err(),
            "a fourth routine message waits"
        );
        let urgent = tokio::time::timeout(wait, inflight.hold("a", 1024, true))
            .await
            .expect("the child's urgent message takes the reserve at once");
        assert!(
            tokio::time::timeout(wait, inflight.hold("a", 1024, true))
                .await
                .is_err(),
            "the child's whole share is still its bound"
        );
        drop(urgent);
        drop(routine);
        // By bytes: routine news fills half the share, and an urgent message
        // as large still fits beside it.
        let _bulk = inflight.hold("a", 4 * 1024, false).await;
        assert!(
            tokio::time::timeout(wait, inflight.hold("a", 1024, false))
                .await
                .is_err(),
            "routine's half of the bytes is full"
        );
        tokio::time::timeout(wait, inflight.hold("a", 4 * 1024, true))
            .await
            .expect("an urgent message as large as routine's half fits");
    }

    #[test]
    fn routine_part_leaves_a_reserve_unless_the_share_is_one() {
        assert_eq!(Bounds::routine_items(256), 192);
        assert_eq!(Bounds::routine_items(2), 1);
        assert_eq!(Bounds::routine_items(1), 1);
        assert_eq!(Bounds::routine_kib(65_536), 32_768);
        assert_eq!(Bounds::routine_kib(1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_node_bound_routine_waits_and_urgent_does_not() {
        let inflight = InFlight::new(Bounds {
            bytes: 1 << 20,
            items: 100,
            node_bytes: 4 * 1024,
        });
        let a = inflight.hold("a", 3 * 1024, false).await;
        let wait = Duration::from_secs(1);
        assert!(
            tokio::time::timeout(wait, inflight.hold("b", 2 * 1024, false))
                .await
                .is_err(),
            "the node is at its bound: another child's routine message waits"
        );
        tokio::time::timeout(wait, inflight.hold("b", 2 * 1024, true))
            .await
            .expect("an urgent message is held against its child's share only");
        drop(a);
        tokio::time::timeout(wait, inflight.hold("b", 2 * 1024, false))
            .await
            .expect("room again once the first is answered");
    }

    #[tokio::test]
    async fn routine_messages_are_counted_while_held_and_urgent_ones_never() {
        let inflight = InFlight::new(Bounds {
            bytes: 1 << 20,
            items: 100,
            node_bytes: 1 << 20,
        });
        assert_eq!(inflight.routine_in_flight(), 0);
        let a = inflight.hold("a", 1024, false).await;
        assert_eq!(inflight.routine_in_flight(), 1, "alone");
        let urgent = inflight.hold("b", 1024, true).await;
        assert_eq!(inflight.routine_in_flight(), 1, "urgent ones do not count");
        let b = inflight.hold("b", 1024, false).await;
        assert_eq!(inflight.routine_in_flight(), 2, "from any child");
        drop(a);
        drop(urgent);
        assert_eq!(inflight.routine_in_flight(), 1, "until answered");
        drop(b);
        assert_eq!(inflight.routine_in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn routine_work_takes_turns_and_urgent_work_does_not() {
        let inflight = InFlight::new(Bounds {
            bytes: 1 << 20,
            items: 100,
            node_bytes: 1 << 20,
        });
        let mut turns = Vec::new();
        for _ in 0..ROUTINE_WORKERS {
            turns.push(inflight.turn(false).await);
        }
        let wait = Duration::from_secs(1);
        assert!(
            tokio::time::timeout(wait, inflight.turn(false))
                .await
                .is_err()
        );
        tokio::time::timeout(wait, inflight.turn(true))
            .await
            .expect("an urgent item's turn is at once");
        turns.pop();
        tokio::time::timeout(wait, inflight.turn(false))
            .await
            .expect("a routine turn once one is done");
    }
}
