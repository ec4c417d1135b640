//! Time as the node reads it: Unix milliseconds from a [`Clock`].
//!
//! Deadlines are wall-clock instants stamped into reports, so the node works
//! in Unix milliseconds. The rules that are *about* time (the deadline watch,
//! escalation, overdue marking) take their "now" from a [`Clock`] handed to
//! them, never from the system directly: in production that is the system
//! clock, in unit tests a clock that follows tokio's (pausable) timer, so a
//! minute of deadlines runs in milliseconds under `tokio::time::pause()`.

use std::time::SystemTime;

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Starts at `base_ms` and advances with tokio's clock, so that
    /// `tokio::time::pause()` and `advance()` move it too.
    Tokio {
        /// The Unix time the clock showed at `start`.
        base_ms: i64,
        /// tokio's instant at which the clock showed `base_ms`.
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock showing `base_ms` now and following tokio's timer from here.
    pub fn tokio_at(base_ms: i64) -> Self {
        Self::Tokio {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System => now_ms(),
            Self::Tokio { base_ms, start } => {
                let elapsed = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
                base_ms.saturating_add(elapsed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_follows_paused_time() {
        let clock = Clock::tokio_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), 91_000);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::System.now_ms() > 1_577_836_800_000);
    }
}
