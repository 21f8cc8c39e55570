//! The core's configuration: chain id, timeouts and the bounds of its buffers, checked once by
//! [`CoreConfig::validate`] when the core is built.

use crate::core::io::TimeoutStep;
use crate::types::Round;
use serde::{Deserialize, Serialize};
use tally_crypto::ChainId;

/// timeoutX(r) = X_base_ms + r * X_delta_ms: timeouts grow with the round, so that after GST
/// they eventually exceed the network's delay (the paper's liveness argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutParams {
    pub propose_base_ms: u64,
    pub propose_delta_ms: u64,
    pub prevote_base_ms: u64,
    pub prevote_delta_ms: u64,
    pub precommit_base_ms: u64,
    pub precommit_delta_ms: u64,
}

impl Default for TimeoutParams {
    /// Sized for a LAN or a local testnet: the proposer must build and gossip a block within
    /// a second; votes are small.
    fn default() -> Self {
        TimeoutParams {
            propose_base_ms: 1000,
            propose_delta_ms: 500,
            prevote_base_ms: 500,
            prevote_delta_ms: 250,
            precommit_base_ms: 500,
            precommit_delta_ms: 250,
        }
    }
}

impl TimeoutParams {
    /// The duration of `step`'s timeout in `round`, saturating (a Byzantine round number must
    /// not overflow; a saturated timeout is as good as none).
    pub fn duration_ms(&self, step: TimeoutStep, round: Round) -> u64 {
        let (base, delta) = match step {
            TimeoutStep::Propose => (self.propose_base_ms, self.propose_delta_ms),
            TimeoutStep::Prevote => (self.prevote_base_ms, self.prevote_delta_ms),
            TimeoutStep::Precommit => (self.precommit_base_ms, self.precommit_delta_ms),
        };
        base.saturating_add(delta.saturating_mul(u64::from(round.0)))
    }
}

/// Configuration of a [`crate::Core`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreConfig {
    pub chain_id: ChainId,
    pub timeouts: TimeoutParams,
    /// Capacity of the future-height buffer (messages). When full, messages for the highest
    /// height are evicted first.
    pub future_msgs_max: usize,
    /// How many heights ahead messages are buffered; further ones are dropped.
    pub future_heights_max: u64,
    /// How many rounds ahead of the current one votes and proposals are stored; further ones
    /// only count for the round skip (L55).
    pub rounds_ahead_max: u32,
}

impl CoreConfig {
    pub const FUTURE_MSGS_LIMIT: usize = 1_000_000;
    pub const FUTURE_HEIGHTS_LIMIT: u64 = 100;
    pub const ROUNDS_AHEAD_LIMIT: u32 = 1000;
    pub const TIMEOUT_LIMIT_MS: u64 = 3_600_000;

    /// The defaults for a chain.
    pub fn new(chain_id: ChainId) -> CoreConfig {
        CoreConfig {
            chain_id,
            timeouts: TimeoutParams::default(),
            future_msgs_max: 10_000,
            future_heights_max: 2,
            rounds_ahead_max: 10,
        }
    }

    /// Every bound is positive and below its limit; every base timeout is positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check("future_msgs_max", self.future_msgs_max as u64, 1, Self::FUTURE_MSGS_LIMIT as u64)?;
        check("future_heights_max", self.future_heights_max, 1, Self::FUTURE_HEIGHTS_LIMIT)?;
        check(
            "rounds_ahead_max",
            u64::from(self.rounds_ahead_max),
            1,
            u64::from(Self::ROUNDS_AHEAD_LIMIT),
        )?;
        let t = &self.timeouts;
        let limit = Self::TIMEOUT_LIMIT_MS;
        check("timeouts.propose_base_ms", t.propose_base_ms, 1, limit)?;
        check("timeouts.prevote_base_ms", t.prevote_base_ms, 1, limit)?;
        check("timeouts.precommit_base_ms", t.precommit_base_ms, 1, limit)?;
        check("timeouts.propose_delta_ms", t.propose_delta_ms, 0, limit)?;
        check("timeouts.prevote_delta_ms", t.prevote_delta_ms, 0, limit)?;
        check("timeouts.precommit_delta_ms", t.precommit_delta_ms, 0, limit)?;
        Ok(())
    }
}

/// A configuration field out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}, want {min} ..= {max}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError { field, value, min, max })
    }
}
