//! Tests of the scores: rules and their validation, periods in +08:00,
//! counting (dedup, windows, solicitations, targets, ranks) and the
//! rendered table, CSV and bulletin.

use super::period::{local_midnight, parse_date};
use super::*;
use crate::class::Class;

/// The office's zone, +08:00.
const CST: i64 = 28_800_000;
const HOUR: i64 = 3_600_000;
const HUB: &str = "region-office";
const ABOVE: &str = "province-office";

/// `date` at `h:m` in +08:00, Unix ms.
fn at(date: &str, h: i64, m: i64) -> i64 {
    local_midnight(parse_date(date).expect("test date"), CST) + (h * 60 + m) * 60_000
}

fn rules() -> OfficeRules {
    let text = r#"
        [[outlets]]
        key = "daily"
        zh = "每日要情"
        en = "Daily Report"

        [[outlets]]
        key = "special"
        zh = "专报"
        en = "Special Report"

        [[scoring]]
        since = "2026-01-01"
        adopted = { daily = 2, special = 5 }
        adopted_above = 5
        instruction = 10
        by_class = { emergency = 1, bad_news = 1, routine = 0 }
        late_report = -1
        late_answer = -1
        missing_answer = -2
    "#;
    let rules: OfficeRules = toml::from_str(text).expect("rules parse");
    rules.validate().expect("rules valid");
    rules
}

/// A new report, on time unless `arrived` is after `deadline`.
fn report(id: &str, origin: &str, class: Class, created: i64) -> ItemFact {
    ItemFact {
        id: id.into(),
        origin: origin.into(),
        class,
        title: format!("title {id}"),
        created_ms: created,
        arrived_ms: created,
        deadline_ms: created + HOUR,
        link: 0,
        answers: String::new(),
    }
}

fn decision(item: &str, node: &str, seq: u32, kind: i32, text: &str, at_ms: i64) -> DecisionFact {
    DecisionFact {
        item_id: item.into(),
        node: node.into(),
        seq,
        kind,
        text: text.into(),
        at_ms,
    }
}

const ADOPTED: i32 = 1;
const INSTRUCTION: i32 = 5;

fn facts(counties: &[&str]) -> Facts {
    Facts {
        hub: HUB.into(),
        counties: counties.iter().map(|c| (*c).to_string()).collect(),
        ..Facts::default()
    }
}

fn nov() -> Period {
    "2026-11".parse().expect("period")
}

fn row<'a>(stats: &'a Stats, county: &str) -> &'a CountyStats {
    stats
        .counties
        .iter()
        .find(|c| c.county == county)
        .unwrap_or_else(|| panic!("no row for {county}"))
}

// === rules ===

#[test]
fn office_section_parses_as_documented() {
    #[derive(serde::Deserialize)]
    struct Hub {
        office: OfficeRules,
    }
    let text = r#"
        [[office.outlets]]
        key = "daily"
        zh = "每日要情"
        en = "Daily Report"

        [[office.scoring]]
        since = "2026-01-01"
        adopted = { daily = 2 }
        adopted_above = 5
        instruction = 10
        late_answer = -1
        missing_answer = -2

        [[office.targets]]
        county = "county-a"
        year = 2026
        points = 120
        adopted = 40

        [[office.targets]]
        county = "county-b"
        year = 2026
        adopted = 10
    "#;
    let hub: Hub = toml::from_str(text).expect("parses");
    hub.office.validate().expect("valid");
    assert_eq!(hub.office.targets[1].points, None);
    assert_eq!(hub.office.scoring[0].late_report, 0);
    assert!(OfficeRules::default().validate().is_ok());

    let typo = "[[scoring]]\nsince = \"2026-01-01\"\nadopted_abov = 5\n";
    let e = toml::from_str::<OfficeRules>(typo).unwrap_err().to_string();
    assert!(e.contains("adopted_abov"), "{e}");
}

#[test]
fn every_rules_error_names_its_field() {
    let base = rules();
    let check = |edit: &dyn Fn(&mut OfficeRules), field: &str, words: &str| {
        let mut r = base.clone();
        edit(&mut r);
        let e = r.validate().expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().contains(words), "{e}");
        assert!(e.to_string().starts_with(field), "{e}");
    };
    let second = |r: &mut OfficeRules| {
        let mut next = r.scoring[0].clone();
        next.since = "2026-12-01".into();
        r.scoring.push(next);
    };
    check(
        &|r| {
            second(r);
            r.scoring[1].adopted.insert("dayly".into(), 2);
        },
        "office.scoring[1].adopted.dayly",
        "unknown outlet; known: daily, special",
    );
    check(
        &|r| r.outlets[1].key = "daily".into(),
        "office.outlets[1].key",
        "duplicate outlet",
    );
    check(
        &|r| r.outlets[0].key = "daily report".into(),
        "office.outlets[0].key",
        "space or colon",
    );
    check(
        &|r| r.outlets[0].zh = " ".into(),
        "office.outlets[0].zh",
        "empty",
    );
    check(
        &|r| r.scoring[0].since = "2026-13-01".into(),
        "office.scoring[0].since",
        "not a date",
    );
    check(
        &|r| {
            second(r);
            r.scoring[1].since = "2025-12-01".into();
        },
        "office.scoring[1].since",
        "date order",
    );
    check(
        &|r| {
            second(r);
            r.scoring[1].since = "2026-01-01".into();
        },
        "office.scoring[1].since",
        "not after",
    );
    check(
        &|r| r.scoring[0].missing_answer = 2,
        "office.scoring[0].missing_answer",
        "penalty",
    );
    check(
        &|r| r.scoring[0].late_report = 1,
        "office.scoring[0].late_report",
        "penalty",
    );
    check(
        &|r| {
            r.scoring[0].by_class.insert("urgent".into(), 1);
        },
        "office.scoring[0].by_class.urgent",
        "unknown class",
    );
    let target = |county: &str, points, adopted| Target {
        county: county.into(),
        year: 2026,
        points,
        adopted,
    };
    check(
        &|r| r.targets.push(target("county-a", None, None)),
        "office.targets[0]",
        "neither points nor adopted",
    );
    check(
        &|r| {
            r.targets.push(target("county-a", Some(10), None));
            r.targets.push(target("county-a", None, Some(3)));
        },
        "office.targets[1]",
        "already has a target",
    );
    check(
        &|r| r.targets.push(target("county-a", Some(0), None)),
        "office.targets[0].points",
        "above zero",
    );
    // "other" needs no outlet entry.
    let mut r = base.clone();
    r.scoring[0].adopted.insert(OTHER_OUTLET.into(), 1);
    assert!(r.validate().is_ok());
}

