//! Messages for heights the core has not started yet, kept until `StartHeight` replays them.
//!
//! Rules (the bound is `CoreConfig::future_msgs_max`):
//! - Kept: heights `current + 1 ..= current + future_heights_max`, rounds `0 ..=
//!   rounds_ahead_max` (a new height starts at round 0). Anything further is dropped: a
//!   validator that far behind catches up by block sync, not by replay.
//! - One message per (height, round, kind, validator): the first one. A conflicting second
//!   one is dropped here; if it matters, it is re-gossiped and becomes evidence once the height
//!   is current.
//! - When full, the message with the highest (height, round) is evicted if the new one is
//!   lower, else the new one is dropped: the nearest heights are the ones that will be needed
//!   first.

use crate::core::io::SignedMessage;
use crate::types::{Height, Round, ValidatorIndex};
use std::collections::BTreeMap;

/// Orders a height's messages for replay: by round, then proposal, prevote, precommit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    height: Height,
    round: Round,
    kind: u8,
    sender: ValidatorIndex,
}

/// What happened to a message offered to the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffered {
    Kept,
    /// Kept, and a message for a higher height was evicted to make room.
    KeptEvicting,
    /// Already held (the same or a conflicting message from that sender).
    Duplicate,
    /// Full of messages that are all nearer than this one.
    DroppedFull,
}

#[derive(Clone, Debug)]
pub struct FutureBuffer {
    /// At most `capacity` entries, all for heights above the current one.
    messages: BTreeMap<Key, SignedMessage>,
    capacity: usize,
}

impl FutureBuffer {
    pub fn new(capacity: usize) -> FutureBuffer {
        FutureBuffer { messages: BTreeMap::new(), capacity }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Offers a message; the caller has checked its height and round are in range.
    pub fn insert(&mut self, message: SignedMessage) -> Buffered {
        let key = key_of(&message);
        if self.messages.contains_key(&key) {
            return Buffered::Duplicate;
        }
        let mut evicted = false;
        if self.messages.len() >= self.capacity {
            match self.messages.last_key_value() {
                Some((highest, _)) if *highest > key => {
                    self.messages.pop_last();
                    evicted = true;
                }
                _ => return Buffered::DroppedFull,
            }
        }
        self.messages.insert(key, message);
        if evicted {
            Buffered::KeptEvicting
        } else {
            Buffered::Kept
        }
    }

    /// Removes and returns the messages for `height` in replay order, and drops those for
    /// lower heights.
    pub fn take_height(&mut self, height: Height) -> Vec<SignedMessage> {
        let first_kept = Key { height, round: Round(0), kind: 0, sender: ValidatorIndex(0) };
        let mut rest = self.messages.split_off(&first_kept);
        let next = Key { height: height.next(), ..first_kept };
        let later = rest.split_off(&next);
        self.messages = later;
        rest.into_values().collect()
    }

    /// Every held message is above `height`; used by the core's invariants.
    pub fn all_above(&self, height: Height) -> bool {
        self.messages.keys().next().is_none_or(|k| k.height > height)
    }
}

fn key_of(message: &SignedMessage) -> Key {
    match message {
        SignedMessage::Proposal(p) => Key {
            height: p.proposal.height,
            round: p.proposal.round,
            kind: 0,
            sender: p.proposal.proposer,
        },
        SignedMessage::Vote(v) => Key {
            height: v.vote.height,
            round: v.vote.round,
            kind: match v.vote.vote_type {
                crate::types::VoteType::Prevote => 1,
                crate::types::VoteType::Precommit => 2,
            },
            sender: v.vote.validator,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VoteType;
    use crate::vote::{SignedVote, Vote};
    use tally_crypto::Signature;

    fn vote(h: u64, r: u32, v: u32) -> SignedMessage {
        SignedMessage::Vote(SignedVote {
            vote: Vote {
                height: Height(h),
                round: Round(r),
                vote_type: VoteType::Prevote,
                block_hash: None,
                validator: ValidatorIndex(v),
            },
            signature: Signature([0; 64]),
        })
    }

    #[test]
    fn full_buffer_evicts_the_highest_height_first() {
        let mut b = FutureBuffer::new(2);
        assert_eq!(b.insert(vote(3, 0, 0)), Buffered::Kept);
        assert_eq!(b.insert(vote(3, 0, 0)), Buffered::Duplicate);
        assert_eq!(b.insert(vote(4, 0, 0)), Buffered::Kept);
        assert_eq!(b.insert(vote(5, 0, 0)), Buffered::DroppedFull);
        assert_eq!(b.insert(vote(2, 0, 1)), Buffered::KeptEvicting);
        assert_eq!(b.len(), 2);
        assert_eq!(b.take_height(Height(3)), vec![vote(3, 0, 0)]);
        assert_eq!(b.len(), 0, "height 2 is below 3 and was dropped");
    }

    #[test]
    fn replay_order_is_round_then_kind_then_sender() {
        let mut b = FutureBuffer::new(10);
        b.insert(vote(2, 1, 0));
        b.insert(vote(2, 0, 3));
        b.insert(vote(2, 0, 1));
        b.insert(vote(3, 0, 0));
        assert_eq!(b.take_height(Height(2)), vec![vote(2, 0, 1), vote(2, 0, 3), vote(2, 1, 0)]);
        assert!(b.all_above(Height(2)));
        assert_eq!(b.len(), 1);
    }
}
