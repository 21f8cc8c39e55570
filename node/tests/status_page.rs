//! The status page in headless Chromium (Debian's `chromium` package; `.ci/run` installs
//! it): the page loads from the node's RPC address, shows the height, and the height
//! advances between two loads. Skips, saying so, when chromium is not installed.

mod common;

use common::Testnet;
use std::process::Command;
use std::time::Duration;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser"].into_iter().find_map(|name| {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().ok()?;
        found.status.success().then(|| String::from_utf8_lossy(&found.stdout).trim().to_string())
    })
}

/// Loads the page in a fresh headless browser and returns the DOM after the page's
/// scripts ran for a few seconds.
fn dump_dom(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number in `<b id="height">N</b>`.
fn shown_height(dom: &str) -> Option<u64> {
    let start = dom.find("id=\"height\">")? + "id=\"height\">".len();
    let rest = &dom[start..];
    rest[..rest.find('<')?].trim().parse().ok()
}

#[test]
fn status_page_in_headless_chromium_shows_the_height_advancing_slow() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: chromium is not installed (apt-get install -y chromium; .ci/run does)");
        return;
    };
    let net = Testnet::start(1, 10);
    net.wait_height(&[0], 2, Duration::from_secs(60));
    let url = format!("{}/", net.rpc_url(0));

    let first_dom = dump_dom(&browser, &url);
    let first =
        shown_height(&first_dom).unwrap_or_else(|| panic!("no height on the page:\n{first_dom}"));
    assert!(first >= 2, "page shows height {first}");
    assert!(first_dom.contains("<svg id=\"chart-tps\""), "the tx/s chart is on the page");
    assert!(first_dom.contains("in sync"), "sync status shown");

    std::thread::sleep(Duration::from_secs(2));
    let second_dom = dump_dom(&browser, &url);
    let second =
        shown_height(&second_dom).unwrap_or_else(|| panic!("no height on the page:\n{second_dom}"));
    assert!(second > first, "the height advanced: {first} then {second}");
    // The validator table is filled from the latest commit's signatures.
    assert!(second_dom.contains("height "), "a validator's last vote is shown");
}
