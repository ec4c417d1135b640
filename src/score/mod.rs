//! The office's adoption scores (采用记分): per-county statistics for a
//! month, quarter or year, points under versioned rules, progress against
//! yearly targets (目标分解), and the documents made from them — the
//! monthly bulletin (月度通报) and quarterly summary (季度小结) as HTML, a
//! terminal table, CSV and JSON.
//!
//! Pure: no store, no network, no clock. The caller gathers [`Facts`] from
//! the store, passes the configured [`OfficeRules`], the targets, the
//! period, the office's UTC offset and the current time, and renders what
//! [`compute`] returns.
//!
//! ```text
//! Facts + OfficeRules + targets ──compute──▶ Stats ──▶ Stats::table / to_csv / serde_json
//!                                                  └─▶ bulletin_html
//! ```
//!
//! - `rules`: the `[office]` configuration — outlets, rule sets by date,
//!   targets — and its validation;
//! - `period`: months, quarters, years in the office's local calendar;
//! - `stats`: the figures [`compute`] returns (serialisable);
//! - `compute`: one pass over items, decisions and solicitations;
//! - `text`: display width, escaping, durations — shared by the renderers;
//! - `table`: the terminal table and CSV;
//! - `html`: the bulletin.

mod compute;
mod html;
mod period;
mod rules;
mod stats;
mod table;
mod text;

#[cfg(test)]
mod tests;

pub use compute::compute;
pub use html::bulletin_html;
pub use period::{Period, PeriodError};
pub use rules::{
    OTHER_OUTLET, OfficeRules, Outlet, RulesError, ScoringRule, Target, validate_targets,
};
pub use stats::{
    AdoptedReport, AnswerCounts, ClassCounts, CountyStats, InstructionNote, LateReport,
    MissingAnswer, OutletName, PointsDetail, Progress, Stats, Status, TargetProgress,
};
pub(crate) use text::html as escape_html;
pub use text::{display_width, pad};

use crate::class::Class;

/// The language of a rendered document: Chinese (the office's) by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lang {
    /// 中文.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// `en` or `zh`, as the language is.
    pub(crate) fn t<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Self::Zh => zh,
            Self::En => en,
        }
    }
}

/// Everything the hub knows that scores are made from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// This hub's node id: its own decisions score as "adopted"; decisions
    /// signed by any other node (an office above, come down the tree) score
    /// as "adopted by the level above".
    pub hub: String,
    /// The region's counties as configured (may be empty). Every item
    /// origin and every solicitation target also counts as a county.
    pub counties: Vec<String>,
    /// The items the hub holds.
    pub items: Vec<ItemFact>,
    /// Decisions on those items, by this hub and by offices above.
    pub decisions: Vec<DecisionFact>,
    /// The office's solicitations (约稿).
    pub solicitations: Vec<SolicitationFact>,
}

/// One item the hub holds.
#[derive(Debug, Clone)]
pub struct ItemFact {
    /// The item id.
    pub id: String,
    /// The county (node) that wrote it.
    pub origin: String,
    /// Its priority class.
    pub class: Class,
    /// Its title.
    pub title: String,
    /// When the hub stored it, Unix ms.
    pub created_ms: i64,
    /// When it arrived at the hub, Unix ms.
    pub arrived_ms: i64,
    /// Its class deadline, Unix ms (0: none).
    pub deadline_ms: i64,
    /// The proto `LinkKind` as i32 (0 none, 1 supplements, 2 corrects,
    /// 3 withdraws; an unknown value is a follow-up, not a new report).
    pub link: i32,
    /// The solicitation it answers; empty if none.
    pub answers: String,
}

/// One signed decision on an item.
#[derive(Debug, Clone)]
pub struct DecisionFact {
    /// The item decided on.
    pub item_id: String,
    /// The deciding node.
    pub node: String,
    /// Its number in that node's history of the item.
    pub seq: u32,
    /// The proto `DispositionKind` as i32.
    pub kind: i32,
    /// The outlet, reason, instruction…
    pub text: String,
    /// When it was decided, Unix ms.
    pub at_ms: i64,
}

/// One solicitation (约稿) the office published.
#[derive(Debug, Clone)]
pub struct SolicitationFact {
    /// Its id; answers name it.
    pub id: String,
    /// What it asks about.
    pub topic: String,
    /// When it was published, Unix ms.
    pub published_ms: i64,
    /// When answers are due, Unix ms.
    pub deadline_ms: i64,
    /// The class answers are sent in.
    pub class: Class,
    /// The counties asked; empty = all counties.
    pub counties: Vec<String>,
    /// Withdrawn by the office: not scored.
    pub withdrawn: bool,
}
