//! tally-node: the `tally` binary's library, in rooms that each own their state behind a
//! small API (ARCHITECTURE.md, "Rooms"):
//! - [`config`]: the node's config file and key files;
//! - [`metrics`]: the Prometheus registry (imports no room);
//! - [`exec`]: where blocking work runs and where the wall clock comes from;
//! - [`chain`]: the ledger and the mempool, the lock order kept inside, a read-only reader;
//! - [`notify`]: commit waiters, block events, the status board;
//! - [`admission`]: txs on their way into the mempool (signature stage, gossip batching);
//! - [`consensus`]: the driver, the signing record, the consensus log, state sync;
//! - [`rpc`]: the JSON-RPC server (nothing but `run` imports it);
//! - [`run`]: `tally start`, the only file that names every room;
//! - [`cli`]: every other command (nothing imports it);
//! - `sim` (feature `sim`): the real node under deterministic simulation.

pub mod admission;
pub mod chain;
pub mod cli;
pub mod config;
pub mod consensus;
pub mod exec;
pub mod metrics;
pub mod notify;
pub mod rpc;
pub mod run;
#[cfg(feature = "sim")]
pub mod sim;
