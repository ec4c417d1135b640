//! Errors and times as a person reads them: each failure one line saying
//! what is wrong and what to do, never a Rust debug string, never the same
//! cause twice; times in the node's local time unless `--utc`.

mod common;

use std::time::Duration;

use common::Region;
use common::{stderr, zhibao};
use zhibao::node;

/// No Rust internals in what a person is shown.
fn assert_for_people(text: &str) {
    for internal in ["tonic::", "Error(", "(())", "untagged", "Os {", "kind:"] {
        assert!(!text.contains(internal), "{internal:?} in {text:?}");
    }
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
}

#[test]
fn a_bad_route_role_names_the_field_and_the_accepted_values() {
    let region = Region::new(&[]);
    let mut cfg = region.node_config("county-x", "127.0.0.1:9".parse().unwrap());
    cfg.data_dir = region.data("county-x");
    let path = region.dir.path().join("county.toml");
    let text = cfg
        .to_toml()
        .unwrap()
        .replace("role = \"primary\"", "role = \"main\"");
    assert!(text.contains("role = \"main\""));
    std::fs::write(&path, text).unwrap();
    let out = zhibao(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert_for_people(&err);
    for needed in [
        "`upstream.role`",
        "\"main\"",
        "\"primary\"",
        "\"alternate\"",
        "\"skip\"",
        "line ",
    ] {
        assert!(err.contains(needed), "{needed:?} missing in {err:?}");
    }
    // The same file through a command that only needs the socket.
    let out = zhibao(&["status", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("`upstream.role`"));
}

#[test]
fn a_missing_configuration_file_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let out = zhibao(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert_for_people(&err);
    assert!(
        err.contains("absent.toml") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_names_the_field_and_what_to_do() {
    let region = Region::new(&[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = region.hub_config(taken.local_addr().unwrap());
    let path = region.dir.path().join("hub.toml");
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    let out = zhibao(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert_for_people(&err);
    assert!(err.contains("`relay.listen`"), "{err}");
    assert!(err.contains("give another one"), "{err}");
}

#[test]
fn an_unknown_review_mode_names_its_field_too() {
    let region = Region::new(&[]);
    let cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    let path = region.dir.path().join("hub.toml");
    let mut table: toml::Table = cfg.to_toml().unwrap().parse().unwrap();
    table["review"]["bad_news"]
        .as_table_mut()
        .unwrap()
        .insert("mode".into(), "later".into());
    std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
    let out = zhibao(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert_for_people(&err);
    assert!(err.contains("review.bad_news"), "{err}");
    assert!(err.contains("\"before_send\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_already_open_is_said_once_with_what_to_do() {
    let region = Region::new(&[]);
    let cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    let running = node::start(cfg.clone()).await.unwrap();
    let mut second = cfg.clone();
    second.relay = None;
    second.operator.socket = Some(region.dir.path().join("other.sock"));
    let path = region.dir.path().join("second.toml");
    std::fs::write(&path, second.to_toml().unwrap()).unwrap();
    let serve = zhibao(&["serve", "--config", path.to_str().unwrap()]);
    let audit = zhibao(&[
        "audit",
        "verify",
        "--config",
        path.to_str().unwrap(),
        "--data-dir",
        cfg.data_dir.to_str().unwrap(),
    ]);
    for out in [&serve, &audit] {
        let err = stderr(out);
        assert_for_people(&err);
        assert_eq!(err.matches("already open").count(), 1, "{err}");
        assert!(err.contains("stop that node first"), "{err}");
    }
    assert_eq!(serve.status.code(), Some(64));
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_runs_out_says_so_in_words() {
    let region = Region::new(&["county-a"]);
    // The hub is not running: nothing can be receipted.
    let county = region
        .start_node("county-a", "127.0.0.1:9".parse().unwrap())
        .await;
    let socket = county.operator_socket.to_str().unwrap().to_string();
    let wait = |timeout: &str, lang: Option<&str>| {
        common::zhibao_in(
            &[
                "submit",
                "--socket",
                &socket,
                "-p",
                "routine",
                "-t",
                "t",
                "--body",
                "b",
                "--wait",
                "--timeout",
                timeout,
            ],
            lang,
        )
    };
    for timeout in ["1ms", "1us", "50ms"] {
        let out = wait(timeout, None);
        assert_eq!(out.status.code(), Some(75), "{timeout}: {out:?}");
        let err = stderr(&out);
        assert_for_people(&err);
        assert!(err.contains("no receipt for"), "{err}");
        assert!(err.contains("zhibao status"), "says what to do: {err}");
    }
    // In the operator's language, the same in Chinese.
    let out = wait("1ms", Some("zh"));
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let err = stderr(&out);
    assert!(err.starts_with("错误：1ms 内没有收到 "), "{err}");
    assert!(err.contains("用 `zhibao status "), "{err}");
    county.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn times_are_in_the_nodes_local_time_unless_utc_is_asked_for() {
    let region = Region::new(&[]);
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.deadlines.utc_offset = "+05:30".into();
    let hub = node::start(cfg).await.unwrap();
    let socket = hub.operator_socket.to_str().unwrap().to_string();
    let out = zhibao(&[
        "submit", "--socket", &socket, "-p", "routine", "-t", "t", "--body", "b",
    ]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let local = zhibao(&["status", &id, "--socket", &socket]);
    let local = String::from_utf8_lossy(&local.stdout).into_owned();
    let created = |text: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with("created:"))
            .unwrap_or_else(|| panic!("no created line in {text}"))
            .to_string()
    };
    assert!(created(&local).ends_with("+05:30"), "{local}");
    // --utc is global: before or after the command.
    for args in [
        vec!["--utc", "status", &id, "--socket", &socket],
        vec!["status", &id, "--socket", &socket, "--utc"],
    ] {
        let out = zhibao(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(created(&text).ends_with("UTC"), "{args:?}: {text}");
    }
    // A refusal is the node's message, once, not gRPC's code text.
    let out = zhibao(&[
        "status",
        "0123456789abcdef0123456789abcdef",
        "--socket",
        &socket,
    ]);
    let err = stderr(&out);
    assert_for_people(&err);
    assert!(!err.contains("code: '"), "{err}");
    assert_eq!(
        err.trim_end(),
        "error: no item 0123456789abcdef0123456789abcdef"
    );
    // The node's own view (CRL, certificate) too.
    let node_view = zhibao(&["status", "--socket", &socket]);
    let text = String::from_utf8_lossy(&node_view.stdout).into_owned();
    assert!(text.contains("+05:30"), "{text}");
    hub.shutdown(Duration::from_secs(5)).await;
}
