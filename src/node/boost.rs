//! The runtime's threads at the urgent priority while an urgent item is
//! under way at this node.
//!
//! An urgent item's way through a county crosses its shared runtime
//! several times: the operator's call, the forwarder's session putting it
//! on the wire, the hub's receipt read and checked, the answer. The
//! urgent connections' thread and the store's writer already run at
//! [`NICE`] while they serve it (`node::urgent`, `store::priority`), but on
//! a machine whose cores are all busy each of those hops still waits for a
//! core behind every other runnable thread: stamped step by step under a
//! saturating load, every hop of a county's emergency took 1.5–9× its
//! idle time (docs/performance.md, "The runtime raised while an emergency
//! is under way"). So while an urgent item is under way here — an operator's
//! urgent `Submit` call, until it is answered, and an urgent item on a
//! forwarder's wire, until its receipt is stored — every thread of the
//! runtime runs at [`NICE`]; once the last is done, each goes back to its
//! own priority. Routine work on the node is raised with it for that
//! while: the runtime cannot raise one task. That is the trade, measured
//! in 7 pairs: an end-to-end emergency under load 19 % faster at the p50
//! and 29 % at the p99, the routine items beside it 3 % fewer.
//!
//! The threads are the ones the `zhibao` binary's runtime starts
//! ([`thread_started`], [`thread_stopped`] as its hooks); a runtime that
//! does not register them (the tests') is not raised. Raising a thread's
//! priority needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it
//! (systemd: `LimitNICE=`); without either, the first refusal is logged and
//! nothing is raised.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::Pid;
use tracing::{debug, warn};

/// The nice value the runtime's threads run at while urgent work is under
/// way: the urgent connections' and the raised writer's.
pub(crate) const NICE: i32 = crate::store::URGENT_NICE;

/// The runtime's threads and the urgent work under way.
#[derive(Debug)]
pub struct Boost {
    state: Mutex<State>,
    /// A raise was refused: not tried again.
    refused: AtomicBool,
}

#[derive(Debug)]
struct State {
    /// Each registered thread and the nice value it started with.
    threads: Vec<(Pid, i32)>,
    /// Holds not let go yet.
    holds: usize,
    /// Whether the threads run at [`NICE`] now.
    raised: bool,
}

/// The `zhibao` binary's runtime.
static RUNTIME: Boost = Boost::new();

/// For the runtime builder's `on_thread_start`: the thread is raised with
/// the others from now on.
pub fn thread_started() {
    RUNTIME.thread_started();
}

/// For the runtime builder's `on_thread_stop`: the thread is forgotten, so
/// that no later raise sets the priority of whatever thread gets its id.
pub fn thread_stopped() {
    RUNTIME.thread_stopped();
}

/// Raises the runtime's threads until the returned hold goes (and every
/// other hold with it).
pub(crate) fn hold() -> Hold {
    RUNTIME.hold()
}

