//! Deliberate bugs for the simulator's "the harness must be able to fail" test. Only the
//! switch lives here (with the `testing` feature); the two rules it bends read it in
//! `rules.rs` (`Core::is_quorum`, `Core::ignores_lock`), which without the feature mean
//! exactly the paper's rules. This file imports nothing of the core, so no import circle
//! runs through it.

/// A testing-only fault injected into one core (`Core::set_bug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// L23/L29 without the lock condition: prevote any valid proposal (an amnesiac).
    IgnoreLock,
    /// Count more than 1/3 of the power as a quorum (f+1 where 2f+1 is needed).
    SmallQuorum,
}
