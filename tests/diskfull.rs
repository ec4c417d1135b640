//! A full disk: the hub's store on a small file system of its own (tmpfs,
//! mounted by the test when it runs as root; skipped with a message
//! otherwise) fills up. New items are refused with RESOURCE_EXHAUSTED,
//! reads keep working, nothing acknowledged is lost, and once space is
//! freed the node carries on without a restart — whether the free-space
//! floor refused them first, or the disk filled under a commit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Region;
use zhibao::config::NodeConfig;
use zhibao::envelope;
use zhibao::proto::Report;

const PATIENCE: Duration = Duration::from_secs(20);

/// A tmpfs of `mib` MiB at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The hub's configuration with its data on `fs`, and a filler file there
/// that the test removes to free space.
fn setup(region: &Region, fs: &Path, floor: u64) -> (NodeConfig, PathBuf) {
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.data_dir = fs.join("hub");
    cfg.limits.min_free_disk_bytes = floor;
    let filler = fs.join("filler");
    std::fs::write(&filler, vec![0u8; 8 << 20]).unwrap();
    (cfg, filler)
}

fn item(region: &Region, n: usize) -> zhibao::proto::SignedReport {
    let report = Report {
        title: format!("filling {n}"),
        body: vec![b'x'; 200 * 1024],
        ..common::report("county-a")
    };
    envelope::sign(&report, &region.identity("county-a"))
}

/// Delivers items until the hub refuses one; returns the ids it took.
async fn fill(
    region: &Region,
    client: &mut zhibao::proto::relay_client::RelayClient<tonic::transport::Channel>,
) -> (Vec<String>, tonic::Status) {
    let mut taken = Vec::new();
    for n in 0..1000 {
        let item = item(region, n);
        let id = envelope::claimed_id(&item).unwrap();
        match client.deliver(item).await {
            Ok(_) => taken.push(id),
            Err(status) => return (taken, status),
        }
    }
    panic!("1000 items of 200 KiB fitted on a small file system");
}

/// Delivers one more item, retrying while the store reopens.
async fn delivers_again(
    region: &Region,
    client: &mut zhibao::proto::relay_client::RelayClient<tonic::transport::Channel>,
) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let item = item(region, 9999);
        let id = envelope::claimed_id(&item).unwrap();
        match client.deliver(item).await {
            Ok(_) => return id,
            Err(s) if tokio::time::Instant::now() < deadline => {
                assert!(
                    matches!(
                        s.code(),
                        tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                    ),
                    "{s}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("still refused after space was freed: {s}"),
        }
    }
}

async fn run(floor: u64) {
    let region = Region::new(&["county-a"]);
    let mount_at = region.dir.path().join("small");
    let Some(fs) = Tmpfs::mount(&mount_at, 24) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (the disk-full test needs root)");
        return;
    };
    let (cfg, filler) = setup(&region, &fs.0, floor);
    let hub = zhibao::node::start(cfg).await.unwrap();
    let addr = hub.relay_addr.unwrap();
    let mut client = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;

    let (taken, refused) = fill(&region, &mut client).await;
    assert!(!taken.is_empty());
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    assert!(refused.message().contains("full"), "{}", refused.message());

    // Reads keep working, and nothing acknowledged is lost.
    let mut op = common::operator(&hub).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let listed = loop {
        match op.list(false, 10_000).await {
            Ok((items, _)) => break items,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "list fails: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(listed.len(), taken.len());
    let inbox: Vec<String> = common::inbox_items(&region, addr)
        .await
        .iter()
        .filter_map(envelope::claimed_id)
        .collect();
    for id in &taken {
        assert_eq!(inbox.iter().filter(|i| *i == id).count(), 1, "{id}");
    }

    // Space freed: the same node takes items again.
    std::fs::remove_file(&filler).unwrap();
    let more = delivers_again(&region, &mut client).await;
    let inbox: Vec<String> = common::inbox_items(&region, addr)
        .await
        .iter()
        .filter_map(envelope::claimed_id)
        .collect();
    assert!(inbox.contains(&more));
    assert_eq!(inbox.len(), taken.len() + 1);
    hub.shutdown(PATIENCE).await;
    drop(fs);
}

#[tokio::test]
async fn below_the_floor_new_items_are_refused_and_the_node_carries_on() {
    run(4 << 20).await;
}

#[tokio::test]
async fn a_disk_that_fills_under_a_commit_does_not_stop_the_node() {
    run(0).await;
}
