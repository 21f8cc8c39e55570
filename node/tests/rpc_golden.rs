//! Golden tests of everything a client of the node sees (issue 23): every JSON-RPC method's
//! answer and each of its refusals, the WebSocket subscription messages, the status page's
//! headers, the connection-limit error, the metric names. Each case is compared with a
//! pretty-printed JSON file in `tests/golden/`, so that a refactor of `node/src` can show it
//! changed none of them.
//!
//! One testnet for every case: validator node0 and full node1 (it follows without voting;
//! its `rpc.connections_max` is 2 so the connection-limit error is easy to reach), on a fixed
//! chain id so that signed txs, their hashes and every account state are the same on every
//! run. Txs are sent in a fixed order and the chain is let go quiet between phases, so the
//! content of each block asked for is known (empty, or exactly one tx).
//!
//! What still varies from run to run is replaced by a placeholder (`Golden::normalize`):
//! - by value, named, wherever the value appears: the random validator key
//!   (`<hex64:validator0>`, `<base64:validator0>`), the node ids (`<peer-id:node0>`), ports
//!   in multiaddrs (`<port:node0-p2p>`), subscription ids (`<u64:subscription-1>`), the
//!   hashes of the blocks asked for by hash (`<hex64:block-1>`);
//! - by place (`RULES`): block hashes, times, heights, rounds, signatures and the consensus
//!   step, by a placeholder naming the type the value had (`<u64-string>` for a decimal
//!   string, `<u64>` for a number, `<hex64>`, `<base64>`, `<rfc3339>`, ...); a value of an
//!   unexpected type is left as it is, so the diff shows it;
//! - inside error messages, the latest height (`latest height <u64>`).
//!
//! Everything else (keys and nesting, types, error codes and messages, `data.reason`, tx
//! hashes, balances, proofs, state roots, counts) is compared exactly, as JSON values (the
//! order of keys is not compared). Requests are shown as sent, but for values only known at
//! run time. A case that fails only now and then is a bug of this test (a value that varies
//! without a placeholder), not a change to accept.
//!
//! `UPDATE_GOLDEN=1 cargo test -p tally-node --test rpc_golden` rewrites the files (and
//! removes those no case wrote); without it, each mismatch is reported with a diff naming
//! its case, and all cases run before the test fails.

mod common;

use base64::Engine as _;
use common::ws::Ws;
use common::{b64, Testnet};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tally_ledger::Tx;

const CHAIN: &str = "tally-golden";
const ACCOUNTS: u32 = 6;
const BALANCE: u64 = 1_000_000_000_000;
/// Every transfer goes to this account.
const RECIPIENT: u32 = 5;
/// The senders: one per broadcast method, so each one's nonces are its own.
const SYNC: u32 = 0;
const ASYNC: u32 = 1;
const COMMIT: u32 = 2;
const BATCH: u32 = 3;
/// Sends the tx that `tx`, `block` and the subscriptions are asked about.
const FOLLOWED: u32 = 4;
/// node0's `rpc.tx_batch_len_max`, small so that a batch over it is cheap.
const TX_BATCH_LEN_MAX: i64 = 16;
/// node1's `rpc.connections_max`.
const NODE1_CONNECTIONS_MAX: i64 = 2;
const WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A decimal string or a number.
    U64,
    Hex64,
    /// A 20-byte address or node id, hex of either case.
    Hex40,
    /// A vote as CometBFT prints one (`Vote{...}`), or `nil-Vote`.
    Vote,
    Base64,
    Rfc3339,
    Step,
    OptU64,
    OptHex64,
}

/// Values that vary from run to run, by the keys they sit under (the end of their path;
/// `[]` is any array element). A rule on an array applies to each element.
const RULES: &[(&[&str], Kind)] = &[
    (&["height"], Kind::U64),
    (&["block_height"], Kind::U64),
    (&["latest_block_height"], Kind::U64),
    (&["block.height"], Kind::U64),
    (&["tx.height"], Kind::U64),
    (&["time"], Kind::Rfc3339),
    (&["latest_block_time"], Kind::Rfc3339),
    (&["earliest_block_time"], Kind::Rfc3339),
    (&["genesis_time"], Kind::Rfc3339),
    (&["result", "data"], Kind::Base64),
    (&["node_info", "id"], Kind::Hex40),
    (&["address"], Kind::Hex40),
    (&["proposer_address"], Kind::Hex40),
    (&["validator_address"], Kind::Hex40),
    (&["start_time"], Kind::Rfc3339),
    (&["proposal_block_hash"], Kind::OptHex64),
    (&["locked_block_hash"], Kind::OptHex64),
    (&["valid_block_hash"], Kind::OptHex64),
    (&["prevotes_bit_array"], Kind::U64),
    (&["prevotes", "[]"], Kind::Vote),
    (&["precommits", "[]"], Kind::Vote),
    (&["precommits_bit_array"], Kind::U64),
    (&["timestamp"], Kind::Rfc3339),
    (&["earliest_block_hash"], Kind::Hex64),
    (&["earliest_app_hash"], Kind::Hex64),
    (&["next_validators_hash"], Kind::Hex64),
    (&["prev_block_hash"], Kind::Hex64),
    (&["last_block_app_hash"], Kind::Base64),
    (&["last_block_height"], Kind::U64),
    (&["last_height"], Kind::U64),
    (&["block_size"], Kind::U64),
    (&["height/round/step"], Kind::Step),
    (&["time_ms"], Kind::U64),
    (&["genesis_time_ms"], Kind::U64),
    (&["block_id", "hash"], Kind::Hex64),
    (&["last_block_id", "hash"], Kind::Hex64),
    (&["latest_block_hash"], Kind::Hex64),
    (&["validators_hash"], Kind::Hex64),
    (&["signatures", "[]", "signature"], Kind::Base64),
    (&["raw", "header"], Kind::Base64),
    (&["raw", "certificate"], Kind::Base64),
    (&["round"], Kind::U64),
    (&["step"], Kind::Step),
    (&["locked_round"], Kind::OptU64),
    (&["valid_round"], Kind::OptU64),
    (&["locked_value"], Kind::OptHex64),
    (&["valid_value"], Kind::OptHex64),
    (&["prevote_power"], Kind::U64),
    (&["precommit_power"], Kind::U64),
];

