//! Times as operators read and write them: in the node's local time
//! (`deadlines.utc_offset`, which the node reports), or UTC with `--utc`.

use anyhow::{Context, bail};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// `--utc`, a global option: set once from the command line before any
/// command runs, read wherever a time is shown.
static FORCE_UTC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Shows every time in UTC (`--utc`) instead of the node's local time.
pub(crate) fn force_utc(utc: bool) {
    let _ = FORCE_UTC.set(utc);
}

/// A time zone given as a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tz {
    offset: UtcOffset,
}

impl Tz {
    /// A deadline as an operator gives it (`flag` names the option in the
    /// error): a time (`2026-12-01T12:00`, in this zone unless it says
    /// otherwise) or a span from now (`36h`, `3days`); Unix ms.
    pub(crate) fn time_or_span(self, text: &str, flag: &str) -> anyhow::Result<i64> {
        match self.parse(text) {
            Ok(ms) => Ok(ms),
            Err(e) => match humantime::parse_duration(text.trim()) {
                Ok(span) => Ok(zhibao::clock::now_ms()
                    .saturating_add(i64::try_from(span.as_millis()).unwrap_or(i64::MAX))),
                Err(_) => Err(e.context(format!(
                    "{flag} takes a time like 2026-12-01T12:00 or a span like 36h"
                ))),
            },
        }
    }

    /// UTC.
    pub(crate) const UTC: Self = Self {
        offset: UtcOffset::UTC,
    };

    /// The zone to show a node's times in: its own (`offset_ms` east of
    /// UTC), or UTC when `--utc` was given.
    pub(crate) fn node(offset_ms: i64) -> Self {
        if FORCE_UTC.get().copied().unwrap_or(false) {
            Self::UTC
        } else {
            Self::east_ms(offset_ms)
        }
    }

    /// `offset_ms` east of UTC (whole seconds; anything unusable is UTC).
    pub(crate) fn east_ms(offset_ms: i64) -> Self {
        let secs = i32::try_from(offset_ms / 1000).unwrap_or(0);
        Self {
            offset: UtcOffset::from_whole_seconds(secs).unwrap_or(UtcOffset::UTC),
        }
    }

    /// `2026-11-26 20:30:05 +08:00`, or `-` for no time.
    pub(crate) fn show(self, ms: i64) -> String {
        if ms <= 0 {
            return "-".into();
        }
        let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
            return format!("{ms} ms");
        };
        let t = t.to_offset(self.offset);
        let (h, m, _) = self.offset.as_hms();
        let offset = if self.offset.is_utc() {
            "UTC".to_string()
        } else {
            format!(
                "{}{:02}:{:02}",
                if self.offset.is_negative() { '-' } else { '+' },
                h.unsigned_abs(),
                m.unsigned_abs()
            )
        };
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {offset}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// `2026-11-26 20:30`: short, for listings.
    pub(crate) fn short(self, ms: i64) -> String {
        let full = self.show(ms);
        full.get(..16).map_or(full.clone(), str::to_string)
    }

    /// Reads `2026-12-01`, `2026-12-01T12:00`, `2026-12-01 12:00:30`, each
    /// in this zone unless it ends in `Z` or an offset like `+08:00`.
    /// Returns Unix ms.
    pub(crate) fn parse(self, text: &str) -> anyhow::Result<i64> {
        let bad = || format!("{text:?} is not a time like 2026-12-01T12:00 (or 2026-12-01)");
        let s = text.trim();
        let (s, offset) = split_offset(s).with_context(bad)?;
        let offset = offset.unwrap_or(self.offset);
        let (date, clock) = match s.split_once(['T', ' ']) {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let date = parse_date(date).with_context(bad)?;
        let clock = match clock {
            Some(t) => parse_clock(t).with_context(bad)?,
            None => Time::MIDNIGHT,
        };
        let t = PrimitiveDateTime::new(date, clock).assume_offset(offset);
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).with_context(bad)
    }
}

fn split_offset(s: &str) -> anyhow::Result<(&str, Option<UtcOffset>)> {
    if let Some(rest) = s.strip_suffix('Z') {
        return Ok((rest, Some(UtcOffset::UTC)));
    }
    // An offset is the last 6 characters, `+hh:mm` or `-hh:mm`, after a time.
    if s.len() > 16
        && let Some(tail) = s.get(s.len() - 6..)
        && (tail.starts_with('+') || tail.starts_with('-'))
        && tail.as_bytes().get(3) == Some(&b':')
    {
        let sign = if tail.starts_with('-') { -1 } else { 1 };
        let h: i8 = tail[1..3].parse()?;
        let m: i8 = tail[4..6].parse()?;
        let offset = UtcOffset::from_hms(sign * h, sign * m, 0)?;
        return Ok((&s[..s.len() - 6], Some(offset)));
    }
    Ok((s, None))
}

fn parse_date(s: &str) -> anyhow::Result<Date> {
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a date");
    };
    let month = Month::try_from(m.parse::<u8>()?)?;
    Ok(Date::from_calendar_date(y.parse()?, month, d.parse()?)?)
}

