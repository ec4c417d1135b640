//! How many items may be on the wire: a routine window paced by delay, and
//! room beyond it for urgent classes.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// How many items may be in flight when the next one is of `lane`, with
/// `limit` the current routine window and `window` the configured one.
///
/// Routine news fills the window; bad news may go a quarter of the
/// configured window beyond it and emergencies half, so an urgent item is on
/// the wire at once even when the window is full of bulk.
pub(crate) fn cap(lane: u8, limit: usize, window: usize) -> usize {
    match lane {
        0 => limit + window.div_ceil(2),
        1 => limit + window.div_ceil(4),
        _ => limit,
    }
}

/// Keeps the window no larger than the upstream can take without queueing.
///
/// A window larger than the path needs only builds a queue at the receiver,
/// and an urgent item sent into it waits behind everything ahead (measured:
/// emergency p99 under load 316 ms with 64 in flight, 75 ms with 8). So the
/// window grows by one per window of answers while answers come back within
/// twice the fastest seen (plus 5 ms), and shrinks to 70 % at most once per
/// window when they do not — delay-based, as TCP Vegas.
///
/// Round trips are timed by tokio's clock, so tests drive it with
/// `tokio::time::pause()`.
#[derive(Debug)]
pub(crate) struct Pace {
    window: f64,
    max: f64,
    base: Option<Duration>,
    since_cut: usize,
    sent: HashMap<String, Instant>,
}

/// The window a session starts with, at most.
const START: f64 = 8.0;
/// The window never shrinks below this.
const FLOOR: f64 = 4.0;
/// A round trip longer than `SLOW_FACTOR` × the fastest seen, plus
/// [`SLOW_MARGIN`], means the answers are queueing.
const SLOW_FACTOR: u32 = 2;
const SLOW_MARGIN: Duration = Duration::from_millis(5);
/// What a cut leaves of the window.
const CUT: f64 = 0.7;

impl Pace {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            window: (max as f64).min(START),
            max: max as f64,
            base: None,
            since_cut: 0,
            sent: HashMap::new(),
        }
    }

    /// The routine window now.
    pub(crate) fn limit(&self) -> usize {
        (self.window as usize).max(1)
    }

    /// `id` went on the wire.
    pub(crate) fn sent(&mut self, id: &str) {
        self.sent.insert(id.to_string(), Instant::now());
    }

    /// `id` was answered: measure its round trip and adjust.
    pub(crate) fn answered(&mut self, id: &str) {
        if let Some(at) = self.sent.remove(id) {
            self.on_rtt(at.elapsed());
        }
    }

    fn on_rtt(&mut self, rtt: Duration) {
        let base = *self.base.get_or_insert(rtt);
        if rtt < base {
            self.base = Some(rtt);
        }
        self.since_cut += 1;
        if rtt > base * SLOW_FACTOR + SLOW_MARGIN {
            if self.since_cut as f64 >= self.window {
                self.window = (self.window * CUT).max(FLOOR);
                self.since_cut = 0;
            }
        } else {
            self.window = (self.window + 1.0 / self.window).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_lanes_get_room_beyond_the_window() {
        assert_eq!(cap(2, 64, 64), 64);
        assert_eq!(cap(1, 64, 64), 80);
        assert_eq!(cap(0, 64, 64), 96);
        assert_eq!(
            cap(0, 4, 64),
            36,
            "room for urgent items even when the window shrank"
        );
        assert_eq!(
            cap(0, 1, 1),
            2,
            "even a window of one leaves room for an emergency"
        );
    }

    #[test]
    fn pace_grows_while_answers_are_quick_and_shrinks_when_they_queue() {
        let mut p = Pace::new(64);
        assert_eq!(p.limit(), 8);
        for _ in 0..3000 {
            p.on_rtt(Duration::from_millis(2));
        }
        assert_eq!(p.limit(), 64, "grows to the configured window");
        for _ in 0..500 {
            p.on_rtt(Duration::from_millis(50));
        }
        assert_eq!(p.limit(), 4, "shrinks while answers queue, to a floor");
    }

    /// One answer per `rtt` of virtual time, `n` times.
    async fn answer_after(p: &mut Pace, rtt: Duration, n: usize) {
        for i in 0..n {
            let id = i.to_string();
            p.sent(&id);
            tokio::time::advance(rtt).await;
            p.answered(&id);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn round_trips_are_timed_by_tokio_s_clock() {
        let mut p = Pace::new(64);
        answer_after(&mut p, Duration::from_millis(2), 3000).await;
        assert_eq!(p.limit(), 64, "quick answers open the window");
        // A receiver that now takes 40 ms per answer is queueing them.
        answer_after(&mut p, Duration::from_millis(40), 500).await;
        assert_eq!(p.limit(), 4, "slow answers close it to the floor");
        // Within twice the fastest plus 5 ms is not slow: it grows again.
        answer_after(&mut p, Duration::from_millis(8), 200).await;
        assert!(p.limit() > 4, "{}", p.limit());
        p.answered("never sent");
    }
}