const STEPS: &[&str] = &["propose", "prevote", "precommit", "commit"];

fn is_placeholder(s: &str) -> bool {
    s.starts_with('<') && s.ends_with('>')
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok()
}

/// 64 hex digits, all lower-case or all upper-case (CometBFT's hashes are upper-case).
fn is_hex64(s: &str) -> bool {
    let lower = s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let upper = s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    s.len() == 64 && (lower || upper)
}

fn is_base64(s: &str) -> bool {
    !s.is_empty() && base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// `2026-11-25T09:32:14.123000000Z`.
fn is_rfc3339(s: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddddddddZ";
    s.len() == shape.len()
        && s.bytes()
            .zip(shape.bytes())
            .all(|(c, p)| if p == b'd' { c.is_ascii_digit() } else { c == p })
}

/// The placeholder for `v` under a rule of `kind`, `None` if `v` is not of that kind.
fn placeholder(kind: Kind, v: &Value) -> Option<&'static str> {
    Some(match (kind, v) {
        (Kind::U64 | Kind::OptU64, Value::String(s)) if is_decimal(s) => "<u64-string>",
        (Kind::U64, Value::Number(n)) if n.is_u64() => "<u64>",
        (Kind::OptU64, Value::Number(n)) if n.is_u64() => "<u64-or-null>",
        (Kind::OptU64, Value::Null) => "<u64-or-null>",
        (Kind::Hex64, Value::String(s)) if is_hex64(s) => "<hex64>",
        (Kind::Hex40, Value::String(s))
            if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            "<hex40>"
        }
        (Kind::U64, Value::String(s)) if s.contains(" = ") => "<power/total = share>",
        (Kind::Vote, Value::String(s)) if s.starts_with("Vote{") || s == "nil-Vote" => "<vote>",
        (Kind::OptHex64, Value::String(s)) if s.is_empty() => "<hex64-or-null>",
        (Kind::OptHex64, Value::String(s)) if is_hex64(s) => "<hex64-or-null>",
        (Kind::OptHex64, Value::Null) => "<hex64-or-null>",
        (Kind::Base64, Value::String(s)) if is_base64(s) => "<base64>",
        (Kind::Rfc3339, Value::String(s)) if is_rfc3339(s) => "<rfc3339>",
        (Kind::Step, Value::String(s)) if STEPS.contains(&s.as_str()) => "<step>",
        (Kind::Step, Value::String(s)) if s.split('/').count() == 3 => "<height/round/step>",
        _ => return None,
    })
}

fn rule_for(path: &[String]) -> Option<Kind> {
    RULES.iter().find_map(|(suffix, kind)| {
        let matches = path.len() >= suffix.len()
            && path[path.len() - suffix.len()..].iter().zip(suffix.iter()).all(|(p, s)| p == s);
        matches.then_some(*kind)
    })
}

fn apply(kind: Kind, v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|x| apply(kind, x)),
        Value::String(s) if is_placeholder(s) => {}
        _ => {
            if let Some(p) = placeholder(kind, v) {
                *v = Value::String(p.into());
            }
        }
    }
}

/// Replaces the latest height in error messages ("... above the latest height 42").
fn normalize_message(s: &str) -> String {
    let marker = "latest height ";
    let Some(at) = s.find(marker) else { return s.to_string() };
    let start = at + marker.len();
    let digits = s[start..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return s.to_string();
    }
    format!("{}<u64>{}", &s[..start], &s[start + digits..])
}

fn walk(v: &mut Value, path: &mut Vec<String>) {
    // No rule names an object: one whose key ends like a rule's (`result.data` of an event)
    // is walked into.
    if let Some(kind) = rule_for(path).filter(|_| !v.is_object()) {
        apply(kind, v);
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                path.push(k.clone());
                walk(x, path);
                path.pop();
            }
        }
        Value::Array(items) => {
            for x in items {
                path.push("[]".into());
                walk(x, path);
                path.pop();
            }
        }
        Value::String(s) if matches!(path.last().map(String::as_str), Some("message" | "log")) => {
            *s = normalize_message(s);
        }
        _ => {}
    }
}

