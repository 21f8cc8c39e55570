//! End to end: four real `tally` validators on 127.0.0.1, real libp2p, real redb files,
//! real JSON-RPC over HTTP.

mod common;

use common::{b64, Testnet};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SENDERS: u32 = 50;
const TXS_PER_SENDER: u64 = 4;
const ACCOUNTS: u32 = 100;
const BALANCE: u64 = 1_000_000_000_000;

#[test]
fn n4_two_hundred_transfers_commit_identically_then_survive_a_sigkill_slow() {
    let mut net = Testnet::start(4, ACCOUNTS);
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(90));

    // 50 senders x 4 txs (nonces 0..3), each sender's txs through one node, spread over all
    // four; recipients are accounts 50..99.
    let mut hashes = Vec::new();
    let mut expected: BTreeMap<u32, i128> = (0..ACCOUNTS).map(|a| (a, BALANCE as i128)).collect();
    for nonce in 0..TXS_PER_SENDER {
        for sender in 0..SENDERS {
            let to = SENDERS + (sender + nonce as u32) % (ACCOUNTS - SENDERS);
            let amount = 1 + u64::from(sender) + nonce;
            let tx = net.signed_transfer(sender, to, amount, nonce);
            let node = (sender % 4) as usize;
            let reply = net
                .rpc(node, "broadcast_tx_sync", json!({ "tx": b64(&tx) }))
                .unwrap_or_else(|e| panic!("sender {sender} nonce {nonce}: {e}"));
            assert_eq!(reply["code"], 0);
            let hash = tx.hash().0.to_hex().to_uppercase();
            assert_eq!(reply["hash"].as_str(), Some(hash.as_str()));
            hashes.push(tx.hash().0.to_hex());
            *expected.get_mut(&sender).unwrap() -= amount as i128;
            *expected.get_mut(&to).unwrap() += amount as i128;
        }
    }
    assert_eq!(hashes.len(), 200);

    // Every tx commits, and every node can find it.
    let deadline = Instant::now() + Duration::from_secs(90);
    for hash in &hashes {
        loop {
            let found: Vec<bool> =
                (0..4).map(|i| net.rpc(i, "tx", json!({ "hash": hash })).is_ok()).collect();
            if found.iter().all(|f| *f) {
                break;
            }
            assert!(Instant::now() < deadline, "tx {hash} not committed on every node: {found:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The same block hash at every height on every node.
    let tip = (0..4).map(|i| net.height(i).expect("height")).min().expect("four nodes");
    net.assert_one_hash_per_height(&[0, 1, 2, 3], tip);

    // The same balances and nonces everywhere, and the ones the transfers imply.
    for (account, balance) in &expected {
        let address = net.account_key(*account).public().to_hex();
        for i in 0..4 {
            let a = net.rpc(i, "account", json!({ "address": address })).expect("account");
            assert_eq!(
                a["balance"].as_str(),
                Some(balance.to_string().as_str()),
                "account {account} on node {i}"
            );
            let nonce = if *account < SENDERS { TXS_PER_SENDER } else { 0 };
            assert_eq!(a["nonce"].as_str(), Some(nonce.to_string().as_str()));
        }
    }

    // SIGKILL one validator: the other three (3 of 4 = more than 2/3) keep committing.
    net.kill_node(3);
    let before = (0..3).map(|i| net.height(i).expect("height")).max().expect("three");
    net.wait_height(&[0, 1, 2], before + 5, Duration::from_secs(120));
    let tx = net.signed_transfer(0, 99, 7, TXS_PER_SENDER);
    let reply = net.rpc(1, "broadcast_tx_commit", json!([b64(&tx)])).expect("commit after kill");
    assert_eq!(reply["tx_result"]["code"], 0);

    // Restarted, the killed validator reopens its ledger, block-syncs what it missed and
    // follows the chain again, with the same blocks.
    net.start_node(3);
    let target = net.height(0).expect("height") + 2;
    net.wait_height(&[0, 1, 2, 3], target, Duration::from_secs(60));
    assert_eq!(net.block_hash(3, target), net.block_hash(0, target));
    assert!(net.log_of(3).contains("block sync"), "the restarted node caught up by block sync");
    // No node saw an honest validator sign two conflicting messages, the restarted one
    // included (its signing record was reloaded).
    for i in 0..4 {
        let metrics = net.metrics(i);
        assert!(metrics.contains("tally_evidence_total 0"), "node {i}: {metrics}");
    }
}

#[test]
fn bad_transactions_get_clear_errors_and_change_nothing_slow() {
    let net = Testnet::start(4, 10);
    net.wait_height(&[0, 1, 2, 3], 1, Duration::from_secs(90));
    // A malformed request is a JSON-RPC error; a refused tx a result with a code.
    let reason = |result: Result<serde_json::Value, serde_json::Value>| -> String {
        match result {
            Err(e) => format!("{} {}", e["message"], e["data"]["reason"]),
            Ok(r) if r["code"].as_u64().is_some_and(|c| c != 0) => {
                assert_eq!(r["codespace"], "tally", "{r}");
                format!("{} {}", r["log"], r["reason"])
            }
            Ok(r) => panic!("must be refused: {r}"),
        }
    };

    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": "%%% not base64" })));
    assert!(r.contains("base64"), "{r}");
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": "AAEC" })));
    assert!(r.contains("decode"), "{r}");
    let oversized =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![0u8; 4096]);
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": oversized })));
    assert!(r.contains("larger than the limit"), "{r}");
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({})));
    assert!(r.contains("missing parameter: tx"), "{r}");

    let mut forged = net.signed_transfer(0, 1, 5, 0);
    forged.signature.0[10] ^= 0x55;
    let r = reason(net.rpc(0, "broadcast_tx_sync", json!({ "tx": b64(&forged) })));
    assert!(r.contains("bad_signature"), "{r}");

    let r = reason(net.rpc(
        1,
        "broadcast_tx_sync",
        json!({ "tx": b64(&net.signed_transfer(0, 1, 5, 3)) }),
    ));
    assert!(r.contains("wrong nonce: expected 0, got 3"), "{r}");

    let r = reason(net.rpc(
        2,
        "broadcast_tx_sync",
        json!({ "tx": b64(&net.signed_transfer(0, 1, 2_000_000_000_000, 0)) }),
    ));
    assert!(r.contains("insufficient balance"), "{r}");

    let r = reason(net.rpc(
        3,
        "broadcast_tx_sync",
        json!({ "tx": b64(&net.signed_transfer(0, 0, 5, 0)) }),
    ));
    assert!(r.contains("same account"), "{r}");

    let r = reason(net.rpc(0, "block", json!({ "height": "999999" })));
    assert!(r.contains("above the latest height"), "{r}");
    let r = reason(net.rpc(0, "account", json!({ "address": "zz" })));
    assert!(r.contains("address"), "{r}");

    // A good tx still goes through, and the node kept running all along.
    let ok = net.signed_transfer(0, 1, 5, 0);
    let reply = net.rpc(0, "broadcast_tx_commit", json!({ "tx": b64(&ok) })).expect("good tx");
    assert_eq!(reply["tx_result"]["code"], 0);
    let a = net.rpc(3, "account", json!({ "address": net.account_key(0).public().to_hex() }));
    let a = a.expect("account");
    // Every node applies the commit; node 3 may lag by a block.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut a = a;
    while a["nonce"] != "1" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        a = net
            .rpc(3, "account", json!({ "address": net.account_key(0).public().to_hex() }))
            .expect("account");
    }
    assert_eq!(a["nonce"], "1");
    assert_eq!(a["balance"], "999999999995");

    // The metrics endpoint reports the chain advancing.
    let metrics = net.metrics(0);
    assert!(metrics.contains("tally_height "), "{metrics}");
    assert!(metrics.contains("tally_txs_committed_total 1"), "{metrics}");
}

