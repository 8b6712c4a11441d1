//! Checking that a dense matrix is 2:4.

use rayon::prelude::*;

use crate::shape::check_weight;
use crate::{CoreError, Element, Result};

/// Accepts exactly the `[n, k]` matrices with at most 2 non-zeros in every aligned group of 4
/// along K. The error names the first offending row, group and its values.
pub fn validate<T: Element>(w: &[T], n: usize, k: usize) -> Result<()> {
    check_weight(w.len(), n, k)?;
    // Rows in parallel; the error is the first offending group in row-major order.
    let first = w.par_chunks(k).enumerate().find_map_first(|(row, r)| {
        r.chunks_exact(4).enumerate().find_map(|(g, group)| {
            let nonzeros = group.iter().filter(|v| !v.is_zero()).count();
            (nonzeros > 2).then(|| CoreError::Not24 {
                row,
                group: g,
                values: std::array::from_fn(|j| group[j].to_f64()),
                nonzeros,
            })
        })
    });
    first.map_or(Ok(()), Err)
}
