//! A subscriber that does not read is dropped with a reason, and publishing never waits for
//! it. In process: the node's rooms over a fresh ledger and a network bound to 127.0.0.1:0, the
//! RPC module called directly with a one-message buffer standing for a client that stopped
//! reading.

use jsonrpsee::core::params::ObjectParams;
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
        listen_addr: String::new(),
        moniker: "test".into(),
        validator_key: Some(proposer.public()),
    };
    let verifier = Arc::new(Verifier::new(VerifierConfig::default()));
    let (gossip, _gossip_rx) = tokio::sync::mpsc::channel(16);
    let rooms = Rooms::new(&config, ledger, verifier, info, network, gossip).expect("rooms");
    Node { rooms, proposer, _dir: dir }
}

fn new_blocks() -> ObjectParams {
    let mut p = ObjectParams::new();
    p.insert("query", "tm.event='NewBlock'").expect("query param");
    p
}

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
    let module = tally_node::rpc::module(node.rooms.rpc.clone()).expect("module");
    let mut sub = module.subscribe("subscribe", new_blocks(), 1).await.expect("subscribe");
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
    while let Ok(Some(item)) =
        tokio::time::timeout(Duration::from_secs(5), sub.next::<serde_json::Value>()).await
    {
        item.expect("notification");
        delivered += 1;
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
    let module = tally_node::rpc::module(node.rooms.rpc.clone()).expect("module");
    let mut sub = module.subscribe("subscribe", new_blocks(), 1).await.expect("subscribe");
    for _ in 0..8 {
        node.publish();
    }
    // Reading lets the pump move on; it then finds it missed blocks and ends.
    let mut delivered = 0;
    while let Ok(Some(item)) =
        tokio::time::timeout(Duration::from_secs(5), sub.next::<serde_json::Value>()).await
    {
        item.expect("notification");
        delivered += 1;
    }
    assert!(delivered < 8, "delivered {delivered}");
    assert_eq!(node.dropped("lagged"), 1);
}
