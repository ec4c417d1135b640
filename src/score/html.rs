//! The bulletin (月度通报, 季度小结): a standalone HTML5 document an office
//! circulates — inline CSS, print-friendly, no script, no external
//! resource, every piece of text escaped (titles come from the counties
//! and are hostile input).
//!
//! Machine-checkable: the score table is `<table id="scores">`, each county
//! row carries `data-county`, each cell `data-field`.

use std::fmt::Write as _;

use super::Lang;
use super::Period;
use super::period::{local_day, local_minute};
use super::stats::{AdoptedReport, CountyStats, Stats};
use super::table::target_text;
use super::text::{duration, html, percent, truncate};
use crate::class::Class;

/// The bulletin for `stats` in `lang`, signed by `issuer` (the office's
/// name), dated at [`Stats::now_ms`] in the office's zone.
pub fn bulletin_html(stats: &Stats, lang: Lang, issuer: &str) -> String {
    let title = heading(stats.period, lang);
    let mut b = Doc {
        out: String::with_capacity(16 * 1024),
        lang,
        stats,
        section: 0,
    };
    let _ = write!(
        b.out,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        lang.t("en", "zh-CN"),
        html(&title),
    );
    b.header(&title, issuer);
    b.summary();
    if !stats.counties.is_empty() {
        b.scores();
        b.chart();
    }
    b.adopted();
    b.instructions();
    b.late();
    b.missing();
    b.targets();
    b.out.push_str("</body>\n</html>\n");
    b.out
}

/// `2026年11月信息报送工作通报` / `Information reporting bulletin, November 2026`.
fn heading(period: Period, lang: Lang) -> String {
    let label = period.label(lang);
    match (period, lang) {
        (Period::Month { .. }, Lang::Zh) => format!("{label}信息报送工作通报"),
        (Period::Quarter { .. }, Lang::Zh) => format!("{label}信息报送工作小结"),
        (Period::Year { year }, Lang::Zh) => format!("{year}年度信息报送工作总结"),
        (Period::Month { .. }, Lang::En) => format!("Information reporting bulletin, {label}"),
        (Period::Quarter { .. }, Lang::En) => format!("Information reporting summary, {label}"),
        (Period::Year { .. }, Lang::En) => format!("Information reporting review, {label}"),
    }
}