/// Runs `tally verify ...`; (success, stdout + stderr).
fn tally_verify(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(common::tally_bin())
        .arg("verify")
        .args(args)
        .output()
        .expect("run tally verify");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Flips one bit of the base64 field `field` of a bundle at byte `at` (mod its length).
fn tampered(bundle: &serde_json::Value, field: &str, at: usize) -> serde_json::Value {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(bundle[field].as_str().expect("field")).expect("base64");
    let i = at % bytes.len();
    bytes[i] ^= 0x01;
    let mut out = bundle.clone();
    out[field] = serde_json::Value::String(engine.encode(bytes));
    out
}

#[test]
fn tally_verify_accepts_real_proofs_and_rejects_tampered_ones_slow() {
    let net = Testnet::start(4, 10);
    net.wait_height(&[0, 1, 2, 3], 1, Duration::from_secs(90));
    let tx = net.signed_transfer(2, 3, 42, 0);
    net.rpc(1, "broadcast_tx_commit", json!({ "tx": b64(&tx) })).expect("commit");
    let genesis = net.nodes[0].home.join("genesis.json");
    let genesis = genesis.to_str().expect("utf-8 path");
    let rpc = format!("http://127.0.0.1:{}", net.nodes[2].rpc_port);
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("tx.json");
    let hash = tx.hash().0.to_hex();

    let (ok, text) = tally_verify(&[
        "tx",
        "--genesis",
        genesis,
        "--rpc",
        &rpc,
        "--hash",
        &hash,
        "--save",
        saved.to_str().expect("path"),
    ]);
    assert!(ok && text.contains(&format!("verified: tx {hash}")), "{text}");
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("bundle")).expect("json");
    let (ok, text) =
        tally_verify(&["tx", "--genesis", genesis, "--bundle", saved.to_str().expect("path")]);
    assert!(ok, "offline: {text}");

    // Every tampered variant is refused, with a reason.
    let bad = dir.path().join("bad.json");
    for field in ["header", "certificate", "proof", "tx"] {
        for at in [0usize, 7, 40, 77, 150] {
            std::fs::write(&bad, tampered(&bundle, field, at).to_string()).expect("write");
            let (ok, text) = tally_verify(&[
                "tx",
                "--genesis",
                genesis,
                "--bundle",
                bad.to_str().expect("path"),
            ]);
            assert!(!ok && text.contains("NOT verified"), "{field}@{at} accepted: {text}");
        }
    }

    // An account: its real state verifies; a richer claim does not; a stranger is absent.
    let address = net.account_key(3).public().to_hex();
    let saved = dir.path().join("account.json");
    let (ok, text) = tally_verify(&[
        "account",
        "--genesis",
        genesis,
        "--rpc",
        &rpc,
        "--address",
        &address,
        "--save",
        saved.to_str().expect("path"),
    ]);
    assert!(ok && text.contains("holds 1000000000042"), "{text}");
    let mut bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("bundle")).expect("json");
    bundle["account"]["balance"] = json!(1_000_000_000_043u64);
    std::fs::write(&bad, bundle.to_string()).expect("write");
    let (ok, text) =
        tally_verify(&["account", "--genesis", genesis, "--bundle", bad.to_str().expect("path")]);
    assert!(!ok && text.contains("account proof does not verify"), "{text}");
    let stranger = tally_crypto::Keypair::derive_insecure("nobody").public().to_hex();
    let (ok, text) =
        tally_verify(&["account", "--genesis", genesis, "--rpc", &rpc, "--address", &stranger]);
    assert!(ok && text.contains("does not exist"), "{text}");
}

/// `tally tx transfer --print` signs and prints without sending: with --chain-id and
/// --nonce it asks no node anything (the RPC address here has nobody listening).
#[test]
fn tally_tx_transfer_print_signs_without_sending() {
    let out = std::process::Command::new(common::tally_bin())
        .args(["tx", "transfer", "--print", "--rpc", "http://127.0.0.1:9"])
        .args(["--chain-id", "print-test", "--nonce", "7", "--amount", "25"])
        .args(["--testnet-seed", "print-seed", "--from-account", "0", "--to-account", "1"])
        .output()
        .expect("run tally tx transfer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let key = |i: u32| tally_crypto::Keypair::derive_insecure(&format!("print-seed/account/{i}"));
    let chain = tally_crypto::ChainId::new("print-test").expect("chain id");
    let transfer =
        tally_ledger::Transfer { from: key(0).public(), to: key(1).public(), amount: 25, nonce: 7 };
    let expected = tally_ledger::Tx::sign(transfer, &key(0), &chain);
    assert_eq!(printed["tx"], b64(&expected), "{printed}");
    assert_eq!(printed["hash"], expected.hash().0.to_hex().to_uppercase(), "{printed}");
}
