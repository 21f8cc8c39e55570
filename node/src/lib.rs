//! tally-node: the `tally` binary's library: config, keys, the mempool, the consensus
//! driver, the JSON-RPC server, the testnet generator and the CLI.

pub mod cli;
pub mod client;
pub mod config;
pub mod driver;
pub mod events;
pub mod http_layer;
pub mod ingress;
pub mod keys;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod rpc;
pub mod rpc_metrics;
pub mod rpc_types;
pub mod shared;
pub mod signing_record;
pub mod sigverify;
pub mod snapshot_cli;
pub mod state_sync;
pub mod subscriptions;
pub mod testnet;
pub mod verify;
pub mod wal;
