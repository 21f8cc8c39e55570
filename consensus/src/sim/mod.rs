//! A deterministic simulation of whole clusters (testing feature only): one thread,
//! simulated time, one seeded generator, so that one seed is one exact trace that can be
//! replayed (TigerBeetle's VOPR, commonware's simulated runtime).
//!
//! - [`params`]: what a seed draws (validators 4 to 10, powers, Byzantine roles, network
//!   faults, crashes, GST).
//! - [`network`]: the event queue and the links (latency, jitter, loss, duplication,
//!   partitions that heal at GST).
//! - [`keys`]: the fast stand-in signer and the real ed25519 path.
//! - [`byzantine`]: the named Byzantine mocks.
//! - [`app`]: the blocks and valid(v).
//! - [`oracle`]: the safety and liveness checks, written from the spec.
//! - [`runner`]: [`Simulation`], [`run_seed`], [`SimReport`].
//!
//! What the simulated node does around its core, and where it is simpler than the real
//! driver: outputs are carried out in order within one instant (a crash falls between two
//! steps, never between a Persist and its Broadcast); blocks are in one shared registry, so
//! fetching a block never fails; on its tick a node re-sends all its own messages of the
//! height (the driver sends the current round's only) and asks one connected peer that has
//! committed its height for the certificate (block sync, one height per request, chained
//! at each StartHeight). Messages are not relayed by peers (gossipsub does that); Byzantine
//! actors re-randomise who gets which version of a message at every tick, so every honest
//! validator eventually receives every version, which is what relaying would guarantee.

pub mod app;
pub mod byzantine;
pub mod keys;
pub mod network;
pub mod oracle;
pub mod params;
pub mod rng;
pub mod runner;

pub use keys::{FastSigner, Scheme, SimKeys};
pub use oracle::Violation;
pub use params::{Role, SimParams};
pub use rng::SimRng;
pub use runner::{run_seed, SimReport, Simulation};