#[test]
fn an_adopted_text_names_its_outlet() {
    let r = rules();
    let key = |t: &str| r.outlet_of(t).map(|o| o.key.as_str());
    assert_eq!(key("daily"), Some("daily"));
    assert_eq!(key("daily: 第12期"), Some("daily"));
    assert_eq!(key("daily：第12期"), Some("daily"));
    assert_eq!(key("daily 12"), Some("daily"));
    assert_eq!(key("  Daily 12"), Some("daily"));
    assert_eq!(key("每日要情第12期"), Some("daily"));
    assert_eq!(key("Daily Report no. 12"), Some("daily"));
    assert_eq!(key("专报（第3期）"), Some("special"));
    assert_eq!(key("dailyx"), None);
    assert_eq!(key("每日"), None);
    assert_eq!(key(""), None);
    assert_eq!(key("省委要情"), None);

    // The longest name wins.
    let mut r = rules();
    r.outlets.push(Outlet {
        key: "special-extra".into(),
        zh: "专报增刊".into(),
        en: "Special Report Extra".into(),
    });
    assert_eq!(
        r.outlet_of("专报增刊第1期").map(|o| o.key.as_str()),
        Some("special-extra")
    );
    assert_eq!(
        r.outlet_of("Special Report Extra 1")
            .map(|o| o.key.as_str()),
        Some("special-extra")
    );
}

#[test]
fn the_rule_in_force_is_the_last_one_begun() {
    let mut r = rules();
    let mut dec = r.scoring[0].clone();
    dec.since = "2026-12-01".into();
    dec.adopted.insert("daily".into(), 3);
    r.scoring.push(dec);
    r.validate().expect("valid");
    assert!(r.rule_at(at("2025-12-31", 23, 59), CST).is_none());
    let daily = |ms| r.rule_at(ms, CST).map(|x| x.adopted_points("daily"));
    assert_eq!(daily(at("2026-01-01", 0, 0)), Some(2));
    assert_eq!(daily(at("2026-11-30", 23, 59)), Some(2));
    assert_eq!(daily(at("2026-12-01", 0, 0)), Some(3));
}

// === periods ===

#[test]
fn periods_parse_and_refuse_nonsense() {
    assert_eq!(
        "2026-11".parse::<Period>(),
        Ok(Period::Month {
            year: 2026,
            month: 11
        })
    );
    assert_eq!(
        "2026Q4".parse::<Period>(),
        Ok(Period::Quarter { year: 2026, q: 4 })
    );
    assert_eq!(
        "2026-q4".parse::<Period>(),
        Ok(Period::Quarter { year: 2026, q: 4 })
    );
    assert_eq!("2026".parse::<Period>(), Ok(Period::Year { year: 2026 }));
    assert_eq!(
        " 2026-3 ".parse::<Period>(),
        Ok(Period::Month {
            year: 2026,
            month: 3
        })
    );
    for bad in [
        "",
        "2026-13",
        "2026-0",
        "2026Q5",
        "2026Q0",
        "202611",
        "26-11",
        "2026-11-01",
        "november",
        "２０２６",
        "2026-",
        "1969",
    ] {
        let e = bad.parse::<Period>().expect_err(bad).to_string();
        assert!(e.contains("2026Q4"), "{bad}: {e}");
    }
    for p in ["2026-11", "2026Q4", "2026"] {
        assert_eq!(
            p.parse::<Period>().map(|p| p.to_string()),
            Ok(p.to_string())
        );
    }
}

#[test]
fn periods_have_local_bounds_and_names() {
    let (start, end) = nov().bounds(CST);
    assert_eq!(start, at("2026-11-01", 0, 0));
    assert_eq!(end, at("2026-12-01", 0, 0));
    // 2026-11-01T00:00+08:00 is 2026-10-31T16:00Z.
    assert_eq!(start, 1_793_462_400_000);
    let in_nov = at("2026-11-30", 23, 30);
    let in_dec = at("2026-12-01", 0, 10);
    assert!(start <= in_nov && in_nov < end);
    assert!(in_dec >= end);
    assert_eq!(Period::month_of(in_nov, CST), nov());
    assert_eq!(Period::month_of(in_dec, CST).to_string(), "2026-12");

    let q4: Period = "2026Q4".parse().expect("q4");
    assert_eq!(
        q4.bounds(CST),
        (at("2026-10-01", 0, 0), at("2027-01-01", 0, 0))
    );
    let y: Period = "2026".parse().expect("year");
    assert_eq!(
        y.bounds(CST),
        (at("2026-01-01", 0, 0), at("2027-01-01", 0, 0))
    );
    assert_eq!(q4.year_bounds(CST), y.bounds(CST));
    let feb: Period = "2028-02".parse().expect("leap");
    let (s, e) = feb.bounds(0);
    assert_eq!((e - s) / 86_400_000, 29);

    assert_eq!(nov().label(Lang::Zh), "2026年11月");
    assert_eq!(nov().label(Lang::En), "November 2026");
    assert_eq!(q4.label(Lang::Zh), "2026年第四季度");
    assert_eq!(q4.label(Lang::En), "2026 Q4");
    assert_eq!(y.label(Lang::Zh), "2026年");
}

