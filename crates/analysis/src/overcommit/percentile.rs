//! Time-weighted percentiles: each sample counts for the time it stands for, so a stretch
//! recorded at 10 s and one kept as minute means weigh by their duration, not their count.

/// The longest time one sample may stand for: a gap in the recording (daemon stopped) is not
/// credited to the sample before it beyond this. One hour, the store's coarsest tier.
pub const MAX_WEIGHT_MS: u64 = 3_600_000;

/// The time each of `times` (ms, oldest first) stands for: the gap to the next one, capped at
/// [`MAX_WEIGHT_MS`]; the last stands for the median of the others (1 ms when alone).
pub fn weights(times: &[u64]) -> Vec<u64> {
    let mut w: Vec<u64> = times
        .windows(2)
        .map(|p| p[1].saturating_sub(p[0]).clamp(1, MAX_WEIGHT_MS))
        .collect();
    let mut sorted = w.clone();
    sorted.sort_unstable();
    let last = sorted.get(sorted.len() / 2).copied().unwrap_or(1);
    if !times.is_empty() {
        w.push(last);
    }
    w
}

/// The index of the weighted `p`-th percentile of `values` (nearest rank: the smallest value
/// whose cumulative weight reaches `p`% of the total), so the caller can show the sample it came
/// from. `None` when empty or when the lengths differ. Equal values rank in time order. `p`
/// is clamped to 0..=100.
pub fn index(values: &[f64], weights: &[u64], p: f64) -> Option<usize> {
    if values.is_empty() || values.len() != weights.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    // Integer threshold: p in hundredths of a percent, so p99 of 100 equal weights is the 99th.
    let p_bp = (p.clamp(0.0, 100.0) * 100.0).round() as u128;
    let need = (total * p_bp).div_ceil(10_000).max(1);
    let mut cum: u128 = 0;
    for &i in &order {
        cum += u128::from(weights[i]);
        if cum >= need {
            return Some(i);
        }
    }
    order.last().copied()
}

/// Samples needed before the `p`-th percentile is more than the maximum: 1 / (1 − p/100),
/// e.g. 100 for p99, 20 for p95.
pub fn min_samples(p: f64) -> usize {
    let tail = (100.0 - p.clamp(0.0, 100.0)) / 100.0;
    if tail <= 0.0 {
        return usize::MAX;
    }
    (1.0 / tail - 1e-9).ceil() as usize
}
