//! [`compute`]: from the facts to the period's [`Stats`] in one pass over
//! items, decisions and solicitations, keyed by hash maps.
//!
//! Every event is counted in two windows at once: the period itself, and
//! the year to date up to the period's end (or now), which target progress
//! needs. Nothing is counted twice: items are taken once per id, decisions
//! once per (item, node, seq), an adoption once per (item, outlet) for this
//! office and once per (item, node) above, an instruction once per
//! (item, node) — each at its earliest time, so a repeated decision next
//! month does not score again.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use super::rules::{OTHER_OUTLET, RuleBook};
use super::stats::{
    AdoptedReport, CountyStats, InstructionNote, LateReport, MissingAnswer, OutletName, Progress,
    Stats, Status, TargetProgress,
};
use super::{DecisionFact, Facts, ItemFact, OfficeRules, Period, Target};
use crate::proto::{DispositionKind, LinkKind};

/// The period (index 0) and the year to date (index 1).
const PERIOD: usize = 0;
const YEAR_TO_DATE: usize = 1;

/// Below this share of the pro-rata target a county is behind; at or above
/// `AHEAD` it is ahead. A tenth either way is what an office calls on plan.
const BEHIND: f64 = 0.9;
const AHEAD: f64 = 1.1;

/// Computes the period's statistics and scores.
///
/// `targets` are the yearly targets from the configuration and from
/// commands, merged by the caller: for the same (county, year) the later
/// entry wins. `utc_offset_ms` is the office's zone; `now_ms` decides which
/// solicitations are still open and where year-to-date figures stop.
///
/// Decisions that name an item absent from `facts` are counted in
/// [`Stats::unattributed`] only. A later "not adopted" does not undo an
/// adoption: the office scores what it published.
pub fn compute(
    facts: &Facts,
    rules: &OfficeRules,
    targets: &[Target],
    period: Period,
    utc_offset_ms: i64,
    now_ms: i64,
) -> Stats {
    let (start_ms, end_ms) = period.bounds(utc_offset_ms);
    let (year_start, year_end) = period.year_bounds(utc_offset_ms);
    let as_of_ms = end_ms.min(now_ms);
    let windows = [
        Window {
            start: start_ms,
            end: end_ms,
        },
        Window {
            start: year_start,
            end: as_of_ms.max(year_start),
        },
    ];
    let book = RuleBook::new(rules, utc_offset_ms);

    let mut year_targets: HashMap<&str, &Target> = HashMap::new();
    for t in targets.iter().filter(|t| t.year == period.year()) {
        year_targets.insert(t.county.as_str(), t);
    }

    let mut tally = Tally::new(windows);
    // Configured and targeted counties get a row even with nothing to show.
    for c in &facts.counties {
        tally.known(c);
    }
    for c in year_targets.keys() {
        tally.known(c);
    }

    let items = tally.items(facts, &book);
    tally.decisions(facts, rules, &book, &items);
    tally.solicitations(facts, &book, &items, now_ms, as_of_ms);

    let mut stats = Stats {
        period,
        start_ms,
        end_ms,
        utc_offset_ms,
        now_ms,
        as_of_ms,
        hub: facts.hub.clone(),
        outlets: outlet_names(rules),
        counties: Vec::new(),
        totals: CountyStats::default(),
        adopted: std::mem::take(&mut tally.adopted),
        instructions: std::mem::take(&mut tally.instructions),
        late_reports: std::mem::take(&mut tally.late_reports),
        missing_answers: std::mem::take(&mut tally.missing_answers),
        unattributed: tally.unattributed,
    };
    stats.adopted.sort_by(|a, b| {
        (a.at_ms, &a.county, &a.item_id, &a.by).cmp(&(b.at_ms, &b.county, &b.item_id, &b.by))
    });
    stats.instructions.sort_by(|a, b| {
        (a.at_ms, &a.county, &a.item_id, &a.by).cmp(&(b.at_ms, &b.county, &b.item_id, &b.by))
    });
    stats.late_reports.sort_by(|a, b| {
        (a.deadline_ms, &a.county, &a.item_id).cmp(&(b.deadline_ms, &b.county, &b.item_id))
    });
    stats.missing_answers.sort_by(|a, b| {
        (a.deadline_ms, &a.solicitation, &a.county).cmp(&(
            b.deadline_ms,
            &b.solicitation,
            &b.county,
        ))
    });

    let year_fraction = fraction(as_of_ms, year_start, year_end);
    for (i, name) in tally.names.iter().enumerate() {
        if !tally.seen[i][PERIOD] {
            continue;
        }
        let [mut row, ytd] = std::mem::take(&mut tally.rows[i]);
        row.county = (*name).to_string();
        row.points = row.points_detail.total();
        row.target = year_targets.get(name).map(|t| TargetProgress {
            year: t.year,
            as_of_ms,
            year_fraction,
            points: t
                .points
                .map(|goal| progress(goal, ytd.points_detail.total(), year_fraction)),
            adopted: t.adopted.map(|goal| {
                let goal = i64::try_from(goal).unwrap_or(i64::MAX);
                let actual = i64::try_from(ytd.adopted + ytd.adopted_above).unwrap_or(i64::MAX);
                progress(goal, actual, year_fraction)
            }),
            status: Status::Ahead,
        });
        if let Some(t) = &mut row.target {
            t.status = [&t.points, &t.adopted]
                .into_iter()
                .flatten()
                .map(|p| p.status)
                .min()
                .unwrap_or(Status::OnPlan);
        }
        add_into(&mut stats.totals, &row);
        stats.counties.push(row);
    }
    stats.totals.points = stats.totals.points_detail.total();
    rank(&mut stats.counties);
    stats
}