// === counting ===

#[test]
fn a_decision_counts_in_the_local_month_it_was_made() {
    let mut f = facts(&["county-a"]);
    f.items.push(report(
        "a1",
        "county-a",
        Class::Routine,
        at("2026-11-20", 9, 0),
    ));
    f.items.push(report(
        "a2",
        "county-a",
        Class::Routine,
        at("2026-11-20", 9, 0),
    ));
    f.decisions.push(decision(
        "a1",
        HUB,
        1,
        ADOPTED,
        "daily",
        at("2026-11-30", 23, 30),
    ));
    f.decisions.push(decision(
        "a2",
        HUB,
        1,
        ADOPTED,
        "daily",
        at("2026-12-01", 0, 10),
    ));
    let r = rules();
    let now = at("2027-01-05", 0, 0);
    let nov = compute(&f, &r, &[], nov(), CST, now);
    assert_eq!(row(&nov, "county-a").adopted, 1);
    assert_eq!(nov.adopted.len(), 1);
    assert_eq!(nov.adopted[0].item_id, "a1");
    let dec = compute(&f, &r, &[], "2026-12".parse().expect("dec"), CST, now);
    assert_eq!(row(&dec, "county-a").adopted, 1);
    assert_eq!(dec.adopted[0].item_id, "a2");
    // Reports were November's.
    assert_eq!(row(&nov, "county-a").reports.routine, 2);
    assert_eq!(row(&dec, "county-a").reports.total, 0);
}

#[test]
fn changing_the_rules_in_december_leaves_november_alone() {
    let mut f = facts(&["county-a"]);
    f.items.push(report(
        "a1",
        "county-a",
        Class::Routine,
        at("2026-11-10", 9, 0),
    ));
    f.items.push(report(
        "a2",
        "county-a",
        Class::Routine,
        at("2026-11-28", 9, 0),
    ));
    f.decisions.push(decision(
        "a1",
        HUB,
        1,
        ADOPTED,
        "daily: 第40期",
        at("2026-11-11", 9, 0),
    ));
    f.decisions.push(decision(
        "a2",
        HUB,
        1,
        ADOPTED,
        "daily: 第50期",
        at("2026-12-02", 9, 0),
    ));
    let before = rules();
    let mut after = rules();
    let mut dec = after.scoring[0].clone();
    dec.since = "2026-12-01".into();
    dec.adopted.insert("daily".into(), 4);
    after.scoring.push(dec);
    after.validate().expect("valid");

    let now = at("2027-01-05", 0, 0);
    let p_before = compute(&f, &before, &[], nov(), CST, now);
    let p_after = compute(&f, &after, &[], nov(), CST, now);
    assert_eq!(row(&p_before, "county-a").points, 2);
    assert_eq!(row(&p_after, "county-a").points, 2);
    let december = compute(&f, &after, &[], "2026-12".parse().expect("dec"), CST, now);
    assert_eq!(row(&december, "county-a").points, 4);
    let q4 = compute(&f, &after, &[], "2026Q4".parse().expect("q4"), CST, now);
    assert_eq!(row(&q4, "county-a").points, 6);
}

