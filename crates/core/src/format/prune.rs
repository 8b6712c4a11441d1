//! Magnitude pruning to 2:4.

use crate::format::check_finite;
use crate::shape::check_weight;
use crate::{Element, Result};

/// Keeps the 2 largest `|w|` of each aligned group of 4 along K and zeroes the rest.
/// Ties go to the lower index, so the result is deterministic.
///
/// `w` is row-major `[n, k]`. Errors: zero dims, K % 4 != 0, wrong length, NaN/Inf (the error
/// names the row and column).
pub fn prune_magnitude<T: Element>(w: &[T], n: usize, k: usize) -> Result<Vec<T>> {
    check_weight(w.len(), n, k)?;
    check_finite(w, k)?;
    let mut out = crate::alloc::try_filled(w.len(), T::default(), "pruned weight [n, k]")?;
    for (src, dst) in w.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
        let [a, b] = two_largest_magnitudes(src);
        dst[a] = src[a];
        dst[b] = src[b];
    }
    Ok(out)
}

/// Positions of the two largest magnitudes of a group, lower index first on ties.
pub(crate) fn two_largest_magnitudes<T: Element>(group: &[T]) -> [usize; 2] {
    two_largest(std::array::from_fn(|i| group[i].to_f64().abs()))
}

/// Positions of the two largest of four scores, in increasing order; ties go to the lower
/// index. The one keep rule of every pruning method (magnitude, Wanda, SparseGPT).
pub(crate) fn two_largest(score: [f64; 4]) -> [usize; 2] {
    let mut order = [0usize, 1, 2, 3];
    // Stable sort by descending score keeps equal scores in index order.
    order.sort_by(|&i, &j| score[j].total_cmp(&score[i]));
    let (a, b) = (order[0], order[1]);
    [a.min(b), a.max(b)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreError;

    #[test]
    fn keeps_two_largest_with_ties_to_lower_index() {
        let w = [1.0f32, -3.0, 2.0, 0.5, 1.0, 1.0, 1.0, 1.0];
        let p = prune_magnitude(&w, 1, 8).unwrap();
        assert_eq!(p, vec![0.0, -3.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn nan_names_row_and_column() {
        let mut w = vec![1.0f32; 16];
        w[9] = f32::NAN;
        match prune_magnitude(&w, 2, 8).unwrap_err() {
            CoreError::NonFinite { row, col, .. } => assert_eq!((row, col), (1, 1)),
            e => panic!("unexpected {e}"),
        }
    }
}
