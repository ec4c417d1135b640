//! Running zhibao like other daemons: JSON log lines, signals and SIGHUP
//! reload on a real `zhibao serve` process, shell completions, the man
//! page and the systemd unit.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Region;
use common::zhibao;
use zhibao::config::NodeConfig;

/// A `zhibao serve` whose log (stderr) is read line by line as it comes.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    socket: PathBuf,
}

impl Node {
    fn start(config: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zhibao"))
            .args(extra)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,h2=warn,tower=warn,hyper=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zhibao serve");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert!(ready.starts_with("ready "), "no ready line: {ready:?}");
        let socket = ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix("operator="))
            .map(PathBuf::from)
            .unwrap();
        Self {
            child,
            lines,
            socket,
        }
    }

    /// The log lines up to and including the first that contains `needle`.
    fn until(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("no log line with {needle:?} ({e}); saw {seen:#?}"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {name}");
    }

    fn operator(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--socket", self.socket.to_str().unwrap()]);
        zhibao(&all)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
}

fn hub_config(region: &Region) -> NodeConfig {
    region.hub_config("127.0.0.1:0".parse().unwrap())
}

#[test]
fn json_logs_signals_and_a_sighup_reload_on_a_real_node() {
    let region = Region::new(&[]);
    let path = region.dir.path().join("hub.toml");
    let mut cfg = hub_config(&region);
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    let node = Node::start(&path, &["--log-format", "json"]);

    // Every line is one JSON object with the standard fields.
    let started = node.until("node started");
    for line in &started {
        let v = json(line);
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(v.get(key).is_some(), "no {key:?} in {line}");
        }
    }
    let v = json(started.last().unwrap());
    assert_eq!(v["fields"]["message"], "node started");
    assert_eq!(v["fields"]["node"], "hub", "structured, not in the message");
    assert_eq!(v["level"], "INFO");

    // SIGHUP with a changed file: the deadline applies at once, the limit
    // is named as needing a restart.
    cfg.deadlines.emergency_secs = 17;
    cfg.limits.max_in_flight = 8;
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    node.signal("HUP");
    let lines = node.until("SIGHUP: these changes take effect only after a restart");
    let received = lines
        .iter()
        .map(|l| json(l))
        .find(|v| v["fields"]["signal"] == "SIGHUP")
        .expect("the signal is logged");
    assert!(
        received["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("SIGHUP received")
    );
    let applied = lines
        .iter()
        .map(|l| json(l))
        .find(|v| v["fields"].get("applied").is_some())
        .expect("what was applied is logged");
    assert!(
        applied["fields"]["applied"]
            .as_str()
            .unwrap()
            .contains("deadlines.emergency_secs")
    );
    let restart = json(lines.last().unwrap());
    assert_eq!(restart["level"], "WARN");
    assert!(
        restart["fields"]["need_restart"]
            .as_str()
            .unwrap()
            .contains("limits.max_in_flight")
    );
    // In force: an emergency submitted now is due 17 s after it was made.
    let out = node.operator(&["submit", "-p", "emergency", "-t", "reload", "--body", "x"]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = node.operator(&["status", &id, "--json"]);
    let status = json(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(
        status["deadline_unix_ms"].as_i64().unwrap() - status["created_unix_ms"].as_i64().unwrap(),
        17_000
    );

    // SIGHUP with a broken file: the old configuration stays, and why is logged.
    std::fs::write(&path, "node_id = \"hub\"\n[upstream]\nrole = \"main\"\n").unwrap();
    node.signal("HUP");
    let broken = json(
        node.until("SIGHUP: the configuration does not load")
            .last()
            .unwrap(),
    );
    assert_eq!(broken["level"], "ERROR");
    let why = broken["fields"]["error"].as_str().unwrap();
    assert!(why.contains("line"), "names where: {why}");
    let out = node.operator(&["status"]);
    assert!(out.status.success(), "still serving: {out:?}");

    // The operators are live too: unlisted local users refused from now on.
    cfg.operator.allow_unlisted = false;
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    node.signal("HUP");
    let applied = json(node.until("SIGHUP: configuration reloaded").last().unwrap());
    assert!(
        applied["fields"]["applied"]
            .as_str()
            .unwrap()
            .contains("operator.allow_unlisted")
    );
    let out = node.operator(&["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("operator.allow_unlisted is false"), "{err}");

    // SIGTERM is logged, and the node stops cleanly.
    node.signal("TERM");
    let last = json(node.until("SIGTERM received").last().unwrap());
    assert_eq!(last["fields"]["signal"], "SIGTERM");
    node.until("node stopped");
    let mut node = node;
    assert!(node.child.wait().unwrap().success());
}

#[test]
fn text_logs_are_stamped_in_the_nodes_local_time() {
    let region = Region::new(&[]);
    let path = region.dir.path().join("hub.toml");
    let mut cfg = hub_config(&region);
    cfg.deadlines.utc_offset = "-03:30".into();
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    let node = Node::start(&path, &[]);
    let line = node.until("node started").pop().unwrap();
    let stamp = line.split_whitespace().next().unwrap();
    assert!(stamp.ends_with("-03:30"), "{line}");
    node.signal("INT");
    node.until("SIGINT received");
}

#[test]
fn completions_for_each_shell_and_the_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = zhibao(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        for word in ["submit", "serve", "log-format", "utc"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = zhibao(&["completions", "tcsh"]);
    assert!(!out.status.success());
    let out = zhibao(&["man"]);
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(man.lines().any(|l| l.starts_with(".TH zhibao 1")), "{man}");
    assert!(man.contains(".SH NAME") && man.contains("serve"));
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/zhibao@.service")).unwrap();
    let keys: Vec<(String, String)> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |k: &str| {
        keys.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {k}= in the unit"))
    };
    assert_eq!(get("User"), "zhibao");
    assert_eq!(get("ProtectSystem"), "strict");
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("PrivateTmp"), "yes");
    assert_eq!(get("CapabilityBoundingSet"), "");
    assert_eq!(get("Restart"), "on-failure");
    assert!(get("ReadWritePaths").starts_with("/var/lib/zhibao/"));
    assert!(get("ExecStart").contains("serve --config /etc/zhibao/%i.toml"));
    assert!(get("ExecReload").contains("-HUP $MAINPID"));
    // systemd's own check, where this machine has it: an instance of the
    // template with ExecStart pointing at the binary just built.
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: the unit was checked by its keys only");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("zhibao@test.service");
    std::fs::write(
        &instance,
        unit.replace("/usr/bin/zhibao", env!("CARGO_BIN_EXE_zhibao")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&instance)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // Complaints about the host (no running systemd, users that do not
    // exist here) are not about the unit; anything naming it is.
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("zhibao@test.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {said}"
    );
}

/// What SIGHUP does with a changed `[[upstream]]` (the serve loop calls
/// `RunningNode::reconfigure` with the file read again).
#[tokio::test]
async fn changed_routes_take_effect_without_a_restart_and_the_queue_follows() {
    use zhibao::class::Class;
    use zhibao::config::{Role, UpstreamConfig};
    use zhibao::proto::ItemState;
    let region = Region::new(&["county-rr", "hub-b"]);
    let hub = region.start_hub().await;
    // hub-b is configured but never runs: its address refuses connections.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = region.node_config("county-rr", dead);
    cfg.upstream[0].node_id = "hub-b".into();
    let county = zhibao::node::start(cfg.clone()).await.unwrap();
    let mut op = common::operator(&county).await;
    let id = op
        .submit(Class::BadNews, "改道", b"via the new route".to_vec(), 0)
        .await
        .unwrap();
    let st = op.status(&id).await.unwrap();
    assert_eq!(st.state, ItemState::Queued as i32);
    assert_eq!(st.pending_routes, ["hub-b"]);

    // The file now names the real hub instead.
    let mut new = cfg.clone();
    new.upstream = vec![UpstreamConfig {
        node_id: common::HUB.into(),
        addr: hub.relay_addr.unwrap().to_string(),
        role: Role::Primary,
    }];
    let done = county.reconfigure(&new).await.unwrap();
    assert_eq!(done.applied, ["upstream"]);
    assert!(done.need_restart.is_empty(), "{done:?}");
    assert_eq!(done.removed_routes, ["hub-b"]);
    // The item queued on the removed route goes up the new one.
    let st = op.wait_receipt(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32, "{st:?}");
    let routes: Vec<String> = op
        .node()
        .await
        .unwrap()
        .routes
        .into_iter()
        .map(|r| r.route)
        .collect();
    assert_eq!(routes, [common::HUB]);
    // And what is submitted from now on takes it directly.
    let next = op
        .submit(Class::Routine, "新路由", b"direct".to_vec(), 0)
        .await
        .unwrap();
    let st = op
        .wait_receipt(&next, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);

    // A hub does not become a forwarding node on SIGHUP: that needs a restart.
    let mut hub_new = region.hub_config("127.0.0.1:0".parse().unwrap());
    hub_new.upstream = new.upstream.clone();
    let done = hub.reconfigure(&hub_new).await.unwrap();
    assert!(done.applied.is_empty(), "{done:?}");
    assert_eq!(done.need_restart, ["upstream"]);

    county.shutdown(Duration::from_secs(2)).await;
    hub.shutdown(Duration::from_secs(2)).await;
}
