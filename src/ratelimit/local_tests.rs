//! The in-process cells: all-or-nothing takes, corrections, governor's edge cases, and
//! agreement with the Redis script's arithmetic (`gcra.rs`) over long runs of takes.

use super::*;

const SEC: i128 = 1_000_000_000;

fn take(name: &str, limit: u64, cost: u64) -> Take<'_> {
    Take { name, limit, cost }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn several_cells_are_taken_all_or_nothing() {
    let cells = LocalCells::default();
    let both = [take("key", 2, 1), take("budget", 3, 1)];
    assert!(cells.take(0, &both).0);
    let (ok, v) = cells.take(0, &both);
    assert!(ok);
    // After the take: key 1 of 2 left, whole in 60 s; budget 1 of 3, whole in 40 s.
    assert_eq!((v[0].remaining, v[0].reset_in), (0, secs(60)));
    assert_eq!((v[1].remaining, v[1].reset_in), (1, secs(40)));
    // The key is spent: nothing is taken, and the budget keeps its third unit.
    let (ok, v) = cells.take(0, &both);
    assert!(!ok);
    assert_eq!((v[0].admits, v[0].retry_in), (false, Some(secs(30))));
    assert_eq!((v[1].admits, v[1].remaining), (true, 1));
    assert!(cells.take(0, &[both[1]]).0);
    assert!(!cells.take(0, &[both[1]]).0);
}

#[test]
fn a_unit_comes_back_every_emission_interval() {
    // 10 per minute: one every 6 s.
    let cells = LocalCells::default();
    let one = [take("r", 10, 1)];
    for left in (0..10).rev() {
        assert_eq!(cells.take(0, &one).1[0].remaining, left);
    }
    let (ok, v) = cells.take(5 * SEC, &one);
    assert!(!ok);
    assert_eq!((v[0].retry_in, v[0].remaining), (Some(secs(1)), 0));
    assert_eq!(v[0].reset_in, secs(55));
    assert!(cells.take(6 * SEC, &one).0, "one unit is back after 6 s");
    assert!(!cells.take(6 * SEC, &one).0);
}

#[test]
fn refunds_stop_at_a_full_cell_and_charges_add_up() {
    let cells = LocalCells::default();
    let t = |cost| [take("t", 1000, cost)];
    assert!(cells.take(0, &t(600)).0);
    cells.adjust(0, &[("t", 1000)], Correction::Refund(10_000));
    let (_, v) = cells.take(0, &t(0));
    assert_eq!((v[0].remaining, v[0].reset_in), (1000, Duration::ZERO));
    cells.adjust(0, &[("t", 1000)], Correction::Charge(900));
    let (ok, v) = cells.take(0, &t(200));
    assert!(!ok);
    assert_eq!(v[0].remaining, 100);
}

#[test]
fn more_than_the_whole_limit_never_fits_and_huge_costs_are_refused_cleanly() {
    let cells = LocalCells::default();
    for (limit, cost) in [(1000, 1001), (1, u64::from(u32::MAX)), (1, u64::MAX)] {
        let (ok, v) = cells.take(0, &[take("t", limit, cost)]);
        assert!(!ok);
        assert_eq!((v[0].retry_in, v[0].remaining), (None, limit), "{cost}");
    }
    // A limit of 0 admits nothing, ever.
    let (ok, v) = cells.take(0, &[take("z", 0, 1)]);
    assert!(!ok);
    assert_eq!((v[0].retry_in, v[0].remaining), (None, 0));
}

#[test]
fn a_cost_of_zero_takes_nothing_unless_charges_overfilled_the_cell() {
    let cells = LocalCells::default();
    let (ok, v) = cells.take(0, &[take("t", 5, 0)]);
    assert!(ok);
    assert_eq!((v[0].remaining, v[0].reset_in), (5, Duration::ZERO));
    // 10 units charged on a limit of 5: two windows of backlog, one past the burst.
    cells.adjust(0, &[("t", 5)], Correction::Charge(10));
    let (ok, v) = cells.take(0, &[take("t", 5, 0)]);
    assert!(!ok);
    assert_eq!((v[0].retry_in, v[0].reset_in), (Some(secs(60)), secs(120)));
}

