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

/// Wall-clock time that does not jump, for the rules that measure time
/// (overdue marking): it follows the wall clock while the wall clock moves
/// with the monotonic one, and keeps to the monotonic clock when the wall
/// clock jumps — a clock set a day ahead must not mark every item overdue,
/// one set back must not hide what is late. A jump that lasts is adopted
/// after [`Steady::ADOPT_AFTER`], as the wall clock was then put right.
#[derive(Debug)]
pub struct Steady {
    /// (wall ms, monotonic instant) of the last reading that agreed.
    anchor: Option<(i64, tokio::time::Instant)>,
    /// The current disagreement: when the wall clock jumped, and by how
    /// much (wall minus steady, ms).
    jump: Option<(tokio::time::Instant, i64)>,
}

/// What a [`Steady`] clock reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Unix ms to measure deadlines by.
    pub now_ms: i64,
    /// The wall clock's jump (wall minus steady, ms) when this reading is
    /// the first to see it, for one alarm per jump.
    pub jumped: Option<i64>,
}

impl Default for Steady {
    fn default() -> Self {
        Self::new()
    }
}

impl Steady {
    /// A wall clock that moves this far from the monotonic one has jumped.
    pub const TOLERANCE_MS: i64 = 2_000;
    /// How long a jump lasts before it is taken as the clock being put right.
    pub const ADOPT_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

    /// A steady clock that has not read anything yet.
    pub const fn new() -> Self {
        Self {
            anchor: None,
            jump: None,
        }
    }

    /// Reads the time, given the wall clock's `wall_ms` now.
    pub fn read(&mut self, wall_ms: i64) -> Reading {
        let mono = tokio::time::Instant::now();
        let Some((anchor_wall, anchor_mono)) = self.anchor else {
            self.anchor = Some((wall_ms, mono));
            return Reading {
                now_ms: wall_ms,
                jumped: None,
            };
        };
        let elapsed =
            i64::try_from(mono.duration_since(anchor_mono).as_millis()).unwrap_or(i64::MAX);
        let steady = anchor_wall.saturating_add(elapsed);
        let jump = wall_ms.saturating_sub(steady);
        if jump.abs() <= Self::TOLERANCE_MS {
            self.anchor = Some((wall_ms, mono));
            self.jump = None;
            return Reading {
                now_ms: wall_ms,
                jumped: None,
            };
        }
        // A jump of a clock that had jumped already is a new one (an alarm
        // of its own, and its own hour before it is adopted).
        let new = self
            .jump
            .is_none_or(|(_, was)| jump.saturating_sub(was).abs() > Self::TOLERANCE_MS);
        if new {
            self.jump = Some((mono, jump));
        }
        let since = self.jump.map_or(mono, |(since, _)| since);
        if mono.duration_since(since) >= Self::ADOPT_AFTER {
            self.anchor = Some((wall_ms, mono));
            self.jump = None;
            return Reading {
                now_ms: wall_ms,
                jumped: None,
            };
        }
        Reading {
            now_ms: steady,
            jumped: new.then_some(jump),
        }
    }
}

/// `ms` (Unix ms) as a person reads it in a time zone `offset_ms` east of
/// UTC: `2026-12-01 12:00 +08:00`. Out-of-range times are shown as ms.
pub fn show(ms: i64, offset_ms: i64) -> String {
    let offset = time::UtcOffset::from_whole_seconds(i32::try_from(offset_ms / 1000).unwrap_or(0))
        .unwrap_or(time::UtcOffset::UTC);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return format!("{ms} ms");
    };
    let t = t.to_offset(offset);
    let (h, m) = (offset.whole_hours(), offset.minutes_past_hour().abs());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} {}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        if offset_ms < 0 { '-' } else { '+' },
        h.abs(),
        m
    )
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

    #[tokio::test(start_paused = true)]
    async fn a_steady_clock_rides_out_a_jump_and_adopts_one_that_lasts() {
        let mut steady = Steady::new();
        let wall = 1_000_000;
        assert_eq!(steady.read(wall).now_ms, wall);
        tokio::time::advance(Duration::from_secs(10)).await;
        // The wall clock moved with time: followed.
        assert_eq!(steady.read(wall + 10_000).now_ms, wall + 10_000);
        // It jumps a day ahead: time goes on from where it was, one alarm.
        tokio::time::advance(Duration::from_secs(1)).await;
        let r = steady.read(wall + 11_000 + 86_400_000);
        assert_eq!(r.now_ms, wall + 11_000);
        assert_eq!(r.jumped, Some(86_400_000));
        tokio::time::advance(Duration::from_secs(1)).await;
        let r = steady.read(wall + 12_000 + 86_400_000);
        assert_eq!(
            (r.now_ms, r.jumped),
            (wall + 12_000, None),
            "one alarm per jump"
        );
        // Put back: followed again.
        assert_eq!(steady.read(wall + 12_000).now_ms, wall + 12_000);
        // A jump back that lasts past ADOPT_AFTER is taken as the truth.
        let back = wall - 50_000_000;
        assert_eq!(steady.read(back).now_ms, wall + 12_000);
        tokio::time::advance(Steady::ADOPT_AFTER).await;
        let later = back + i64::try_from(Steady::ADOPT_AFTER.as_millis()).unwrap();
        assert_eq!(steady.read(later).now_ms, later);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::System.now_ms() > 1_577_836_800_000);
    }
}
