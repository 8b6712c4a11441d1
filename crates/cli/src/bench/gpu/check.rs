//! Correctness checks before timing: relative Frobenius error, NaN never passes.

/// Tolerance on ‖out − ref‖ / ‖ref‖ for fp16/bf16 outputs with fp32 accumulation.
pub const TOLERANCE: f64 = 1e-2;

/// ‖a − b‖ / ‖b‖; infinite when any value is not finite or the lengths differ.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    }
}

/// Error of a row-major `[m×n]` output against oracle rows.
pub fn rel_err_rows(out: &[f64], n: usize, rows: &[usize], oracle: &[Vec<f64>]) -> f64 {
    let got: Vec<f64> = rows
        .iter()
        .flat_map(|&r| out[r * n..(r + 1) * n].iter().copied())
        .collect();
    let want: Vec<f64> = oracle.iter().flatten().copied().collect();
    rel_err(&got, &want)
}

/// Rows `rows` of Y from `[n × m_pad]` row-major Yᵀ: `rows.len() × n` row-major.
pub fn untranspose_rows(yt: &[f64], n: usize, m_pad: usize, rows: &[usize]) -> Vec<f64> {
    let mut y = vec![0.0; rows.len() * n];
    for j in 0..n {
        for (i, &r) in rows.iter().enumerate() {
            y[i * n + j] = yt[j * m_pad + r];
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_err_cases() {
        assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((rel_err(&[0.0, 0.0], &[3.0, 4.0]) - 1.0).abs() < 1e-12);
        assert!(rel_err(&[f64::NAN], &[1.0]).is_infinite());
        assert!(rel_err(&[1.0], &[1.0, 2.0]).is_infinite());
    }

    #[test]
    fn untranspose_roundtrip() {
        // Y = [[1,2,3],[4,5,6]] (m=2, n=3); Yᵀ padded to m_pad=4.
        let yt = [1.0, 4.0, 9.0, 9.0, 2.0, 5.0, 9.0, 9.0, 3.0, 6.0, 9.0, 9.0];
        assert_eq!(
            untranspose_rows(&yt, 3, 4, &[0, 1]),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(untranspose_rows(&yt, 3, 4, &[1]), vec![4.0, 5.0, 6.0]);
        assert_eq!(
            rel_err_rows(&[1.0, 2.0, 3.0, 4.0], 2, &[1], &[vec![3.0, 4.0]]),
            0.0
        );
    }
}
