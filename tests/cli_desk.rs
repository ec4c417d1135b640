//! The office's and the county's work through the `zhibao` command itself:
//! listing as JSON, reading a whole report in local time, saving an
//! attachment checked against its signed digest, deciding, withdrawing.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::Region;
use zhibao::proto::EventKind;

const WAIT: Duration = Duration::from_secs(20);

async fn zhibao(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zhibao"))
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

fn args(list: &[&str], socket: &Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.push("--socket".into());
    v.push(socket.display().to_string());
    v
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn an_office_reads_decides_and_the_county_sees_it_all_from_the_command_line() {
    let region = Region::new(&["county-c"]);
    let hub = region.start_hub().await;
    let county = region.start_node("county-c", hub.relay_addr.unwrap()).await;
    let (hub_sock, county_sock) = (hub.operator_socket.clone(), county.operator_socket.clone());
    let scan = region.dir.path().join("scan.pdf");
    let scan_bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&scan, &scan_bytes).unwrap();

    let submitted = zhibao(args(
        &[
            "submit",
            "-p",
            "报忧",
            "-t",
            "某乡镇洪水",
            "--body",
            "两个村道路中断\n详情见附件",
            "--attach",
            &scan.display().to_string(),
            "--wait",
        ],
        &county_sock,
    ))
    .await;
    assert!(submitted.status.success(), "{}", err(&submitted));
    let id = out(&submitted).lines().next().unwrap().trim().to_string();

    // The office's listing, one JSON object per line.
    let listed = zhibao(args(&["list", "--json", "--county", "county-c"], &hub_sock)).await;
    assert!(listed.status.success(), "{}", err(&listed));
    let first: serde_json::Value =
        serde_json::from_str(out(&listed).lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["origin"], "county-c");
    assert_eq!(first["class"], "bad_news");
    assert_eq!(first["preview"], "两个村道路中断");
    let none = zhibao(args(&["list", "--json", "--title", "地震"], &hub_sock)).await;
    assert_eq!(out(&none), "", "the title filter");

    // Deciding: a bad request is refused, a good one recorded.
    let no_outlet = zhibao(args(&["dispose", &id, "--adopted"], &hub_sock)).await;
    assert_eq!(no_outlet.status.code(), Some(2), "{}", err(&no_outlet));
    let past = zhibao(args(
        &[
            "dispose",
            &id,
            "--return",
            "--question",
            "伤亡？",
            "--by",
            "2020-01-01T00:00",
        ],
        &hub_sock,
    ))
    .await;
    assert!(!past.status.success());
    assert!(err(&past).contains("deadline"), "{}", err(&past));
    let mut county_op = common::operator(&county).await;
    let mut events = county_op.watch().await.unwrap();
    let adopted = zhibao(args(
        &[
            "dispose",
            &id,
            "--adopted",
            "--outlet",
            "《情况专报》第12期",
        ],
        &hub_sock,
    ))
    .await;
    assert!(adopted.status.success(), "{}", err(&adopted));
    assert!(out(&adopted).contains("采用"), "{}", out(&adopted));
    let decided = common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Disposed as i32 && e.item_id == id
    })
    .await;
    // The county's watchers are told in both languages.
    assert!(
        decided.message.starts_with("adopted (采用) by hub"),
        "{decided:?}"
    );
    assert!(
        decided.message_zh.starts_with("采用（hub，")
            && decided.message_zh.ends_with("：《情况专报》第12期"),
        "{decided:?}"
    );

    // The county reads the whole report with the decision, in local time.
    let shown = zhibao(args(&["show", &id], &county_sock)).await;
    assert!(shown.status.success(), "{}", err(&shown));
    let text = out(&shown);
    for want in [
        "某乡镇洪水",
        "详情见附件",
        "scan.pdf",
        "采用",
        "《情况专报》第12期",
        "+08:00",
        "valid: signed by hub",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let utc = zhibao(args(&["show", &id, "--utc"], &county_sock)).await;
    assert!(out(&utc).contains(" UTC"), "{}", out(&utc));
    // In the office's language, or in English.
    let zh = zhibao(args(&["show", &id, "--lang", "zh"], &county_sock)).await;
    // The checks of the receipt and the decision too.
    for want in [
        "标题：",
        "正文",
        "处理情况",
        "采用（hub，",
        "有效：由 hub 签发，摘要一致，按时",
        "[有效：由 hub 签发]",
    ] {
        assert!(
            out(&zh).contains(want),
            "{want:?} missing from:\n{}",
            out(&zh)
        );
    }
    assert!(
        !out(&zh).contains("valid"),
        "English words in:\n{}",
        out(&zh)
    );
    let en = zhibao(args(&["show", &id, "--lang", "en"], &county_sock)).await;
    assert!(out(&en).contains("title:"), "{}", out(&en));
    assert!(!out(&en).contains("标题："));
    // A refusal in the office's language is said in the Chinese words the
    // node sent with it.
    let unknown = zhibao(args(
        &["show", "no-such-item", "--lang", "zh"],
        &county_sock,
    ))
    .await;
    assert!(!unknown.status.success());
    assert_eq!(err(&unknown).trim(), "错误：没有信息 no-such-item");
    let unknown = zhibao(args(&["show", "no-such-item", "--lang=en"], &county_sock)).await;
    assert!(err(&unknown).starts_with("error: "), "{}", err(&unknown));
    let fr = zhibao(args(&["show", &id, "--lang", "fr"], &county_sock)).await;
    assert!(!fr.status.success());
    assert!(err(&fr).contains("zh or en"), "{}", err(&fr));

    // The office saves the scan; it is checked against the signed digest.
    let saved = region.dir.path().join("saved.pdf");
    let fetched = zhibao(args(
        &["fetch", &id, "-o", &saved.display().to_string()],
        &hub_sock,
    ))
    .await;
    assert!(fetched.status.success(), "{}", err(&fetched));
    assert_eq!(std::fs::read(&saved).unwrap(), scan_bytes);
    let again = zhibao(args(
        &["fetch", &id, "-o", &saved.display().to_string()],
        &hub_sock,
    ))
    .await;
    assert!(!again.status.success(), "never overwrites");

    // The county withdraws it; the office sees the link.
    let withdrawn = zhibao(args(
        &["withdraw", &id, "--reason", "重复上报"],
        &county_sock,
    ))
    .await;
    assert!(withdrawn.status.success(), "{}", err(&withdrawn));
    let withdrawal = out(&withdrawn).trim().to_string();
    county_op.wait_receipt(&withdrawal, WAIT).await.unwrap();
    let status = zhibao(args(&["status", &id, "--json"], &hub_sock)).await;
    let v: serde_json::Value = serde_json::from_str(out(&status).trim()).unwrap();
    assert_eq!(v["withdrawn_by"], withdrawal.as_str());

    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}
