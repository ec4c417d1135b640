//! The command line as an operator uses it: clear errors, exit codes, and
//! the example configurations staying valid.

mod common;

use std::path::Path;

use common::Region;
use common::{stderr, zhibao};
use zhibao::config::NodeConfig;

#[test]
fn example_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let defaults = toml::Table::try_from(zhibao::config::Limits::default()).unwrap();
    for f in ["config/hub.toml", "config/node.toml"] {
        let cfg = NodeConfig::load(&root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        // The examples say "the defaults": every limit they set must be one.
        let set = toml::Table::try_from(&cfg.limits).unwrap();
        let text: toml::Table = std::fs::read_to_string(root.join(f))
            .unwrap()
            .parse()
            .unwrap();
        let written = text["limits"].as_table().unwrap();
        for (name, value) in written {
            assert_eq!(
                value, &defaults[name],
                "{f}: limits.{name} is not the default"
            );
            assert_eq!(value, &set[name]);
        }
        if f == "config/hub.toml" {
            let missing: Vec<_> = defaults
                .keys()
                .filter(|k| !written.contains_key(*k))
                .collect();
            assert!(missing.is_empty(), "{f} does not document {missing:?}");
        }
        assert_eq!(cfg.tls.crl_grace_secs, 86_400, "{f}");
    }
}

#[test]
fn submit_to_a_node_that_is_not_running_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let sock = sock.to_str().unwrap();
    let args = [
        "submit",
        "--socket",
        sock,
        "-p",
        "emergency",
        "-t",
        "x",
        "--body",
        "y",
    ];
    let out = zhibao(&args);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node not running"),
        "{}",
        stderr(&out)
    );
    // In Chinese, what happened and what to do.
    let out = common::zhibao_in(&args, Some("zh"));
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("错误：节点没有运行：无法连接 "), "{err}");
    assert!(
        err.contains("；请用 `zhibao serve --config FILE` 启动它"),
        "{err}"
    );
}

#[test]
fn unknown_class_is_named() {
    let out = zhibao(&[
        "submit",
        "--socket",
        "/nonexistent",
        "-p",
        "urgent",
        "-t",
        "x",
        "--body",
        "y",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown class \"urgent\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_config_exits_with_usage_code_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "node_id = \"a\"\ndata_dir = \"d\"\n[tls]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\n[limits]\nmax_in_flight = 0\n",
    )
    .unwrap();
    let out = zhibao(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("limits.max_in_flight"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn certs_init_refuses_to_overwrite_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    // In a subdirectory: the CA goes to its sibling `certs-ca`, inside too.
    let certs = dir.path().join("certs");
    let d = certs.to_str().unwrap();
    let first = zhibao(&[
        "certs", "init", "--dir", d, "--hub", "hub", "--nodes", "a,b",
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let ca_before = std::fs::read(certs.join("ca.pem")).unwrap();
    let again = zhibao(&["certs", "init", "--dir", d, "--hub", "hub", "--nodes", "a"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(certs.join("ca.pem")).unwrap(), ca_before);
    let issue = zhibao(&["certs", "issue", "--dir", d, "--node", "c"]);
    assert!(issue.status.success(), "{}", stderr(&issue));
    let revoke = zhibao(&["certs", "revoke", "--dir", d, "--node", "c"]);
    assert!(revoke.status.success(), "{}", stderr(&revoke));
}

#[tokio::test]
async fn submit_wait_prints_the_verified_receipt_and_status_shows_it() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let node = region.start_node("county-a", hub.relay_addr.unwrap()).await;
    let sock = node.operator_socket.to_str().unwrap().to_string();

    let out = tokio::task::spawn_blocking({
        let sock = sock.clone();
        move || {
            zhibao(&[
                "submit",
                "--socket",
                &sock,
                "-p",
                "bad_news",
                "-t",
                "bridge damaged",
                "--body",
                "east span",
                "--wait",
            ])
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = text.lines().next().unwrap().to_string();
    assert!(text.contains("state:     receipted"), "{text}");
    assert!(text.contains("check:   valid: signed by hub"), "{text}");

    let out = tokio::task::spawn_blocking(move || zhibao(&["status", &id, "--socket", &sock]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("class:     bad_news"), "{text}");
    assert!(
        text.contains("receipt:   delivery receipt from hub"),
        "{text}"
    );
    node.shutdown(std::time::Duration::from_secs(10)).await;
    hub.shutdown(std::time::Duration::from_secs(10)).await;
}

#[tokio::test]
async fn oversized_body_is_refused_with_the_limit() {
    let region = Region::new(&["county-a"]);
    let node = zhibao::node::start(NodeConfig::for_node(
        "county-a",
        &region.pki(),
        &region.data("county-a"),
    ))
    .await
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&node.operator_socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o660,
        "file permissions are the operator API's access control"
    );
    let big = region.dir.path().join("big.bin");
    std::fs::write(&big, vec![b'z'; 2 * 1024 * 1024]).unwrap();
    let sock = node.operator_socket.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        zhibao(&[
            "submit",
            "--socket",
            &sock,
            "-p",
            "routine",
            "-t",
            "scan",
            "--body-file",
            big.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));
    node.shutdown(std::time::Duration::from_secs(10)).await;
}

#[tokio::test]
async fn submit_wait_that_times_out_says_so_in_one_line() {
    let region = Region::new(&["county-a"]);
    // An upstream nobody answers on.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = zhibao::node::start(region.node_config("county-a", nowhere))
        .await
        .unwrap();
    let sock = node.operator_socket.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        zhibao(&[
            "submit",
            "--socket",
            &sock,
            "-p",
            "routine",
            "-t",
            "t",
            "--body",
            "b",
            "--wait",
            "--timeout",
            "1ms",
        ])
    })
    .await
    .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no receipt") && err.contains("stays queued"),
        "{err}"
    );
    assert!(!err.contains("tonic") && !err.contains("Error("), "{err}");
    node.shutdown(std::time::Duration::from_secs(10)).await;
}

#[test]
fn file_level_config_errors_exit_64_naming_the_field() {
    let region = Region::new(&["county-a"]);
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let serve = |name: &str, change: &dyn Fn(&mut NodeConfig)| {
        let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
        cfg.data_dir = region.dir.path().join(format!("data-{name}"));
        change(&mut cfg);
        let path = region.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
        let out = zhibao(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(64), "{name}: {}", stderr(&out));
        stderr(&out)
    };
    let said = serve("no-cert", &|c| {
        c.tls.cert = c.tls.cert.with_extension("gone")
    });
    assert!(said.contains("tls.cert"), "{said}");
    let said = serve("wrong-key", &|c| {
        c.tls.key = region.pki().join("county-a.key");
    });
    assert!(said.contains("tls.key"), "{said}");
    let said = serve("port-in-use", &|c| {
        c.relay.as_mut().unwrap().listen = held.local_addr().unwrap();
    });
    assert!(said.contains("relay.listen"), "{said}");
    let file = region.dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let said = serve("data-dir", &|c| c.data_dir = file.clone());
    assert!(said.contains("data_dir"), "{said}");
    // Each said in one line, for people: no Rust debug output.
    for line in said.lines() {
        assert!(!line.contains("Os {"), "{said}");
    }
}
