//! The 2:4 format: prune a dense weight, check it, and convert to and from [`Sparse24`].
//!
//! Groups are 4 consecutive weights of a row along K (columns `4g..4g+3`); a 2:4 matrix has at
//! most two non-zeros per group.

mod prune;
mod sparse24;
mod validate;

pub use prune::prune_magnitude;
pub(crate) use prune::two_largest;
pub use sparse24::{meta_bytes_per_row, Sparse24, VALID_META_CODES};
pub use validate::validate;

/// Non-finite weights poison every output they touch; every entry point refuses them.
pub(crate) fn check_finite<T: crate::Element>(w: &[T], k: usize) -> crate::Result<()> {
    match w.iter().position(|v| !v.to_f64().is_finite()) {
        None => Ok(()),
        Some(i) => Err(crate::CoreError::NonFinite {
            row: i / k,
            col: i % k,
            value: w[i].to_f64(),
        }),
    }
}
