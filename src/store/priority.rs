//! The writer thread's priority, raised while an urgent write waits for it.
//!
//! Every durable step of an emergency goes through one writer thread per
//! node, shared with the routine writes. The writer orders its queue by
//! class (see `writer`), but on a machine whose cores are all busy the
//! thread itself waits for a core behind every other runnable thread, and
//! an emergency waits with it: three commits in series on its way from an
//! operator to the hub's receipt stored back at the county. So while a
//! pressing write (an urgent item, or the receipt of one: see
//! [`super::Store::pressing`]) is queued or being committed, the writer
//! runs at [`NICE`], like the threads that serve urgent connections; once
//! the last is answered, it goes back to its own priority, and only then:
//! a thread that lowers its own priority may lose its core at once, and an
//! answer still to send would wait for it. (A writer always at the higher
//! priority, tried first, made its commits faster and the hops between
//! them slower by as much.) Routine writes pay for it: committed sooner,
//! urgent writes leave them smaller batches (see the README's figures).
//!
//! Raising a thread's priority needs `CAP_SYS_NICE` or an `RLIMIT_NICE`
//! that allows it (systemd: `LimitNICE=`); without either, the first
//! refusal is logged and the writer keeps its priority.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::process::Pid;
use tracing::{debug, warn};

/// The writer's nice value while a pressing write waits; the threads that
/// serve urgent connections run at it too (`node::urgent`).
pub(crate) const NICE: i32 = -10;

/// The writer thread's priority and the pressing writes it owes answers.
#[derive(Debug, Default)]
pub(super) struct Priority {
    state: Mutex<State>,
    /// A raise was refused: not tried again.
    refused: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// The writer thread and the nice value it started with, once it runs.
    writer: Option<(Pid, i32)>,
    /// Pressing writes handed to the writer and not answered yet.
    waiting: usize,
    /// Whether the writer runs at [`NICE`] now.
    raised: bool,
}

impl Priority {
    /// Called on the writer thread as it starts; the thread is forgotten
    /// when the returned guard goes, as the thread ends (or unwinds), so
    /// that no later write can set the priority of whatever thread gets
    /// its id next.
    pub(super) fn writer_started(self: &Arc<Self>) -> Running {
        let tid = rustix::thread::gettid();
        let nice = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        let mut state = self.lock();
        state.writer = Some((tid, nice));
        if state.waiting > 0 {
            self.set(&mut state, true);
        }
        Running(self.clone())
    }

    /// A pressing write is being handed to the writer: it runs at [`NICE`]
    /// until the write is answered, refused or dropped, whichever comes
    /// first (when the returned guard goes).
    pub(super) fn press(self: &Arc<Self>) -> Pressed {
        let mut state = self.lock();
        state.waiting += 1;
        self.set(&mut state, true);
        Pressed(self.clone())
    }

    /// A pressing write is answered: once none is left, the writer goes
    /// back to its own priority.
    fn answered(&self) {
        let mut state = self.lock();
        state.waiting = state.waiting.saturating_sub(1);
        if state.waiting == 0 {
            self.set(&mut state, false);
        }
    }

    /// Whether the writer runs at [`NICE`] now (for the tests).
    #[cfg(test)]
    pub(super) fn raised(&self) -> bool {
        self.lock().raised
    }

    /// Pressing writes not answered yet (for the tests).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// The writer thread, once it runs, and whether raising it was refused
    /// (for the tests).
    #[cfg(test)]
    pub(super) fn writer(&self) -> Option<(Pid, bool)> {
        let writer = self.lock().writer;
        writer.map(|(tid, _)| (tid, self.refused.load(Ordering::Relaxed)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts the writer at [`NICE`] (`raise`) or back at its own priority.
    /// The lock is held across the call, so that a raise and a lowering
    /// cannot land in the wrong order.
    fn set(&self, state: &mut State, raise: bool) {
        let Some((tid, own)) = state.writer else {
            return;
        };
        if state.raised == raise || own <= NICE || self.refused.load(Ordering::Relaxed) {
            return;
        }
        let nice = if raise { NICE } else { own };
        match rustix::process::setpriority_process(Some(tid), nice) {
            Ok(()) => {
                state.raised = raise;
                debug!(nice, "store writer's priority set");
            }
            Err(e) if raise => {
                self.refused.store(true, Ordering::Relaxed);
                warn!(error = %e, nice = NICE,
                    "the store writer keeps its priority while urgent items wait for it: raising a thread's priority needs CAP_SYS_NICE or RLIMIT_NICE (systemd: LimitNICE=)");
            }
            // A thread may always lower its own priority; should it fail,
            // the writer stays at NICE until the next pressing write.
            Err(e) => warn!(error = %e, "the store writer's priority could not be set back"),
        }
    }
}

/// A pressing write's hold on the writer's priority, let go when the write
/// is answered or dropped.
#[derive(Debug)]
pub(super) struct Pressed(Arc<Priority>);

impl Drop for Pressed {
    fn drop(&mut self) {
        self.0.answered();
    }
}

/// The writer thread, running: see [`Priority::writer_started`].
#[derive(Debug)]
pub(super) struct Running(Arc<Priority>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.writer = None;
        state.raised = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_thread_that_has_ended_is_forgotten() {
        let priority = Arc::new(Priority::default());
        let theirs = priority.clone();
        std::thread::spawn(move || {
            let _running = theirs.writer_started();
            assert!(theirs.writer().is_some());
        })
        .join()
        .unwrap();
        assert!(priority.writer().is_none(), "its id may be another's now");
        let pressed = priority.press();
        assert_eq!(priority.waiting(), 1);
        assert!(!priority.raised());
        drop(pressed);
        assert_eq!(priority.waiting(), 0);
    }
}
