//! Startup fails cleanly (no operator socket file left, the store closed,
//! nothing running) and shutdown stops a node in reverse, so that its data
//! directory opens again at once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Region;
use zhibao::class::Class;
use zhibao::node::{self, StartError};
use zhibao::proto::ItemState;
use zhibao::store::{self, Store};

const PATIENCE: Duration = Duration::from_secs(10);

fn store_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("store.redb")
}

/// Opening the store must fail because another handle has it open.
fn assert_store_busy(data_dir: &Path) {
    match Store::open(&store_path(data_dir)) {
        Err(store::Error::Db(e)) if matches!(*e, redb::Error::DatabaseAlreadyOpen) => {}
        Err(e) => panic!("store of a running node failed to open, but not as busy: {e:?}"),
        Ok(_) => panic!("the store of a running node opened a second time"),
    }
}

/// Opening the store must succeed now. The handle is then dropped and its
/// database closed (the store closes on its writer thread once the last
/// handle is gone), so the data dir is free again when this returns.
async fn assert_store_free(data_dir: &Path, when: &str) {
    let store = Store::open(&store_path(data_dir))
        .unwrap_or_else(|e| panic!("{when}: the store is still held: {e:?}"));
    let mut closed = store.closed();
    drop(store);
    tokio::time::timeout(PATIENCE, closed.wait_for(|c| *c))
        .await
        .unwrap_or_else(|_| panic!("{when}: the test's own store handle did not close"))
        .unwrap_or_else(|e| panic!("{when}: the store's closed flag went away: {e}"));
}

#[tokio::test]
async fn a_node_that_cannot_bind_its_relay_listener_leaves_nothing_running() {
    let region = Region::new(&["county-a"]);
    let data_dir = region.data(common::HUB);

    // A good node on this data dir holds the store: the check below can fail.
    let good = region.start_hub().await;
    assert_store_busy(&data_dir);
    good.shutdown(PATIENCE).await;
    assert_store_free(&data_dir, "after a good node's shutdown").await;

    // The relay port is taken by someone else.
    let occupant = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = occupant.local_addr().unwrap();
    let cfg = region.hub_config(taken);
    let socket = cfg.operator_socket();
    assert_eq!(cfg.data_dir, data_dir);
    match node::start(cfg).await {
        Err(StartError::Bind { what, source, .. }) => {
            assert!(what.contains("relay listener"), "{what}");
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
        }
        Err(e) => panic!("expected a bind error, got {e:?}"),
        Ok(n) => panic!("a node started on a taken port: {:?}", n.relay_addr),
    }
    assert!(
        !socket.exists(),
        "operator socket {} left behind by a failed start",
        socket.display()
    );
    assert_store_free(&data_dir, "after a failed start").await;
    // No staging file left next to the socket either.
    if let Some(dir) = socket.parent() {
        let left: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        let stem = socket.file_stem().unwrap().to_owned();
        assert!(
            left.iter().all(|p| p.file_stem() != Some(stem.as_os_str())),
            "files left by the operator socket: {left:?}"
        );
    }
    drop(occupant);

    // The same data dir on a fresh port starts.
    let again = node::start(region.hub_config("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    assert!(again.operator_socket.exists());
    assert_ne!(again.relay_addr, Some(taken));
    assert_store_busy(&data_dir);
    again.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_node_stops_in_reverse_and_its_data_dir_opens_again() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let node = region.start_node("county-a", hub.relay_addr.unwrap()).await;
    let data_dir = region.data("county-a");
    assert_store_busy(&data_dir);

    let mut op = common::operator(&node).await;
    let id = op
        .submit(Class::Emergency, "bridge down", b"north bridge".to_vec(), 0)
        .await
        .unwrap();
    let st = op.wait_receipt(&id, PATIENCE).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32, "{st:?}");
    drop(op);

    let socket = node.operator_socket.clone();
    assert!(socket.exists());
    node.shutdown(PATIENCE).await;
    assert!(
        !socket.exists(),
        "operator socket {} left after shutdown",
        socket.display()
    );
    assert_store_free(&data_dir, "after the county's shutdown").await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_data_dir_open_to_other_users_is_warned_about_and_one_it_makes_is_not() {
    use std::os::unix::fs::PermissionsExt;
    let region = Region::new(&[]);
    // Made by zhibao: closed to others, whatever the umask.
    let hub = region.start_hub().await;
    let data_dir = region.data(common::HUB);
    let mode = std::fs::metadata(&data_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "{mode:o}");
    hub.shutdown(PATIENCE).await;
    let warned = || common::log_lines_with(&["data directory is open to other users", "755"]);
    assert!(warned().is_empty());

    // Opened up by hand: said at the next start.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub = region.start_hub().await;
    let lines = warned();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&data_dir.display().to_string()),
        "{lines:?}"
    );
    hub.shutdown(PATIENCE).await;
}
