//! The office's scoring rules (采用记分办法) as configured under `[office]`
//! in the hub's TOML: the outlets an adopted report can go into, the point
//! rule sets with the date each takes effect, and the yearly targets per
//! county (目标分解).
//!
//! ```toml
//! [[office.outlets]]
//! key = "daily"
//! zh = "每日要情"
//! en = "Daily Report"
//!
//! [[office.scoring]]
//! since = "2026-01-01"
//! adopted = { daily = 2 }
//! adopted_above = 5
//! instruction = 10
//! by_class = { emergency = 1 }
//! late_report = 0
//! late_answer = -1
//! missing_answer = -2
//!
//! [[office.targets]]
//! county = "county-a"
//! year = 2026
//! points = 120
//! adopted = 40
//! ```
//!
//! Rule sets are versioned rather than edited: each is in force from its
//! `since` (a local date) until the next one's, so changing the rules never
//! rewrites the scores of past months. [`OfficeRules::validate`] names the
//! dotted field at fault.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::period::{local_midnight, parse_date};
use crate::class::Class;

/// The outlet key under which an adopted report naming no configured
/// outlet is counted (0 points unless a rule set gives it some).
pub const OTHER_OUTLET: &str = "other";

/// The office's rules: the `[office]` section of the hub's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfficeRules {
    /// The publications an adopted report can go into.
    pub outlets: Vec<Outlet>,
    /// Point rule sets, in date order.
    pub scoring: Vec<ScoringRule>,
    /// Yearly targets per county from the configuration (targets set by
    /// command are stored and merged by the caller).
    pub targets: Vec<Target>,
}

/// A publication an adopted report can go into (每日要情, 专报…).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outlet {
    /// What the desk types: `--outlet daily`, or `daily: 第12期`.
    pub key: String,
    /// Its Chinese name.
    pub zh: String,
    /// Its English name.
    pub en: String,
}

/// One rule set: points per event, in force from `since`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringRule {
    /// The local date (`2026-01-01`) from which this rule set applies.
    pub since: String,
    /// Points per report adopted by this office, by outlet key ([`OTHER_OUTLET`]
    /// for a text naming no outlet).
    #[serde(default)]
    pub adopted: BTreeMap<String, i64>,
    /// Points per report adopted by the level above.
    #[serde(default)]
    pub adopted_above: i64,
    /// Points per leader's instruction (批示) on a report.
    #[serde(default)]
    pub instruction: i64,
    /// Extra points per report adopted by this office, by class name
    /// (`emergency`, `bad_news`, `routine`).
    #[serde(default)]
    pub by_class: BTreeMap<String, i64>,
    /// Points (zero or less) per report delivered after its deadline.
    #[serde(default)]
    pub late_report: i64,
    /// Points (zero or less) per solicitation answered after its deadline.
    #[serde(default)]
    pub late_answer: i64,
    /// Points (zero or less) per solicitation left unanswered.
    #[serde(default)]
    pub missing_answer: i64,
}

impl ScoringRule {
    /// Points for one report adopted into `outlet` (by key).
    pub fn adopted_points(&self, outlet: &str) -> i64 {
        self.adopted.get(outlet).copied().unwrap_or(0)
    }

    /// Extra points for one adopted report of `class`.
    pub fn class_points(&self, class: Class) -> i64 {
        self.by_class.get(class.name()).copied().unwrap_or(0)
    }
}

/// A county's yearly target (目标分解): points, adopted reports, or both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The county's node id.
    pub county: String,
    /// The calendar year.
    pub year: i32,
    /// Points to reach in the year.
    #[serde(default)]
    pub points: Option<i64>,
    /// Reports to have adopted in the year, by this office and above.
    #[serde(default)]
    pub adopted: Option<u64>,
}

/// A rule that cannot work, naming the dotted field:
/// `office.scoring[1].adopted.dayly: unknown outlet; known: daily, special`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct RulesError {
    /// The dotted field, e.g. `office.targets[2].points`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

fn err(field: String, problem: impl Into<String>) -> RulesError {
    RulesError {
        field,
        problem: problem.into(),
    }
}