/// A half-open time window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    end: i64,
}

impl Window {
    fn contains(self, at_ms: i64) -> bool {
        self.start <= at_ms && at_ms < self.end
    }
}

/// The running figures of both windows, by county.
#[derive(Debug)]
struct Tally<'a> {
    windows: [Window; 2],
    /// County name → index into `names`, `seen`, `rows`.
    index: HashMap<&'a str, usize>,
    names: Vec<&'a str>,
    /// Whether the county is known in each window (configured, targeted,
    /// or active there).
    seen: Vec<[bool; 2]>,
    rows: Vec<[CountyStats; 2]>,
    adopted: Vec<AdoptedReport>,
    instructions: Vec<InstructionNote>,
    late_reports: Vec<LateReport>,
    missing_answers: Vec<MissingAnswer>,
    unattributed: u64,
}

impl<'a> Tally<'a> {
    fn new(windows: [Window; 2]) -> Self {
        Self {
            windows,
            index: HashMap::new(),
            names: Vec::new(),
            seen: Vec::new(),
            rows: Vec::new(),
            adopted: Vec::new(),
            instructions: Vec::new(),
            late_reports: Vec::new(),
            missing_answers: Vec::new(),
            unattributed: 0,
        }
    }

    /// The county's index, adding it unseen if new.
    fn county(&mut self, name: &'a str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len();
        self.index.insert(name, i);
        self.names.push(name);
        self.seen.push([false; 2]);
        self.rows.push(Default::default());
        i
    }

    /// A county known in every window (configured or targeted).
    fn known(&mut self, name: &'a str) {
        let i = self.county(name);
        self.seen[i] = [true; 2];
    }

    /// Calls `f` with the county's row for each window containing `at_ms`,
    /// marking the county seen there.
    fn at(&mut self, county: usize, at_ms: i64, mut f: impl FnMut(usize, &mut CountyStats)) {
        for w in [PERIOD, YEAR_TO_DATE] {
            if self.windows[w].contains(at_ms) {
                self.seen[county][w] = true;
                f(w, &mut self.rows[county][w]);
            }
        }
    }

