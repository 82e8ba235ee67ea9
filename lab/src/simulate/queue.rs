//! The event queue: events in virtual-time order, ties broken by the order they were
//! scheduled, so the order of a run depends on nothing but its inputs.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Virtual time: milliseconds since the Unix epoch, as the nodes' shared `ManualClock`
/// reads it.
pub type Millis = u64;

#[derive(Debug)]
struct Entry<E> {
    at: Millis,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// By time, then by scheduling order: the payload never takes part.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A min-queue of `(time, sequence number)`.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn push(&mut self, at: Millis, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { at, seq, event }));
    }

    /// The earliest event if it is due at or before `end`.
    pub fn pop_until(&mut self, end: Millis) -> Option<(Millis, E)> {
        if self.heap.peek()?.0.at > end {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| (e.at, e.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        let mut queue = EventQueue::default();
        for (at, name) in [(30, "c"), (10, "a1"), (20, "b"), (10, "a2"), (10, "a3")] {
            queue.push(at, name);
        }
        assert_eq!(queue.pop_until(5), None, "nothing is due yet");
        let mut order = Vec::new();
        while let Some((at, name)) = queue.pop_until(25) {
            order.push((at, name));
        }
        assert_eq!(order, [(10, "a1"), (10, "a2"), (10, "a3"), (20, "b")]);
        assert_eq!(queue.pop_until(u64::MAX), Some((30, "c")));
    }
}
