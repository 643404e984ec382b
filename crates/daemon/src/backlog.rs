//! Samples the store could not take yet (a full disk, a read-only remount, a store that cannot
//! be opened), kept encoded in memory up to a byte cap and appended, oldest first, as soon as
//! the store takes one again: a full disk delays history, it does not cut a hole in it. Past
//! the cap the oldest are dropped and counted.
//!
//! Pure bookkeeping: [`Backlog::flush`] takes the append as a closure, so the rules are tested
//! without a disk to fill.

use std::collections::VecDeque;

use memwarden_store::Row;

/// What the recorder keeps by default: at ~15 KiB a compressed sample of a host with 100 VMs,
/// about 1,100 samples (3 hours at the default 10 s interval).
pub const DEFAULT_CAP_BYTES: usize = 16 << 20;

/// Rows waiting for the store, oldest first.
#[derive(Debug)]
pub struct Backlog {
    rows: VecDeque<Row>,
    bytes: usize,
    cap_bytes: usize,
    /// Rows dropped because the cap was reached, since start.
    pub dropped_total: u64,
}

impl Backlog {
    pub fn new(cap_bytes: usize) -> Backlog {
        Backlog {
            rows: VecDeque::new(),
            bytes: 0,
            cap_bytes,
            dropped_total: 0,
        }
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Queues `row` behind the others; drops the oldest while the rows exceed the cap (the
    /// newest is always kept).
    pub fn push(&mut self, row: Row) {
        self.bytes += row.bytes();
        self.rows.push_back(row);
        while self.bytes > self.cap_bytes && self.rows.len() > 1 {
            if let Some(old) = self.rows.pop_front() {
                self.bytes -= old.bytes();
                self.dropped_total += 1;
            }
        }
    }

    /// Appends waiting rows, oldest first, until one fails: that one and the rest stay, in
    /// order, and its error is returned. `Ok(n)`: all `n` were appended.
    pub fn flush<E>(&mut self, mut append: impl FnMut(&Row) -> Result<(), E>) -> Result<usize, E> {
        let mut done = 0;
        while let Some(row) = self.rows.front() {
            append(row)?;
            self.bytes -= row.bytes();
            self.rows.pop_front();
            done += 1;
        }
        if self.rows.is_empty() {
            // A long outage's queue must not stay allocated once it is drained.
            self.rows.shrink_to_fit();
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwarden_model::Sample;

    fn row(ts: u64) -> Row {
        Row::encode(&Sample {
            taken_at_unix_ms: ts,
            ..Sample::default()
        })
        .expect("encodes")
    }

    /// A full disk delays rows, in order; they go in as soon as the store takes one.
    #[test]
    fn rows_wait_in_order_and_go_in_when_the_store_takes_them() {
        let mut b = Backlog::new(1 << 20);
        let mut stored = Vec::new();
        let mut full = true;
        for ts in 1..=5 {
            b.push(row(ts));
            let r = b.flush(|r| {
                if full {
                    Err("disk full")
                } else {
                    stored.push(r.taken_at_unix_ms);
                    Ok(())
                }
            });
            if ts == 3 {
                assert_eq!(r, Err("disk full"));
                assert_eq!(b.len(), 3, "nothing lost while full");
                full = false;
            }
        }
        assert_eq!(stored, vec![1, 2, 3, 4, 5], "every sample, oldest first");
        assert_eq!(b.len(), 0);
        assert_eq!(b.dropped_total, 0);
    }

    /// Past the cap the oldest go, counted; the newest always stays.
    #[test]
    fn the_cap_drops_the_oldest_and_counts_them() {
        let one = (0..10).map(|t| row(t).bytes()).max().expect("rows");
        let mut b = Backlog::new(3 * one);
        for ts in 0..10 {
            b.push(row(ts));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped_total, 7);
        let mut kept = Vec::new();
        let n = b.flush(|r| {
            kept.push(r.taken_at_unix_ms);
            Ok::<(), ()>(())
        });
        assert_eq!(n, Ok(3));
        assert_eq!(kept, vec![7, 8, 9]);
        let mut tiny = Backlog::new(1);
        tiny.push(row(42));
        assert_eq!(tiny.len(), 1, "the newest is kept even above the cap");
    }
}
