//! The office's asking and scoring with real processes: a hub, a region
//! relay and two counties, each a `zhibao serve` child process, driven by
//! the `zhibao` command as people use it — a solicitation published,
//! received through the relay, answered, its status; a decision, the
//! month's figures (the same after the hub restarts); a bulletin written,
//! published and read at a county; a withdrawal and the answer it refuses;
//! and a hub whose scoring rule names an unknown outlet refused at start.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Daemon, HUB, Region};
use zhibao::config::{NodeConfig, RelayListen, Role, UpstreamConfig};
use zhibao::proto::EventKind;
use zhibao::score::{Outlet, ScoringRule};

const WAIT: Duration = Duration::from_secs(30);
const RELAY: &str = "region-o";
const A: &str = "county-o1";
const B: &str = "county-o2";

fn write(region: &Region, cfg: &NodeConfig) -> PathBuf {
    let path = region.dir.path().join(format!("{}.toml", cfg.node_id));
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    path
}

fn hub_config(region: &Region, listen: SocketAddr) -> NodeConfig {
    let mut cfg = region.hub_config(listen);
    cfg.office.counties = vec![A.into(), B.into()];
    cfg.office.outlets = vec![Outlet {
        key: "daily".into(),
        zh: "每日要情".into(),
        en: "Daily Report".into(),
    }];
    cfg.office.scoring = vec![ScoringRule {
        since: "2020-01-01".into(),
        adopted: [("daily".to_string(), 2)].into(),
        missing_answer: -2,
        ..Default::default()
    }];
    cfg
}

fn below(region: &Region, name: &str, parent: &str, addr: SocketAddr) -> NodeConfig {
    let mut cfg = region.node_config(name, addr);
    cfg.upstream = vec![UpstreamConfig {
        node_id: parent.into(),
        addr: addr.to_string(),
        role: Role::Primary,
    }];
    cfg.office.publishers = vec![HUB.into()];
    cfg
}