// === impl OfficeRules ===

impl OfficeRules {
    /// Checks every rule; the first problem found is returned, naming its
    /// field.
    ///
    /// # Errors
    /// Outlet keys that are empty, contain spaces or colons, or repeat;
    /// empty outlet names; `since` dates that do not parse or are not in
    /// increasing order; points for an unknown outlet or class; penalties
    /// above zero; targets with neither `points` nor `adopted`, with a
    /// target of zero or less, or repeating a (county, year).
    pub fn validate(&self) -> Result<(), RulesError> {
        self.validate_outlets()?;
        self.validate_scoring()?;
        validate_targets(&self.targets, "office.targets")
    }

    fn validate_outlets(&self) -> Result<(), RulesError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, o) in self.outlets.iter().enumerate() {
            let field = |f: &str| format!("office.outlets[{i}].{f}");
            if o.key.is_empty() {
                return Err(err(field("key"), "empty"));
            }
            if o.key
                .chars()
                .any(|c| c.is_whitespace() || c == ':' || c == '：')
            {
                // The desk writes "key: issue"; a key with a space or colon
                // could never be told from its issue text.
                return Err(err(
                    field("key"),
                    format!("{:?} contains a space or colon", o.key),
                ));
            }
            if let Some(first) = seen.insert(o.key.as_str(), i) {
                return Err(err(
                    field("key"),
                    format!(
                        "duplicate outlet {:?} (also office.outlets[{first}].key)",
                        o.key
                    ),
                ));
            }
            // An empty name would be a prefix of every text.
            if o.zh.trim().is_empty() {
                return Err(err(field("zh"), "empty"));
            }
            if o.en.trim().is_empty() {
                return Err(err(field("en"), "empty"));
            }
        }
        Ok(())
    }

    fn validate_scoring(&self) -> Result<(), RulesError> {
        let known_outlets = || {
            let mut keys: Vec<&str> = self.outlets.iter().map(|o| o.key.as_str()).collect();
            if !keys.contains(&OTHER_OUTLET) {
                keys.push(OTHER_OUTLET);
            }
            keys.join(", ")
        };
        let mut previous: Option<(time::Date, usize)> = None;
        for (i, rule) in self.scoring.iter().enumerate() {
            let field = |f: &str| format!("office.scoring[{i}].{f}");
            let Some(since) = parse_date(rule.since.trim()) else {
                return Err(err(
                    field("since"),
                    format!("{:?} is not a date like 2026-01-01", rule.since),
                ));
            };
            if let Some((before, j)) = previous
                && since <= before
            {
                return Err(err(
                    field("since"),
                    format!(
                        "{since} is not after office.scoring[{j}].since ({before}); \
                         list rule sets once each, in date order"
                    ),
                ));
            }
            previous = Some((since, i));
            for key in rule.adopted.keys() {
                if key != OTHER_OUTLET && !self.outlets.iter().any(|o| &o.key == key) {
                    return Err(err(
                        field(&format!("adopted.{key}")),
                        format!("unknown outlet; known: {}", known_outlets()),
                    ));
                }
            }
            for key in rule.by_class.keys() {
                if !Class::ALL.iter().any(|c| c.name() == key) {
                    return Err(err(
                        field(&format!("by_class.{key}")),
                        "unknown class; known: emergency, bad_news, routine",
                    ));
                }
            }
            for (name, value) in [
                ("late_report", rule.late_report),
                ("late_answer", rule.late_answer),
                ("missing_answer", rule.missing_answer),
            ] {
                if value > 0 {
                    return Err(err(
                        field(name),
                        format!("{value} is a reward; a penalty is zero or negative"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The outlet an adopted decision's text names: the text equals its key,
    /// or starts with `key:`, `key：` or `key ` (an issue follows), or starts
    /// with its Chinese or English name. Keys and English names match
    /// regardless of ASCII case. When several outlets match, the longest
    /// match wins (`专报` vs `专报增刊`).
    pub fn outlet_of(&self, text: &str) -> Option<&Outlet> {
        let text = text.trim();
        let mut best: Option<(usize, &Outlet)> = None;
        for o in &self.outlets {
            let len = outlet_match(o, text);
            if len > 0 && best.is_none_or(|(b, _)| len > b) {
                best = Some((len, o));
            }
        }
        best.map(|(_, o)| o)
    }

    /// The rule set in force at `at_ms` in the office's zone: the last one
    /// whose `since` local midnight is not after it. `None` before the
    /// first one (or with none, or only unreadable dates).
    pub fn rule_at(&self, at_ms: i64, utc_offset_ms: i64) -> Option<&ScoringRule> {
        RuleBook::new(self, utc_offset_ms).at(at_ms)
    }
}

/// How many bytes of `text` name outlet `o` (0: it does not).
fn outlet_match(o: &Outlet, text: &str) -> usize {
    let key = o.key.as_str();
    if !key.is_empty()
        && let Some(head) = text.get(..key.len())
        && head.eq_ignore_ascii_case(key)
    {
        let rest = &text[key.len()..];
        if rest.is_empty()
            || rest.starts_with(':')
            || rest.starts_with('：')
            || rest.starts_with(char::is_whitespace)
        {
            return key.len();
        }
    }
    let zh = o.zh.trim();
    let en = o.en.trim();
    let mut len = 0;
    if !zh.is_empty() && text.starts_with(zh) {
        len = zh.len();
    }
    if !en.is_empty()
        && en.len() > len
        && text
            .get(..en.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(en))
    {
        len = en.len();
    }
    len
}

/// Checks targets (from the configuration or a command); `base` is the
/// field name of the list, e.g. `office.targets`.
///
/// # Errors
/// A target with no county, an impossible year, neither `points` nor
/// `adopted`, a target of zero or less, or a (county, year) given twice.
pub fn validate_targets(targets: &[Target], base: &str) -> Result<(), RulesError> {
    let mut seen: HashMap<(&str, i32), usize> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        let field = |f: &str| format!("{base}[{i}]{f}");
        if t.county.trim().is_empty() {
            return Err(err(field(".county"), "empty"));
        }
        if !(1970..=9999).contains(&t.year) {
            return Err(err(field(".year"), format!("{} is not a year", t.year)));
        }
        if t.points.is_none() && t.adopted.is_none() {
            return Err(err(
                field(""),
                "neither points nor adopted: give at least one",
            ));
        }
        if let Some(p) = t.points
            && p <= 0
        {
            return Err(err(
                field(".points"),
                format!("{p}: a target is above zero"),
            ));
        }
        if t.adopted == Some(0) {
            return Err(err(field(".adopted"), "0: a target is above zero"));
        }
        if let Some(first) = seen.insert((t.county.as_str(), t.year), i) {
            return Err(err(
                field(""),
                format!(
                    "{} {} already has a target ({base}[{first}])",
                    t.county, t.year
                ),
            ));
        }
    }
    Ok(())
}

/// The rule sets with their start instants, for lookups by time.
#[derive(Debug)]
pub(crate) struct RuleBook<'a> {
    /// (start ms, rule), in increasing start order.
    starts: Vec<(i64, &'a ScoringRule)>,
}

impl<'a> RuleBook<'a> {
    /// The readable rule sets of `rules` in the zone; unreadable dates are
    /// skipped (validation reports them), and the list is sorted so that an
    /// unvalidated configuration still behaves predictably.
    pub(crate) fn new(rules: &'a OfficeRules, utc_offset_ms: i64) -> Self {
        let mut starts: Vec<(i64, &ScoringRule)> = rules
            .scoring
            .iter()
            .filter_map(|r| {
                Some((
                    local_midnight(parse_date(r.since.trim())?, utc_offset_ms),
                    r,
                ))
            })
            .collect();
        starts.sort_by_key(|(at, _)| *at);
        Self { starts }
    }

    /// The rule set in force at `at_ms`.
    pub(crate) fn at(&self, at_ms: i64) -> Option<&'a ScoringRule> {
        let n = self.starts.partition_point(|(start, _)| *start <= at_ms);
        n.checked_sub(1)
            .and_then(|i| self.starts.get(i))
            .map(|(_, r)| *r)
    }
}
