//! Target `rpc_request`: arbitrary request bodies into the node's JSON-RPC module, in
//! process. One set of the node's rooms for the whole run (a real ledger in a temp dir with one committed
//! block, a network bound to 127.0.0.1:0, the default config but a 1 ms commit wait), built
//! on first use on a tokio runtime that lives as long as the process.
//!
//! Inputs are either raw text or a structured request (a method the module registers, with
//! arbitrary JSON params), so the fuzzer reaches every method's parameter handling.
//!
//! Oracles: no panic, no hang (a call answers within 10 s); every answer is one JSON-RPC 2.0
//! response object with the request's id and exactly one of `result` or `error`, and every
//! error has an integer `code` and a string `message`.

use crate::fixtures::{chain_id, keypair, signed_tx, vote};
use base64::Engine;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tally_consensus::{CommitCertificate, CommitSig, Round, ValidatorIndex, VoteType};
use tally_crypto::{Verifier, VerifierConfig};
use tally_ledger::{ConsensusParams, Genesis, GenesisAccount, GenesisValidator, Ledger};
use tally_network::NetworkConfig;
use tally_node::config::Config;
use tally_node::rpc::{NodeInfo, RpcContext};
use tally_node::run::Rooms;

struct Env {
    runtime: tokio::runtime::Runtime,
    module: RpcModule<RpcContext>,
    methods: Vec<&'static str>,
    _dir: tempfile::TempDir,
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: chain_id(),
        genesis_time_ms: 1_700_000_000_000,
        validators: vec![GenesisValidator {
            name: "v0".into(),
            public_key: keypair(0).public(),
            power: 10,
        }],
        accounts: (1..4)
            .map(|i| GenesisAccount { public_key: keypair(i).public(), balance: 1_000_000 })
            .collect(),
        params: ConsensusParams::default(),
    }
}

/// A ledger with one block (one transfer), committed under a certificate of validator 0.
fn ledger(dir: &std::path::Path, verifier: &Verifier) -> Ledger {
    let mut ledger = Ledger::open(&dir.join("ledger.redb"), genesis()).expect("ledger opens");
    let built = ledger.build_block(
        &[signed_tx(1, 2, 5, 0)],
        1_700_000_000_001,
        keypair(0).public(),
        verifier,
    );
    let hash = built.block.hash();
    let height = built.block.header.height;
    let signature = vote(0, VoteType::Precommit, height.0, 0, Some(hash)).signature;
    let cert = CommitCertificate {
        height,
        round: Round(0),
        block_hash: hash,
        signatures: vec![CommitSig { validator: ValidatorIndex(0), signature }],
    };
    ledger.commit(&built.block, &cert, built.outcome).expect("the fixture block commits");
    ledger
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let module = runtime.block_on(async {
            let verifier = Arc::new(Verifier::new(VerifierConfig::default()));
            let ledger = ledger(dir.path(), &verifier);
            let listen = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
            let (network, events) =
                tally_network::spawn(NetworkConfig::new(chain_id(), listen, [9u8; 32]))
                    .expect("network");
            // Nobody consumes network events in this harness; keep the receiver alive.
            std::mem::forget(events);
            let info = NodeInfo {
                peer_id: network.local_peer_id().to_string(),
                node_key: keypair(4).public(),
                listen_addr: String::new(),
                moniker: "fuzz".into(),
                validator_key: Some(keypair(0).public()),
            };
            let (gossip, gossip_rx) = tokio::sync::mpsc::channel(1024);
            std::mem::forget(gossip_rx);
            let mut config = Config::default();
            config.rpc.tx_commit_timeout_ms = 1;
            let rooms = Rooms::new(&config, ledger, verifier, info, network, gossip)
                .expect("the rooms build");
            tally_node::rpc::module(rooms.rpc.clone()).expect("the RPC module builds")
        });
        let methods = module.method_names().collect();
        Env { runtime, module, methods, _dir: dir }
    })
}

/// A JSON value from the input: small and varied (numbers, strings that look like hashes,
/// heights and base64 txs, arrays, objects).
fn next(r: &mut &[u8]) -> u8 {
    match r.split_first() {
        Some((&b, rest)) => {
            *r = rest;
            b
        }
        None => 0,
    }
}