#[test]
fn nothing_counts_twice() {
    let mut f = facts(&[]);
    let created = at("2026-11-05", 9, 0);
    let r1 = report("a1", "county-a", Class::Emergency, created);
    f.items.push(r1.clone());
    f.items.push(r1); // the same item twice
    let mut sup = report("a1s", "county-a", Class::Emergency, created + HOUR);
    sup.link = 1;
    f.items.push(sup);
    let mut future_kind = report("a1x", "county-a", Class::Routine, created + HOUR);
    future_kind.link = 9;
    f.items.push(future_kind);
    let d = decision("a1", HUB, 1, ADOPTED, "daily", at("2026-11-06", 9, 0));
    f.decisions.push(d.clone());
    f.decisions.push(d); // the same decision twice
    // Adopted into the same outlet again later: counts once.
    f.decisions.push(decision(
        "a1",
        HUB,
        2,
        ADOPTED,
        "daily：第3期",
        at("2026-11-07", 9, 0),
    ));
    // Into another outlet: a second adoption, not a second adopted item.
    f.decisions.push(decision(
        "a1",
        HUB,
        3,
        ADOPTED,
        "专报第1期",
        at("2026-11-08", 9, 0),
    ));
    // Into no configured outlet: "other".
    f.decisions.push(decision(
        "a1",
        HUB,
        4,
        ADOPTED,
        "内部参考",
        at("2026-11-08", 9, 0),
    ));
    // The province adopts it twice, and gives an instruction twice.
    f.decisions.push(decision(
        "a1",
        ABOVE,
        1,
        ADOPTED,
        "省委要情",
        at("2026-11-09", 9, 0),
    ));
    f.decisions.push(decision(
        "a1",
        ABOVE,
        2,
        ADOPTED,
        "省委要情",
        at("2026-11-10", 9, 0),
    ));
    f.decisions.push(decision(
        "a1",
        ABOVE,
        3,
        INSTRUCTION,
        "请核实",
        at("2026-11-10", 9, 0),
    ));
    f.decisions.push(decision(
        "a1",
        ABOVE,
        3,
        INSTRUCTION,
        "请核实",
        at("2026-11-10", 9, 0),
    ));
    f.decisions.push(decision(
        "a1",
        ABOVE,
        4,
        INSTRUCTION,
        "再核实",
        at("2026-11-11", 9, 0),
    ));
    // Not scoring kinds.
    f.decisions
        .push(decision("a1", HUB, 5, 2, "不采用", at("2026-11-12", 9, 0)));
    // About an item nobody has: counted apart.
    f.decisions.push(decision(
        "ghost",
        HUB,
        1,
        ADOPTED,
        "daily",
        at("2026-11-12", 9, 0),
    ));
    f.decisions.push(decision(
        "ghost",
        HUB,
        1,
        ADOPTED,
        "daily",
        at("2026-11-12", 9, 0),
    ));

    let s = compute(&f, &rules(), &[], nov(), CST, at("2026-12-05", 0, 0));
    let a = row(&s, "county-a");
    assert_eq!(a.reports.total, 1);
    assert_eq!(a.reports.emergency, 1);
    assert_eq!(a.follow_ups, 2);
    assert_eq!(a.adopted, 3, "daily, special, other");
    assert_eq!(a.adopted_items, 1);
    assert_eq!(a.adopted_by_outlet.get("daily"), Some(&1));
    assert_eq!(a.adopted_by_outlet.get("special"), Some(&1));
    assert_eq!(a.adopted_by_outlet.get(OTHER_OUTLET), Some(&1));
    assert_eq!(a.adopted_above, 1);
    assert_eq!(a.instructions, 1);
    // 2 + 5 + 0 (other) + 1 (emergency, once) + 5 (above) + 10 (instruction)
    assert_eq!(a.points, 23);
    assert_eq!(a.points_detail.by_class, 1);
    assert_eq!(a.points, a.points_detail.total());
    assert_eq!(s.unattributed, 1);
    assert_eq!(s.adopted.len(), 4);
    assert_eq!(s.instructions.len(), 1);
    assert_eq!(s.instructions[0].text, "请核实");
    assert_eq!(s.totals.points, 23);
}

#[test]
fn late_reports_are_counted_named_and_scored() {
    let mut f = facts(&["county-a"]);
    let mut late = report("a1", "county-a", Class::BadNews, at("2026-11-05", 9, 0));
    late.title = "乡镇积水 <b>".into();
    late.arrived_ms = late.deadline_ms + 2 * HOUR + 5 * 60_000;
    f.items.push(late);
    f.items.push(report(
        "a2",
        "county-a",
        Class::Routine,
        at("2026-11-05", 9, 0),
    ));
    let s = compute(&f, &rules(), &[], nov(), CST, at("2026-12-05", 0, 0));
    let a = row(&s, "county-a");
    assert_eq!((a.on_time, a.late), (1, 1));
    assert_eq!(a.points, -1);
    assert_eq!(s.late_reports.len(), 1);
    assert_eq!(s.late_reports[0].late_ms, 2 * HOUR + 5 * 60_000);
    let page = bulletin_html(&s, Lang::Zh, "市委办公室");
    assert!(page.contains("2小时5分"), "{page}");
    assert!(page.contains("乡镇积水 &lt;b&gt;"));
}

#[test]
fn equal_points_share_a_rank() {
    let mut f = facts(&["county-a", "county-b", "county-c", "county-d", "county-e"]);
    // b: 5 (special); a: 5 (daily+daily+emergency bonus: 2+2+1); c: 2; d, e: 0.
    let day = at("2026-11-05", 9, 0);
    for (id, county, class) in [
        ("b1", "county-b", Class::Routine),
        ("a1", "county-a", Class::Routine),
        ("a2", "county-a", Class::Emergency),
        ("c1", "county-c", Class::Routine),
    ] {
        f.items.push(report(id, county, class, day));
    }
    f.decisions
        .push(decision("b1", HUB, 1, ADOPTED, "special", day + HOUR));
    f.decisions
        .push(decision("a1", HUB, 1, ADOPTED, "daily", day + HOUR));
    f.decisions
        .push(decision("a2", HUB, 1, ADOPTED, "daily", day + HOUR));
    f.decisions
        .push(decision("c1", HUB, 1, ADOPTED, "daily", day + HOUR));
    let s = compute(&f, &rules(), &[], nov(), CST, at("2026-12-05", 0, 0));
    let order: Vec<(&str, u32, i64)> = s
        .counties
        .iter()
        .map(|c| (c.county.as_str(), c.rank, c.points))
        .collect();
    assert_eq!(
        order,
        vec![
            // Equal points: more adoptions first.
            ("county-a", 1, 5),
            ("county-b", 1, 5),
            ("county-c", 3, 2),
            // Equal in everything: by name.
            ("county-d", 4, 0),
            ("county-e", 4, 0),
        ]
    );
}

