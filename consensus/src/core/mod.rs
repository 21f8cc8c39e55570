//! The consensus core: Tendermint (arXiv:1807.04938, Algorithm 1) as a synchronous,
//! deterministic state machine. `Core::step(input, &mut outputs)` is the only way in; time,
//! the network, storage and the blocks themselves stay with the node.
//!
//! Files: `machine.rs` (state, `step`, accessors), `handlers.rs` (one `on_<input>` per
//! input: routing, counting), `rules.rs` (the "upon" clauses, by paper line), `send.rs`
//! (StartRound, own proposals and votes under the signing record), `vote_keeper.rs`,
//! `proposal_keeper.rs`, `future.rs` (later heights), `sign_record.rs`, `invariants.rs`.
//!
//! Where this departs from the paper, and why:
//! - L49 decides on 2f+1 precommits for id(v) plus valid(v) from the node, without needing
//!   the PROPOSAL message; a verified certificate from the node counts as the precommits.
//! - L55 skips to the highest round reached by validators holding > 1/3 of the power (each
//!   counted at the highest round it was heard from), not only to a round with f+1 messages;
//!   messages beyond the round window are not stored but still count for this.
//! - The proposer schedules its propose timeout too (L21 is for non-proposers): it may wait on
//!   its node for a value, and the timeout moves it on like everyone else.
//! - valid(v) is asked for once per block hash per height (`Output::ValidateValue`); rules
//!   that need it wait for the answer (bounded by the propose timeout).
//! - A validator's conflicting vote (equivocation) is reported as evidence and also counted
//!   for its own value, as the paper counts every message received; only its first vote goes
//!   into certificates and counts towards "2f+1 of any kind". Counting only the first vote
//!   lost liveness when honest validators are exactly a quorum (`vote_keeper.rs`).
//! - A restart restores this validator's own messages of the height from its signing record,
//!   its lock from its highest precommit for a value, and resumes at its highest round.

#[cfg(feature = "testing")]
mod bug;
mod config;
mod future;
mod handlers;
mod invariants;
mod io;
mod machine;
mod proposal_keeper;
mod rules;
mod send;
mod sign_record;
mod state;
mod vote_keeper;

#[cfg(feature = "testing")]
pub use bug::Bug;
pub use config::{ConfigError, CoreConfig, TimeoutParams};
pub use io::{Input, Output, SignedMessage, Timeout, TimeoutStep};
pub use machine::Core;
pub use state::{StateSummary, Stats, Step};
