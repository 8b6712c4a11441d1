//! The 2:4 format: prune a dense weight, check it, and convert to and from [`Sparse24`].
//!
//! Groups are 4 consecutive weights of a row along K (columns `4g..4g+3`); a 2:4 matrix has at
//! most two non-zeros per group.

mod prune;
mod sparse24;
mod validate;

pub use prune::prune_magnitude;
pub(crate) use prune::{two_largest, two_largest_magnitudes};
pub use sparse24::{meta_bytes_per_row, Sparse24, VALID_META_CODES};
pub use validate::validate;

/// Non-finite weights poison every output they touch; every entry point refuses them. Rows are
/// scanned in parallel; the error names the first non-finite entry in row-major order.
pub(crate) fn check_finite<T: crate::Element>(w: &[T], k: usize) -> crate::Result<()> {
    use rayon::prelude::*;
    let first = w
        .par_chunks(k.max(1))
        .enumerate()
        .find_map_first(|(row, r)| {
            r.iter()
                .position(|v| !v.to_f64().is_finite())
                .map(|col| (row, col))
        });
    match first {
        None => Ok(()),
        Some((row, col)) => Err(crate::CoreError::NonFinite {
            row,
            col,
            value: w[row * k + col].to_f64(),
        }),
    }
}
