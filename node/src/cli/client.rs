//! `tally tx transfer`: builds and signs a transfer, submits it over JSON-RPC, or with
//! `--print` prints it without sending it.

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use clap::Args;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use std::path::PathBuf;
use tally_crypto::{ChainId, PublicKey};
use tally_ledger::{Transfer, Tx};

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// A node's JSON-RPC address.
    #[arg(long, default_value = "http://127.0.0.1:26657")]
    pub rpc: String,
    /// Send from test account N of a testnet (key derived from --testnet-seed).
    #[arg(long, conflicts_with = "from_key")]
    pub from_account: Option<u32>,
    /// Send from the key in this key file (as written by `tally testnet`).
    #[arg(long)]
    pub from_key: Option<PathBuf>,
    /// Recipient public key (64 hex characters).
    #[arg(long, conflicts_with = "to_account")]
    pub to: Option<String>,
    /// Recipient: test account N of a testnet.
    #[arg(long)]
    pub to_account: Option<u32>,
    #[arg(long)]
    pub amount: u64,
    /// The nonce to use; by default the node's view of the sender's next nonce.
    #[arg(long)]
    pub nonce: Option<u64>,
    /// The seed test accounts derive from (see `tally testnet --help`).
    #[arg(long, default_value = super::testnet::DEFAULT_ACCOUNT_SEED)]
    pub testnet_seed: String,
    /// Wait until the transfer commits (broadcast_tx_commit).
    #[arg(long, conflicts_with = "print")]
    pub commit: bool,
    /// Print the signed tx (`{"tx": <base64>, "hash": <hex>}`) instead of sending it. With
    /// --chain-id and --nonce no node is asked anything.
    #[arg(long)]
    pub print: bool,
    /// The chain id to sign for; by default the node's (`status`).
    #[arg(long)]
    pub chain_id: Option<String>,
}

pub async fn transfer(args: TransferArgs) -> anyhow::Result<()> {
    let client = HttpClientBuilder::default()
        .request_timeout(std::time::Duration::from_secs(30))
        .build(&args.rpc)
        .with_context(|| format!("connecting to {}", args.rpc))?;
    let sender = match (&args.from_account, &args.from_key) {
        (Some(i), None) => super::testnet::test_account(&args.testnet_seed, *i),
        (None, Some(path)) => crate::config::keys::load_key(path)?,
        _ => bail!("give one of --from-account or --from-key"),
    };
    let to = match (&args.to, args.to_account) {
        (Some(hex), None) => PublicKey::from_hex(hex).context("--to")?,
        (None, Some(i)) => super::testnet::test_account(&args.testnet_seed, i).public(),
        _ => bail!("give one of --to or --to-account"),
    };
    let chain_id = match &args.chain_id {
        Some(chain) => ChainId::new(chain.as_str()).context("--chain-id")?,
        None => {
            let status: serde_json::Value =
                client.request("status", rpc_params![]).await.context("calling status")?;
            let chain = status["node_info"]["network"]
                .as_str()
                .ok_or_else(|| anyhow!("status has no node_info.network"))?;
            ChainId::new(chain)?
        }
    };
    let nonce = match args.nonce {
        Some(n) => n,
        None => {
            let account: serde_json::Value = client
                .request("account", rpc_params![sender.public().to_hex()])
                .await
                .context("calling account")?;
            account["next_nonce"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("account has no next_nonce: {account}"))?
        }
    };
    let tx = Tx::sign(
        Transfer { from: sender.public(), to, amount: args.amount, nonce },
        &sender,
        &chain_id,
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(tx.encode());
    if args.print {
        let hash = tx.hash().0.to_hex().to_uppercase();
        let printed = serde_json::json!({ "tx": encoded, "hash": hash });
        println!("{}", serde_json::to_string_pretty(&printed)?);
        return Ok(());
    }
    let method = if args.commit { "broadcast_tx_commit" } else { "broadcast_tx_sync" };
    let reply: serde_json::Value = client
        .request(method, rpc_params![encoded])
        .await
        .with_context(|| format!("calling {method}"))?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    // A refused tx is a result with a code (CometBFT's form): the command fails on it.
    let code = if args.commit { &reply["check_tx"]["code"] } else { &reply["code"] };
    if code.as_u64().is_some_and(|c| c != 0) {
        bail!("the node refused the tx (code {code}): see log above");
    }
    Ok(())
}
