//! Checking that a dense matrix is 2:4.

use crate::shape::check_weight;
use crate::{CoreError, Element, Result};

/// Accepts exactly the `[n, k]` matrices with at most 2 non-zeros in every aligned group of 4
/// along K. The error names the first offending row, group and its values.
pub fn validate<T: Element>(w: &[T], n: usize, k: usize) -> Result<()> {
    check_weight(w.len(), n, k)?;
    let groups_per_row = k / 4;
    for (i, group) in w.chunks_exact(4).enumerate() {
        let nonzeros = group.iter().filter(|v| !v.is_zero()).count();
        if nonzeros > 2 {
            return Err(CoreError::Not24 {
                row: i / groups_per_row,
                group: i % groups_per_row,
                values: std::array::from_fn(|j| group[j].to_f64()),
                nonzeros,
            });
        }
    }
    Ok(())
}
