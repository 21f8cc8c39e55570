//! The metrics endpoint speaks both formats: OpenMetrics by default (and when a scraper
//! asks for it), the classic Prometheus text format 0.0.4 when asked for `text/plain`, and
//! `promtool check metrics` accepts the classic text (CI installs Debian's `prometheus` for
//! promtool and sets TALLY_REQUIRE_PROMTOOL=1, so the check cannot be skipped there).
//! Every series carries `chain_id`, and CometBFT's consensus metrics are there.

mod common;

use common::Testnet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn scrape(net: &Testnet, accept: Option<&str>) -> (String, String) {
    let url = format!("http://127.0.0.1:{}/metrics", net.nodes[0].metrics_port);
    let mut request = ureq::get(&url);
    if let Some(a) = accept {
        request = request.set("Accept", a);
    }
    let reply = request.call().expect("metrics answer");
    let content_type = reply.header("content-type").unwrap_or("").to_string();
    (content_type, reply.into_string().expect("text"))
}

#[test]
fn metrics_answer_openmetrics_or_the_classic_text_promtool_accepts_slow() {
    let net = Testnet::start(1, 2);
    net.wait_height(&[0], 2, Duration::from_secs(60));
    let chain = net.rpc(0, "status", serde_json::json!({})).expect("status")["node_info"]
        ["network"]
        .as_str()
        .expect("chain id")
        .to_string();

    let (ct, om) = scrape(&net, None);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (ct, _) = scrape(&net, Some(prometheus));
    assert!(ct.starts_with("application/openmetrics-text"), "Prometheus gets OpenMetrics: {ct}");

    let (ct, text) = scrape(&net, Some("text/plain; version=0.0.4"));
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    assert!(text.contains("# TYPE tally_blocks_committed_total counter"), "{text}");
    let labelled = format!("tally_height{{chain_id=\"{chain}\"}}");
    assert!(text.contains(&labelled), "every series carries chain_id: {text}");
    for name in [
        "tally_consensus_validators",
        "tally_consensus_validators_power",
        "tally_consensus_missing_validators",
        "tally_consensus_missing_validators_power",
        "tally_consensus_byzantine_validators",
        "tally_consensus_byzantine_validators_power",
        "tally_statesync_syncing",
    ] {
        assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}: {text}");
    }
    assert_eq!(net.metric(0, "tally_consensus_validators"), 1);

    let promtool = Command::new("promtool").arg("--version").output();
    if promtool.is_err() {
        assert!(
            std::env::var_os("TALLY_REQUIRE_PROMTOOL").is_none(),
            "promtool is required here (TALLY_REQUIRE_PROMTOOL) but not installed"
        );
        eprintln!("promtool not installed: the promtool check is skipped");
        return;
    }
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("to promtool");
    let out = check.wait_with_output().expect("promtool ran");
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
}
