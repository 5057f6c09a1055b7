//! Rate-limit cells in this process: one TAT per cell name, behind one lock so that taking
//! from several cells (a key's and its budget's) is all or nothing.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::gcra;

/// The cells of one gateway (embedded mode, or cluster mode while Redis is away).
#[derive(Debug, Default)]
pub struct LocalCells {
    inner: Mutex<Cells>,
}

#[derive(Debug, Default)]
struct Cells {
    /// TAT per cell name, microseconds.
    tat: HashMap<String, i64>,
    /// Size above which idle (full) cells are dropped.
    prune_at: usize,
}

impl LocalCells {
    /// At `now` (µs): if every cell admits its increment, takes them all. Returns whether
    /// it did and each cell's backlog before.
    pub fn take(&self, now: i64, cells: &[(&str, i64)]) -> (bool, Vec<i64>) {
        let mut c = self.inner.lock();
        let backlogs: Vec<i64> = cells
            .iter()
            .map(|(name, _)| c.tat.get(*name).map_or(0, |t| (t - now).max(0)))
            .collect();
        let ok = cells
            .iter()
            .zip(&backlogs)
            .all(|((_, inc), b)| gcra::admits(*b, *inc));
        if ok {
            for ((name, inc), b) in cells.iter().zip(&backlogs) {
                c.tat.insert((*name).to_string(), now + b + inc);
            }
            if c.tat.len() > c.prune_at {
                c.tat.retain(|_, t| *t > now);
                c.prune_at = (c.tat.len() * 2).max(1024);
            }
        }
        (ok, backlogs)
    }

    /// At `now`: moves each cell's TAT by its delta (negative refunds), never behind now.
    pub fn adjust(&self, now: i64, cells: &[(&str, i64)]) {
        let mut c = self.inner.lock();
        for (name, delta) in cells {
            let tat = c.tat.get(*name).map_or(now, |t| (*t).max(now)) + delta;
            if tat > now {
                c.tat.insert((*name).to_string(), tat);
            } else {
                c.tat.remove(*name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_cells_are_taken_all_or_nothing() {
        let cells = LocalCells::default();
        let key = gcra::increment(2, 1);
        let budget = gcra::increment(3, 1);
        let both = [("key", key), ("budget", budget)];
        assert!(cells.take(0, &both).0);
        assert!(cells.take(0, &both).0);
        // The key is spent: the budget keeps its third unit.
        let (ok, backlogs) = cells.take(0, &both);
        assert!(!ok);
        assert_eq!(backlogs, vec![gcra::WINDOW_US, 2 * budget]);
        assert!(cells.take(0, &[("budget", budget)]).0);
        assert!(!cells.take(0, &[("budget", budget)]).0);
    }

    #[test]
    fn refunds_stop_at_a_full_cell_and_charges_add_up() {
        let cells = LocalCells::default();
        let inc = gcra::increment(1000, 600);
        assert!(cells.take(0, &[("t", inc)]).0);
        cells.adjust(0, &[("t", -gcra::increment(1000, 10_000))]);
        assert_eq!(cells.take(0, &[("t", 0)]).1, vec![0]);
        cells.adjust(0, &[("t", gcra::increment(1000, 900))]);
        let (ok, backlog) = cells.take(0, &[("t", gcra::increment(1000, 200))]);
        assert!(!ok);
        assert_eq!(gcra::remaining(1000, backlog[0]), 100);
    }
}
