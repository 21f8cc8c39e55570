//! Simulated time and the simulated network: one queue of timed events, ordered by (time,
//! sequence number) so that equal times keep their insertion order and a seed always gives
//! the same trace; and the links' latency, jitter, loss, duplication and partitions.

use crate::certificate::CommitCertificate;
use crate::core::{Input, SignedMessage, Timeout};
use crate::sim::params::SimParams;
use crate::sim::rng::SimRng;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// What travels between simulated nodes.
#[derive(Clone, Debug)]
pub enum Packet {
    Message(SignedMessage),
    /// Raw bytes off the wire (a garbage sender's): decoded as a `SignedMessage` under a
    /// size limit, which usually fails.
    Bytes(Vec<u8>),
    /// A commit certificate, as block sync hands it over.
    Certificate(CommitCertificate),
}

/// Something that happens at a simulated instant.
#[derive(Clone, Debug)]
pub enum Event {
    Deliver {
        to: usize,
        packet: Packet,
    },
    /// An input from the node itself (its application or its timers) to its core; dropped
    /// if the node restarted since (`incarnation` differs).
    Local {
        to: usize,
        incarnation: u32,
        input: Input,
    },
    /// The node's rebroadcast and sync timer.
    Tick {
        to: usize,
        incarnation: u32,
    },
    /// `after_persist`: at the node's next Persist rather than now.
    Crash {
        node: usize,
        after_persist: bool,
    },
    Restart {
        node: usize,
    },
}

impl Event {
    /// A timeout handed back to the core.
    pub fn timeout(to: usize, incarnation: u32, timeout: Timeout) -> Event {
        Event::Local { to, incarnation, input: Input::TimeoutElapsed(timeout) }
    }
}

struct Entry {
    at_ms: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

/// The event queue and the clock.
#[derive(Default)]
pub struct EventQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    now_ms: u64,
}

impl EventQueue {
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn push(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Reverse(Entry { at_ms: at_ms.max(self.now_ms), seq: self.seq, event }));
    }

    pub fn push_after(&mut self, delay_ms: u64, event: Event) {
        self.push(self.now_ms.saturating_add(delay_ms), event);
    }

    /// The next event, advancing the clock to its time.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        let Reverse(entry) = self.heap.pop()?;
        self.now_ms = entry.at_ms;
        Some((entry.at_ms, entry.event))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The links between validators.
pub struct Network {
    n: usize,
    /// Base latency of the link from i to j: `base_ms[i * n + j]`.
    base_ms: Vec<u64>,
    jitter_ms: u64,
    loss_percent: u32,
    duplicate_percent: u32,
    gst_ms: u64,
    partitions: Vec<crate::sim::params::Partition>,
}

impl Network {
    pub fn new(params: &SimParams, rng: &mut SimRng) -> Network {
        let n = params.validators();
        let base_ms =
            (0..n * n).map(|_| rng.range(params.latency_min_ms, params.latency_max_ms)).collect();
        Network {
            n,
            base_ms,
            jitter_ms: params.jitter_ms,
            loss_percent: params.loss_percent,
            duplicate_percent: params.duplicate_percent,
            gst_ms: params.gst_ms,
            partitions: params.partitions.clone(),
        }
    }

    /// Whether `from` and `to` can talk at `now_ms` (no partition between them).
    pub fn connected(&self, from: usize, to: usize, now_ms: u64) -> bool {
        !self
            .partitions
            .iter()
            .any(|p| (p.start_ms..p.end_ms).contains(&now_ms) && p.side[from] != p.side[to])
    }

    /// The delays after which copies of a message sent now from `from` reach `to`: none if
    /// it is lost, two if duplicated. After GST nothing is lost.
    pub fn delays(
        &self,
        rng: &mut SimRng,
        from: usize,
        to: usize,
        now_ms: u64,
    ) -> [Option<u64>; 2] {
        if now_ms < self.gst_ms
            && (!self.connected(from, to, now_ms) || rng.chance(self.loss_percent))
        {
            return [None, None];
        }
        let base = self.base_ms[from * self.n + to];
        let first = Some(base + rng.range(0, self.jitter_ms));
        let second = if rng.chance(self.duplicate_percent) {
            Some(base + rng.range(0, self.jitter_ms))
        } else {
            None
        };
        [first, second]
    }
}
