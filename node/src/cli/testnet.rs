//! `tally testnet`: writes a local testnet of N validators.
//!
//! Test accounts: account i's key is `Keypair::derive_insecure("<seed>/account/<i>")`, that is
//! the ed25519 seed `blake3("tally/derive/v1" || "<seed>/account/<i>")`, with the default seed
//! `tally-testnet`. Anyone can derive these keys: they are for local testing only. Validator
//! and node keys are random.

use crate::config::keys::save_key;
use crate::config::{Config, Home};
use anyhow::{bail, Context as _};
use clap::Args;
use std::path::PathBuf;
use tally_crypto::{ChainId, Keypair};
use tally_ledger::{ConsensusParams, Genesis, GenesisAccount, GenesisValidator};

pub const DEFAULT_ACCOUNT_SEED: &str = "tally-testnet";

#[derive(Args, Debug)]
pub struct TestnetArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: u32,
    /// Output folder; `node0`, `node1`, ... are written inside it.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "tally-local")]
    pub chain_id: String,
    /// Funded test accounts.
    #[arg(long, default_value_t = 1000)]
    pub accounts: u32,
    /// Initial balance of every test account.
    #[arg(long, default_value_t = 1_000_000_000_000)]
    pub balance: u64,
    /// The seed test account keys derive from.
    #[arg(long, default_value = DEFAULT_ACCOUNT_SEED)]
    pub account_seed: String,
    /// Validator i uses p2p port BASE+10i, RPC BASE+1+10i, metrics BASE+4+10i.
    #[arg(long, default_value_t = 26656)]
    pub base_port: u16,
    /// Write the nodes as full nodes that follow but do not vote, from this index on
    /// (they are not in the validator set). Default: all are validators.
    #[arg(long)]
    pub full_nodes: Option<u32>,
    /// Full nodes start by state sync from the validators' snapshots (`state_sync.enable`).
    #[arg(long)]
    pub state_sync: bool,
    /// `snapshots.interval_blocks` of every node (default: the config default, 1000).
    #[arg(long)]
    pub snapshot_interval: Option<u64>,
}

/// Test account `index` of the testnet with account seed `seed`.
pub fn test_account(seed: &str, index: u32) -> Keypair {
    Keypair::derive_insecure(&format!("{seed}/account/{index}"))
}

pub struct NodePorts {
    pub p2p: u16,
    pub rpc: u16,
    pub metrics: u16,
}

pub fn ports(base: u16, index: u32) -> anyhow::Result<NodePorts> {
    let offset = u16::try_from(index * 10).context("too many validators for the port range")?;
    let p2p = base.checked_add(offset).context("port out of range")?;
    let metrics = p2p.checked_add(4).context("port out of range")?;
    Ok(NodePorts { p2p, rpc: p2p + 1, metrics })
}

pub fn write_testnet(args: &TestnetArgs) -> anyhow::Result<()> {
    let nodes = args.validators;
    if nodes == 0 || nodes > 100 {
        bail!("--validators must be between 1 and 100");
    }
    let voting = args.full_nodes.unwrap_or(nodes).min(nodes);
    if voting == 0 {
        bail!("at least one node must be a validator");
    }
    let chain_id = ChainId::new(args.chain_id.clone())?;
    if args.out.join("node0").exists() {
        bail!("{} already holds a testnet; remove it first", args.out.display());
    }
    let validator_keys: Vec<Keypair> = (0..nodes).map(|_| Keypair::generate()).collect();
    let node_keys: Vec<Keypair> = (0..nodes).map(|_| Keypair::generate()).collect();
    let genesis = Genesis {
        chain_id: chain_id.clone(),
        genesis_time_ms: now_ms(),
        validators: (0..voting as usize)
            .map(|i| GenesisValidator {
                name: format!("validator-{i}"),
                public_key: validator_keys[i].public(),
                power: 10,
            })
            .collect(),
        accounts: (0..args.accounts)
            .map(|i| GenesisAccount {
                public_key: test_account(&args.account_seed, i).public(),
                balance: args.balance,
            })
            .collect(),
        params: ConsensusParams::default(),
    };
    genesis.validate().context("the generated genesis is invalid")?;
    let mut peer_addrs = Vec::new();
    for i in 0..nodes {
        let p = ports(args.base_port, i)?;
        let peer_id = peer_id_of(node_keys[i as usize].seed())?;
        peer_addrs.push(format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", p.p2p));
    }
    for i in 0..nodes {
        let home = Home::new(args.out.join(format!("node{i}")));
        std::fs::create_dir_all(home.data())
            .with_context(|| format!("creating {}", home.data().display()))?;
        let p = ports(args.base_port, i)?;
        let mut config =
            Config { moniker: format!("node{i}"), validator: i < voting, ..Config::default() };
        config.p2p.listen_addr = format!("/ip4/127.0.0.1/tcp/{}", p.p2p);
        config.p2p.peers = peer_addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i as usize)
            .map(|(_, a)| a.clone())
            .collect();
        config.rpc.listen_addr = ([127, 0, 0, 1], p.rpc).into();
        config.metrics.listen_addr = ([127, 0, 0, 1], p.metrics).into();
        config.state_sync.enable = args.state_sync && i >= voting;
        if let Some(interval) = args.snapshot_interval {
            config.snapshots.interval_blocks = interval;
        }
        config.save(&home.config())?;
        genesis.save(&home.genesis()).context("writing genesis")?;
        save_key(&home.validator_key(), &validator_keys[i as usize])?;
        save_key(&home.node_key(), &node_keys[i as usize])?;
    }
    println!(
        "wrote a {nodes}-node testnet ({voting} validators, chain {chain_id}, {} funded accounts) to {}",
        args.accounts,
        args.out.display()
    );
    Ok(())
}

/// The libp2p peer id of the ed25519 identity with this seed (as `tally-network` derives it).
fn peer_id_of(seed: [u8; 32]) -> anyhow::Result<libp2p::PeerId> {
    let key = libp2p::identity::Keypair::ed25519_from_bytes(seed).context("node key")?;
    Ok(key.public().to_peer_id())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