#[test]
fn solicitations_are_answered_on_time_late_missing_or_open() {
    let mut f = facts(&["county-a", "county-b", "county-c"]);
    let due = at("2026-11-10", 18, 0);
    let sol = |id: &str, deadline: i64, counties: &[&str]| SolicitationFact {
        id: id.into(),
        topic: format!("topic {id}"),
        published_ms: deadline - 72 * HOUR,
        deadline_ms: deadline,
        class: Class::Routine,
        counties: counties.iter().map(|c| (*c).to_string()).collect(),
        withdrawn: false,
    };
    // To all: a on time, b late, c never.
    f.solicitations.push(sol("s1", due, &[]));
    // Named: only county-d (not configured) asked, and it is missing.
    f.solicitations.push(sol("s2", due, &["county-d"]));
    // Withdrawn: not scored.
    let mut w = sol("s3", due, &[]);
    w.withdrawn = true;
    f.solicitations.push(w);
    // Due later in November: open while "now" is before its deadline.
    f.solicitations
        .push(sol("s4", at("2026-11-28", 18, 0), &["county-a"]));
    // Due in December: not November's.
    f.solicitations
        .push(sol("s5", at("2026-12-03", 18, 0), &["county-a"]));
    let answer = |id: &str, origin: &str, s: &str, arrived: i64| {
        let mut i = report(id, origin, Class::Routine, arrived);
        i.answers = s.into();
        i
    };
    f.items.push(answer("a-s1", "county-a", "s1", due - HOUR));
    f.items.push(answer("b-s1", "county-b", "s1", due + HOUR));
    // A second answer by a: the first one decides.
    f.items.push(answer("a-s1b", "county-a", "s1", due + HOUR));

    let r = rules();
    let mid = at("2026-11-20", 12, 0);
    let s = compute(&f, &r, &[], nov(), CST, mid);
    let ans = |c: &str| row(&s, c).answers;
    assert_eq!(ans("county-a").on_time, 1);
    assert_eq!(ans("county-a").open, 1, "s4 not yet due");
    assert_eq!(ans("county-b").late, 1);
    assert_eq!(ans("county-c").missing, 1);
    // Named in s2, county-d is a county of the period, so s1 asked it too.
    assert_eq!(ans("county-d").missing, 2);
    assert_eq!(ans("county-d").on_time + ans("county-d").late, 0);
    assert_eq!(row(&s, "county-b").points_detail.late_answers, -1);
    assert_eq!(row(&s, "county-c").points, -2);
    // Answers are reports too.
    assert_eq!(row(&s, "county-a").reports.total, 2);
    let missing: Vec<(&str, &str)> = s
        .missing_answers
        .iter()
        .map(|m| (m.county.as_str(), m.solicitation.as_str()))
        .collect();
    assert_eq!(
        missing,
        vec![("county-c", "s1"), ("county-d", "s1"), ("county-d", "s2")]
    );
    assert_eq!(s.as_of_ms, mid);

    // After the month: s4 unanswered is missing.
    let later = compute(&f, &r, &[], nov(), CST, at("2026-12-05", 0, 0));
    let a = row(&later, "county-a").answers;
    assert_eq!((a.on_time, a.open, a.missing), (1, 0, 1));
}

#[test]
fn an_answer_after_the_period_is_still_missing_for_that_period() {
    let mut f = facts(&["county-a"]);
    let due = at("2026-11-29", 18, 0);
    f.solicitations.push(SolicitationFact {
        id: "s1".into(),
        topic: "冬季供暖".into(),
        published_ms: due - 72 * HOUR,
        deadline_ms: due,
        class: Class::Routine,
        counties: vec![],
        withdrawn: false,
    });
    let mut late = report("a-s1", "county-a", Class::Routine, at("2026-12-02", 9, 0));
    late.answers = "s1".into();
    f.items.push(late);
    let s = compute(&f, &rules(), &[], nov(), CST, at("2026-12-05", 0, 0));
    assert_eq!(row(&s, "county-a").answers.missing, 1);
    let q4 = compute(
        &f,
        &rules(),
        &[],
        "2026Q4".parse().expect("q4"),
        CST,
        at("2027-01-05", 0, 0),
    );
    assert_eq!(row(&q4, "county-a").answers.late, 1);
}

#[test]
fn counties_appear_only_where_they_belong() {
    let mut f = facts(&["county-a"]);
    // Active only in October.
    f.items.push(report(
        "o1",
        "county-old",
        Class::Routine,
        at("2026-10-05", 9, 0),
    ));
    // Renamed in November: the new name is active in November only.
    f.items.push(report(
        "n1",
        "county-new",
        Class::Routine,
        at("2026-11-05", 9, 0),
    ));
    let targets = [Target {
        county: "county-t".into(),
        year: 2026,
        points: Some(10),
        adopted: None,
    }];
    let s = compute(&f, &rules(), &targets, nov(), CST, at("2026-12-05", 0, 0));
    let names: Vec<&str> = s.counties.iter().map(|c| c.county.as_str()).collect();
    assert_eq!(names, vec!["county-a", "county-new", "county-t"]);
    let oct = compute(
        &f,
        &rules(),
        &[],
        "2026-10".parse().expect("oct"),
        CST,
        at("2026-12-05", 0, 0),
    );
    let names: Vec<&str> = oct.counties.iter().map(|c| c.county.as_str()).collect();
    assert_eq!(names, vec!["county-a", "county-old"]);
}

