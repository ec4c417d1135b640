//! Reporting periods (a month, a quarter, a year) and the office's local
//! calendar: where a period starts and ends in Unix ms, what it is called.
//!
//! The office's zone is a fixed UTC offset in ms (`+08:00` = 28 800 000),
//! as `deadlines.utc_offset` gives it. Day arithmetic is done on Julian day
//! numbers so that no instant can make it fail.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use time::{Date, Month};

use super::Lang;

/// One day in ms.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// Earliest and latest year a period may name: four digits, and never
/// before the Unix epoch (no item can be older).
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// A reporting period in the office's local calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// A calendar month (月度通报).
    Month {
        /// The year.
        year: i32,
        /// 1 to 12.
        month: u8,
    },
    /// A calendar quarter (季度小结).
    Quarter {
        /// The year.
        year: i32,
        /// 1 to 4.
        q: u8,
    },
    /// A calendar year (年度总结).
    Year {
        /// The year.
        year: i32,
    },
}

/// A period that could not be read or does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a period: use 2026-11 (a month), 2026Q4 or 2026-Q4 (a quarter) or 2026 (a year)"
)]
pub struct PeriodError(pub String);

impl Period {
    /// The year the period lies in.
    pub fn year(self) -> i32 {
        match self {
            Self::Month { year, .. } | Self::Quarter { year, .. } | Self::Year { year } => year,
        }
    }

    /// The month of the office's local calendar that contains `at_ms`.
    pub fn month_of(at_ms: i64, utc_offset_ms: i64) -> Self {
        let d = local_date(at_ms, utc_offset_ms);
        Self::Month {
            year: d.year(),
            month: u8::from(d.month()),
        }
    }

    /// First and last month of the period (1 to 12, inclusive).
    fn months(self) -> (u8, u8) {
        match self {
            // Clamped: a hand-built `Period` may hold anything.
            Self::Month { month, .. } => {
                let m = month.clamp(1, 12);
                (m, m)
            }
            Self::Quarter { q, .. } => {
                let q = q.clamp(1, 4);
                (q * 3 - 2, q * 3)
            }
            Self::Year { .. } => (1, 12),
        }
    }

    /// Start and end of the period in Unix ms, half-open: `start <= t < end`,
    /// both at local midnight.
    pub fn bounds(self, utc_offset_ms: i64) -> (i64, i64) {
        let year = self.year();
        let (first, last) = self.months();
        let start = month_start_day(year, first);
        let end = if last == 12 {
            month_start_day(year + 1, 1)
        } else {
            month_start_day(year, last + 1)
        };
        (start * DAY_MS - utc_offset_ms, end * DAY_MS - utc_offset_ms)
    }

    /// Start and end of the period's year in Unix ms, half-open.
    pub fn year_bounds(self, utc_offset_ms: i64) -> (i64, i64) {
        Self::Year { year: self.year() }.bounds(utc_offset_ms)
    }

    /// What people call it: `2026年11月` / `November 2026`, `2026年第四季度`
    /// / `2026 Q4`, `2026年` / `2026`.
    pub fn label(self, lang: Lang) -> String {
        match (self, lang) {
            (Self::Month { year, month }, Lang::Zh) => format!("{year}年{month}月"),
            (Self::Month { year, month }, Lang::En) => {
                format!("{} {year}", month_name_en(month))
            }
            (Self::Quarter { year, q }, Lang::Zh) => {
                let n = ["一", "二", "三", "四"]
                    .get(usize::from(q).saturating_sub(1))
                    .copied()
                    .unwrap_or("?");
                format!("{year}年第{n}季度")
            }
            (Self::Quarter { year, q }, Lang::En) => format!("{year} Q{q}"),
            (Self::Year { year }, Lang::Zh) => format!("{year}年"),
            (Self::Year { year }, Lang::En) => format!("{year}"),
        }
    }
}

impl fmt::Display for Period {
    /// The form [`FromStr`] reads: `2026-11`, `2026Q4`, `2026`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            Self::Quarter { year, q } => write!(f, "{year:04}Q{q}"),
            Self::Year { year } => write!(f, "{year:04}"),
        }
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, PeriodError> {
        let bad = || PeriodError(text.to_string());
        let s = text.trim();
        let year_of = |y: &str| -> Result<i32, PeriodError> {
            if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let year: i32 = y.parse().map_err(|_| bad())?;
            if YEARS.contains(&year) {
                Ok(year)
            } else {
                Err(bad())
            }
        };
        let small = |n: &str, max: u8| -> Result<u8, PeriodError> {
            if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let v: u8 = n.parse().map_err(|_| bad())?;
            if (1..=max).contains(&v) {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        let (y, rest) = s.split_at_checked(4).ok_or_else(bad)?;
        let year = year_of(y)?;
        if rest.is_empty() {
            return Ok(Self::Year { year });
        }
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        if let Some(q) = rest.strip_prefix(['Q', 'q']) {
            return Ok(Self::Quarter {
                year,
                q: small(q, 4)?,
            });
        }
        if rest.len() == s.len() - 4 {
            // A month needs its dash: "202611" is not a period.
            return Err(bad());
        }
        Ok(Self::Month {
            year,
            month: small(rest, 12)?,
        })
    }
}

impl Serialize for Period {
    /// As its text form, `2026-11`, so JSON readers need no enum schema.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The Julian-day-based day number (days since 1970-01-01) of the first of
/// a month; years are range-checked by the parser, so out-of-range values
/// only come from a hand-built `Period` and are clamped.
fn month_start_day(year: i32, month: u8) -> i64 {
    let month = Month::try_from(month).unwrap_or(Month::January);
    let date = Date::from_calendar_date(year.clamp(-9999, 9999), month, 1).unwrap_or(Date::MIN);
    i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY
}

/// The local calendar date of `at_ms`.
pub(crate) fn local_date(at_ms: i64, utc_offset_ms: i64) -> Date {
    let day = at_ms.saturating_add(utc_offset_ms).div_euclid(DAY_MS);
    i32::try_from(day + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|jd| Date::from_julian_day(jd).ok())
        .unwrap_or(Date::MIN)
}

/// Local midnight starting `date`, in Unix ms.
pub(crate) fn local_midnight(date: Date, utc_offset_ms: i64) -> i64 {
    (i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY) * DAY_MS - utc_offset_ms
}

/// Reads a local date `2026-01-01` (exactly that shape).
pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u16> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let year = i32::from(num(0..4)?);
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// `2026-11-30 23:30` in the local zone.
pub(crate) fn local_minute(at_ms: i64, utc_offset_ms: i64) -> String {
    let d = local_date(at_ms, utc_offset_ms);
    let in_day = at_ms.saturating_add(utc_offset_ms).rem_euclid(DAY_MS) / 60_000;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        in_day / 60,
        in_day % 60
    )
}

/// `2026-11-30` (En) or `2026年11月30日` (Zh), in the local zone.
pub(crate) fn local_day(at_ms: i64, utc_offset_ms: i64, lang: Lang) -> String {
    let d = local_date(at_ms, utc_offset_ms);
    match lang {
        Lang::Zh => format!("{}年{}月{}日", d.year(), u8::from(d.month()), d.day()),
        Lang::En => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
    }
}

fn month_name_en(month: u8) -> &'static str {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    NAMES
        .get(usize::from(month).saturating_sub(1))
        .copied()
        .unwrap_or("?")
}
