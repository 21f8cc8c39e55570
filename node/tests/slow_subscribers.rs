//! A subscriber that does not read is dropped with a reason, and publishing never waits for
//! it. In process: the node's rooms over a fresh ledger and a network bound to 127.0.0.1:0, the
//! subscription taken in process with a one-message queue standing for a client that stopped
//! reading.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_crypto::{ChainId, Keypair, Verifier, VerifierConfig};
use tally_ledger::{ConsensusParams, Genesis, GenesisAccount, GenesisValidator, Ledger};
use tally_network::NetworkConfig;
use tally_node::config::Config;
use tally_node::rpc::NodeInfo;
use tally_node::run::Rooms;

struct Node {
    rooms: Rooms,
    proposer: Keypair,
    _dir: tempfile::TempDir,
}

async fn node(config: Config) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let proposer = Keypair::derive_insecure("slow-subscribers/validator");
    let chain_id = ChainId::new("tally-slow-subscribers".to_string()).expect("chain id");
    let genesis = Genesis {
        chain_id: chain_id.clone(),
        genesis_time_ms: 1_700_000_000_000,
        validators: vec![GenesisValidator {
            name: "v0".into(),
            public_key: proposer.public(),
            power: 10,
        }],
        accounts: vec![GenesisAccount {
            public_key: Keypair::derive_insecure("slow-subscribers/account").public(),
            balance: 1_000,
        }],
        params: ConsensusParams::default(),
    };
    let ledger = Ledger::open(&dir.path().join("ledger.redb"), genesis.clone()).expect("ledger");
    let listen = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
    let (network, _events) =
        tally_network::spawn(NetworkConfig::new(chain_id, listen, [7u8; 32])).expect("network");
    let info = NodeInfo {
        peer_id: network.local_peer_id().to_string(),
        node_key: Keypair::derive_insecure("slow-subscribers/node").public(),
        listen_addr: String::new(),
        moniker: "test".into(),
        validator_key: Some(proposer.public()),
    };
    let verifier = Arc::new(Verifier::new(VerifierConfig::default()));
    let (gossip, _gossip_rx) = tokio::sync::mpsc::channel(16);
    let rooms = Rooms::new(&config, ledger, verifier, info, network, gossip).expect("rooms");
    Node { rooms, proposer, _dir: dir }
}

const NEW_BLOCKS: &str = "tm.event='NewBlock'";

impl Node {
    /// Publishes an (empty) next block as the driver does after a commit.
    fn publish(&self) {
        let proposed = self.rooms.chain.build_block(
            tally_consensus::Height(1),
            1_700_000_000_001,
            self.proposer.public(),
        );
        self.rooms.notify.publish_block(&proposed.expect("a block").built.block, &[]);
    }

    fn dropped(&self, reason: &str) -> u64 {
        let labels = vec![("reason", reason.to_string())];
        self.rooms.metrics.subscriptions_dropped.get_or_create(&labels).get()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_as_slow_client() {
    let mut config = Config::default();
    config.rpc.subscription_send_timeout_ms = 100;
    let node = node(config).await;
    let (mut sub, _handle) =
        tally_node::rpc::subscribe_in_process(&node.rooms.rpc, NEW_BLOCKS, 1).expect("subscribe");
    // Never waits, whatever the subscriber does.
    let started = Instant::now();
    for _ in 0..5 {
        node.publish();
    }
    assert!(started.elapsed() < Duration::from_millis(100), "publishing waited");
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.dropped("slow_client") == 0 {
        assert!(Instant::now() < deadline, "the slow subscriber was not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What was buffered is delivered, then the subscription ends.
    let mut delivered = 0;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
        let item: serde_json::Value = serde_json::from_str(&item).expect("JSON");
        if item.get("result").is_some() {
            delivered += 1;
        }
    }
    assert!((1..5).contains(&delivered), "delivered {delivered}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(node.rooms.rpc.subscriptions_open(), 0, "the registry forgot the subscriber");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_further_behind_than_the_event_channel_is_dropped_as_lagged() {
    let mut config = Config::default();
    config.rpc.subscription_lag_blocks_max = 2;
    config.rpc.subscription_send_timeout_ms = 60_000;
    let node = node(config).await;
    let (mut sub, _handle) =
        tally_node::rpc::subscribe_in_process(&node.rooms.rpc, NEW_BLOCKS, 1).expect("subscribe");
    for _ in 0..8 {
        node.publish();
    }
    // Reading lets the pump move on; it then finds it missed blocks and ends.
    let mut delivered = 0;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
        let item: serde_json::Value = serde_json::from_str(&item).expect("JSON");
        if item.get("result").is_some() {
            delivered += 1;
        }
    }
    assert!(delivered < 8, "delivered {delivered}");
    assert_eq!(node.dropped("lagged"), 1);
}
