//! Explicit peering: every configured address is dialled at start and redialled, with
//! exponential backoff, whenever no connection to its peer is left, so a restarted validator
//! rejoins without any discovery protocol.
//!
//! This is bookkeeping only (no IO, time passed in): the swarm task asks [`Peering::due`]
//! which addresses to dial and reports what happened to each dial and connection.
//!
//! A slot learns its peer id from its first successful connection (or from a `/p2p/` suffix,
//! which then pins it). A slot whose peer is connected, by a connection either side dialled,
//! is not dialled again; when that peer's last connection closes the slot is redialled after
//! its current backoff. A slot that turns out to be this node itself is disabled.

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Dial when `until` has passed (unless the peer is connected by then).
    Waiting {
        until: Instant,
    },
    Dialing(ConnectionId),
    Connected,
    /// This address is our own node.
    Disabled,
}

#[derive(Clone, Debug)]
struct Slot {
    addr: Multiaddr,
    /// Known from a `/p2p/` suffix (`pinned`) or from the last successful connection.
    peer: Option<PeerId>,
    pinned: bool,
    state: SlotState,
    /// The delay before the next redial; doubles per failure, reset on success.
    backoff: Duration,
}

/// How a dial to a configured address failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialFailure {
    /// The address is this node.
    LocalPeer,
    /// Another identity answered than the one learned or pinned.
    WrongPeer,
    /// Transport error, refused, timed out, denied.
    Other,
}

#[derive(Debug)]
pub(crate) struct Peering {
    slots: Vec<Slot>,
    local: PeerId,
    backoff_min: Duration,
    backoff_max: Duration,
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

impl Peering {
    pub fn new(local: PeerId, backoff_min: Duration, backoff_max: Duration) -> Self {
        Peering { slots: Vec::new(), local, backoff_min, backoff_max }
    }

