//! The figures [`compute`](super::compute) returns: one row per county,
//! the totals, and the named lists a bulletin cites. Serialisable with
//! stable snake_case field names (the JSON output is part of the CLI's
//! contract).

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::{Lang, Period};
use crate::class::Class;

/// Scores and statistics for one period.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// The period, as `2026-11`, `2026Q4` or `2026`.
    pub period: Period,
    /// Its start, Unix ms (inclusive).
    pub start_ms: i64,
    /// Its end, Unix ms (exclusive).
    pub end_ms: i64,
    /// The office's offset from UTC, ms.
    pub utc_offset_ms: i64,
    /// When the figures were computed, Unix ms.
    pub now_ms: i64,
    /// Answers and year-to-date figures are counted up to here: the
    /// period's end, or now if earlier.
    pub as_of_ms: i64,
    /// The hub whose office scored.
    pub hub: String,
    /// The outlets, in configuration order, then [`OTHER_OUTLET`](super::OTHER_OUTLET).
    pub outlets: Vec<OutletName>,
    /// One row per county, ranked.
    pub counties: Vec<CountyStats>,
    /// The sums over all counties (rank 0, no target).
    pub totals: CountyStats,
    /// Reports adopted in the period, by this office and above, in time order.
    pub adopted: Vec<AdoptedReport>,
    /// Leaders' instructions in the period, in time order.
    pub instructions: Vec<InstructionNote>,
    /// Reports delivered after their deadline, in time order.
    pub late_reports: Vec<LateReport>,
    /// Solicitations a county did not answer, by deadline.
    pub missing_answers: Vec<MissingAnswer>,
    /// Scoring decisions (adopted, instruction; each (item, node, seq)
    /// once) in the period about items the facts do not contain: not
    /// attributable to a county.
    pub unattributed: u64,
}

/// An outlet's key and names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutletName {
    /// The key.
    pub key: String,
    /// 中文名.
    pub zh: String,
    /// English name.
    pub en: String,
}

impl OutletName {
    /// The name in `lang`.
    pub fn name(&self, lang: Lang) -> &str {
        lang.t(&self.en, &self.zh)
    }
}

/// One county's figures for the period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CountyStats {
    /// The county's node id.
    pub county: String,
    /// 1 for the most points; equal points share a rank.
    pub rank: u32,
    /// New reports (not follow-ups) stored in the period, by class.
    pub reports: ClassCounts,
    /// Supplements, corrections and withdrawals stored in the period.
    pub follow_ups: u64,
    /// Of the reports, delivered by their deadline.
    pub on_time: u64,
    /// Of the reports, delivered after their deadline.
    pub late: u64,
    /// Adoptions by this office in the period: one per report and outlet.
    pub adopted: u64,
    /// Reports adopted by this office for the first time in the period.
    pub adopted_items: u64,
    /// Adoptions by this office, by outlet key.
    pub adopted_by_outlet: BTreeMap<String, u64>,
    /// Adoptions by the level above: one per report and office.
    pub adopted_above: u64,
    /// Leaders' instructions: one per report and office.
    pub instructions: u64,
    /// Solicitations due in the period that asked this county.
    pub answers: AnswerCounts,
    /// Points under the rules in force at each event.
    pub points: i64,
    /// Where the points came from.
    pub points_detail: PointsDetail,
    /// Progress against the year's target, if the county has one.
    pub target: Option<TargetProgress>,
}

/// Reports by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    /// 重大紧急.
    pub emergency: u64,
    /// 报忧.
    pub bad_news: u64,
    /// 动态.
    pub routine: u64,
    /// All three.
    pub total: u64,
}

impl ClassCounts {
    /// Counts one report of `class`.
    pub(crate) fn add(&mut self, class: Class) {
        match class {
            Class::Emergency => self.emergency += 1,
            Class::BadNews => self.bad_news += 1,
            Class::Routine => self.routine += 1,
        }
        self.total += 1;
    }
}

/// What became of the solicitations a county was asked to answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AnswerCounts {
    /// Answered by the deadline.
    pub on_time: u64,
    /// Answered after the deadline (by the end of the period, or now).
    pub late: u64,
    /// Not answered by the end of the period (or now).
    pub missing: u64,
    /// Deadline not yet passed and no answer yet.
    pub open: u64,
}