/// `v` with its object keys in order, for a stable text whatever serde_json's map order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// A line diff (longest common subsequence) with three lines of context.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] =
                if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> =
        lines.iter().enumerate().filter(|(_, (tag, _))| *tag != ' ').map(|(n, _)| n).collect();
    let near = |n: usize| changed.iter().any(|&c| c.abs_diff(n) <= 3);
    let mut out = String::from("    --- golden file\n    +++ this run\n");
    let mut skipped = false;
    for (n, (tag, line)) in lines.iter().enumerate() {
        if near(n) {
            out.push_str(&format!("    {tag} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("      ...\n");
            skipped = true;
        }
    }
    out
}

/// The golden files, the placeholders of this run, and what differed.
struct Golden {
    dir: PathBuf,
    update: bool,
    seen: BTreeSet<String>,
    failures: Vec<String>,
    /// Values of this run replaced wherever they appear whole, by their placeholders.
    by_value: Vec<(Value, String)>,
    /// Substrings of multiaddrs (`/tcp/<port>`, `/p2p/<id>`) and their placeholders.
    in_addrs: Vec<(String, String)>,
}

impl Golden {
    fn new() -> Golden {
        Golden {
            dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
            update: std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0"),
            seen: BTreeSet::new(),
            failures: Vec::new(),
            by_value: Vec::new(),
            in_addrs: Vec::new(),
        }
    }

    fn redact(&mut self, value: Value, placeholder: String) {
        self.by_value.push((value, placeholder));
    }

    fn redact_values(&self, v: &mut Value) {
        if let Some((_, p)) = self.by_value.iter().find(|(value, _)| value == v) {
            *v = Value::String(p.clone());
            return;
        }
        match v {
            Value::Object(map) => map.values_mut().for_each(|x| self.redact_values(x)),
            Value::Array(items) => items.iter_mut().for_each(|x| self.redact_values(x)),
            Value::String(s) if s.starts_with("/ip4/") => {
                for (from, to) in &self.in_addrs {
                    // Whole path segments only: "/tcp/2001" is not a prefix of "/tcp/20010".
                    let mut out = String::new();
                    let mut rest = s.as_str();
                    while let Some(at) = rest.find(from.as_str()) {
                        let end = at + from.len();
                        let whole = rest[end..].is_empty() || rest[end..].starts_with('/');
                        out.push_str(&rest[..at]);
                        out.push_str(if whole { to } else { from });
                        rest = &rest[end..];
                    }
                    out.push_str(rest);
                    *s = out;
                }
            }
            _ => {}
        }
    }

    fn normalize(&self, mut v: Value) -> Value {
        self.redact_values(&mut v);
        walk(&mut v, &mut Vec::new());
        v
    }

    /// A request as shown in its golden file: run-time values redacted, long strings cut.
    fn show_request(&self, mut v: Value) -> Value {
        fn cut(v: &mut Value) {
            match v {
                Value::String(s) if s.len() > 200 => *s = format!("<{} characters>", s.len()),
                Value::Object(map) => map.values_mut().for_each(cut),
                Value::Array(items) => items.iter_mut().for_each(cut),
                _ => {}
            }
        }
        self.redact_values(&mut v);
        cut(&mut v);
        v
    }

    /// Compares case `case` (`request` shown as given, `outcome` normalized) with its file.
    fn check(&mut self, case: &str, request: Value, outcome: Value) {
        assert!(
            case.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
            "case name {case:?}"
        );
        assert!(self.seen.insert(case.to_string()), "case {case} checked twice");
        let mut doc = Map::new();
        doc.insert("case".into(), json!(case));
        doc.insert("request".into(), self.show_request(request));
        if let Value::Object(fields) = self.normalize(outcome) {
            doc.extend(fields);
        }
        let doc = sorted(&Value::Object(doc));
        let text = serde_json::to_string_pretty(&doc).expect("json") + "\n";
        let path = self.dir.join(format!("{case}.json"));
        let old = std::fs::read_to_string(&path).ok();
        if self.update {
            if old.as_deref() != Some(text.as_str()) {
                std::fs::create_dir_all(&self.dir).expect("golden dir");
                std::fs::write(&path, &text).expect("write golden file");
                eprintln!("golden: wrote {}", path.display());
            }
            return;
        }
        let Some(old) = old else {
            self.failures.push(format!(
                "case {case}: no golden file {} (UPDATE_GOLDEN=1 writes it); this run:\n{text}",
                path.display()
            ));
            return;
        };
        let expected: Value = match serde_json::from_str(&old) {
            Ok(v) => v,
            Err(e) => {
                self.failures.push(format!("case {case}: {} is not JSON: {e}", path.display()));
                return;
            }
        };
        if expected != doc {
            let expected = serde_json::to_string_pretty(&sorted(&expected)).expect("json");
            self.failures.push(format!(
                "case {case} differs from {}:\n{}",
                path.display(),
                diff(&expected, &text)
            ));
        }
    }

    /// Fails with every mismatch, and for golden files that no case wrote.
    fn finish(mut self) {
        let files = std::fs::read_dir(&self.dir).map(|d| d.flatten().collect()).unwrap_or(vec![]);
        for entry in files {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(case) = name.strip_suffix(".json") else { continue };
            if self.seen.contains(case) {
                continue;
            }
            if self.update {
                std::fs::remove_file(entry.path()).expect("remove stale golden file");
                eprintln!("golden: removed {name} (no case writes it)");
            } else {
                self.failures.push(format!("golden file {name} belongs to no case"));
            }
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} golden cases failed (UPDATE_GOLDEN=1 rewrites the files after a change \
             meant to be seen by clients):\n\n{}",
            self.failures.len(),
            self.seen.len(),
            self.failures.join("\n")
        );
    }
}

/// An HTTP answer: status, content type and body (JSON if it parses, else text).
struct Reply {
    status: u16,
    content_type: String,
    header: Option<String>,
    body: Value,
}

/// HTTP without connection reuse: node1 allows two connections, so no idle pooled one may
/// hold a slot.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
}

fn reply_of(result: Result<ureq::Response, ureq::Error>, header: &str) -> Result<Reply, String> {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_string();
    let header = response.header(header).map(str::to_string);
    let text = response.into_string().map_err(|e| e.to_string())?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply { status, content_type, header, body })
}

struct Net {
    net: Testnet,
    http: ureq::Agent,
}

