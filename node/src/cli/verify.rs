//! `tally verify`: light-client checks, offline, with the genesis file as the only trust.
//!
//! `--rpc URL` fetches the header, its commit certificate and the proof from any node and
//! trusts none of it; `--save FILE` keeps them as a bundle, and `--bundle FILE` checks a
//! bundle without any network. The checks are the ledger's `verify_tx` / `verify_account`:
//! the certificate must carry valid precommits of more than 2/3 of the genesis voting power
//! for exactly this header, and the Merkle proof must lead from the tx or account to the
//! header's root.

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use clap::{Args, Subcommand};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use tally_consensus::CommitCertificate;
use tally_crypto::{PublicKey, Verifier, VerifierConfig};
use tally_ledger::{Account, AccountProof, Genesis, Header, Tx, TxProof};

/// Largest object in a bundle, checked before decoding.
const OBJECT_BYTES_MAX: usize = 1 << 20;

#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// That a transaction is in a committed block.
    Tx(VerifyTxArgs),
    /// What an account holds (or that it does not exist) after a committed block.
    Account(VerifyAccountArgs),
}

#[derive(Args, Debug)]
pub struct Source {
    /// The chain's genesis file: the only thing trusted.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Fetch what is needed from this node (trusting none of it).
    #[arg(long, conflicts_with = "bundle")]
    pub rpc: Option<String>,
    /// Check a bundle saved earlier with --save, offline.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Write what was fetched to this file as a bundle.
    #[arg(long, requires = "rpc")]
    pub save: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyTxArgs {
    #[command(flatten)]
    pub source: Source,
    /// The tx hash (64 hex characters), with --rpc.
    #[arg(long)]
    pub hash: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyAccountArgs {
    #[command(flatten)]
    pub source: Source,
    /// The account's public key (64 hex characters), with --rpc.
    #[arg(long)]
    pub address: Option<String>,
}

/// Everything a check needs besides the genesis; the borsh objects in base64.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Bundle {
    pub kind: String,
    pub header: String,
    pub certificate: String,
    pub proof: String,
    /// kind = tx: the tx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<String>,
    /// kind = account: the public key, and the account claimed (none = absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
}

fn b64(s: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    if s.len() > OBJECT_BYTES_MAX * 4 / 3 + 4 {
        bail!("{what} is larger than {OBJECT_BYTES_MAX} bytes");
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .with_context(|| format!("{what} is not base64"))
}

fn decode<T: borsh::BorshDeserialize>(s: &str, what: &str) -> anyhow::Result<T> {
    let bytes = b64(s, what)?;
    tally_ledger::decode_bounded(&bytes, OBJECT_BYTES_MAX, "object")
        .map_err(|e| anyhow!("{what} does not decode: {e}"))
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> anyhow::Result<&'a str> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().ok_or_else(|| anyhow!("the node's reply has no {}", path.join(".")))
}

async fn fetch(rpc: &str, kind: &str, key: &str) -> anyhow::Result<Bundle> {
    let client = HttpClientBuilder::default()
        .request_timeout(std::time::Duration::from_secs(30))
        .build(rpc)
        .with_context(|| format!("connecting to {rpc}"))?;
    let (height, mut bundle): (String, Bundle) = if kind == "tx" {
        let r: Value = client.request("tx", rpc_params![key, true]).await.context("calling tx")?;
        let bundle = Bundle {
            kind: "tx".into(),
            header: String::new(),
            certificate: String::new(),
            proof: str_field(&r, &["proof", "proof", "raw"])?.to_string(),
            tx: Some(str_field(&r, &["tx"])?.to_string()),
            address: None,
            account: None,
        };
        (str_field(&r, &["height"])?.to_string(), bundle)
    } else {
        let r: Value =
            client.request("account", rpc_params![key, true]).await.context("calling account")?;
        let present = r["proof"]["present"].as_bool().unwrap_or(false);
        let number = |f: &str| -> anyhow::Result<u64> {
            str_field(&r, &[f])?.parse().map_err(|_| anyhow!("{f} is not a number"))
        };
        let account = present
            .then(|| {
                Ok::<_, anyhow::Error>(Account {
                    balance: number("balance")?,
                    nonce: number("nonce")?,
                })
            })
            .transpose()?;
        let bundle = Bundle {
            kind: "account".into(),
            header: String::new(),
            certificate: String::new(),
            proof: str_field(&r, &["proof", "raw"])?.to_string(),
            tx: None,
            address: Some(key.to_string()),
            account,
        };
        (str_field(&r, &["height"])?.to_string(), bundle)
    };
    let c: Value = client.request("commit", rpc_params![height]).await.context("calling commit")?;
    bundle.header = str_field(&c, &["raw", "header"])?.to_string();
    bundle.certificate = str_field(&c, &["raw", "certificate"])?.to_string();
    Ok(bundle)
}

/// Checks a bundle; on success a sentence saying what was verified.
pub fn check(genesis: &Genesis, bundle: &Bundle) -> anyhow::Result<String> {
    let header: Header = decode(&bundle.header, "header")?;
    let certificate: CommitCertificate = decode(&bundle.certificate, "certificate")?;
    let verifier =
        Verifier::new(VerifierConfig { key_cache_max: 1024, sig_cache_max: 1024, batch_size: 64 });
    let validators = genesis.validator_set().context("genesis validators")?;
    let signed = certificate.signed_power(&validators).0;
    let committed = format!(
        "block {} ({}), committed by validators holding {signed} of {} voting power",
        header.height,
        header.hash(),
        validators.total_power().0
    );
    match bundle.kind.as_str() {
        "tx" => {
            let tx: Tx = decode(bundle.tx.as_deref().context("the bundle has no tx")?, "tx")?;
            let proof: TxProof = decode(&bundle.proof, "proof")?;
            let hash =
                tally_ledger::verify_tx(genesis, &header, &certificate, &tx, &proof, &verifier)?;
            Ok(format!("verified: tx {hash} is in {committed}"))
        }
        "account" => {
            let address = bundle.address.as_deref().context("the bundle has no address")?;
            let key = PublicKey::from_hex(address).context("address")?;
            let proof: AccountProof = decode(&bundle.proof, "proof")?;
            let account = bundle.account.as_ref();
            tally_ledger::verify_account(
                genesis,
                &header,
                &certificate,
                &key,
                account,
                &proof,
                &verifier,
            )?;
            Ok(match account {
                Some(a) => format!(
                    "verified: account {address} holds {} with nonce {} after {committed}",
                    a.balance, a.nonce
                ),
                None => format!("verified: account {address} does not exist after {committed}"),
            })
        }
        other => bail!("unknown bundle kind {other:?}"),
    }
}

pub async fn run(command: VerifyCommand) -> anyhow::Result<()> {
    let (source, kind, key) = match &command {
        VerifyCommand::Tx(a) => (&a.source, "tx", a.hash.as_deref()),
        VerifyCommand::Account(a) => (&a.source, "account", a.address.as_deref()),
    };
    let genesis = Genesis::load(&source.genesis).context("loading the genesis file")?;
    let bundle = match (&source.rpc, &source.bundle) {
        (Some(rpc), None) => {
            let key = key.ok_or_else(|| {
                anyhow!("give --{} with --rpc", if kind == "tx" { "hash" } else { "address" })
            })?;
            let bundle = fetch(rpc, kind, key).await?;
            if let Some(path) = &source.save {
                std::fs::write(path, serde_json::to_string_pretty(&bundle)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            bundle
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        _ => bail!("give one of --rpc or --bundle"),
    };
    if bundle.kind != kind {
        bail!("the bundle is for a {}, not a {kind}", bundle.kind);
    }
    match check(&genesis, &bundle) {
        Ok(sentence) => {
            println!("{sentence}");
            Ok(())
        }
        Err(e) => Err(anyhow!("NOT verified: {e:#}")),
    }
}
