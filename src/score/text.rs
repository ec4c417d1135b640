//! Small text helpers shared by the renderers: terminal display width (CJK
//! is two columns), padding, HTML and CSV escaping, durations for people.

use super::Lang;

/// Columns `s` takes in a terminal: East Asian wide and fullwidth
/// characters take two, combining marks and controls none, the rest one.
///
/// A small table of the wide ranges, enough for Chinese text, fullwidth
/// punctuation and common emoji; no dependency needed.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let u = u32::from(c);
    if u < 0x20 || (0x7f..0xa0).contains(&u) {
        return 0;
    }
    const ZERO: &[(u32, u32)] = &[
        (0x0300, 0x036f), // combining diacritical marks
        (0x200b, 0x200f), // zero-width space, joiners, direction marks
        (0xfe00, 0xfe0f), // variation selectors
    ];
    const WIDE: &[(u32, u32)] = &[
        (0x1100, 0x115f),   // Hangul Jamo initials
        (0x2e80, 0x303e),   // CJK radicals, Kangxi, CJK symbols and punctuation
        (0x3041, 0x33ff),   // kana, bopomofo, CJK compatibility
        (0x3400, 0x4dbf),   // CJK extension A
        (0x4e00, 0x9fff),   // CJK unified ideographs
        (0xa000, 0xa4cf),   // Yi
        (0xac00, 0xd7a3),   // Hangul syllables
        (0xf900, 0xfaff),   // CJK compatibility ideographs
        (0xfe30, 0xfe4f),   // CJK compatibility forms
        (0xff00, 0xff60),   // fullwidth forms
        (0xffe0, 0xffe6),   // fullwidth signs
        (0x1f300, 0x1f64f), // emoji
        (0x1f900, 0x1f9ff), // supplemental symbols and pictographs
        (0x20000, 0x3fffd), // CJK extensions B and later
    ];
    let within = |ranges: &[(u32, u32)]| ranges.iter().any(|&(a, b)| (a..=b).contains(&u));
    if within(ZERO) {
        0
    } else if within(WIDE) {
        2
    } else {
        1
    }
}

/// `s` padded with spaces to `width` columns, on the right (`left` aligned)
/// or on the left.
pub fn pad(s: &str, width: usize, left: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(display_width(s)));
    if left {
        format!("{s}{fill}")
    } else {
        format!("{fill}{s}")
    }
}

/// `s` cut to at most `width` columns, with `…` if cut.
pub(crate) fn truncate(s: &str, width: usize) -> String {
    if display_width(s) <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `s` safe to print on a terminal: control characters (escape sequences
/// included) become `?`.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `s` safe inside HTML text and attribute values. Controls other than tab
/// and newline become U+FFFD: they are not allowed in HTML documents.
pub(crate) fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line
/// break. Text that a spreadsheet would run as a formula (`=`, `+`, `-`,
/// `@` first, and not a number) gets a leading `'`.
pub(crate) fn csv(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err();
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// How long, for people: `2小时5分` / `2 h 5 min`, `1天3小时` / `1 d 3 h`.
pub(crate) fn duration(ms: i64, lang: Lang) -> String {
    let minutes = ms.max(0) / 60_000;
    let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match lang {
        Lang::Zh if d > 0 => format!("{d}天{h}小时"),
        Lang::Zh if h > 0 => format!("{h}小时{m}分"),
        Lang::Zh => format!("{m}分"),
        Lang::En if d > 0 => format!("{d} d {h} h"),
        Lang::En if h > 0 => format!("{h} h {m} min"),
        Lang::En => format!("{m} min"),
    }
}

/// A percentage with no decimals unless small: `38%`, `2.5%`.
pub(crate) fn percent(p: f64) -> String {
    if p.abs() < 10.0 && p.fract() != 0.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}