#[test]
fn targets_are_measured_pro_rata() {
    let mut f = facts(&["county-a", "county-b"]);
    // county-a: eleven daily adoptions, one a month to November (22 points).
    for i in 0..11 {
        let id = format!("a{i}");
        let day = at(&format!("2026-{:02}-10", i + 1), 9, 0);
        f.items.push(report(&id, "county-a", Class::Routine, day));
        f.decisions
            .push(decision(&id, HUB, 1, ADOPTED, "daily", day + HOUR));
    }
    // county-b: one, adopted in November (2 points), and one above (5).
    f.items.push(report(
        "b1",
        "county-b",
        Class::Routine,
        at("2026-11-10", 9, 0),
    ));
    f.decisions.push(decision(
        "b1",
        HUB,
        1,
        ADOPTED,
        "daily",
        at("2026-11-11", 9, 0),
    ));
    f.decisions.push(decision(
        "b1",
        ABOVE,
        1,
        ADOPTED,
        "省委要情",
        at("2026-11-12", 9, 0),
    ));
    let targets = [
        Target {
            county: "county-a".into(),
            year: 2026,
            points: Some(100),
            adopted: Some(12),
        },
        Target {
            county: "county-b".into(),
            year: 2026,
            points: Some(1),
            adopted: None,
        },
        // The later entry wins.
        Target {
            county: "county-b".into(),
            year: 2026,
            points: Some(60),
            adopted: Some(4),
        },
        // Another year: ignored.
        Target {
            county: "county-b".into(),
            year: 2025,
            points: Some(1),
            adopted: None,
        },
    ];
    // At the end of November, 334/365 of the year has passed.
    let s = compute(&f, &rules(), &targets, nov(), CST, at("2027-01-05", 0, 0));
    let a = row(&s, "county-a").target.as_ref().expect("target a");
    let frac = 334.0 / 365.0;
    assert!((a.year_fraction - frac).abs() < 1e-9, "{}", a.year_fraction);
    let pts = a.points.as_ref().expect("points");
    assert_eq!(pts.actual, 22, "year to date, not the month");
    assert!((pts.pro_rata - 100.0 * frac).abs() < 1e-6);
    assert_eq!(pts.status, Status::Behind);
    let adopted = a.adopted.as_ref().expect("adopted");
    assert_eq!(adopted.actual, 11);
    // 11 against 12 × 0.915 = 10.98: on plan.
    assert_eq!(adopted.status, Status::OnPlan);
    assert_eq!(a.status, Status::Behind, "the worse of the two");
    assert_eq!(row(&s, "county-a").points, 2, "the month alone");

    let b = row(&s, "county-b").target.as_ref().expect("target b");
    let bp = b.points.as_ref().expect("points");
    assert_eq!((bp.target, bp.actual), (60, 7));
    let ba = b.adopted.as_ref().expect("adopted");
    assert_eq!(ba.actual, 2, "this office and above");

    // Mid-November, the year to date stops at now.
    let mid = at("2026-11-11", 0, 0);
    let s = compute(&f, &rules(), &targets, nov(), CST, mid);
    let a = row(&s, "county-a").target.as_ref().expect("target a");
    assert_eq!(a.as_of_ms, mid);
    assert!((a.year_fraction - 314.0 / 365.0).abs() < 1e-9);
    assert_eq!(a.points.as_ref().map(|p| p.actual), Some(22));

    // A target already met is ahead whatever the date.
    let met = [Target {
        county: "county-a".into(),
        year: 2026,
        points: Some(5),
        adopted: None,
    }];
    let s = compute(
        &f,
        &rules(),
        &met,
        "2026-03".parse().expect("mar"),
        CST,
        mid,
    );
    let a = row(&s, "county-a").target.as_ref().expect("target a");
    assert_eq!(a.points.as_ref().map(|p| p.actual), Some(6));
    assert_eq!(a.status, Status::Ahead);
}

// === output ===

/// The text of `<td data-field="{field}">` in the row of `county` in the
/// scores table.
fn cell(page: &str, county: &str, field: &str) -> Option<String> {
    let table = &page[page.find("<table id=\"scores\">")?..];
    let table = &table[..table.find("</table>")?];
    let row = &table[table.find(&format!("<tr data-county=\"{county}\">"))?..];
    let row = &row[..row.find("</tr>")?];
    let open = format!("<td data-field=\"{field}\"");
    let cell = &row[row.find(&open)?..];
    let cell = &cell[cell.find('>')? + 1..];
    Some(cell[..cell.find("</td>")?].to_string())
}

/// Checks that tags in `page` nest: every opened element is closed in
/// order (void elements and self-closed ones excepted).
fn well_nested(page: &str) -> Result<(), String> {
    const VOID: [&str; 4] = ["meta", "br", "hr", "!DOCTYPE"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        stack.push(name);
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("left open: {stack:?}"))
    }
}

fn sample() -> Stats {
    let mut f = facts(&["county-a", "县乙", "county-c"]);
    let day = at("2026-11-05", 9, 0);
    let mut evil = report("x1", "county-a", Class::Emergency, day);
    evil.title = "<script>alert('x')</script> & \"quotes\"".into();
    f.items.push(evil);
    f.items.push(report("y1", "县乙", Class::Routine, day));
    let mut late = report("c1", "county-c", Class::Routine, day);
    late.arrived_ms = late.deadline_ms + HOUR;
    f.items.push(late);
    f.decisions
        .push(decision("x1", HUB, 1, ADOPTED, "daily: 第12期", day + HOUR));
    f.decisions
        .push(decision("y1", ABOVE, 1, ADOPTED, "省委要情", day + HOUR));
    f.decisions.push(decision(
        "x1",
        ABOVE,
        1,
        INSTRUCTION,
        "<img src=x>",
        day + HOUR,
    ));
    f.solicitations.push(SolicitationFact {
        id: "s1".into(),
        topic: "秋收<进度>".into(),
        published_ms: day,
        deadline_ms: day + 24 * HOUR,
        class: Class::Routine,
        counties: vec!["county-c".into()],
        withdrawn: false,
    });
    let targets = [Target {
        county: "县乙".into(),
        year: 2026,
        points: Some(50),
        adopted: Some(10),
    }];
    compute(&f, &rules(), &targets, nov(), CST, at("2026-12-02", 10, 0))
}

