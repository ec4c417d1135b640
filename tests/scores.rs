//! The office's scores (采用记分) over a generated month: five counties,
//! some three hundred reports, the office's decisions and a solicitation;
//! the hub's figures (JSON and the bulletin's table) checked against a
//! count kept by this test; the bulletin published and verified at a
//! county; and the bad requests.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Region;
use zhibao::class::Class;
use zhibao::client::ClientError;
use zhibao::node::RunningNode;
use zhibao::proto::{
    DisposeRequest, DispositionKind, EventKind, NoticesRequest, SolicitRequest, StatsRequest,
    SubmitRequest, notice::Body, solicit_request::Action,
};
use zhibao::score::{Outlet, ScoringRule, Target};

const WAIT: Duration = Duration::from_secs(30);
const COUNTIES: [&str; 5] = [
    "county-p1",
    "county-p2",
    "county-p3",
    "county-p4",
    "county-p5",
];

/// What this test expects of one county, counted as it goes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expect {
    emergency: u64,
    bad_news: u64,
    routine: u64,
    adopted: u64,
    daily: u64,
    special: u64,
    instructions: u64,
    answers_on_time: u64,
    answers_late: u64,
    answers_missing: u64,
}

impl Expect {
    fn reports(&self) -> u64 {
        self.emergency + self.bad_news + self.routine
    }
    /// The rule set of the hub below: daily 2, special 5, instruction 10,
    /// late answer -1, missing answer -2.
    fn points(&self) -> i64 {
        2 * self.daily as i64 + 5 * self.special as i64 + 10 * self.instructions as i64
            - self.answers_late as i64
            - 2 * self.answers_missing as i64
    }
}

