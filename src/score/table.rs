//! The scores as a terminal table ([`Stats::table`], aligned by display
//! width) and as CSV ([`Stats::to_csv`], one row per county).

use std::fmt::Write as _;

use super::Lang;
use super::stats::{CountyStats, Stats, TargetProgress};
use super::text::{csv, pad, percent, printable};

// === impl Stats ===

impl Stats {
    /// The ranked counties as an aligned text table with a totals line,
    /// headed in `lang` (县(单位), 报送(紧急/报忧/动态)… for Chinese).
    pub fn table(&self, lang: Lang) -> String {
        let header: Vec<&str> = match lang {
            Lang::Zh => vec![
                "县(单位)",
                "报送(紧急/报忧/动态)",
                "按时",
                "迟报",
                "采用",
                "上级采用",
                "批示",
                "约稿按时/迟交/未交",
                "得分",
                "排名",
                "目标进度",
            ],
            Lang::En => vec![
                "County",
                "Reports (E/B/R)",
                "On time",
                "Late",
                "Adopted",
                "Above",
                "Instr.",
                "Answers on time/late/missing",
                "Points",
                "Rank",
                "Target",
            ],
        };
        // Left-aligned: the county and the target text; the rest are figures.
        let left = |col: usize| col == 0 || col == header.len() - 1;
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_string()).collect()];
        for c in &self.counties {
            rows.push(cells(c, &printable(&c.county), c.rank.to_string(), lang));
        }
        rows.push(cells(
            &self.totals,
            lang.t("Total", "合计"),
            String::new(),
            lang,
        ));
        let widths: Vec<usize> = (0..header.len())
            .map(|col| {
                rows.iter()
                    .map(|r| r.get(col).map_or(0, |s| super::display_width(s)))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(col, s)| pad(s, widths[col], left(col)))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
            if n == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        if self.counties.is_empty() {
            out.push_str(lang.t("No reports in this period\n", "本期无数据\n"));
        }
        out
    }

    /// One CSV line per county (ranked) after a header line; figures only,
    /// with one `adopted_<outlet>` column per outlet and the year-to-date
    /// target figures (empty when the county has no target).
    pub fn to_csv(&self) -> String {
        let mut header: Vec<String> = [
            "county",
            "rank",
            "reports",
            "emergency",
            "bad_news",
            "routine",
            "follow_ups",
            "on_time",
            "late",
            "adopted",
            "adopted_items",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        header.extend(
            self.outlets
                .iter()
                .map(|o| csv(&format!("adopted_{}", o.key))),
        );
        header.extend(
            [
                "adopted_above",
                "instructions",
                "answers_on_time",
                "answers_late",
                "answers_missing",
                "answers_open",
                "points",
                "target_points",
                "target_adopted",
                "ytd_points",
                "ytd_adopted",
                "pro_rata_points",
                "pro_rata_adopted",
                "target_status",
            ]
            .iter()
            .map(|s| (*s).to_string()),
        );
        let mut out = header.join(",");
        out.push('\n');
        for c in &self.counties {
            let mut f: Vec<String> = vec![
                csv(&c.county),
                c.rank.to_string(),
                c.reports.total.to_string(),
                c.reports.emergency.to_string(),
                c.reports.bad_news.to_string(),
                c.reports.routine.to_string(),
                c.follow_ups.to_string(),
                c.on_time.to_string(),
                c.late.to_string(),
                c.adopted.to_string(),
                c.adopted_items.to_string(),
            ];
            f.extend(self.outlets.iter().map(|o| {
                c.adopted_by_outlet
                    .get(&o.key)
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            }));
            f.extend([
                c.adopted_above.to_string(),
                c.instructions.to_string(),
                c.answers.on_time.to_string(),
                c.answers.late.to_string(),
                c.answers.missing.to_string(),
                c.answers.open.to_string(),
                c.points.to_string(),
            ]);
            let t = c.target.as_ref();
            let p = t.and_then(|t| t.points.as_ref());
            let a = t.and_then(|t| t.adopted.as_ref());
            let opt = |v: Option<String>| v.unwrap_or_default();
            f.extend([
                opt(p.map(|p| p.target.to_string())),
                opt(a.map(|a| a.target.to_string())),
                opt(p.map(|p| p.actual.to_string())),
                opt(a.map(|a| a.actual.to_string())),
                opt(p.map(|p| format!("{:.1}", p.pro_rata))),
                opt(a.map(|a| format!("{:.1}", a.pro_rata))),
                opt(t.map(|t| t.status.name(Lang::En).replace(' ', "_"))),
            ]);
            let _ = writeln!(out, "{}", f.join(","));
        }
        out
    }
}

/// A row of the terminal table.
fn cells(c: &CountyStats, name: &str, rank: String, lang: Lang) -> Vec<String> {
    let r = &c.reports;
    vec![
        name.to_string(),
        format!("{} ({}/{}/{})", r.total, r.emergency, r.bad_news, r.routine),
        c.on_time.to_string(),
        c.late.to_string(),
        c.adopted.to_string(),
        c.adopted_above.to_string(),
        c.instructions.to_string(),
        format!(
            "{}/{}/{}",
            c.answers.on_time, c.answers.late, c.answers.missing
        ),
        c.points.to_string(),
        rank,
        c.target
            .as_ref()
            .map_or_else(|| "-".to_string(), |t| target_text(t, lang)),
    ]
}

/// `得分45/120(38%) 采用12/40(30%) 滞后` / `points 45/120 (38%), adopted
/// 12/40 (30%): behind`.
pub(crate) fn target_text(t: &TargetProgress, lang: Lang) -> String {
    let mut parts = Vec::new();
    for (p, zh, en) in [
        (&t.points, "得分", "points"),
        (&t.adopted, "采用", "adopted"),
    ] {
        if let Some(p) = p {
            parts.push(match lang {
                Lang::Zh => format!("{zh}{}/{}({})", p.actual, p.target, percent(p.percent)),
                Lang::En => format!("{en} {}/{} ({})", p.actual, p.target, percent(p.percent)),
            });
        }
    }
    match lang {
        Lang::Zh => format!("{} {}", parts.join(" "), t.status.name(lang)),
        Lang::En => format!("{}: {}", parts.join(", "), t.status.name(lang)),
    }
}