/// Print-friendly A4 styling; CJK serif fonts first for Chinese.
const CSS: &str = "
body{font-family:\"Songti SC\",\"SimSun\",\"Noto Serif CJK SC\",serif;max-width:190mm;margin:1.5em auto;padding:0 1em;color:#000;line-height:1.6}
h1{text-align:center;font-size:1.6em;margin:.4em 0}
h2{font-size:1.15em;margin:1.4em 0 .5em}
.meta{text-align:center;color:#333}
.empty{font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #444;padding:.2em .4em;vertical-align:top}
th{background:#eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:bold}
tr{page-break-inside:avoid;break-inside:avoid}
svg{max-width:100%;height:auto}
.note{color:#555;font-size:.85em}
@media print{body{margin:0;max-width:none}@page{size:A4;margin:18mm}h2{page-break-after:avoid;break-after:avoid}th{background:none}}
";

/// The document being written.
struct Doc<'a> {
    out: String,
    lang: Lang,
    stats: &'a Stats,
    /// Sections written so far, for their numbers (一、二… / 1. 2.…).
    section: usize,
}

impl Doc<'_> {
    fn t<'s>(&self, en: &'s str, zh: &'s str) -> &'s str {
        self.lang.t(en, zh)
    }

    /// A numbered section heading.
    fn h2(&mut self, id: &str, en: &str, zh: &str) {
        const ZH: [&str; 10] = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];
        self.section += 1;
        let n = match self.lang {
            Lang::Zh => format!("{}、", ZH.get(self.section - 1).copied().unwrap_or("十")),
            Lang::En => format!("{}. ", self.section),
        };
        let _ = write!(
            self.out,
            "<section id=\"{id}\">\n<h2>{n}{}</h2>\n",
            html(self.t(en, zh))
        );
    }

    fn day(&self, ms: i64) -> String {
        local_day(ms, self.stats.utc_offset_ms, self.lang)
    }

    fn minute(&self, ms: i64) -> String {
        local_minute(ms, self.stats.utc_offset_ms)
    }

    fn class(&self, class: Class) -> &'static str {
        match self.lang {
            Lang::Zh => class.name_zh(),
            Lang::En => match class {
                Class::Emergency => "emergency",
                Class::BadNews => "bad news",
                Class::Routine => "routine",
            },
        }
    }

    fn header(&mut self, title: &str, issuer: &str) {
        let s = self.stats;
        let _ = write!(
            self.out,
            "<header>\n<h1>{}</h1>\n<p class=\"meta\">{}{}{}</p>\n",
            html(title),
            html(issuer),
            if issuer.is_empty() { "" } else { "　" },
            html(&self.day(s.now_ms)),
        );
        if s.as_of_ms < s.end_ms {
            let _ = writeln!(
                self.out,
                "<p class=\"meta note\">{}{}</p>",
                html(self.t("Figures up to ", "统计截至")),
                html(&self.minute(s.as_of_ms)),
            );
        }
        self.out.push_str("</header>\n");
    }

    fn summary(&mut self) {
        let s = self.stats;
        let t = &s.totals;
        let a = &t.answers;
        let empty = t.reports.total
            + t.follow_ups
            + t.adopted
            + t.adopted_above
            + t.instructions
            + a.on_time
            + a.late
            + a.missing
            + a.open
            == 0;
        self.out.push_str("<section id=\"summary\">\n");
        if empty {
            let _ = writeln!(
                self.out,
                "<p class=\"empty\">{}</p>",
                self.t("No reports in this period.", "本期无数据。")
            );
            self.out.push_str("</section>\n");
            return;
        }
        let r = &t.reports;
        let n = s.counties.len();
        let mut p = match self.lang {
            Lang::Zh => format!(
                "本期，{n}个县(单位)共报送信息{}条，其中重大紧急{}条、报忧{}条、动态{}条{}；\
                 按时报送{}条，迟报{}条。本级采用{}篇次，上级采用{}篇次，获领导批示{}次。",
                r.total,
                r.emergency,
                r.bad_news,
                r.routine,
                if t.follow_ups > 0 {
                    format!("，另有补充、更正、撤回{}条", t.follow_ups)
                } else {
                    String::new()
                },
                t.on_time,
                t.late,
                t.adopted,
                t.adopted_above,
                t.instructions
            ),
            Lang::En => format!(
                "In this period {n} counties sent {} reports ({} emergency, {} bad news, {} routine) \
                 and {} follow-ups; {} were on time and {} late. This office adopted reports {} times, \
                 the level above {} times, and leaders gave {} instructions.",
                r.total,
                r.emergency,
                r.bad_news,
                r.routine,
                t.follow_ups,
                t.on_time,
                t.late,
                t.adopted,
                t.adopted_above,
                t.instructions
            ),
        };
        if a.on_time + a.late + a.missing + a.open > 0 {
            let _ = match self.lang {
                Lang::Zh => write!(
                    p,
                    "约稿按时报送{}项次，迟交{}项次，未交{}项次，尚未到期{}项次。",
                    a.on_time, a.late, a.missing, a.open
                ),
                Lang::En => write!(
                    p,
                    " Solicitations: {} answered on time, {} late, {} missing, {} still open.",
                    a.on_time, a.late, a.missing, a.open
                ),
            };
        }
        let top: Vec<String> = s
            .counties
            .iter()
            // The leaders: the top three ranks, if they scored at all.
            .take_while(|c| c.rank <= 3 && c.points > 0)
            .map(|c| match self.lang {
                Lang::Zh => format!("{}（{}分）", c.county, c.points),
                Lang::En => format!("{} ({} points)", c.county, c.points),
            })
            .collect();
        if !top.is_empty() {
            let _ = match self.lang {
                Lang::Zh => write!(p, "得分居前的是：{}。", top.join("、")),
                Lang::En => write!(p, " Leading: {}.", top.join(", ")),
            };
        }
        if s.unattributed > 0 {
            let _ = match self.lang {
                Lang::Zh => write!(p, "另有{}条决定所涉信息不在本库，未计入。", s.unattributed),
                Lang::En => write!(
                    p,
                    " {} decisions concern reports not held here and are not counted.",
                    s.unattributed
                ),
            };
        }
        let _ = writeln!(self.out, "<p>{}</p>\n</section>", html(&p));
    }

    fn scores(&mut self) {
        let s = self.stats;
        self.h2("ranking", "Scores and ranking", "各县(单位)得分排名");
        let heads: [(&str, &str); 16] = [
            ("Rank", "排名"),
            ("County", "县(单位)"),
            ("Reports", "报送"),
            ("Emergency", "紧急"),
            ("Bad news", "报忧"),
            ("Routine", "动态"),
            ("On time", "按时"),
            ("Late", "迟报"),
            ("Adopted", "采用"),
            ("Above", "上级采用"),
            ("Instructions", "批示"),
            ("Answers on time", "约稿按时"),
            ("Answers late", "迟交"),
            ("Answers missing", "未交"),
            ("Points", "得分"),
            ("Target", "目标进度"),
        ];
        self.out.push_str("<table id=\"scores\">\n<thead><tr>");
        for (en, zh) in heads {
            let _ = write!(self.out, "<th>{}</th>", html(self.t(en, zh)));
        }
        self.out.push_str("</tr></thead>\n<tbody>\n");
        for c in &s.counties {
            let _ = write!(self.out, "<tr data-county=\"{}\">", html(&c.county));
            self.score_cells(c, &c.rank.to_string(), &c.county);
            self.out.push_str("</tr>\n");
        }
        self.out
            .push_str("</tbody>\n<tfoot>\n<tr data-total=\"total\">");
        let total = self.t("Total", "合计");
        self.score_cells(&s.totals, "", total);
        self.out.push_str("</tr>\n</tfoot>\n</table>\n");
        let note = self.t(
            "Points follow the scoring rules in force on the day of each event. \
             Answers: solicitations due in the period.",
            "得分按各事项发生之日施行的记分办法计算；约稿按本期到期的约稿统计。",
        );
        let _ = write!(
            self.out,
            "<p class=\"note\">{}</p>\n</section>\n",
            html(note)
        );
    }

    fn score_cells(&mut self, c: &CountyStats, rank: &str, name: &str) {
        let target = c
            .target
            .as_ref()
            .map_or_else(|| "-".to_string(), |t| target_text(t, self.lang));
        let cells: [(&str, String, bool); 16] = [
            ("rank", rank.to_string(), true),
            ("county", name.to_string(), false),
            ("reports", c.reports.total.to_string(), true),
            ("emergency", c.reports.emergency.to_string(), true),
            ("bad_news", c.reports.bad_news.to_string(), true),
            ("routine", c.reports.routine.to_string(), true),
            ("on_time", c.on_time.to_string(), true),
            ("late", c.late.to_string(), true),
            ("adopted", c.adopted.to_string(), true),
            ("adopted_above", c.adopted_above.to_string(), true),
            ("instructions", c.instructions.to_string(), true),
            ("answers_on_time", c.answers.on_time.to_string(), true),
            ("answers_late", c.answers.late.to_string(), true),
            ("answers_missing", c.answers.missing.to_string(), true),
            ("points", c.points.to_string(), true),
            ("target", target, false),
        ];
        for (field, value, number) in cells {
            let _ = write!(
                self.out,
                "<td data-field=\"{field}\"{}>{}</td>",
                if number { " class=\"n\"" } else { "" },
                html(&value)
            );
        }
    }

    /// A ranked horizontal bar chart of points; bars grow right from zero
    /// for points above it and left for points below.
    fn chart(&mut self) {
        const WIDTH: f64 = 720.0;
        const LABEL: f64 = 160.0;
        const VALUE: f64 = 56.0;
        const ROW: f64 = 24.0;
        const TOP: f64 = 8.0;
        let s = self.stats;
        self.h2("chart", "Points by county", "得分情况图");
        let lo = s
            .counties
            .iter()
            .map(|c| c.points)
            .min()
            .unwrap_or(0)
            .min(0);
        let hi = s
            .counties
            .iter()
            .map(|c| c.points)
            .max()
            .unwrap_or(0)
            .max(0);
        let span = (hi - lo).max(1) as f64;
        let area = WIDTH - LABEL - VALUE;
        let x0 = LABEL + (-lo) as f64 / span * area;
        let height = TOP * 2.0 + ROW * s.counties.len() as f64;
        let _ = writeln!(
            self.out,
            "<svg id=\"points-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
             height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\" \
             font-size=\"13\" font-family=\"sans-serif\">",
            html(self.t("Points by county", "各县(单位)得分"))
        );
        for (i, c) in s.counties.iter().enumerate() {
            let y = TOP + ROW * i as f64;
            let w =
                (c.points.abs() as f64 / span * area).max(if c.points == 0 { 0.0 } else { 1.0 });
            let (x, fill) = if c.points < 0 {
                (x0 - w, "#c53030")
            } else {
                (x0, "#2b6cb0")
            };
            // The figure sits past the bar's end, on the side away from the
            // labels; for a negative bar that is just right of zero.
            let (vx, anchor) = if c.points < 0 {
                (x0 + 4.0, "start")
            } else {
                (x0 + w + 4.0, "start")
            };
            let _ = writeln!(
                self.out,
                "<g data-bar=\"{county}\"><title>{county}: {p}</title>\
                 <text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
                 <rect x=\"{x:.1}\" y=\"{ry:.1}\" width=\"{w:.1}\" height=\"{bh:.1}\" fill=\"{fill}\"/>\
                 <text x=\"{vx:.1}\" y=\"{ty:.1}\" text-anchor=\"{anchor}\">{p}</text></g>",
                county = html(&c.county),
                p = c.points,
                lx = LABEL - 6.0,
                ty = y + ROW * 0.68,
                label = html(&truncate(&c.county, 22)),
                ry = y + 3.0,
                bh = ROW - 6.0,
            );
        }
        let _ = write!(
            self.out,
            "<line x1=\"{x0:.1}\" y1=\"{TOP}\" x2=\"{x0:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>\n</svg>\n</section>\n",
            height - TOP
        );
    }

    fn adopted(&mut self) {
        let s = self.stats;
        if s.adopted.is_empty() {
            return;
        }
        self.h2("adopted", "Reports adopted", "信息采用情况");
        self.out
            .push_str("<table id=\"adopted-list\">\n<thead><tr>");
        for (en, zh) in [
            ("Date", "日期"),
            ("County", "县(单位)"),
            ("Title", "标题"),
            ("Adopted in", "采用刊物"),
        ] {
            let _ = write!(self.out, "<th>{}</th>", html(self.t(en, zh)));
        }
        self.out.push_str("</tr></thead>\n<tbody>\n");
        for a in &s.adopted {
            let outlet = self.outlet_text(a);
            let _ = writeln!(
                self.out,
                "<tr data-item=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html(&a.item_id),
                html(&self.day(a.at_ms)),
                html(&a.county),
                html(&a.title),
                html(&outlet),
            );
        }
        self.out.push_str("</tbody>\n</table>\n</section>\n");
    }

    /// `每日要情（daily: 第12期）`, or `上级采用（province）：省委要情`.
    fn outlet_text(&self, a: &AdoptedReport) -> String {
        let Some(key) = &a.outlet else {
            let by = self.t("Adopted above", "上级采用");
            let text = a.text.trim();
            return match (self.lang, text.is_empty()) {
                (Lang::Zh, true) => format!("{by}（{}）", a.by),
                (Lang::Zh, false) => format!("{by}（{}）：{text}", a.by),
                (Lang::En, true) => format!("{by} ({})", a.by),
                (Lang::En, false) => format!("{by} ({}): {text}", a.by),
            };
        };
        let name = self
            .stats
            .outlets
            .iter()
            .find(|o| &o.key == key)
            .map_or(key.as_str(), |o| o.name(self.lang));
        let text = a.text.trim();
        if text.is_empty() || text == key || text == name {
            name.to_string()
        } else {
            match self.lang {
                Lang::Zh => format!("{name}（{text}）"),
                Lang::En => format!("{name} ({text})"),
            }
        }
    }

    fn instructions(&mut self) {
        let s = self.stats;
        if s.instructions.is_empty() {
            return;
        }
        self.h2("instructions", "Leaders' instructions", "领导批示情况");
        self.out.push_str("<ul id=\"instruction-list\">\n");
        for i in &s.instructions {
            let _ = writeln!(
                self.out,
                "<li>{}　{}《{}》：{}</li>",
                html(&self.day(i.at_ms)),
                html(&i.county),
                html(&i.title),
                html(&i.text),
            );
        }
        self.out.push_str("</ul>\n</section>\n");
    }

    fn late(&mut self) {
        let s = self.stats;
        if s.late_reports.is_empty() {
            return;
        }
        self.h2("late", "Reports delivered late", "迟报情况");
        self.out.push_str("<table id=\"late-list\">\n<thead><tr>");
        for (en, zh) in [
            ("County", "县(单位)"),
            ("Title", "标题"),
            ("Class", "类别"),
            ("Deadline", "报送时限"),
            ("Arrived", "送达时间"),
            ("Late by", "迟报时长"),
        ] {
            let _ = write!(self.out, "<th>{}</th>", html(self.t(en, zh)));
        }
        self.out.push_str("</tr></thead>\n<tbody>\n");
        for l in &s.late_reports {
            let _ = writeln!(
                self.out,
                "<tr data-item=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html(&l.item_id),
                html(&l.county),
                html(&l.title),
                html(self.class(l.class)),
                html(&self.minute(l.deadline_ms)),
                html(&self.minute(l.arrived_ms)),
                html(&duration(l.late_ms, self.lang)),
            );
        }
        self.out.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn missing(&mut self) {
        let s = self.stats;
        if s.missing_answers.is_empty() {
            return;
        }
        self.h2("missing", "Solicitations not answered", "约稿未报送情况");
        self.out
            .push_str("<table id=\"missing-list\">\n<thead><tr>");
        for (en, zh) in [
            ("County", "县(单位)"),
            ("Solicitation", "约稿编号"),
            ("Topic", "约稿主题"),
            ("Due", "截止时间"),
        ] {
            let _ = write!(self.out, "<th>{}</th>", html(self.t(en, zh)));
        }
        self.out.push_str("</tr></thead>\n<tbody>\n");
        for m in &s.missing_answers {
            let _ = writeln!(
                self.out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html(&m.county),
                html(&m.solicitation),
                html(&m.topic),
                html(&self.minute(m.deadline_ms)),
            );
        }
        self.out.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn targets(&mut self) {
        let s = self.stats;
        let targeted: Vec<&CountyStats> =
            s.counties.iter().filter(|c| c.target.is_some()).collect();
        let Some(year) = targeted
            .iter()
            .find_map(|c| c.target.as_ref().map(|t| t.year))
        else {
            return;
        };
        self.h2(
            "targets",
            "Progress against yearly targets",
            "年度目标完成进度",
        );
        let fraction = targeted
            .iter()
            .find_map(|c| c.target.as_ref().map(|t| t.year_fraction))
            .unwrap_or(0.0);
        let intro = match self.lang {
            Lang::Zh => format!(
                "{year}年目标，统计截至{}，时间进度{}。",
                self.day(s.as_of_ms),
                percent(fraction * 100.0)
            ),
            Lang::En => format!(
                "Targets for {year}, as of {}: {} of the year elapsed.",
                self.day(s.as_of_ms),
                percent(fraction * 100.0)
            ),
        };
        let _ = writeln!(self.out, "<p>{}</p>", html(&intro));
        self.out.push_str("<table id=\"target-list\">\n<thead><tr>");
        for (en, zh) in [
            ("County", "县(单位)"),
            ("Points target", "得分目标"),
            ("Points so far", "已得分"),
            ("Pro rata", "序时进度"),
            ("Adopted target", "采用目标"),
            ("Adopted so far", "已采用"),
            ("Pro rata", "序时进度"),
            ("Status", "状态"),
        ] {
            let _ = write!(self.out, "<th>{}</th>", html(self.t(en, zh)));
        }
        self.out.push_str("</tr></thead>\n<tbody>\n");
        for c in targeted {
            let Some(t) = &c.target else { continue };
            let mut row = format!(
                "<tr data-target=\"{}\"><td>{}</td>",
                html(&c.county),
                html(&c.county)
            );
            for p in [&t.points, &t.adopted] {
                match p {
                    Some(p) => {
                        let _ = write!(
                            row,
                            "<td class=\"n\">{}</td><td class=\"n\">{} ({})</td><td class=\"n\">{:.1}</td>",
                            p.target,
                            p.actual,
                            percent(p.percent),
                            p.pro_rata
                        );
                    }
                    None => row.push_str("<td>-</td><td>-</td><td>-</td>"),
                }
            }
            let _ = writeln!(row, "<td>{}</td></tr>", html(t.status.name(self.lang)));
            self.out.push_str(&row);
        }
        self.out.push_str("</tbody>\n</table>\n</section>\n");
    }
}