#[test]
fn the_bulletin_is_a_safe_standalone_document() {
    let s = sample();
    let page = bulletin_html(&s, Lang::Zh, "某市委办公室信息科");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<meta charset=\"utf-8\">"));
    assert!(page.contains("<html lang=\"zh-CN\">"));
    assert!(page.contains("2026年11月信息报送工作通报"));
    assert!(page.contains("某市委办公室信息科"));
    assert!(page.contains("2026年12月2日"));
    well_nested(&page).expect("well nested");

    // Hostile text is escaped everywhere.
    assert!(!page.contains("<script"));
    assert!(!page.contains("<img"));
    assert!(
        page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;")
    );
    assert!(page.contains("秋收&lt;进度&gt;"));
    // No external resources.
    for bad in ["href=", "url(", "@import", "<link", "<img"] {
        assert!(!page.contains(bad), "{bad}");
    }

    // One row per county, in rank order, with figures.
    assert_eq!(page.matches("<tr data-county=").count(), 3);
    assert_eq!(cell(&page, "county-a", "points").as_deref(), Some("13"));
    assert_eq!(cell(&page, "county-a", "rank").as_deref(), Some("1"));
    assert_eq!(cell(&page, "county-a", "adopted").as_deref(), Some("1"));
    assert_eq!(
        cell(&page, "county-a", "instructions").as_deref(),
        Some("1")
    );
    assert_eq!(cell(&page, "县乙", "adopted_above").as_deref(), Some("1"));
    assert_eq!(cell(&page, "county-c", "points").as_deref(), Some("-3"));
    assert_eq!(cell(&page, "county-c", "late").as_deref(), Some("1"));
    assert_eq!(
        cell(&page, "county-c", "answers_missing").as_deref(),
        Some("1")
    );
    let a = page.find("data-county=\"county-a\"").unwrap_or(usize::MAX);
    let b = page.find("data-county=\"县乙\"").unwrap_or(0);
    assert!(a < b, "ranked");

    // The chart has a bar per county, the negative one to the left.
    let svg = &page[page.find("<svg").expect("svg")..page.find("</svg>").expect("svg end")];
    assert_eq!(svg.matches("<rect").count(), 3);
    assert!(svg.contains("#c53030"), "negative bar");
    assert!(svg.contains(">县乙</text>"));

    // The lists name what they should.
    assert!(page.contains("每日要情（daily: 第12期）"));
    assert!(page.contains("上级采用（province-office）：省委要情"));
    assert!(page.contains("得分居前的是：county-a（13分）、县乙（5分）。"));
    assert!(page.contains("&lt;img src=x&gt;"));
    assert!(page.contains("id=\"late-list\""));
    assert!(page.contains("id=\"missing-list\""));
    assert!(page.contains("id=\"target-list\""));
    assert!(page.contains("<tr data-target=\"县乙\">"));

    let en = bulletin_html(&s, Lang::En, "Information Section");
    assert!(en.contains("<html lang=\"en\">"));
    assert!(en.contains("Information reporting bulletin, November 2026"));
    assert!(en.contains("Daily Report (daily: 第12期)"));
    assert!(en.contains("Adopted above (province-office): 省委要情"));
    well_nested(&en).expect("well nested");
}

#[test]
fn an_empty_period_says_so() {
    let s = compute(
        &facts(&[]),
        &OfficeRules::default(),
        &[],
        nov(),
        CST,
        at("2026-12-02", 0, 0),
    );
    let page = bulletin_html(&s, Lang::Zh, "");
    assert!(page.contains("本期无数据"));
    assert!(page.ends_with("</html>\n"));
    well_nested(&page).expect("well nested");
    assert!(!page.contains("<table"));
    let en = bulletin_html(&s, Lang::En, "");
    assert!(en.contains("No reports in this period"));
    assert!(s.table(Lang::Zh).contains("本期无数据"));

    // Configured counties with nothing to show: zero rows and the message.
    let s = compute(
        &facts(&["county-a"]),
        &rules(),
        &[],
        nov(),
        CST,
        at("2026-12-02", 0, 0),
    );
    let page = bulletin_html(&s, Lang::Zh, "");
    assert!(page.contains("本期无数据"));
    assert_eq!(cell(&page, "county-a", "points").as_deref(), Some("0"));

    let q = compute(
        &facts(&[]),
        &rules(),
        &[],
        "2026Q4".parse().expect("q4"),
        CST,
        0,
    );
    assert!(bulletin_html(&q, Lang::Zh, "").contains("2026年第四季度信息报送工作小结"));
}