fn parse_clock(s: &str) -> anyhow::Result<Time> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |i: usize| -> anyhow::Result<u8> {
        Ok(parts.get(i).map(|p| p.parse()).transpose()?.unwrap_or(0))
    };
    if !(2..=3).contains(&parts.len()) {
        bail!("not a time of day");
    }
    Ok(Time::from_hms(num(0)?, num(1)?, num(2)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: Tz = Tz {
        offset: match UtcOffset::from_hms(8, 0, 0) {
            Ok(o) => o,
            Err(_) => UtcOffset::UTC,
        },
    };

    #[test]
    fn local_times_read_and_print_in_the_nodes_zone() {
        // 2026-12-01 12:00 in +08:00 is 04:00 UTC.
        let ms = CST.parse("2026-12-01T12:00").unwrap();
        assert_eq!(ms, Tz::UTC.parse("2026-12-01T04:00Z").unwrap());
        assert_eq!(CST.show(ms), "2026-12-01 12:00:00 +08:00");
        assert_eq!(Tz::UTC.show(ms), "2026-12-01 04:00:00 UTC");
        assert_eq!(CST.short(ms), "2026-12-01 12:00");
        assert_eq!(CST.parse("2026-12-01 12:00:00+08:00").unwrap(), ms);
        assert_eq!(Tz::UTC.parse("2026-12-01T12:00+08:00").unwrap(), ms);
        assert_eq!(
            CST.parse("2026-12-01").unwrap(),
            CST.parse("2026-12-01T00:00").unwrap()
        );
        assert_eq!(Tz::east_ms(8 * 3600 * 1000), CST);
    }

    #[test]
    fn nonsense_is_refused_with_an_example() {
        for bad in ["tomorrow", "2026-13-01", "2026-12-01T25:00", "2026-12", ""] {
            let e = CST.parse(bad).unwrap_err().to_string();
            assert!(e.contains("2026-12-01T12:00"), "{bad}: {e}");
        }
        assert_eq!(CST.show(0), "-");
    }

    #[test]
    fn a_deadline_is_a_time_or_a_span_from_now() {
        let at = CST.time_or_span("2026-12-01T12:00", "--by").unwrap();
        assert_eq!(at, CST.parse("2026-12-01T12:00").unwrap());
        let before = zhibao::clock::now_ms();
        let in_2h = CST.time_or_span("2h", "--by").unwrap();
        let after = zhibao::clock::now_ms();
        let span = 2 * 3600 * 1000;
        assert!((before + span..=after + span).contains(&in_2h), "{in_2h}");
        let e = format!("{:#}", CST.time_or_span("soon", "--by").unwrap_err());
        assert!(
            e.contains("--by takes a time like 2026-12-01T12:00 or a span like 36h"),
            "{e}"
        );
    }
}

/// The language text for people is written in: Chinese for the office and
/// the county (the seed's terms), English on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// 中文.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// `en` or `zh`, as this language is.
    pub(crate) fn pick<T>(self, en: T, zh: T) -> T {
        match self {
            Self::Zh => zh,
            Self::En => en,
        }
    }

    /// The language the command line asked for (`--lang`, as [`choose`]
    /// takes it), for what is said after the command ran: its error line.
    /// English where the command line's `--lang` is not one.
    ///
    /// [`choose`]: Self::choose
    pub(crate) fn of_command_line() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let asked = args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix("--lang=")
                .map(str::to_string)
                .or_else(|| (a == "--lang").then(|| args.get(i + 1).cloned()).flatten())
        });
        Self::choose(asked.as_deref()).unwrap_or(Self::En)
    }

    /// `--lang` if given, else `ZHIBAO_LANG`, else the locale (`LC_ALL`,
    /// `LANG`): Chinese for a `zh` locale, English otherwise.
    pub(crate) fn choose(asked: Option<&str>) -> anyhow::Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let given = asked
            .map(str::to_string)
            .or_else(|| env("ZHIBAO_LANG"))
            .or_else(|| env("LC_ALL"))
            .or_else(|| env("LANG"))
            .unwrap_or_default()
            .to_lowercase();
        match given.as_str() {
            g if g.starts_with("zh") => Ok(Self::Zh),
            g if g.starts_with("en") || asked.is_none() => Ok(Self::En),
            g => anyhow::bail!("--lang {g:?}: use zh or en"),
        }
    }
}

/// How text for people is shown: in which zone and which language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    /// The time zone.
    pub(crate) tz: Tz,
    /// The language.
    pub(crate) lang: Lang,
}

impl View {
    /// `en` or `zh`, as the language is.
    pub(crate) fn t<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        self.lang.pick(en, zh)
    }

    /// A time in full, in the zone.
    pub(crate) fn show(self, ms: i64) -> String {
        self.tz.show(ms)
    }

    /// A time to the minute, in the zone.
    pub(crate) fn short(self, ms: i64) -> String {
        self.tz.short(ms)
    }
}