fn month_of(ms: i64) -> String {
    // The hub's zone is +08:00.
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

async fn start_hub(region: &Region) -> RunningNode {
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.office.counties = COUNTIES.iter().map(|c| c.to_string()).collect();
    cfg.office.outlets = vec![
        Outlet {
            key: "daily".into(),
            zh: "每日要情".into(),
            en: "Daily Report".into(),
        },
        Outlet {
            key: "special".into(),
            zh: "专报".into(),
            en: "Special Report".into(),
        },
    ];
    cfg.office.scoring = vec![ScoringRule {
        since: "2020-01-01".into(),
        adopted: [("daily".to_string(), 2), ("special".to_string(), 5)].into(),
        instruction: 10,
        late_answer: -1,
        missing_answer: -2,
        ..Default::default()
    }];
    cfg.office.targets = vec![Target {
        county: COUNTIES[0].into(),
        year: 2026,
        points: Some(1000),
        adopted: None,
    }];
    zhibao::node::start(cfg).await.unwrap()
}

async fn start_county(region: &Region, name: &str, hub: &RunningNode) -> RunningNode {
    let mut cfg = region.node_config(name, hub.relay_addr.unwrap());
    cfg.office.publishers = vec![common::HUB.into()];
    zhibao::node::start(cfg).await.unwrap()
}

/// The value of `data-field="field"` in the row of `county` of the
/// bulletin's score table.
fn cell(html: &str, county: &str, field: &str) -> String {
    let table = &html[html.find("<table id=\"scores\">").expect("score table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    let row_start = table
        .find(&format!("<tr data-county=\"{county}\">"))
        .unwrap_or_else(|| panic!("no row for {county}"));
    let row = &table[row_start..];
    let row = &row[..row.find("</tr>").expect("row end")];
    let at = row
        .find(&format!("data-field=\"{field}\""))
        .unwrap_or_else(|| panic!("no {field} cell for {county}"));
    let cell = &row[at..];
    let open = cell.find('>').unwrap() + 1;
    let close = cell.find("</td>").unwrap();
    cell[open..close].to_string()
}

#[tokio::test]
async fn a_month_of_reports_scored_as_counted_and_the_bulletin_reaches_a_county() {
    let started = zhibao::clock::now_ms();
    let month = month_of(started);
    let mut names = vec![];
    names.extend(COUNTIES.iter().copied());
    let region = Region::new(&names);
    let hub = start_hub(&region).await;
    let mut counties = Vec::new();
    for c in COUNTIES {
        counties.push(start_county(&region, c, &hub).await);
    }
    let mut desk = common::operator(&hub).await;
    let mut hub_events = desk.watch().await.unwrap();
    let mut expect: BTreeMap<&str, Expect> =
        COUNTIES.iter().map(|c| (*c, Expect::default())).collect();

    // A solicitation to every county, due in a few seconds.
    let mut first_two = Vec::new();
    for county in &counties[..2] {
        first_two.push(common::operator(county).await.watch().await.unwrap());
    }
    let due = zhibao::clock::now_ms() + 8_000;
    let sol = desk
        .solicit(SolicitRequest {
            action: Action::Publish as i32,
            topic: "月度专题".into(),
            deadline_unix_ms: due,
            priority: Class::Routine.to_proto() as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .body
        .unwrap()
        .id;

    // Counties 1 and 2 answer the solicitation as soon as it reaches them
    // (on time).
    for events in &mut first_two {
        common::await_event(events, WAIT, |e| {
            e.kind == EventKind::Solicitation as i32 && e.item_id == sol
        })
        .await;
    }
    let mut answers = Vec::new();
    for n in [0, 1] {
        let mut op = common::operator(&counties[n]).await;
        let id = op
            .submit_request(SubmitRequest {
                title: "专题报送".into(),
                body: b"answer".to_vec(),
                answers: sol.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let e = expect.get_mut(COUNTIES[n]).unwrap();
        e.routine += 1;
        e.answers_on_time += 1;
        answers.push((n, id));
    }
    for (n, id) in &answers {
        common::operator(&counties[*n])
            .await
            .wait_receipt(id, WAIT)
            .await
            .unwrap();
    }
    // 60 reports per county, of every class.
    let mut sent: Vec<(&str, String, Class)> = Vec::new();
    for (n, county) in counties.iter().enumerate() {
        let name = COUNTIES[n];
        let mut op = common::operator(county).await;
        for i in 0..60 {
            let class = match i % 10 {
                0 => Class::Emergency,
                1 | 2 => Class::BadNews,
                _ => Class::Routine,
            };
            let id = op
                .submit(
                    class,
                    &format!("{name} 第{i}号 <b>要情</b>"),
                    b"text".to_vec(),
                    0,
                )
                .await
                .unwrap();
            let e = expect.get_mut(name).unwrap();
            match class {
                Class::Emergency => e.emergency += 1,
                Class::BadNews => e.bad_news += 1,
                Class::Routine => e.routine += 1,
            }
            sent.push((name, id, class));
        }
    }
    for (n, (name, id, _)) in sent.iter().enumerate() {
        let county = COUNTIES.iter().position(|c| c == name).unwrap();
        let st = common::operator(&counties[county])
            .await
            .wait_receipt(id, WAIT)
            .await
            .unwrap();
        assert!(st.receipted_unix_ms > 0, "report {n} was not receipted");
    }

    // The office decides: every 3rd report adopted (daily, or special for
    // every 9th), every 7th gets an instruction, every 11th not adopted;
    // one report adopted twice into the daily outlet counts once.
    for (n, (name, id, _)) in sent.iter().enumerate() {
        let e = expect.get_mut(name).unwrap();
        let decide = |kind: DispositionKind, text: &str| DisposeRequest {
            item_id: id.clone(),
            kind: kind as i32,
            text: text.into(),
            ..Default::default()
        };
        if n % 3 == 0 {
            let outlet = if n % 9 == 0 {
                "special: 第2期"
            } else {
                "daily: 第15期"
            };
            desk.dispose(decide(DispositionKind::Adopted, outlet))
                .await
                .unwrap();
            e.adopted += 1;
            if n % 9 == 0 {
                e.special += 1;
            } else {
                e.daily += 1;
            }
        }
        if n == 3 {
            desk.dispose(decide(DispositionKind::Adopted, "daily: 第16期"))
                .await
                .unwrap();
        }
        if n % 7 == 0 {
            desk.dispose(decide(DispositionKind::Instruction, "请抓紧落实"))
                .await
                .unwrap();
            e.instructions += 1;
        }
        if n % 11 == 1 {
            desk.dispose(decide(DispositionKind::NotAdopted, "内容重复"))
                .await
                .unwrap();
        }
    }
    // An adoption naming no configured outlet is refused at the desk.
    let refused = desk
        .dispose(DisposeRequest {
            item_id: sent[1].1.clone(),
            kind: DispositionKind::Adopted as i32,
            text: "《某刊物》".into(),
            ..Default::default()
        })
        .await;
    match refused {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code(), tonic::Code::InvalidArgument);
            assert!(s.message().contains("office.outlets"), "{}", s.message());
        }
        other => panic!("an unknown outlet was taken: {other:?}"),
    }

    // The deadline passes: county 3 answers late, 4 and 5 never.
    common::await_event(&mut hub_events, WAIT, |e| {
        e.kind == EventKind::Alarm as i32 && e.message.contains(COUNTIES[4])
    })
    .await;
    let mut op3 = common::operator(&counties[2]).await;
    let late = op3
        .submit_request(SubmitRequest {
            title: "专题补报".into(),
            body: b"late answer".to_vec(),
            answers: sol.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    op3.wait_receipt(&late, WAIT).await.unwrap();
    {
        let e = expect.get_mut(COUNTIES[2]).unwrap();
        e.routine += 1;
        e.answers_late += 1;
    }
    for c in &COUNTIES[3..] {
        expect.get_mut(c).unwrap().answers_missing += 1;
    }
    if month_of(zhibao::clock::now_ms()) != month {
        eprintln!("the month changed during the test; its figures span two months");
        return;
    }

    // The figures, as JSON.
    let json = desk
        .stats(StatsRequest {
            period: month.clone(),
            format: "json".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = stats["counties"].as_array().unwrap();
    assert_eq!(rows.len(), COUNTIES.len());
    for row in rows {
        let county = row["county"].as_str().unwrap();
        let e = &expect[county];
        let got = Expect {
            emergency: row["reports"]["emergency"].as_u64().unwrap(),
            bad_news: row["reports"]["bad_news"].as_u64().unwrap(),
            routine: row["reports"]["routine"].as_u64().unwrap(),
            adopted: row["adopted"].as_u64().unwrap(),
            daily: row["adopted_by_outlet"]["daily"].as_u64().unwrap_or(0),
            special: row["adopted_by_outlet"]["special"].as_u64().unwrap_or(0),
            instructions: row["instructions"].as_u64().unwrap(),
            answers_on_time: row["answers"]["on_time"].as_u64().unwrap(),
            answers_late: row["answers"]["late"].as_u64().unwrap(),
            answers_missing: row["answers"]["missing"].as_u64().unwrap(),
        };
        assert_eq!(&got, e, "{county}");
        assert_eq!(
            row["points"].as_i64().unwrap(),
            e.points(),
            "{county} points"
        );
        assert_eq!(row["on_time"].as_u64().unwrap(), e.reports(), "{county}");
        assert_eq!(row["late"].as_u64().unwrap(), 0, "{county}");
    }
    // Ranked by points.
    let points: Vec<i64> = rows.iter().map(|r| r["points"].as_i64().unwrap()).collect();
    assert!(points.windows(2).all(|w| w[0] >= w[1]), "{points:?}");
    assert_eq!(rows[0]["rank"].as_u64(), Some(1));
    // The target of county 1 is shown against the year.
    let p1 = rows.iter().find(|r| r["county"] == COUNTIES[0]).unwrap();
    assert!(p1["target"].is_object(), "{p1}");

    // The same figures in the bulletin's table, and its chart.
    let html = desk
        .stats(StatsRequest {
            period: month.clone(),
            format: "html".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(html.contains("<svg"), "the chart is inline SVG");
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        html.contains("&lt;b&gt;要情&lt;/b&gt;"),
        "titles are escaped"
    );
    for county in COUNTIES {
        let e = &expect[county];
        assert_eq!(cell(&html, county, "reports"), e.reports().to_string());
        assert_eq!(cell(&html, county, "emergency"), e.emergency.to_string());
        assert_eq!(cell(&html, county, "adopted"), e.adopted.to_string());
        assert_eq!(
            cell(&html, county, "instructions"),
            e.instructions.to_string()
        );
        assert_eq!(
            cell(&html, county, "answers_missing"),
            e.answers_missing.to_string()
        );
        assert_eq!(cell(&html, county, "points"), e.points().to_string());
        assert!(
            html.contains(&format!("data-bar=\"{county}\"")),
            "{county} in the chart"
        );
    }

    // Published: signed, pushed down, verified at a county.
    let mut county_events = common::operator(&counties[0]).await.watch().await.unwrap();
    let published = desk
        .publish_bulletin(StatsRequest {
            period: month.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let bid = published.body.as_ref().unwrap().id.clone();
    assert_eq!(bid, format!("BUL-{month}"));
    common::await_event(&mut county_events, WAIT, |e| {
        e.kind == EventKind::Bulletin as i32 && e.item_id == bid
    })
    .await;
    let at_county = common::operator(&counties[0])
        .await
        .notices(NoticesRequest {
            bulletins_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(at_county.len(), 1);
    assert_eq!(at_county[0].verification, "verified");
    assert_eq!(
        at_county[0].signed, published.signed,
        "the hub's signed bytes, unaltered"
    );
    let Some(Body::Bulletin(b)) = at_county[0].body.as_ref().and_then(|n| n.body.clone()) else {
        panic!("not a bulletin");
    };
    assert_eq!(
        cell(&b.html, COUNTIES[0], "points"),
        expect[COUNTIES[0]].points().to_string()
    );

    // Bad requests.
    let bad = desk
        .stats(StatsRequest {
            period: "2026-13".into(),
            ..Default::default()
        })
        .await;
    assert!(matches!(bad, Err(ClientError::Status(s)) if s.code() == tonic::Code::InvalidArgument));
    let none = desk
        .stats(StatsRequest {
            period: month,
            county: "county-nowhere".into(),
            ..Default::default()
        })
        .await;
    assert!(matches!(none, Err(ClientError::Status(s)) if s.code() == tonic::Code::NotFound));
    let empty = desk
        .stats(StatsRequest {
            period: "2020-01".into(),
            format: "json".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let empty: serde_json::Value = serde_json::from_str(&empty).unwrap();
    for row in empty["counties"].as_array().unwrap() {
        assert_eq!(row["reports"]["total"].as_u64(), Some(0), "{row}");
        assert_eq!(row["points"].as_i64(), Some(0), "{row}");
    }

    for c in counties {
        c.shutdown(WAIT).await;
    }
    hub.shutdown(WAIT).await;
}
