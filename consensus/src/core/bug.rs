//! Deliberate bugs for the simulator's "the harness must be able to fail" test, and the
//! two places in the rules where they act. Compiled into the production core only as the
//! `ignores_lock` / `is_quorum` helpers, which then mean exactly the paper's rules; the
//! switches themselves exist only with the `testing` feature.

use crate::core::machine::Core;
use crate::types::VotingPower;

/// A testing-only fault injected into one core (`Core::set_bug`).
#[cfg(feature = "testing")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// L23/L29 without the lock condition: prevote any valid proposal (an amnesiac).
    IgnoreLock,
    /// Count more than 1/3 of the power as a quorum (f+1 where 2f+1 is needed).
    SmallQuorum,
}

impl Core {
    /// Turns a deliberate bug on (or off) in this core. Testing only.
    #[cfg(feature = "testing")]
    pub fn set_bug(&mut self, bug: Option<Bug>) {
        self.bug = bug;
    }

    /// Whether L23/L29's lock condition is skipped (only ever by a testing bug).
    #[cfg(feature = "testing")]
    pub(super) fn ignores_lock(&self) -> bool {
        self.bug == Some(Bug::IgnoreLock)
    }

    #[cfg(not(feature = "testing"))]
    pub(super) fn ignores_lock(&self) -> bool {
        false
    }

    /// "2f+1": more than 2/3 of the power (or, under the testing bug, more than 1/3).
    #[cfg(feature = "testing")]
    pub(super) fn is_quorum(&self, power: VotingPower) -> bool {
        if self.bug == Some(Bug::SmallQuorum) {
            return self.validators.has_f_plus_one(power);
        }
        self.validators.has_quorum(power)
    }

    #[cfg(not(feature = "testing"))]
    pub(super) fn is_quorum(&self, power: VotingPower) -> bool {
        self.validators.has_quorum(power)
    }
}