fn value(r: &mut &[u8], depth: u8) -> Value {
    let Some((&b, rest)) = r.split_first() else { return Value::Null };
    *r = rest;
    match b % 10 {
        0 => Value::Null,
        1 => Value::Bool(b & 0x10 != 0),
        2 => json!(i64::from(next(r)) - 2),
        3 => json!(u64::MAX - u64::from(next(r))),
        4 => json!(format!("{}", next(r))),
        5 => json!(tally_crypto::Hash::digest(&[next(r)]).to_hex()),
        6 => json!(keypair(next(r) % 5).public().to_hex()),
        7 => {
            let tx = signed_tx(
                1 + next(r) % 3,
                1 + next(r) % 3,
                u64::from(next(r)),
                u64::from(next(r) % 3),
            );
            json!(base64::engine::general_purpose::STANDARD.encode(tx.encode()))
        }
        8 if depth < 3 => Value::Array((0..next(r) % 4).map(|_| value(r, depth + 1)).collect()),
        _ if depth < 3 => {
            let keys = ["height", "hash", "tx", "txs", "prove", "public_key", "query", "x"];
            let n = next(r) % 4;
            Value::Object(
                (0..n)
                    .map(|_| {
                        let k = keys[usize::from(next(r)) % keys.len()];
                        (k.to_string(), value(r, depth + 1))
                    })
                    .collect(),
            )
        }
        _ => json!("\u{0}\"\\"),
    }
}

fn request(data: &[u8], methods: &[&'static str]) -> String {
    let Some((&mode, mut rest)) = data.split_first() else { return String::new() };
    if mode % 4 == 0 {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let method = methods[usize::from(rest.first().copied().unwrap_or(0)) % methods.len()];
    rest = rest.get(1..).unwrap_or_default();
    let params = value(&mut rest, 0);
    json!({ "jsonrpc": "2.0", "id": u64::from(mode), "method": method, "params": params })
        .to_string()
}

fn check_response(request: &str, response: &str) {
    let v: Value =
        serde_json::from_str(response).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"));
    let o = v.as_object().unwrap_or_else(|| panic!("not an object: {response}"));
    assert_eq!(o.get("jsonrpc"), Some(&json!("2.0")), "{response}");
    assert!(o.contains_key("id"), "no id: {response}");
    if let Ok(Value::Object(req)) = serde_json::from_str::<Value>(request) {
        if let Some(id) = req.get("id") {
            assert_eq!(o.get("id"), Some(id), "id not echoed: {response}");
        }
    }
    match (o.get("result"), o.get("error")) {
        (Some(_), None) => {}
        (None, Some(Value::Object(e))) => {
            assert!(
                e.get("code").is_some_and(Value::is_i64),
                "error without an integer code: {response}"
            );
            assert!(
                e.get("message").is_some_and(Value::is_string),
                "error without a message: {response}"
            );
        }
        _ => panic!("not exactly one of result and error: {response}"),
    }
}

pub fn run(data: &[u8]) {
    let env = env();
    let req = request(data, &env.methods);
    let answer = env.runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), env.module.raw_json_request(&req, 16)).await
    });
    match answer {
        Err(_) => panic!("request hung: {req}"),
        // Not a JSON-RPC request at all: the server answers a parse error before the module.
        Ok(Err(_)) => {}
        Ok(Ok((response, _subscription))) => check_response(&req, response.get()),
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let tx = base64::engine::general_purpose::STANDARD.encode(signed_tx(2, 3, 9, 0).encode());
    let raw = |s: String| [vec![0u8], s.into_bytes()].concat();
    vec![
        raw(r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#.into()),
        raw(format!(r#"{{"jsonrpc":"2.0","id":2,"method":"broadcast_tx_sync","params":{{"tx":"{tx}"}}}}"#)),
        raw(r#"{"jsonrpc":"2.0","id":3,"method":"block","params":{"height":"1"}}"#.into()),
        raw(r#"{"jsonrpc":"2.0","id":"x","method":"tx","params":["00"]}"#.into()),
        raw(r#"{"jsonrpc":"2.0","id":4,"method":"nope"}"#.into()),
        raw(r#"{"jsonrpc":"2.0","id":5,"method":"account","params":{"public_key":"zz","prove":true}}"#.into()),
        raw(format!(r#"{{"jsonrpc":"2.0","id":6,"method":"broadcast_tx_batch","params":{{"txs":["{tx}","AA=="]}}}}"#)),
        vec![1, 0, 9, 2, 0, 7, 1, 2, 3, 0],
        vec![2, 7, 9, 3, 1, 2, 5, 1, 3],
    ]
}
