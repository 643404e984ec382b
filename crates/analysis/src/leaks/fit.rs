//! The statistics the leak finder judges a series by: a least-squares line, the best single
//! step, and Kendall's tau (how steadily the series rises, whatever its shape).

/// A least-squares line through `(t, v)`, `t` in hours from the first point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub slope_per_hour: f64,
    pub intercept: f64,
    /// Share of the variance the line explains, 0..=1 (1 for a constant series).
    pub r2: f64,
    /// Sum of squared residuals.
    pub sse: f64,
}

pub fn line(t: &[f64], v: &[f64]) -> Option<Line> {
    let n = t.len() as f64;
    if t.len() < 2 || t.len() != v.len() {
        return None;
    }
    let (mt, mv) = (t.iter().sum::<f64>() / n, v.iter().sum::<f64>() / n);
    let sxx: f64 = t.iter().map(|x| (x - mt).powi(2)).sum();
    let sxy: f64 = t.iter().zip(v).map(|(x, y)| (x - mt) * (y - mv)).sum();
    let syy: f64 = v.iter().map(|y| (y - mv).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = mv - slope * mt;
    let sse: f64 = t
        .iter()
        .zip(v)
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    let r2 = if syy > 0.0 { 1.0 - sse / syy } else { 1.0 };
    Some(Line {
        slope_per_hour: slope,
        intercept,
        r2,
        sse,
    })
}

/// The best fit of two constant levels: `v[..at]` and `v[at..]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Index of the first point of the second level.
    pub at: usize,
    pub before: f64,
    pub after: f64,
    pub sse: f64,
}

/// The split minimising the squared error, in O(n) from prefix sums; `None` below 4 points.
pub fn best_step(v: &[f64]) -> Option<Step> {
    let n = v.len();
    if n < 4 {
        return None;
    }
    // Centre first: squares of raw byte counts (~1e10) would lose the residuals' precision.
    let mean = v.iter().sum::<f64>() / n as f64;
    let (mut s, mut q) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    for (i, x) in v.iter().enumerate() {
        let c = x - mean;
        s[i + 1] = s[i] + c;
        q[i + 1] = q[i] + c * c;
    }
    let sse = |a: usize, b: usize| {
        let (sum, len) = (s[b] - s[a], (b - a) as f64);
        q[b] - q[a] - sum * sum / len
    };
    (2..n - 1)
        .map(|at| Step {
            at,
            before: s[at] / at as f64 + mean,
            after: (s[n] - s[at]) / (n - at) as f64 + mean,
            sse: (sse(0, at) + sse(at, n)).max(0.0),
        })
        .min_by(|a, b| a.sse.total_cmp(&b.sse))
}

/// Kendall's tau of the values against their order: +1 when every later point is higher, 0 for
/// no trend. O(m²), so long series are thinned to at most `MAX_TAU_POINTS` evenly spaced points.
pub fn kendall_tau(v: &[f64]) -> f64 {
    const MAX_TAU_POINTS: usize = 400;
    let step = v.len().div_ceil(MAX_TAU_POINTS).max(1);
    let w: Vec<f64> = v.iter().step_by(step).copied().collect();
    let m = w.len();
    if m < 2 {
        return 0.0;
    }
    let mut s: i64 = 0;
    for i in 0..m {
        for j in i + 1..m {
            s += match w[j].partial_cmp(&w[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    s as f64 / (m * (m - 1) / 2) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_recovers_slope_and_perfect_fit() {
        let t: Vec<f64> = (0..10).map(f64::from).collect();
        let v: Vec<f64> = t.iter().map(|x| 5.0 + 2.0 * x).collect();
        let l = line(&t, &v).expect("fit");
        assert!((l.slope_per_hour - 2.0).abs() < 1e-9 && (l.intercept - 5.0).abs() < 1e-9);
        assert!((l.r2 - 1.0).abs() < 1e-12 && l.sse < 1e-9);
    }

    #[test]
    fn step_found_where_it_is() {
        let v: Vec<f64> = (0..20).map(|i| if i < 13 { 1e9 } else { 1.2e9 }).collect();
        let s = best_step(&v).expect("step");
        assert_eq!(s.at, 13);
        assert!((s.before - 1e9).abs() < 1.0 && (s.after - 1.2e9).abs() < 1.0 && s.sse < 1.0);
    }

    #[test]
    fn tau_is_one_for_rising_minus_one_for_falling() {
        let up: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(kendall_tau(&up), 1.0);
        let down: Vec<f64> = up.iter().rev().copied().collect();
        assert_eq!(kendall_tau(&down), -1.0);
        assert_eq!(kendall_tau(&[3.0; 50]), 0.0);
    }
}