/// Points by source; they sum to [`CountyStats::points`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PointsDetail {
    /// For adoptions by this office, by outlet.
    pub adopted: i64,
    /// Extra for the classes of reports adopted by this office.
    pub by_class: i64,
    /// For adoptions by the level above.
    pub adopted_above: i64,
    /// For leaders' instructions.
    pub instructions: i64,
    /// For late reports (zero or less).
    pub late_reports: i64,
    /// For late answers (zero or less).
    pub late_answers: i64,
    /// For missing answers (zero or less).
    pub missing_answers: i64,
}

impl PointsDetail {
    /// The sum.
    pub fn total(&self) -> i64 {
        self.adopted
            + self.by_class
            + self.adopted_above
            + self.instructions
            + self.late_reports
            + self.late_answers
            + self.missing_answers
    }
}

/// Year-to-date progress against a county's target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetProgress {
    /// The target's year.
    pub year: i32,
    /// Figures are counted up to here: the period's end, or now if earlier.
    pub as_of_ms: i64,
    /// Fraction of the year elapsed at `as_of_ms`, 0 to 1.
    pub year_fraction: f64,
    /// Points, if targeted.
    pub points: Option<Progress>,
    /// Adopted reports (this office and above), if targeted.
    pub adopted: Option<Progress>,
    /// The worse of the two statuses.
    pub status: Status,
}

/// One targeted figure, year to date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// The year's target.
    pub target: i64,
    /// Reached so far.
    pub actual: i64,
    /// Where the county should be by now: target × fraction of the year.
    pub pro_rata: f64,
    /// `actual` as a percentage of `target`.
    pub percent: f64,
    /// Ahead of, on, or behind the pro-rata figure.
    pub status: Status,
}

/// Where a county stands against its pro-rata target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Below 90 % of the pro-rata figure.
    Behind,
    /// Within 90 % to 110 % of it.
    OnPlan,
    /// At 110 % of it or more, or the year's target already reached.
    Ahead,
}

impl Status {
    /// 超进度 / 符合进度 / 滞后, or ahead / on plan / behind.
    pub fn name(self, lang: Lang) -> &'static str {
        match self {
            Self::Ahead => lang.t("ahead", "超进度"),
            Self::OnPlan => lang.t("on plan", "符合进度"),
            Self::Behind => lang.t("behind", "滞后"),
        }
    }
}

/// A report adopted in the period.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptedReport {
    /// The county that wrote it.
    pub county: String,
    /// The item id.
    pub item_id: String,
    /// Its title.
    pub title: String,
    /// Its class.
    #[serde(serialize_with = "class_name")]
    pub class: Class,
    /// Who adopted it: this hub, or an office above.
    pub by: String,
    /// Adopted by the level above rather than by this office.
    pub above: bool,
    /// The outlet key (this office's adoptions only).
    pub outlet: Option<String>,
    /// The decision's text as written (outlet and issue).
    pub text: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// A leader's instruction in the period.
#[derive(Debug, Clone, Serialize)]
pub struct InstructionNote {
    /// The county that wrote the report.
    pub county: String,
    /// The item id.
    pub item_id: String,
    /// The report's title.
    pub title: String,
    /// The office that recorded it.
    pub by: String,
    /// The instruction.
    pub text: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// A report delivered after its deadline.
#[derive(Debug, Clone, Serialize)]
pub struct LateReport {
    /// The county.
    pub county: String,
    /// The item id.
    pub item_id: String,
    /// Its title.
    pub title: String,
    /// Its class.
    #[serde(serialize_with = "class_name")]
    pub class: Class,
    /// Its deadline, Unix ms.
    pub deadline_ms: i64,
    /// When it arrived, Unix ms.
    pub arrived_ms: i64,
    /// How late, ms.
    pub late_ms: i64,
}

/// A solicitation a county did not answer.
#[derive(Debug, Clone, Serialize)]
pub struct MissingAnswer {
    /// The county.
    pub county: String,
    /// The solicitation's id.
    pub solicitation: String,
    /// Its topic.
    pub topic: String,
    /// Its deadline, Unix ms.
    pub deadline_ms: i64,
}

fn class_name<S: Serializer>(class: &Class, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(class.name())
}