    /// Adds an address to keep connected, due at once. Returns false if it is already there.
    pub fn add(&mut self, addr: Multiaddr, now: Instant) -> bool {
        if self.slots.iter().any(|s| s.addr == addr) {
            return false;
        }
        let peer = peer_of(&addr);
        let state = if peer == Some(self.local) {
            SlotState::Disabled
        } else {
            SlotState::Waiting { until: now }
        };
        let pinned = peer.is_some();
        self.slots.push(Slot { addr, peer, pinned, state, backoff: self.backoff_min });
        true
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The addresses to dial now, by slot index. Slots whose peer is already connected
    /// (`is_connected`) are marked connected instead.
    pub fn due(
        &mut self,
        now: Instant,
        is_connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<(usize, Multiaddr)> {
        let mut out = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let SlotState::Waiting { until } = slot.state else { continue };
            if slot.peer.as_ref().is_some_and(&is_connected) {
                slot.state = SlotState::Connected;
                slot.backoff = self.backoff_min;
            } else if until <= now {
                out.push((index, slot.addr.clone()));
            }
        }
        out
    }

    /// The swarm accepted a dial for slot `index`.
    pub fn dialing(&mut self, index: usize, connection: ConnectionId) {
        if let Some(slot) = self.slots.get_mut(index) {
            slot.state = SlotState::Dialing(connection);
        }
    }

    /// The swarm refused to start a dial for slot `index`.
    pub fn dial_refused(&mut self, index: usize, now: Instant) {
        if let Some(slot) = self.slots.get_mut(index) {
            Self::retry_later(slot, now, self.backoff_max);
        }
    }

    /// A connection to `peer` is up (dialled by us as `connection`, or by the peer).
    pub fn on_established(&mut self, peer: PeerId, connection: ConnectionId) {
        for slot in &mut self.slots {
            let ours = slot.state == SlotState::Dialing(connection);
            let same_peer = slot.peer == Some(peer);
            if ours || (same_peer && matches!(slot.state, SlotState::Waiting { .. })) {
                slot.peer = Some(peer);
                slot.state = SlotState::Connected;
                slot.backoff = self.backoff_min;
            }
        }
    }

    /// The last connection to `peer` closed: its slots redial after their backoff.
    pub fn on_disconnected(&mut self, peer: PeerId, now: Instant) {
        for slot in &mut self.slots {
            if slot.peer == Some(peer) && slot.state == SlotState::Connected {
                slot.state = SlotState::Waiting { until: now + slot.backoff };
            }
        }
    }

    /// A dial we started (`connection`) failed.
    pub fn on_dial_failed(&mut self, connection: ConnectionId, failure: DialFailure, now: Instant) {
        for slot in &mut self.slots {
            if slot.state != SlotState::Dialing(connection) {
                continue;
            }
            match failure {
                DialFailure::LocalPeer => slot.state = SlotState::Disabled,
                DialFailure::WrongPeer | DialFailure::Other => {
                    if failure == DialFailure::WrongPeer && !slot.pinned {
                        // The validator behind this address changed its key: learn it anew.
                        slot.peer = None;
                    }
                    Self::retry_later(slot, now, self.backoff_max);
                }
            }
        }
    }

    fn retry_later(slot: &mut Slot, now: Instant, backoff_max: Duration) {
        slot.state = SlotState::Waiting { until: now + slot.backoff };
        slot.backoff = slot.backoff.saturating_mul(2).min(backoff_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_millis(400);

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn dials_at_start_and_backs_off_on_failures() {
        let t0 = Instant::now();
        let mut p = Peering::new(PeerId::random(), MIN, MAX);
        p.add(addr(1), t0);
        let due = p.due(t0, |_| false);
        assert_eq!(due.len(), 1);
        let c1 = ConnectionId::new_unchecked(1);
        p.dialing(0, c1);
        assert!(p.due(t0, |_| false).is_empty(), "not redialled while dialling");
        p.on_dial_failed(c1, DialFailure::Other, t0);
        assert!(p.due(t0 + MIN / 2, |_| false).is_empty());
        assert_eq!(p.due(t0 + MIN, |_| false).len(), 1);
        let c2 = ConnectionId::new_unchecked(2);
        p.dialing(0, c2);
        p.on_dial_failed(c2, DialFailure::Other, t0);
        // Second failure: backoff doubled.
        assert!(p.due(t0 + MIN, |_| false).is_empty());
        assert_eq!(p.due(t0 + 2 * MIN, |_| false).len(), 1);
    }

    #[test]
    fn redials_after_the_last_connection_closes() {
        let t0 = Instant::now();
        let peer = PeerId::random();
        let mut p = Peering::new(PeerId::random(), MIN, MAX);
        p.add(addr(1), t0);
        p.due(t0, |_| false);
        let c1 = ConnectionId::new_unchecked(1);
        p.dialing(0, c1);
        p.on_established(peer, c1);
        assert!(p.due(t0 + MAX, |_| true).is_empty());
        p.on_disconnected(peer, t0);
        assert_eq!(p.due(t0 + MIN, |_| false).len(), 1, "redial after the minimum backoff");
    }

    #[test]
    fn an_inbound_connection_satisfies_a_waiting_slot() {
        let t0 = Instant::now();
        let peer = PeerId::random();
        let mut p = Peering::new(PeerId::random(), MIN, MAX);
        let pinned = addr(1).with(Protocol::P2p(peer));
        p.add(pinned, t0);
        assert!(p.due(t0, |q| *q == peer).is_empty(), "already connected: no dial");
    }

    #[test]
    fn own_address_is_disabled() {
        let t0 = Instant::now();
        let local = PeerId::random();
        let mut p = Peering::new(local, MIN, MAX);
        p.add(addr(1).with(Protocol::P2p(local)), t0);
        assert!(p.due(t0, |_| false).is_empty());
        p.add(addr(2), t0);
        let c = ConnectionId::new_unchecked(9);
        p.dialing(1, c);
        p.on_dial_failed(c, DialFailure::LocalPeer, t0);
        assert!(p.due(t0 + MAX * 10, |_| false).is_empty());
        assert!(!p.add(addr(2), t0), "duplicates are ignored");
    }
}