#[test]
fn csv_has_a_header_and_a_row_per_county() {
    let s = sample();
    let csv = s.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("county,rank,reports,emergency,bad_news,routine,follow_ups,"));
    assert!(lines[0].contains("adopted_daily,adopted_special,adopted_other,adopted_above"));
    let header: Vec<&str> = lines[0].split(',').collect();
    for line in &lines[1..] {
        assert_eq!(line.split(',').count(), header.len(), "{line}");
    }
    let field = |line: &str, name: &str| {
        let i = header.iter().position(|h| *h == name).expect(name);
        line.split(',').nth(i).unwrap_or_default().to_string()
    };
    assert_eq!(field(lines[1], "county"), "county-a");
    assert_eq!(field(lines[1], "points"), "13");
    assert_eq!(field(lines[1], "adopted_daily"), "1");
    assert_eq!(field(lines[3], "county"), "county-c");
    assert_eq!(field(lines[3], "points"), "-3");
    let b = lines.iter().find(|l| l.starts_with("县乙")).expect("b");
    assert_eq!(field(b, "target_points"), "50");
    assert_eq!(field(b, "target_status"), "behind");

    assert_eq!(super::text::csv("a,b"), "\"a,b\"");
    assert_eq!(super::text::csv("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(super::text::csv("=cmd()"), "'=cmd()");
    assert_eq!(super::text::csv("-3"), "-3");
}

#[test]
fn the_table_aligns_chinese_by_display_width() {
    assert_eq!(display_width("county"), 6);
    assert_eq!(display_width("县乙"), 4);
    assert_eq!(display_width("约稿（第1期）"), 13);
    assert_eq!(display_width("e\u{301}"), 1);
    let s = sample();
    let zh = s.table(Lang::Zh);
    let lines: Vec<&str> = zh.lines().collect();
    assert!(lines[0].starts_with("县(单位)"));
    for h in [
        "报送(紧急/报忧/动态)",
        "约稿按时/迟交/未交",
        "得分",
        "排名",
        "目标进度",
    ] {
        assert!(lines[0].contains(h), "{h}");
    }
    // Columns line up: "得分" starts at the same display column in every
    // line that has a figure there.
    let col = |line: &str, needle: &str| {
        line.find(needle)
            .map(|i| display_width(&line[..i]) + display_width(needle))
    };
    let points_end = col(lines[0], "得分").expect("header");
    let a = lines
        .iter()
        .find(|l| l.starts_with("county-a"))
        .expect("row");
    assert_eq!(col(a, " 13 "), Some(points_end + 1));
    let b = lines.iter().find(|l| l.starts_with("县乙")).expect("row");
    assert!(b.contains("滞后"));
    assert!(lines.last().is_some_and(|l| l.starts_with("合计")));
    let en = s.table(Lang::En);
    assert!(en.starts_with("County"));
    assert!(en.contains("behind"));
}

#[test]
fn stats_serialise_with_stable_names() {
    let s = sample();
    let v = serde_json::to_value(&s).expect("json");
    assert_eq!(v["period"], "2026-11");
    assert_eq!(v["counties"][0]["county"], "county-a");
    assert_eq!(v["counties"][0]["reports"]["emergency"], 1);
    assert_eq!(v["counties"][0]["points_detail"]["instructions"], 10);
    assert_eq!(v["adopted"][0]["class"], "emergency");
    let b = &v["counties"][1];
    assert_eq!(b["target"]["status"], "behind");
    assert_eq!(v["unattributed"], 0);
}

/// Prints how long `compute` takes over a large year: run with
/// `cargo test --release --lib score::tests::compute_is_fast -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn compute_is_fast() {
    let counties: Vec<String> = (0..100).map(|i| format!("county-{i:03}")).collect();
    let mut f = Facts {
        hub: HUB.into(),
        counties: counties.clone(),
        ..Facts::default()
    };
    let (start, end) = "2026".parse::<Period>().expect("year").bounds(CST);
    let span = end - start;
    // A cheap deterministic generator (xorshift).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pick = |n: u64, r: u64| usize::try_from(r % n).unwrap_or(0);
    for i in 0..300 {
        let deadline = start + i64::try_from(next() % 360).unwrap_or(0) * 86_400_000;
        let named = if i % 3 == 0 {
            vec![]
        } else {
            (0..10)
                .map(|_| counties[pick(100, next())].clone())
                .collect()
        };
        f.solicitations.push(SolicitationFact {
            id: format!("s{i}"),
            topic: format!("topic {i}"),
            published_ms: deadline - 3 * 86_400_000,
            deadline_ms: deadline,
            class: Class::Routine,
            counties: named,
            withdrawn: i % 50 == 0,
        });
    }
    for i in 0..200_000 {
        let created = start + i64::try_from(next() % u64::try_from(span).unwrap_or(1)).unwrap_or(0);
        let class = Class::ALL[pick(3, next())];
        let late = next() % 10 == 0;
        f.items.push(ItemFact {
            id: format!("{i:016x}"),
            origin: counties[pick(100, next())].clone(),
            class,
            title: format!("report {i}"),
            created_ms: created,
            arrived_ms: if late { created + 2 * HOUR } else { created },
            deadline_ms: created + HOUR,
            link: if next() % 20 == 0 { 1 } else { 0 },
            answers: if next() % 100 == 0 {
                format!("s{}", next() % 300)
            } else {
                String::new()
            },
        });
    }
    for i in 0..50_000usize {
        let item = &f.items[pick(200_000, next())];
        let above = i % 5 == 0;
        f.decisions.push(DecisionFact {
            item_id: item.id.clone(),
            node: if above { ABOVE.into() } else { HUB.into() },
            seq: 1,
            kind: if i % 17 == 0 { INSTRUCTION } else { ADOPTED },
            text: ["daily: 第1期", "专报", "内部"][i % 3].into(),
            at_ms: item.created_ms + HOUR,
        });
    }
    let targets: Vec<Target> = counties
        .iter()
        .map(|c| Target {
            county: c.clone(),
            year: 2026,
            points: Some(500),
            adopted: Some(100),
        })
        .collect();
    let r = rules();
    let period: Period = "2026".parse().expect("year");
    let now = end + 86_400_000;
    let started = std::time::Instant::now();
    let s = compute(&f, &r, &targets, period, CST, now);
    let took = started.elapsed();
    println!(
        "compute: {} items, {} decisions, {} counties, {} solicitations, year period: {:.1} ms",
        f.items.len(),
        f.decisions.len(),
        s.counties.len(),
        f.solicitations.len(),
        took.as_secs_f64() * 1000.0
    );
    let started = std::time::Instant::now();
    let page = bulletin_html(&s, Lang::Zh, "");
    println!(
        "bulletin: {} bytes in {:.1} ms",
        page.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(s.counties.len(), 100);
}