impl Boost {
    const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                threads: Vec::new(),
                holds: 0,
                raised: false,
            }),
            refused: AtomicBool::new(false),
        }
    }

    fn thread_started(&self) {
        let tid = rustix::thread::gettid();
        let own = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        let mut state = self.lock();
        state.threads.push((tid, own));
        if state.raised {
            self.set_one(tid, own, true);
        }
    }

    fn thread_stopped(&self) {
        let tid = rustix::thread::gettid();
        self.lock().threads.retain(|(t, _)| *t != tid);
    }

    fn hold(&'static self) -> Hold {
        let mut state = self.lock();
        state.holds += 1;
        if !state.raised {
            self.set_all(&mut state, true);
        }
        Hold(self)
    }

    fn let_go(&self) {
        let mut state = self.lock();
        state.holds = state.holds.saturating_sub(1);
        if state.holds == 0 && state.raised {
            self.set_all(&mut state, false);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts every thread at [`NICE`] (`raise`) or back at its own. The lock
    /// is held across, so that a raise and a lowering cannot land in the
    /// wrong order.
    fn set_all(&self, state: &mut State, raise: bool) {
        if self.refused.load(Ordering::Relaxed) {
            return;
        }
        for (i, &(tid, own)) in state.threads.iter().enumerate() {
            if !self.set_one(tid, own, raise) {
                // Refused: those already raised go back, or nothing would
                // ever lower them.
                for &(tid, own) in &state.threads[..i] {
                    self.set_one(tid, own, false);
                }
                return;
            }
        }
        state.raised = raise;
        debug!(
            raise,
            threads = state.threads.len(),
            "runtime's priority set"
        );
    }

    /// Sets one thread; false if raising was refused.
    fn set_one(&self, tid: Pid, own: i32, raise: bool) -> bool {
        if own <= NICE {
            return true;
        }
        let nice = if raise { NICE } else { own };
        match rustix::process::setpriority_process(Some(tid), nice) {
            Ok(()) => true,
            Err(e) if raise => {
                self.refused.store(true, Ordering::Relaxed);
                warn!(error = %e, nice = NICE,
                    "the runtime keeps its priority while urgent items are under way: raising a thread's priority needs CAP_SYS_NICE or RLIMIT_NICE (systemd: LimitNICE=)");
                false
            }
            // A thread that has just ended; or lowering failed, and the
            // thread stays raised until the next hold lets go.
            Err(e) => {
                debug!(error = %e, "a runtime thread's priority could not be set back");
                true
            }
        }
    }
}

/// Urgent work's hold on the runtime's priority, let go when dropped.
#[derive(Debug)]
#[must_use = "the runtime is raised only while the hold is kept"]
pub(crate) struct Hold(&'static Boost);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.let_go();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of(tid: Pid) -> i32 {
        rustix::process::getpriority_process(Some(tid)).unwrap()
    }

    #[test]
    fn every_thread_is_raised_while_held_and_set_back_when_the_last_hold_goes() {
        static BOOST: Boost = Boost::new();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (end_tx, end) = std::sync::mpsc::channel::<()>();
        let end = std::sync::Arc::new(Mutex::new(end));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (ready_tx, end) = (ready_tx.clone(), end.clone());
                std::thread::spawn(move || {
                    BOOST.thread_started();
                    ready_tx.send(rustix::thread::gettid()).unwrap();
                    let _ = end.lock().unwrap().recv();
                    BOOST.thread_stopped();
                })
            })
            .collect();
        let tids: Vec<Pid> = (0..2).map(|_| ready.recv().unwrap()).collect();
        let own = nice_of(tids[0]);
        let first = BOOST.hold();
        let second = BOOST.hold();
        if BOOST.refused.load(Ordering::Relaxed) || own <= NICE {
            // Without CAP_SYS_NICE or RLIMIT_NICE: each keeps its own.
            assert!(tids.iter().all(|t| nice_of(*t) == own));
            drop((first, second));
        } else {
            assert!(tids.iter().all(|t| nice_of(*t) == NICE), "raised");
            drop(first);
            assert!(
                tids.iter().all(|t| nice_of(*t) == NICE),
                "still held by the second"
            );
            drop(second);
            assert!(tids.iter().all(|t| nice_of(*t) == own), "set back");
        }
        drop(end_tx);
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            BOOST.lock().threads.is_empty(),
            "ended threads are forgotten"
        );
        assert_eq!(BOOST.lock().holds, 0);
    }

    #[test]
    fn a_thread_started_while_raised_is_raised_at_once() {
        static BOOST: Boost = Boost::new();
        let _hold = BOOST.hold();
        let (nice, refused) = std::thread::spawn(|| {
            let tid = rustix::thread::gettid();
            let own = nice_of(tid);
            BOOST.thread_started();
            let out = (
                nice_of(tid),
                BOOST.refused.load(Ordering::Relaxed) || own <= NICE,
            );
            BOOST.thread_stopped();
            out
        })
        .join()
        .unwrap();
        if !refused {
            assert_eq!(nice, NICE);
        }
    }
}
