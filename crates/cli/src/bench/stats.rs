//! Statistics of timing samples: median with p10/p90, geometric mean of speedups.

use serde::{Deserialize, Serialize};

/// Summary of a set of per-launch times (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median_us: f64,
    pub p10_us: f64,
    pub p90_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    /// Number of samples (each the mean over many back-to-back launches).
    pub samples: usize,
}

/// Percentile `q` in [0, 1] of `sorted` (ascending), linear interpolation between closest
/// ranks (the same rule as NumPy's default). `None` for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Median of `values` (any order; interpolated between the middle two, as [`percentile`]).
/// `None` for an empty list.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

/// Summarises samples; `None` when there are none or any is not finite.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Summary {
        median_us: percentile(&sorted, 0.5)?,
        p10_us: percentile(&sorted, 0.1)?,
        p90_us: percentile(&sorted, 0.9)?,
        min_us: sorted[0],
        max_us: sorted[sorted.len() - 1],
        samples: sorted.len(),
    })
}

/// Geometric mean of positive values; `None` for an empty list or a non-positive value.
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    let mean_log = values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64;
    Some(mean_log.exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(summarize(&[3.0, 1.0, 2.0]).unwrap().median_us, 2.0);
        assert_eq!(summarize(&[4.0, 1.0, 3.0, 2.0]).unwrap().median_us, 2.5);
    }

    #[test]
    fn p10_p90_interpolate() {
        let s: Vec<f64> = (0..=10).map(f64::from).collect();
        let sum = summarize(&s).unwrap();
        assert!((sum.p10_us - 1.0).abs() < 1e-12);
        assert!((sum.p90_us - 9.0).abs() < 1e-12);
        assert_eq!(sum.min_us, 0.0);
        assert_eq!(sum.max_us, 10.0);
        assert_eq!(sum.samples, 11);
        let one = summarize(&[5.0]).unwrap();
        assert_eq!((one.p10_us, one.median_us, one.p90_us), (5.0, 5.0, 5.0));
    }

    #[test]
    fn rejects_empty_and_nan() {
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[1.0, f64::NAN]).is_none());
        assert!(percentile(&[1.0], 1.5).is_none());
    }

    #[test]
    fn geomean_basics() {
        assert!((geomean(&[2.0, 8.0]).unwrap() - 4.0).abs() < 1e-12);
        assert!((geomean(&[1.5]).unwrap() - 1.5).abs() < 1e-12);
        assert!(geomean(&[]).is_none());
        assert!(geomean(&[1.0, 0.0]).is_none());
        assert!(geomean(&[1.0, -2.0]).is_none());
    }
}
