//! The consensus timeouts the core scheduled, kept by the driver itself: no task per
//! timeout, one deadline the driver sleeps to, and timeouts of heights already left behind
//! cancelled when a height starts.

use std::collections::BTreeMap;
use tally_consensus::{Height, Timeout};
use tokio::time::{Duration, Instant};

/// Timeouts pending at most. The core schedules one per (height, round, step) it enters and
/// a new height cancels the old ones, so a height in progress holds three per round it
/// went through; this bound is never reached in a run of the algorithm. Beyond it the
/// earliest-due timeout is dropped: deadlines grow with the round, so that is the timeout
/// of the stalest round, which the core has left behind.
pub const TIMERS_MAX: usize = 1024;

#[derive(Default)]
pub struct Timers {
    /// By deadline, then by order of scheduling (two timeouts may share a deadline).
    pending: BTreeMap<(Instant, u64), Timeout>,
    next_seq: u64,
}

impl Timers {
    /// Schedules `timeout` to fire `after` from now.
    pub fn schedule(&mut self, timeout: Timeout, after: Duration) {
        self.schedule_at(timeout, Instant::now() + after);
    }

    fn schedule_at(&mut self, timeout: Timeout, at: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert((at, seq), timeout);
        while self.pending.len() > TIMERS_MAX {
            self.pending.pop_first();
        }
    }

    /// Drops the timeouts of heights below `height` (they can no longer matter).
    pub fn cancel_below(&mut self, height: Height) {
        self.pending.retain(|_, t| t.height >= height);
    }

    /// When the earliest timeout is due, if any is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the timeouts due at `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<Timeout> {
        let mut due = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_consensus::{Round, TimeoutStep};

    fn timeout(h: u64, r: u32) -> Timeout {
        Timeout { height: Height(h), round: Round(r), step: TimeoutStep::Propose }
    }

    #[test]
    fn due_timeouts_come_out_in_deadline_order() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.schedule_at(timeout(1, 2), now + Duration::from_millis(30));
        t.schedule_at(timeout(1, 0), now + Duration::from_millis(10));
        t.schedule_at(timeout(1, 1), now + Duration::from_millis(10));
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(10)));
        assert!(t.take_due(now).is_empty());
        let due = t.take_due(now + Duration::from_millis(20));
        assert_eq!(due, vec![timeout(1, 0), timeout(1, 1)]);
        assert_eq!(t.take_due(now + Duration::from_secs(1)), vec![timeout(1, 2)]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_new_height_cancels_the_old_ones() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.schedule_at(timeout(4, 0), now);
        t.schedule_at(timeout(5, 0), now);
        t.schedule_at(timeout(6, 1), now);
        t.cancel_below(Height(5));
        assert_eq!(t.take_due(now), vec![timeout(5, 0), timeout(6, 1)]);
    }

    #[test]
    fn never_more_than_the_bound_and_the_stalest_go_first() {
        let mut t = Timers::default();
        let now = Instant::now();
        for r in 0..(TIMERS_MAX as u32 + 10) {
            t.schedule_at(timeout(1, r), now + Duration::from_millis(u64::from(r)));
        }
        assert_eq!(t.len(), TIMERS_MAX);
        let due = t.take_due(now + Duration::from_secs(3600));
        assert_eq!(due.first(), Some(&timeout(1, 10)));
        assert_eq!(due.last(), Some(&timeout(1, TIMERS_MAX as u32 + 9)));
    }
}