async fn zhibao(list: &[&str], socket: &Path) -> Output {
    let mut args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    args.push("--socket".into());
    args.push(socket.display().to_string());
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zhibao"))
            .args(&args)
            .env_remove("ZHIBAO_LANG")
            .env_remove("LC_ALL")
            .env_remove("LANG")
            .output()
            .expect("run zhibao")
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", err(o));
    serde_json::from_str(out(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", out(o)))
}

/// `ms` as the node's local time (+08:00) to the minute, as `--due` takes it.
fn local(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The figures without the moment they were computed.
fn figures(mut v: serde_json::Value) -> serde_json::Value {
    for k in ["now_ms", "as_of_ms"] {
        v.as_object_mut().unwrap().remove(k);
    }
    for c in v["counties"].as_array_mut().unwrap() {
        if let Some(t) = c.get_mut("target") {
            *t = serde_json::Value::Null;
        }
    }
    v
}

#[tokio::test]
async fn solicit_answer_score_and_publish_with_real_processes() {
    let region = Region::new(&[RELAY, A, B]);

    // A scoring rule naming an outlet that does not exist: refused at start.
    let mut bad = hub_config(&region, "127.0.0.1:0".parse().unwrap());
    bad.office.scoring[0].adopted = [("dayly".to_string(), 2)].into();
    let bad_path = write(&region, &bad);
    let refused = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zhibao"))
            .args(["serve", "--config"])
            .arg(&bad_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(64), "{}", err(&refused));
    assert!(
        err(&refused).contains("office.scoring[0].adopted.dayly"),
        "{}",
        err(&refused)
    );

    let hub_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hub_cfg = write(&region, &hub_config(&region, hub_addr));
    let hub = Daemon::start(&hub_cfg);
    let mut relay_cfg = below(&region, RELAY, HUB, hub_addr);
    relay_cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: Vec::new(),
    });
    let relay = Daemon::start(&write(&region, &relay_cfg));
    let relay_addr = relay.relay.unwrap();
    let a = Daemon::start(&write(&region, &below(&region, A, RELAY, relay_addr)));
    let b = Daemon::start(&write(&region, &below(&region, B, RELAY, relay_addr)));
    let mut a_events = zhibao::client::Operator::connect(&a.socket)
        .await
        .unwrap()
        .watch()
        .await
        .unwrap();
    let mut b_events = zhibao::client::Operator::connect(&b.socket)
        .await
        .unwrap()
        .watch()
        .await
        .unwrap();

    // Published at the hub, for both counties, due in a day.
    let due = local(zhibao::clock::now_ms() + 86_400_000);
    let published = json(
        &zhibao(
            &[
                "solicitation",
                "publish",
                "--topic",
                "汛情专题",
                "--text",
                "请报送汛情",
                "--due",
                &due,
                "--county",
                A,
                "--county",
                B,
                "--json",
            ],
            &hub.socket,
        )
        .await,
    );
    let sol = published["id"].as_str().unwrap().to_string();
    for events in [&mut a_events, &mut b_events] {
        common::await_event(events, WAIT, |e| {
            e.kind == EventKind::Solicitation as i32 && e.item_id == sol
        })
        .await;
    }
    let listed = zhibao(&["solicitations", "--lang", "zh"], &a.socket).await;
    assert!(
        out(&listed).contains(&sol) && out(&listed).contains("汛情专题"),
        "{}",
        out(&listed)
    );

    // County A answers, in the class the solicitation asks for.
    let answered = zhibao(
        &[
            "submit",
            "--answers",
            &sol,
            "-t",
            "甲县汛情",
            "--body",
            "水位正常",
            "--wait",
        ],
        &a.socket,
    )
    .await;
    assert!(answered.status.success(), "{}", err(&answered));
    let answer = out(&answered).lines().next().unwrap().trim().to_string();
    let status = json(&zhibao(&["solicitation", "status", &sol, "--json"], &hub.socket).await);
    let state = |county: &str| {
        status["counties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["county"] == county)
            .map(|c| c["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(state(A), "on_time");
    assert_eq!(state(B), "open");

    // The office adopts the answer; the month's figures show it.
    let adopted = zhibao(
        &["dispose", &answer, "--adopted", "--outlet", "daily: 第1期"],
        &hub.socket,
    )
    .await;
    assert!(adopted.status.success(), "{}", err(&adopted));
    let month = local(zhibao::clock::now_ms())[..7].to_string();
    let before = json(&zhibao(&["stats", "--month", &month, "--json"], &hub.socket).await);
    let row = |v: &serde_json::Value, county: &str| {
        v["counties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["county"] == county)
            .cloned()
            .unwrap()
    };
    assert_eq!(row(&before, A)["adopted"], 1);
    assert_eq!(row(&before, A)["points"], 2);
    assert_eq!(row(&before, B)["reports"]["total"], 0);
    let csv = zhibao(&["stats", "--month", &month, "--csv"], &hub.socket).await;
    assert_eq!(
        out(&csv).lines().count(),
        3,
        "a header and a row per county: {}",
        out(&csv)
    );

    // The hub restarts: the figures are the same.
    hub.stop();
    let hub = Daemon::start(&hub_cfg);
    let after = json(&zhibao(&["stats", "--month", &month, "--json"], &hub.socket).await);
    assert_eq!(figures(before), figures(after));

    // The bulletin: written, published, read at county B.
    let file = region.dir.path().join("bulletin.html");
    let written = zhibao(
        &[
            "bulletin",
            "--month",
            &month,
            "-o",
            file.to_str().unwrap(),
            "--publish",
        ],
        &hub.socket,
    )
    .await;
    assert!(written.status.success(), "{}", err(&written));
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.contains("<svg") && html.contains("table id=\"scores\""));
    assert!(html.contains("信息报送工作通报"), "Chinese by default");
    let again = zhibao(
        &["bulletin", "--month", &month, "-o", file.to_str().unwrap()],
        &hub.socket,
    )
    .await;
    assert!(
        !again.status.success(),
        "an existing file is not overwritten"
    );
    let bid = format!("BUL-{month}");
    common::await_event(&mut b_events, WAIT, |e| {
        e.kind == EventKind::Bulletin as i32 && e.item_id == bid
    })
    .await;
    let at_b = json(&zhibao(&["bulletins", "--json"], &b.socket).await);
    assert_eq!(at_b["id"], bid.as_str());
    assert_eq!(at_b["verification"], "verified");
    let copy = region.dir.path().join("copy.html");
    let saved = zhibao(
        &["bulletins", "--id", &bid, "-o", copy.to_str().unwrap()],
        &b.socket,
    )
    .await;
    assert!(saved.status.success(), "{}", err(&saved));
    let copy = std::fs::read_to_string(&copy).unwrap();
    assert!(copy.contains("<svg") && copy.contains(&format!("data-county=\"{A}\"")));

    // Withdrawn: county B's answer is refused with the reason.
    let withdrawn = zhibao(
        &["solicitation", "withdraw", &sol, "--note", "已不需要"],
        &hub.socket,
    )
    .await;
    assert!(withdrawn.status.success(), "{}", err(&withdrawn));
    common::await_event(&mut b_events, WAIT, |e| {
        e.kind == EventKind::Solicitation as i32
            && e.item_id == sol
            && e.message.contains("withdrawn")
    })
    .await;
    let late = zhibao(
        &[
            "submit",
            "--answers",
            &sol,
            "-t",
            "乙县汛情",
            "--body",
            "迟到",
        ],
        &b.socket,
    )
    .await;
    assert!(!late.status.success());
    assert!(err(&late).contains("withdrawn"), "{}", err(&late));

    for d in [a, b, relay, hub] {
        d.stop();
    }
}