#[test]
fn limits_above_u32_max_are_enforced_as_u32_max() {
    let cells = LocalCells::default();
    let (ok, v) = cells.take(0, &[take("t", u64::MAX, 1)]);
    assert!(ok);
    assert_eq!(v[0].remaining, u64::from(u32::MAX) - 1);
    let (ok, v) = cells.take(0, &[take("t", u64::MAX, u64::from(u32::MAX) + 1)]);
    assert!(!ok);
    assert_eq!(v[0].retry_in, None);
}

/// The Redis scripts (`lua/take.lua`, `lua/adjust.lua`) as `redis.rs` drives them, on the
/// arithmetic of `gcra.rs`: TATs in microseconds.
#[derive(Default)]
struct Script(HashMap<String, i64>);

impl Script {
    fn backlog(&self, name: &str, now: i64) -> i64 {
        self.0.get(name).map_or(0, |tat| (tat - now).max(0))
    }

    fn take(&mut self, now: i64, takes: &[Take<'_>]) -> (bool, Vec<Verdict>) {
        let backlogs: Vec<i64> = takes.iter().map(|t| self.backlog(t.name, now)).collect();
        let inc = |t: &Take<'_>| gcra::increment(t.limit, t.cost);
        let ok = takes
            .iter()
            .zip(&backlogs)
            .all(|(t, b)| gcra::admits(*b, inc(t)));
        if ok {
            for (t, b) in takes.iter().zip(&backlogs) {
                if b + inc(t) > 0 {
                    self.0.insert(t.name.to_string(), now + b + inc(t));
                }
            }
        }
        let verdicts = takes
            .iter()
            .zip(&backlogs)
            .map(|(t, b)| gcra::verdict(t.limit, t.cost, *b, ok))
            .collect();
        (ok, verdicts)
    }

    fn adjust(&mut self, now: i64, cells: &[(&str, u64)], correction: Correction) {
        for (name, limit) in cells {
            let tat = self.0.get(*name).map_or(now, |t| (*t).max(now));
            let tat = tat + gcra::delta(*limit, correction);
            if tat > now {
                self.0.insert((*name).to_string(), tat);
            } else {
                self.0.remove(*name);
            }
        }
    }
}

/// How far `t` overshoots its cell at `now_us` (negative: room to spare), in the script (µs)
/// and here (ns); `None` when neither side holds a backlog for it, as both then decide on
/// `cost ≤ limit` alone.
fn slack(local: &LocalCells, script: &Script, t: &Take<'_>, now_us: i64) -> Option<(i64, i128)> {
    let q = quota(t.limit)?;
    let now = i128::from(now_us) * 1000;
    let local_backlog = local
        .inner
        .lock()
        .tat
        .get(t.name)
        .map_or(0, |tat| tat - now);
    let script_backlog = script.backlog(t.name, now_us);
    if t.cost > t.limit || (local_backlog <= 0 && script_backlog == 0) {
        return None;
    }
    let unit = q.replenish_interval().as_nanos() as i128;
    let cost = i128::from(t.cost);
    let burst = i128::from(t.limit);
    Some((
        script_backlog + gcra::increment(t.limit, t.cost) - gcra::WINDOW_US,
        local_backlog.max(0) + cost * unit - burst * unit,
    ))
}

/// Replays a pseudo-random run from `seed` through the local cells and the script: takes
/// of one request and up to `max_tokens` tokens from a key's and its budget's cells
/// (`limits`: key requests, budget requests, key tokens, budget tokens), all or nothing,
/// and corrections of the token cells, at instants whole milliseconds apart (about
/// `pace_ms`), or a refused take again exactly when the script said it would fit. With
/// `band_us` 0 every verdict must be identical; otherwise only decisions are compared, and
/// time moves on by a millisecond while a take is within `band_us` of a boundary on either
/// side. Returns how many takes were admitted and refused.
fn replay(limits: [u64; 4], max_tokens: u64, pace_ms: u64, band_us: i64, seed: u64) -> (u32, u32) {
    let (local, mut script) = (LocalCells::default(), Script::default());
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let (mut now_us, mut admitted, mut refused) = (1_000_000_000_000i64, 0, 0);
    let token_cells = [("kt", limits[2]), ("bt", limits[3])];
    let mut again = None;
    for step in 0..3000 {
        let (wait_us, tokens) = match again.take() {
            Some(retry) if next(2) == 0 => retry,
            _ => {
                let ms = match next(4) {
                    0 => 0,
                    1 => next(pace_ms / 20 + 1),
                    2 => next(pace_ms),
                    _ => next(4 * pace_ms),
                };
                (1000 * ms as i64, next(max_tokens * 11 / 10 + 1))
            }
        };
        now_us += wait_us;
        if next(5) == 0 {
            let units = next(max_tokens);
            let correction = if next(2) == 0 {
                Correction::Charge(units)
            } else {
                Correction::Refund(units)
            };
            local.adjust(i128::from(now_us) * 1000, &token_cells, correction);
            script.adjust(now_us, &token_cells, correction);
            continue;
        }
        let takes = [
            take("kr", limits[0], 1),
            take("br", limits[1], 1),
            take("kt", limits[2], tokens),
            take("bt", limits[3], tokens),
        ];
        for _ in 0..1000 {
            let near =
                |(s, l): (i64, i128)| s.abs() < band_us || l.abs() < i128::from(band_us) * 1000;
            let close = takes
                .iter()
                .filter_map(|t| slack(&local, &script, t, now_us))
                .any(near);
            if band_us == 0 || !close {
                break;
            }
            now_us += 1000;
        }
        let (ok, verdicts) = local.take(i128::from(now_us) * 1000, &takes);
        let (script_ok, script_verdicts) = script.take(now_us, &takes);
        let at = format!("step {step} at {now_us} µs, {tokens} tokens, limits {limits:?}");
        assert_eq!(ok, script_ok, "{at}");
        if band_us == 0 {
            assert_eq!(verdicts, script_verdicts, "{at}");
        } else {
            let decisions = |v: &[Verdict]| -> Vec<(bool, bool)> {
                v.iter().map(|v| (v.admits, v.retry_in.is_some())).collect()
            };
            assert_eq!(decisions(&verdicts), decisions(&script_verdicts), "{at}");
        }
        if ok {
            admitted += 1;
        } else {
            refused += 1;
            let waits: Option<Vec<Duration>> = script_verdicts
                .iter()
                .filter(|v| !v.admits)
                .map(|v| v.retry_in)
                .collect();
            let wait = waits.and_then(|w| w.into_iter().max());
            again = wait.map(|w| (w.as_micros() as i64, tokens));
        }
    }
    (admitted, refused)
}

#[test]
fn the_local_cells_answer_as_the_redis_script_on_limits_that_split_the_minute_evenly() {
    // Every one of these divides a minute into whole microseconds: both sides count the
    // same, so every verdict (decision, wait, remaining, reset) is identical.
    let runs = [
        ([2, 10, 1000, 3000], 1200, 30_000, 1),
        ([3, 5, 600, 12_000], 800, 20_000, 2),
        ([1, 60, 200_000, 1_000_000], 250_000, 60_000, 3),
    ];
    for (limits, max_tokens, pace_ms, seed) in runs {
        let (admitted, refused) = replay(limits, max_tokens, pace_ms, 0, seed);
        assert!(
            admitted > 500 && refused > 500,
            "{limits:?}: {admitted}/{refused}"
        );
    }
}

#[test]
fn the_local_cells_decide_as_the_redis_script_on_any_limit_away_from_rounding() {
    // These do not divide a minute evenly: governor rounds each unit to the nanosecond,
    // the script each take to the microsecond, which moves a boundary by microseconds.
    // Away from that, every decision is the same.
    let runs = [
        ([7, 11, 90_000, 999_983], 100_000, 8_000, 4),
        ([13, 97, 7_777, 33_333], 9_000, 4_000, 5),
    ];
    for (limits, max_tokens, pace_ms, seed) in runs {
        let (admitted, refused) = replay(limits, max_tokens, pace_ms, 1_000, seed);
        assert!(
            admitted > 500 && refused > 500,
            "{limits:?}: {admitted}/{refused}"
        );
    }
}