    /// Counts reports and follow-ups; returns the items by id (the first of
    /// a repeated id) with their counties, for the decisions and answers.
    fn items(&mut self, facts: &'a Facts, book: &RuleBook<'_>) -> Items<'a> {
        let mut by_id: HashMap<&'a str, usize> = HashMap::with_capacity(facts.items.len());
        let mut county_of: Vec<usize> = vec![0; facts.items.len()];
        let mut first_answer: HashMap<(&'a str, &'a str), i64> = HashMap::new();
        for (n, item) in facts.items.iter().enumerate() {
            match by_id.entry(item.id.as_str()) {
                // A repeated id: the first one counts.
                Entry::Occupied(_) => continue,
                Entry::Vacant(slot) => {
                    slot.insert(n);
                }
            }
            if !item.answers.is_empty() {
                first_answer
                    .entry((item.answers.as_str(), item.origin.as_str()))
                    .and_modify(|at| *at = (*at).min(item.arrived_ms))
                    .or_insert(item.arrived_ms);
            }
            let c = self.county(&item.origin);
            county_of[n] = c;
            let original = item.link == LinkKind::None as i32;
            let late = item.deadline_ms > 0 && item.arrived_ms > item.deadline_ms;
            let penalty = if original && late {
                book.at(item.deadline_ms).map_or(0, |r| r.late_report)
            } else {
                0
            };
            let mut listed = false;
            self.at(c, item.created_ms, |w, row| {
                if !original {
                    row.follow_ups += 1;
                    return;
                }
                row.reports.add(item.class);
                if late {
                    row.late += 1;
                    row.points_detail.late_reports += penalty;
                    listed |= w == PERIOD;
                } else {
                    row.on_time += 1;
                }
            });
            if listed {
                self.late_reports.push(LateReport {
                    county: item.origin.clone(),
                    item_id: item.id.clone(),
                    title: item.title.clone(),
                    class: item.class,
                    deadline_ms: item.deadline_ms,
                    arrived_ms: item.arrived_ms,
                    late_ms: item.arrived_ms - item.deadline_ms,
                });
            }
        }
        Items {
            all: &facts.items,
            by_id,
            county_of,
            first_answer,
        }
    }

    /// Counts adoptions and instructions.
    ///
    /// Each decision's item is looked up once; the groupings are then keyed
    /// by item index, which keeps a year of decisions cheap.
    fn decisions(
        &mut self,
        facts: &'a Facts,
        rules: &'a OfficeRules,
        book: &RuleBook<'_>,
        items: &Items<'a>,
    ) {
        let adopted = DispositionKind::Adopted as i32;
        let instruction = DispositionKind::Instruction as i32;
        let outlet_keys: Vec<&str> = rules.outlets.iter().map(|o| o.key.as_str()).collect();
        let n = facts.decisions.len();
        let mut seen: HashSet<(usize, &str, u32)> = HashSet::with_capacity(n);
        let mut unknown: HashSet<(&str, &str, u32)> = HashSet::new();
        // The earliest decision for each key; items by index, outlets by
        // index into `rules.outlets` (`None`: other).
        let mut by_outlet: HashMap<(usize, Option<usize>), &DecisionFact> =
            HashMap::with_capacity(n);
        let mut first_adoption: HashMap<usize, &DecisionFact> = HashMap::with_capacity(n);
        let mut above: HashMap<(usize, &str), &DecisionFact> = HashMap::new();
        let mut instructions: HashMap<(usize, &str), &DecisionFact> = HashMap::new();
        let earlier = |slot: &mut &'a DecisionFact, d: &'a DecisionFact| {
            if (d.at_ms, d.seq) < (slot.at_ms, slot.seq) {
                *slot = d;
            }
        };
        for d in &facts.decisions {
            if d.kind != adopted && d.kind != instruction {
                continue;
            }
            let Some(&item) = items.by_id.get(d.item_id.as_str()) else {
                // Not attributable to a county; counted once.
                if self.windows[PERIOD].contains(d.at_ms)
                    && unknown.insert((&d.item_id, &d.node, d.seq))
                {
                    self.unattributed += 1;
                }
                continue;
            };
            if !seen.insert((item, &d.node, d.seq)) {
                continue;
            }
            if d.kind == instruction {
                instructions
                    .entry((item, &d.node))
                    .and_modify(|s| earlier(s, d))
                    .or_insert(d);
            } else if d.node == facts.hub {
                let outlet = rules
                    .outlet_of(&d.text)
                    .and_then(|o| outlet_keys.iter().position(|k| *k == o.key));
                by_outlet
                    .entry((item, outlet))
                    .and_modify(|s| earlier(s, d))
                    .or_insert(d);
                first_adoption
                    .entry(item)
                    .and_modify(|s| earlier(s, d))
                    .or_insert(d);
            } else {
                above
                    .entry((item, &d.node))
                    .and_modify(|s| earlier(s, d))
                    .or_insert(d);
            }
        }

        for ((n, outlet), d) in by_outlet {
            let (c, item) = (items.county_of[n], &items.all[n]);
            let outlet = outlet
                .and_then(|i| outlet_keys.get(i).copied())
                .unwrap_or(OTHER_OUTLET);
            let rule = book.at(d.at_ms);
            let points = rule.map_or(0, |r| r.adopted_points(outlet));
            // The item's first adoption by this office also counts as an
            // adopted report: the class bonus, once.
            let first = first_adoption.get(&n).is_some_and(|f| std::ptr::eq(*f, d));
            let bonus = if first {
                rule.map_or(0, |r| r.class_points(item.class))
            } else {
                0
            };
            let mut listed = false;
            self.at(c, d.at_ms, |w, row| {
                row.adopted += 1;
                match row.adopted_by_outlet.get_mut(outlet) {
                    Some(count) => *count += 1,
                    None => {
                        row.adopted_by_outlet.insert(outlet.to_string(), 1);
                    }
                }
                row.points_detail.adopted += points;
                if first {
                    row.adopted_items += 1;
                    row.points_detail.by_class += bonus;
                }
                listed |= w == PERIOD;
            });
            if listed {
                self.adopted.push(adoption(item, d, Some(outlet)));
            }
        }
        for ((n, _), d) in above {
            let (c, item) = (items.county_of[n], &items.all[n]);
            let points = book.at(d.at_ms).map_or(0, |r| r.adopted_above);
            let mut listed = false;
            self.at(c, d.at_ms, |w, row| {
                row.adopted_above += 1;
                row.points_detail.adopted_above += points;
                listed |= w == PERIOD;
            });
            if listed {
                self.adopted.push(adoption(item, d, None));
            }
        }
        for ((n, _), d) in instructions {
            let (c, item) = (items.county_of[n], &items.all[n]);
            let points = book.at(d.at_ms).map_or(0, |r| r.instruction);
            let mut listed = false;
            self.at(c, d.at_ms, |w, row| {
                row.instructions += 1;
                row.points_detail.instructions += points;
                listed |= w == PERIOD;
            });
            if listed {
                self.instructions.push(InstructionNote {
                    county: item.origin.clone(),
                    item_id: item.id.clone(),
                    title: item.title.clone(),
                    by: d.node.clone(),
                    text: d.text.clone(),
                    at_ms: d.at_ms,
                });
            }
        }
    }

    /// Scores the answers to solicitations due in each window.
    fn solicitations(
        &mut self,
        facts: &'a Facts,
        book: &RuleBook<'_>,
        items: &Items<'a>,
        now_ms: i64,
        as_of_ms: i64,
    ) {
        let mut ids: HashSet<&str> = HashSet::new();
        let due: Vec<_> = facts
            .solicitations
            .iter()
            .filter(|s| !s.withdrawn && ids.insert(s.id.as_str()))
            .filter(|s| self.windows.iter().any(|w| w.contains(s.deadline_ms)))
            .collect();
        // Named counties first, so that "all counties" includes them
        // whatever the order of the solicitations.
        for s in &due {
            for c in &s.counties {
                let i = self.county(c);
                self.at(i, s.deadline_ms, |_, _| {});
            }
        }
        for s in due {
            let rule = book.at(s.deadline_ms);
            for w in [PERIOD, YEAR_TO_DATE] {
                if !self.windows[w].contains(s.deadline_ms) {
                    continue;
                }
                let asked: Vec<usize> = if s.counties.is_empty() {
                    (0..self.names.len()).filter(|&i| self.seen[i][w]).collect()
                } else {
                    s.counties
                        .iter()
                        .filter_map(|c| self.index.get(c.as_str()).copied())
                        .collect()
                };
                for c in asked {
                    let first = items
                        .first_answer
                        .get(&(s.id.as_str(), self.names[c]))
                        .copied();
                    let row = &mut self.rows[c][w];
                    let (answers, points) = (&mut row.answers, &mut row.points_detail);
                    match first {
                        Some(at) if at <= s.deadline_ms => answers.on_time += 1,
                        _ if now_ms <= s.deadline_ms => answers.open += 1,
                        Some(at) if at < as_of_ms => {
                            answers.late += 1;
                            points.late_answers += rule.map_or(0, |r| r.late_answer);
                        }
                        _ => {
                            answers.missing += 1;
                            points.missing_answers += rule.map_or(0, |r| r.missing_answer);
                            if w == PERIOD {
                                self.missing_answers.push(MissingAnswer {
                                    county: self.names[c].to_string(),
                                    solicitation: s.id.clone(),
                                    topic: s.topic.clone(),
                                    deadline_ms: s.deadline_ms,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Items by id and the first answer to each solicitation from each county.
#[derive(Debug)]
struct Items<'a> {
    all: &'a [ItemFact],
    /// Item id → index into `all` (the first of a repeated id).
    by_id: HashMap<&'a str, usize>,
    /// Index into `all` → county index (for the items in `by_id`).
    county_of: Vec<usize>,
    /// (solicitation id, origin) → earliest arrival of an answer.
    first_answer: HashMap<(&'a str, &'a str), i64>,
}

fn adoption(item: &ItemFact, d: &DecisionFact, outlet: Option<&str>) -> AdoptedReport {
    AdoptedReport {
        county: item.origin.clone(),
        item_id: item.id.clone(),
        title: item.title.clone(),
        class: item.class,
        by: d.node.clone(),
        above: outlet.is_none(),
        outlet: outlet.map(str::to_string),
        text: d.text.clone(),
        at_ms: d.at_ms,
    }
}

/// The configured outlets, then "other" unless configured.
fn outlet_names(rules: &OfficeRules) -> Vec<OutletName> {
    let mut names: Vec<OutletName> = rules
        .outlets
        .iter()
        .map(|o| OutletName {
            key: o.key.clone(),
            zh: o.zh.clone(),
            en: o.en.clone(),
        })
        .collect();
    if !names.iter().any(|o| o.key == OTHER_OUTLET) {
        names.push(OutletName {
            key: OTHER_OUTLET.into(),
            zh: "其他".into(),
            en: "Other".into(),
        });
    }
    names
}

/// How much of `[start, end)` lies before `at`, 0 to 1.
fn fraction(at: i64, start: i64, end: i64) -> f64 {
    if end <= start {
        return 0.0;
    }
    ((at - start) as f64 / (end - start) as f64).clamp(0.0, 1.0)
}

fn progress(target: i64, actual: i64, year_fraction: f64) -> Progress {
    let pro_rata = target as f64 * year_fraction;
    let status = if actual >= target {
        Status::Ahead
    } else if pro_rata <= 0.0 {
        if actual > 0 {
            Status::Ahead
        } else {
            Status::OnPlan
        }
    } else {
        let share = actual as f64 / pro_rata;
        if share >= AHEAD {
            Status::Ahead
        } else if share >= BEHIND {
            Status::OnPlan
        } else {
            Status::Behind
        }
    };
    Progress {
        target,
        actual,
        pro_rata,
        percent: if target > 0 {
            actual as f64 * 100.0 / target as f64
        } else {
            0.0
        },
        status,
    }
}

/// Adds a county's figures to the totals.
fn add_into(total: &mut CountyStats, row: &CountyStats) {
    let r = &row.reports;
    total.reports.emergency += r.emergency;
    total.reports.bad_news += r.bad_news;
    total.reports.routine += r.routine;
    total.reports.total += r.total;
    total.follow_ups += row.follow_ups;
    total.on_time += row.on_time;
    total.late += row.late;
    total.adopted += row.adopted;
    total.adopted_items += row.adopted_items;
    for (k, v) in &row.adopted_by_outlet {
        *total.adopted_by_outlet.entry(k.clone()).or_default() += v;
    }
    total.adopted_above += row.adopted_above;
    total.instructions += row.instructions;
    total.answers.on_time += row.answers.on_time;
    total.answers.late += row.answers.late;
    total.answers.missing += row.answers.missing;
    total.answers.open += row.answers.open;
    let (t, p) = (&mut total.points_detail, &row.points_detail);
    t.adopted += p.adopted;
    t.by_class += p.by_class;
    t.adopted_above += p.adopted_above;
    t.instructions += p.instructions;
    t.late_reports += p.late_reports;
    t.late_answers += p.late_answers;
    t.missing_answers += p.missing_answers;
}

/// Orders by points (then adoptions, then name) and gives equal points the
/// same rank: 1, 1, 3.
fn rank(rows: &mut [CountyStats]) {
    rows.sort_by(|a, b| {
        b.points
            .cmp(&a.points)
            .then(b.adopted.cmp(&a.adopted))
            .then(b.adopted_above.cmp(&a.adopted_above))
            .then(a.county.cmp(&b.county))
    });
    let mut previous: Option<(i64, u32)> = None;
    for (i, row) in rows.iter_mut().enumerate() {
        let place = u32::try_from(i + 1).unwrap_or(u32::MAX);
        row.rank = match previous {
            Some((points, rank)) if points == row.points => rank,
            _ => place,
        };
        previous = Some((row.points, row.rank));
    }
}
