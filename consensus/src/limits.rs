//! Named limits of the consensus crate. Everything fed from outside is bounded by one of
//! these, or by a field of [`crate::CoreConfig`] checked by `CoreConfig::validate`.

/// Most validators a [`crate::ValidatorSet`] may hold. Bounds certificates (one signature per
/// validator), vote tables and the proposer schedule.
pub const VALIDATORS_MAX: usize = 1000;

/// Largest total voting power of a set: CometBFT's `MaxTotalVotingPower` (i64::MAX / 8).
/// The headroom keeps every sum and every `power * 3` far from overflow, in u64 and i64.
pub const TOTAL_VOTING_POWER_MAX: u64 = (i64::MAX as u64) / 8;

/// Longest proposer schedule (one period of the weighted round-robin). Sets whose reduced
/// powers sum to more are scaled down to about this many slots, so building the schedule
/// costs O(slots * log n) whatever the powers.
pub const PROPOSER_SCHEDULE_MAX: u64 = 4096;

/// Most signatures a [`crate::CommitCertificate`] may carry (one per validator at most).
pub const CERTIFICATE_SIGNATURES_MAX: usize = VALIDATORS_MAX;

const _: () = assert!(VALIDATORS_MAX as u64 <= PROPOSER_SCHEDULE_MAX);
const _: () = assert!(VALIDATORS_MAX <= u32::MAX as usize);
