//! Publishes waiting for a subscribed peer.
//!
//! Gossipsub refuses to publish on a topic no connected peer has subscribed to yet
//! (`NoPeersSubscribedToTopic`): right after start, or while the only peers are reconnecting.
//! Such messages wait here, per topic, until a peer subscribes or their retry window ends.
//! Each topic's queue is bounded; when full, its oldest message is dropped (the newest
//! consensus message supersedes older ones; txs are gossiped again by the mempool).

use std::collections::VecDeque;
use std::time::Instant;

/// Which gossip topic a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TopicKind {
    Consensus,
    Txs,
}

#[derive(Debug)]
pub(crate) struct Waiting {
    pub data: Vec<u8>,
    /// Dropped (and counted) if still waiting at this instant.
    pub deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct RetryQueue {
    consensus: VecDeque<Waiting>,
    txs: VecDeque<Waiting>,
    /// Per topic.
    capacity: usize,
}

impl RetryQueue {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a retry queue holds at least one message");
        RetryQueue { consensus: VecDeque::new(), txs: VecDeque::new(), capacity }
    }

    fn queue(&mut self, kind: TopicKind) -> &mut VecDeque<Waiting> {
        match kind {
            TopicKind::Consensus => &mut self.consensus,
            TopicKind::Txs => &mut self.txs,
        }
    }

    /// Queues a message; returns how many older ones were dropped to make room (0 or 1).
    pub fn push(&mut self, kind: TopicKind, data: Vec<u8>, deadline: Instant) -> usize {
        let capacity = self.capacity;
        let queue = self.queue(kind);
        let mut dropped = 0;
        while queue.len() >= capacity {
            queue.pop_front();
            dropped += 1;
        }
        queue.push_back(Waiting { data, deadline });
        dropped
    }

    /// Takes every waiting message of a topic, oldest first, to try again.
    pub fn take(&mut self, kind: TopicKind) -> VecDeque<Waiting> {
        std::mem::take(self.queue(kind))
    }

    pub fn is_empty(&self, kind: TopicKind) -> bool {
        match kind {
            TopicKind::Consensus => self.consensus.is_empty(),
            TopicKind::Txs => self.txs.is_empty(),
        }
    }

    /// Drops the messages whose deadline has passed; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.consensus.len() + self.txs.len();
        self.consensus.retain(|w| w.deadline > now);
        self.txs.retain(|w| w.deadline > now);
        before - self.consensus.len() - self.txs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn full_queue_drops_its_oldest() {
        let now = Instant::now();
        let mut q = RetryQueue::new(2);
        assert_eq!(q.push(TopicKind::Consensus, vec![1], now), 0);
        assert_eq!(q.push(TopicKind::Consensus, vec![2], now), 0);
        assert_eq!(q.push(TopicKind::Consensus, vec![3], now), 1);
        assert_eq!(q.push(TopicKind::Txs, vec![9], now), 0, "topics have separate room");
        let data: Vec<_> = q.take(TopicKind::Consensus).into_iter().map(|w| w.data).collect();
        assert_eq!(data, vec![vec![2], vec![3]]);
        assert!(q.is_empty(TopicKind::Consensus));
    }

    #[test]
    fn expired_messages_are_dropped() {
        let now = Instant::now();
        let mut q = RetryQueue::new(4);
        q.push(TopicKind::Txs, vec![1], now);
        q.push(TopicKind::Txs, vec![2], now + Duration::from_secs(1));
        assert_eq!(q.expire(now), 1);
        assert!(!q.is_empty(TopicKind::Txs));
    }
}