impl Net {
    fn try_post(&self, node: usize, body: &str) -> Result<Reply, String> {
        let url = self.net.rpc_url(node);
        let request = self.http.post(&url).set("content-type", "application/json");
        reply_of(request.send_string(body), "")
    }

    fn post(&self, node: usize, body: &str) -> Reply {
        self.try_post(node, body).unwrap_or_else(|e| panic!("POST to node {node}: {e}"))
    }

    fn get(&self, url: &str, header: &str) -> Reply {
        reply_of(self.http.get(url).call(), header).unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// A JSON-RPC call: the whole answer (`jsonrpc`, `id`, `result` or `error`).
    fn call(&self, node: usize, method: &str, params: &Value) -> Reply {
        self.post(node, &Self::request(method, params))
    }

    fn request(method: &str, params: &Value) -> String {
        json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string()
    }

    /// A call's result, `None` if the node does not answer or answers an error.
    fn try_result(&self, node: usize, method: &str, params: Value) -> Option<Value> {
        let reply = self.try_post(node, &Self::request(method, &params)).ok()?;
        reply.body.get("result").cloned()
    }

    /// A call's result; panics on an error.
    fn result(&self, node: usize, method: &str, params: Value) -> Value {
        let reply = self.call(node, method, &params);
        match reply.body.get("result") {
            Some(r) => r.clone(),
            None => panic!("{method} {params} on node {node}: {}", reply.body),
        }
    }

    fn height(&self, node: usize) -> Option<u64> {
        let status = self.try_result(node, "status", json!({}))?;
        status["sync_info"]["latest_block_height"].as_str()?.parse().ok()
    }

    /// Polls `ready` every 100 ms until it holds, at most `WAIT`.
    fn wait_for(&self, what: &str, mut ready: impl FnMut(&Net) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ready(self) {
            if Instant::now() > deadline {
                for i in 0..self.net.nodes.len() {
                    let log = self.net.log_of(i);
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    eprintln!("---- node {i} log (tail) ----\n{}", tail.join("\n"));
                }
                panic!("timed out after {WAIT:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_height(&self, node: usize, height: u64) {
        self.wait_for(&format!("node {node} at height {height}"), |n| {
            n.height(node).is_some_and(|h| h >= height)
        });
    }

    /// Waits until each `(account, nonce)` has committed that nonce, the mempool is empty and
    /// two more (empty) blocks committed: the latest block is then empty and nothing moves.
    fn settle(&self, nonces: &[(u32, u64)]) {
        self.wait_for("the txs sent to commit", |n| {
            nonces.iter().all(|&(account, nonce)| {
                let address = n.net.account_key(account).public().to_hex();
                let account = n.result(0, "account", json!({ "address": address }));
                account["nonce"].as_str() == Some(nonce.to_string().as_str())
            }) && n.result(0, "num_unconfirmed_txs", json!({}))["n_txs"] == "0"
        });
        let h = self.height(0).expect("node0 answers");
        self.wait_height(0, h + 2);
    }
}

fn forged(mut tx: Tx) -> Tx {
    tx.signature.0[10] ^= 0x55;
    tx
}

fn b64_bytes(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The `tx` parameters of every refusal kind (and their case names) for `sender`, whose
/// next nonce is `nonce`.
fn refusals(net: &Testnet, sender: u32, nonce: u64) -> Vec<(&'static str, Value)> {
    let ok = net.signed_transfer(sender, RECIPIENT, 5, nonce);
    let mut trailing = ok.encode();
    trailing.push(0);
    vec![
        ("missing-tx", json!({})),
        ("bad-base64", json!({ "tx": "%%% not base64" })),
        ("undecodable", json!({ "tx": "AAEC" })),
        ("trailing-bytes", json!({ "tx": b64_bytes(&trailing) })),
        ("oversize", json!({ "tx": b64_bytes(&[0u8; 4096]) })),
        ("self-transfer", json!({ "tx": b64(&net.signed_transfer(sender, sender, 5, nonce)) })),
        ("zero-amount", json!({ "tx": b64(&net.signed_transfer(sender, RECIPIENT, 0, nonce)) })),
        ("bad-signature", json!({ "tx": b64(&forged(ok)) })),
        ("bad-nonce", json!({ "tx": b64(&net.signed_transfer(sender, RECIPIENT, 5, nonce + 5)) })),
        (
            "insufficient-balance",
            json!({ "tx": b64(&net.signed_transfer(sender, RECIPIENT, 2 * BALANCE, nonce)) }),
        ),
    ]
}

fn edit(i: usize, t: &mut toml::Table) {
    let rpc = t.entry("rpc").or_insert(toml::Value::Table(Default::default()));
    let rpc = rpc.as_table_mut().expect("rpc table");
    match i {
        0 => rpc.insert("tx_batch_len_max".into(), TX_BATCH_LEN_MAX.into()),
        _ => rpc.insert("connections_max".into(), NODE1_CONNECTIONS_MAX.into()),
    };
}

/// The testnet and the golden files of one run.
struct Run {
    n: Net,
    g: Golden,
}

impl Run {
    /// Starts the testnet and waits until both nodes are connected, past height 2 and in
    /// sync; names the run's random keys, ids and ports.
    fn start() -> Run {
        let extra = ["--chain-id", CHAIN, "--full-nodes", "1"];
        let net = Testnet::write(2, ACCOUNTS, &extra, edit, 2);
        let (n, mut g) = (Net { net, http: agent() }, Golden::new());
        let validators = n.net.validator_set();
        let v0 = validators.get(tally_consensus::ValidatorIndex(0)).expect("validator 0");
        g.redact(json!(v0.public_key.to_hex()), "<hex64:validator0>".into());
        g.redact(json!(b64_bytes(&v0.public_key.0)), "<base64:validator0>".into());
        for (i, node) in n.net.nodes.iter().enumerate() {
            let p2p = node.rpc_port - 1;
            g.in_addrs.push((format!("/tcp/{p2p}"), format!("/tcp/<port:node{i}-p2p>")));
        }
        n.wait_height(0, 3);
        n.wait_height(1, 2);
        n.wait_for("node1 in sync", |n| {
            let status = n.try_result(1, "status", json!({}));
            status.is_some_and(|s| s["sync_info"]["catching_up"] == false)
        });
        n.wait_for("the nodes connected", |n| {
            let peers = |i| n.try_result(i, "net_info", json!({})).map(|r| r["n_peers"].clone());
            (0..2).all(|i| peers(i).is_some_and(|p| p == "1"))
        });
        for i in 0..2 {
            let id = n.result(i, "status", json!({}))["node_info"]["id"].clone();
            let text = id.as_str().expect("node id");
            g.in_addrs.push((format!("/p2p/{text}"), format!("/p2p/<peer-id:node{i}>")));
            g.redact(id, format!("<node-id:node{i}>"));
            let status = n.result(i, "status", json!({}));
            let peer = status["node_info"]["other"]["peer_id"].clone();
            let text = peer.as_str().expect("peer id");
            g.in_addrs.push((format!("/p2p/{text}"), format!("/p2p/<peer-id:node{i}>")));
            g.redact(peer, format!("<peer-id:node{i}>"));
            // A full node shows its node key as its validator key.
            if status["validator_info"]["voting_power"] == "0" {
                let key = status["validator_info"]["pub_key"]["value"].clone();
                g.redact(key, format!("<base64:node{i}-key>"));
            }
            let rpc = status["node_info"]["other"]["rpc_address"].clone();
            g.redact(rpc, format!("<addr:node{i}-rpc>"));
        }
        Run { n, g }
    }

    /// One JSON-RPC call over HTTP, checked as case `case`; returns the answer as it came.
    fn rpc(&mut self, case: &str, node: usize, method: &str, params: Value) -> Value {
        self.rpc_shown(case, node, method, params.clone(), params)
    }

    /// Like `rpc`, with the parameters shown as `shown` (for values known only at run time).
    fn rpc_shown(
        &mut self,
        case: &str,
        node: usize,
        method: &str,
        params: Value,
        shown: Value,
    ) -> Value {
        let reply = self.n.call(node, method, &params);
        let request = json!({ "node": node, "method": method, "params": shown });
        let outcome = json!({ "http_status": reply.status, "response": reply.body });
        self.g.check(case, request, outcome);
        reply.body
    }

    /// A raw HTTP POST body to node0, checked as case `case`.
    fn post(&mut self, case: &str, body: String) {
        let reply = self.n.post(0, &body);
        let outcome = json!({ "http_status": reply.status, "response": reply.body });
        self.g.check(case, json!({ "node": 0, "body": body }), outcome);
    }

    /// One JSON-RPC call over the WebSocket, checked as case `case`.
    fn ws(&mut self, ws: &mut Ws, case: &str, method: &str, params: Value) {
        let (request, answer) = ws.call(method, params);
        let request = json!({ "node": 0, "websocket": request });
        self.g.check(case, request, json!({ "response": answer }));
    }

    /// Subscribes to `query` over the WebSocket, checked as case `case`; returns the
    /// subscribe call's id, which its events carry.
    fn subscribe(&mut self, ws: &mut Ws, case: &str, query: &str, _n: u32) -> Value {
        let (request, answer) = ws.call("subscribe", json!({ "query": query }));
        assert_eq!(answer["result"], json!({}), "subscribe {query}: {answer}");
        let id = request["id"].clone();
        let request = json!({ "node": 0, "websocket": request });
        self.g.check(case, request, json!({ "response": answer }));
        id
    }

    /// The next event of the subscription made by call `id`, checked as case `case`.
    fn notification(&mut self, ws: &mut Ws, case: &str, query: &str, id: &Value) {
        let note = ws.event(id);
        let request = json!({ "node": 0, "websocket": query });
        self.g.check(case, request, json!({ "notification": note }));
    }

    /// Phase A: no tx yet, so every block is empty and the state is genesis'.
    fn queries(&mut self) {
        self.rpc("health", 0, "health", json!({}));
        self.rpc("status-validator", 0, "status", json!({}));
        self.rpc("status-full-node", 1, "status", json!({}));
        self.rpc("genesis", 0, "genesis", json!({}));
        self.rpc("net_info-validator", 0, "net_info", json!({}));
        self.rpc("net_info-full-node", 1, "net_info", json!({}));
        self.rpc("consensus_state-validator", 0, "consensus_state", json!({}));
        self.rpc("consensus_state-full-node", 1, "consensus_state", json!({}));
        self.rpc("num_unconfirmed_txs", 0, "num_unconfirmed_txs", json!({}));

        self.rpc("block-latest", 0, "block", json!({}));
        let block1 = self.rpc("block-height-1", 0, "block", json!({ "height": "1" }));
        self.rpc("block-height-number", 0, "block", json!({ "height": 1 }));
        self.rpc("block-height-positional", 0, "block", json!(["1"]));
        self.rpc("block-height-0", 0, "block", json!({ "height": "0" }));
        self.rpc("block-above-tip", 0, "block", json!({ "height": "999999999" }));
        self.rpc("block-height-not-a-number", 0, "block", json!({ "height": "one" }));

        let hash1 = block1["result"]["block_id"]["hash"].clone();
        self.g.redact(hash1.clone(), "<hex64:block-1>".into());
        self.rpc("block_by_hash-found", 0, "block_by_hash", json!({ "hash": hash1 }));
        let unknown = "ab".repeat(32);
        self.rpc("block_by_hash-unknown", 0, "block_by_hash", json!({ "hash": unknown }));
        self.rpc("block_by_hash-malformed", 0, "block_by_hash", json!({ "hash": "xyz" }));
        self.rpc("block_by_hash-missing-hash", 0, "block_by_hash", json!({}));

        self.rpc("commit-latest", 0, "commit", json!({}));
        self.rpc("commit-height-1", 0, "commit", json!({ "height": "1" }));
        self.rpc("commit-above-tip", 0, "commit", json!({ "height": "999999999" }));

        self.rpc("validators-latest", 0, "validators", json!({}));
        self.rpc("validators-height-1", 0, "validators", json!({ "height": "1" }));
        self.rpc("validators-above-tip", 0, "validators", json!({ "height": "999999999" }));

        self.rpc("header-height-1", 0, "header", json!({ "height": "1" }));
        self.rpc("header_by_hash-found", 0, "header_by_hash", json!({ "hash": hash1 }));
        self.rpc("header_by_hash-unknown", 0, "header_by_hash", json!({ "hash": unknown }));
        self.rpc("blockchain-1-2", 0, "blockchain", json!({ "minHeight": "1", "maxHeight": "2" }));
        self.rpc(
            "blockchain-min-above-max",
            0,
            "blockchain",
            json!({ "minHeight": "3", "maxHeight": "2" }),
        );
        self.rpc("block_results-height-1", 0, "block_results", json!({ "height": "1" }));
        self.rpc("abci_info", 0, "abci_info", json!({}));
        self.rpc("consensus_params-height-1", 0, "consensus_params", json!({ "height": "1" }));
        self.rpc("unconfirmed_txs", 0, "unconfirmed_txs", json!({}));
        self.rpc("genesis_chunked-0", 0, "genesis_chunked", json!({ "chunk": "0" }));
        self.rpc("genesis_chunked-1", 0, "genesis_chunked", json!({ "chunk": "1" }));
        self.rpc("dump_consensus_state", 1, "dump_consensus_state", json!({}));
        let q = json!({ "query": "block.height <= 2", "order_by": "desc" });
        self.rpc("block_search-first-two", 0, "block_search", q);
        let q = json!({ "query": "block.height <= 2 AND tm.event = 'Tx'" });
        self.rpc("block_search-nothing", 0, "block_search", q);
        self.rpc("tx_search-bad-query", 0, "tx_search", json!({ "query": "tx.height >> 2" }));
        let q = json!({ "query": "tx.height = 1", "order_by": "sideways" });
        self.rpc("tx_search-bad-order", 0, "tx_search", q);
        let q = json!({ "query": "no.such.attribute = 'x'" });
        self.rpc("tx_search-unknown-attribute", 0, "tx_search", q);

        self.rpc("unknown-method", 0, "no_such_method", json!({}));
        let query = json!({ "query": "tm.event='NewBlock'" });
        self.rpc("subscribe-over-http", 0, "subscribe", query);
        self.rpc("unsubscribe_all-over-http", 0, "unsubscribe_all", json!({}));
        self.post("parse-error", "{not json".into());
        let batch = json!([
            { "jsonrpc": "2.0", "id": 1, "method": "health" },
            { "jsonrpc": "2.0", "id": "two", "method": "no_such_method" },
        ]);
        self.post("batch-request", batch.to_string());
        self.post("not-a-request", json!({ "id": 1 }).to_string());
    }

    /// Phase B: subscriptions, and the first tx of the chain (alone in its block), then the
    /// queries about it.
    fn subscriptions_and_one_tx(&mut self) {
        let followed = self.n.net.signed_transfer(FOLLOWED, RECIPIENT, 5, 0);
        let hash = followed.hash().0.to_hex();
        let mut ws = Ws::connect(self.n.net.nodes[0].rpc_port).expect("WebSocket to node0");
        let vote = json!({ "query": "tm.event='Polka'" });
        self.ws(&mut ws, "ws-subscribe-bad-query", "subscribe", vote);
        self.ws(&mut ws, "ws-subscribe-missing-query", "subscribe", json!({}));
        let q_block = "tm.event='NewBlock'";
        let blocks = self.subscribe(&mut ws, "ws-subscribe-new-block", q_block, 1);
        self.notification(&mut ws, "ws-notification-new-block", q_block, &blocks);
        self.ws(&mut ws, "ws-unsubscribe", "unsubscribe", json!({ "query": q_block }));
        self.ws(&mut ws, "ws-unsubscribe-again", "unsubscribe", json!({ "query": q_block }));

        let q_hash = format!("tm.event='Tx' AND tx.hash='{hash}'");
        let by_hash = self.subscribe(&mut ws, "ws-subscribe-tx-by-hash", &q_hash, 2);
        let q_all = "tm.event='Tx'";
        let all = self.subscribe(&mut ws, "ws-subscribe-tx", q_all, 3);
        let tx = json!({ "tx": b64(&followed) });
        self.rpc("broadcast_tx_sync-accepted", 0, "broadcast_tx_sync", tx);
        self.notification(&mut ws, "ws-notification-tx-by-hash", &q_hash, &by_hash);
        self.notification(&mut ws, "ws-notification-tx", q_all, &all);
        self.ws(&mut ws, "ws-unsubscribe_all", "unsubscribe_all", json!({}));
        self.ws(&mut ws, "ws-unsubscribe_all-again", "unsubscribe_all", json!({}));
        drop(ws);

        self.n.wait_for("the followed tx", |n| {
            n.try_result(0, "tx", json!({ "hash": hash })).is_some()
        });
        let found = self.rpc("tx-found", 0, "tx", json!({ "hash": hash }));
        self.rpc("tx-found-prove", 0, "tx", json!({ "hash": hash, "prove": true }));
        let upper = format!("0x{}", hash.to_uppercase());
        self.rpc("tx-found-0x-upper-case", 0, "tx", json!({ "hash": upper }));
        // CometBFT's clients send []byte parameters as base64, and booleans as strings.
        let params = json!({ "hash": b64_bytes(&followed.hash().0 .0), "prove": "true" });
        let shown = json!({ "hash": "<base64:the followed tx's hash>", "prove": "true" });
        self.rpc_shown("tx-found-base64-prove-string", 0, "tx", params, shown);
        self.rpc("tx-prove-not-boolean", 0, "tx", json!({ "hash": hash, "prove": "yes" }));
        self.rpc("tx-hash-base64-too-short", 0, "tx", json!({ "hash": "AAEC" }));
        // The URI form: GET /<method>?<params>.
        let url = format!("{}/tx?hash={upper}&prove=true", self.n.net.rpc_url(0));
        let reply = self.n.get(&url, "");
        let outcome = json!({ "http_status": reply.status, "response": reply.body });
        let request =
            json!({ "node": 0, "http": "GET /tx?hash=0x<HEX:the followed tx's hash>&prove=true" });
        self.g.check("uri-tx-prove", request, outcome);
        self.rpc("tx-unknown", 0, "tx", json!({ "hash": "cd".repeat(32) }));
        self.rpc("tx-malformed", 0, "tx", json!({ "hash": "xyz" }));

        let params = json!({ "height": found["result"]["height"] });
        let shown = json!({ "height": "<u64-string:height of the tx>" });
        let block = self.rpc_shown("block-with-tx", 0, "block", params, shown);
        let block_hash = block["result"]["block_id"]["hash"].clone();
        self.g.redact(block_hash.clone(), "<hex64:tx-block>".into());
        self.rpc("block_by_hash-with-tx", 0, "block_by_hash", json!({ "hash": block_hash }));
        self.n.settle(&[(FOLLOWED, 1)]);
    }

    /// Phase C: every broadcast method, accepted and refused. broadcast_tx_async answers
    /// once the tx decodes: its later refusals are only logged.
    fn broadcasts(&mut self) {
        for (name, params) in refusals(&self.n.net, SYNC, 0) {
            self.rpc(&format!("broadcast_tx_sync-{name}"), 0, "broadcast_tx_sync", params);
        }
        for (method, sender) in [("broadcast_tx_commit", COMMIT), ("broadcast_tx_async", ASYNC)] {
            let tx = json!({ "tx": b64(&self.n.net.signed_transfer(sender, RECIPIENT, 5, 0)) });
            self.rpc(&format!("{method}-accepted"), 0, method, tx);
            for (name, params) in refusals(&self.n.net, sender, 1) {
                self.rpc(&format!("{method}-{name}"), 0, method, params);
            }
        }

        let method = "broadcast_tx_batch";
        let tx = |nonce| b64(&self.n.net.signed_transfer(BATCH, RECIPIENT, 5, nonce));
        let (first, second) = (tx(0), tx(1));
        self.rpc("broadcast_tx_batch-accepted", 0, method, json!({ "txs": [first] }));
        // The second tx twice (already known), then each refusal.
        let mut txs = vec![json!(second), json!(second)];
        let refused = refusals(&self.n.net, BATCH, 2).into_iter();
        txs.extend(refused.filter_map(|(_, p)| p.get("tx").cloned()));
        self.rpc("broadcast_tx_batch-each-refusal", 0, method, json!({ "txs": txs }));
        self.rpc("broadcast_tx_batch-empty", 0, method, json!({ "txs": [] }));
        self.rpc("broadcast_tx_batch-missing-txs", 0, method, json!({}));
        let too_many = vec!["AAEC"; TX_BATCH_LEN_MAX as usize + 1];
        self.rpc("broadcast_tx_batch-too-many", 0, method, json!({ "txs": too_many }));
    }

    /// Phase D: every tx committed.
    fn accounts(&mut self) {
        self.n.settle(&[(FOLLOWED, 1), (SYNC, 0), (COMMIT, 1), (ASYNC, 1), (BATCH, 2)]);
        let sender = self.n.net.account_key(FOLLOWED).public().to_hex();
        let recipient = format!("0x{}", self.n.net.account_key(RECIPIENT).public().to_hex());
        let absent = tally_crypto::Keypair::derive_insecure("golden/nobody").public().to_hex();
        self.rpc("account", 0, "account", json!({ "address": sender }));
        self.rpc("account-prove", 0, "account", json!({ "address": sender, "prove": true }));
        self.rpc("account-recipient-0x", 0, "account", json!({ "address": recipient }));
        self.rpc("account-absent", 0, "account", json!({ "address": absent }));
        let params = json!({ "address": absent, "prove": true });
        self.rpc("account-absent-prove", 0, "account", params);
        self.rpc("account-malformed", 0, "account", json!({ "address": "zz" }));
        let q = json!({ "query": format!("transfer.sender = '{sender}'"), "prove": true });
        self.rpc("tx_search-by-sender-prove", 0, "tx_search", q);
        let batch = self.n.net.account_key(BATCH).public().to_hex();
        let to = recipient.trim_start_matches("0x");
        let query = format!("transfer.recipient = '{to}' AND transfer.sender = '{batch}'");
        let q = json!({ "query": query, "per_page": "1", "page": "2" });
        self.rpc("tx_search-by-recipient-page-2", 0, "tx_search", q);
        let q = json!({ "path": "/account", "data": sender, "prove": true });
        self.rpc("abci_query-account-prove", 0, "abci_query", q);
        self.rpc(
            "abci_query-unknown-path",
            0,
            "abci_query",
            json!({ "path": "/store", "data": "00" }),
        );
        let tx = b64(&self.n.net.signed_transfer(FOLLOWED, RECIPIENT, 5, 1));
        self.rpc("check_tx-ok", 0, "check_tx", json!({ "tx": tx }));
        let tx = b64(&self.n.net.signed_transfer(FOLLOWED, RECIPIENT, 5, 7));
        self.rpc("check_tx-bad-nonce", 0, "check_tx", json!({ "tx": tx }));
        self.rpc("account-missing-address", 0, "account", json!({}));
        self.rpc("num_unconfirmed_txs-after-transfers", 0, "num_unconfirmed_txs", json!({}));
        self.rpc("status-after-transfers", 0, "status", json!({}));
    }

    /// The status page and other GETs, and the metric names and types (not their values).
    fn http(&mut self) {
        for (case, path) in [
            ("http-get-status-page", "/"),
            ("http-get-index-html", "/index.html"),
            ("http-get-other-path", "/nothing"),
        ] {
            let reply = self.n.get(&format!("{}{path}", self.n.net.rpc_url(0)), "cache-control");
            let body = match &reply.body {
                Value::String(text) => json!({
                    "bytes": text.len(),
                    "first_line": text.lines().next().unwrap_or(""),
                }),
                json => json.clone(),
            };
            let outcome = json!({
                "http_status": reply.status,
                "content_type": reply.content_type,
                "cache_control": reply.header,
                "body": body,
            });
            self.g.check(case, json!({ "node": 0, "http": format!("GET {path}") }), outcome);
        }

        // The URI form of JSON-RPC (CometBFT's GET routes).
        for (case, path) in [
            ("uri-status", "/status"),
            ("uri-health", "/health"),
            ("uri-block-height-1", "/block?height=1"),
            ("uri-block-height-quoted", "/block?height=%221%22"),
            ("uri-block-height-unbalanced-quote", "/block?height=%221"),
            ("uri-block-height-twice", "/block?height=1&height=2"),
            ("uri-block-height-not-a-number", "/block?height=abc"),
            ("uri-validators", "/validators"),
            ("uri-account-prove", "/account?address=0xnothex&prove=true"),
            ("uri-subscribe-refused", "/subscribe?query=%22tm.event%3D%27NewBlock%27%22"),
        ] {
            let reply = self.n.get(&format!("{}{path}", self.n.net.rpc_url(0)), "");
            let outcome = json!({ "http_status": reply.status, "response": reply.body });
            self.g.check(case, json!({ "node": 0, "http": format!("GET {path}") }), outcome);
        }

        let url = format!("http://127.0.0.1:{}/metrics", self.n.net.nodes[0].metrics_port);
        let reply = self.n.get(&url, "");
        let text = reply.body.as_str().expect("metrics text");
        let names: BTreeSet<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let outcome = json!({
            "http_status": reply.status,
            "content_type": reply.content_type,
            "metrics": names,
        });
        self.g.check("metrics-names", json!({ "node": 0, "http": "GET /metrics" }), outcome);
        let classic = self.n.http.get(&url).set("Accept", "text/plain; version=0.0.4").call();
        let reply = reply_of(classic, "").expect("classic metrics");
        let text = reply.body.as_str().expect("metrics text");
        let names: BTreeSet<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let outcome = json!({
            "http_status": reply.status,
            "content_type": reply.content_type,
            "metrics": names,
        });
        let request =
            json!({ "node": 0, "http": "GET /metrics", "accept": "text/plain; version=0.0.4" });
        self.g.check("metrics-names-classic", request, outcome);
    }

    /// node1 serves NODE1_CONNECTIONS_MAX connections: with that many WebSockets open, a
    /// request is refused. The slot of a connection just closed may take a moment to free.
    fn connection_limit(&mut self) {
        let port = self.n.net.nodes[1].rpc_port;
        let mut refused = None;
        for _ in 0..50 {
            let held: Result<Vec<Ws>, String> =
                (0..NODE1_CONNECTIONS_MAX).map(|_| Ws::connect(port)).collect();
            if let Ok(held) = held {
                refused = Some(self.n.call(1, "health", &json!({})));
                drop(held);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let reply = refused.expect("node1's connection slots were never all free");
        let outcome = json!({
            "http_status": reply.status,
            "content_type": reply.content_type,
            "response": reply.body,
        });
        let open = format!("{NODE1_CONNECTIONS_MAX} WebSockets");
        let request = json!({ "node": 1, "method": "health", "params": {}, "while_open": open });
        self.g.check("connection-limit", request, outcome);
    }
}

#[test]
fn every_rpc_response_matches_its_golden_file_slow() {
    let started = Instant::now();
    let mut run = Run::start();
    run.queries();
    run.subscriptions_and_one_tx();
    run.broadcasts();
    run.accounts();
    run.http();
    run.connection_limit();
    eprintln!("{} golden cases in {:.1?}", run.g.seen.len(), started.elapsed());
    let Run { n, g } = run;
    drop(n);
    g.finish();
}
