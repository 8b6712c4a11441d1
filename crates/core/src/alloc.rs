//! Fallible allocation for buffers whose size comes from a caller (a shape, a token count).
//!
//! `vec![x; n]` aborts the process when the allocator refuses, which no API of a library may
//! do: a C caller passing a 2 TB shape, or a Python caller a huge K, must get an
//! out-of-memory error (`SPARSEFLOW_STATUS_OUT_OF_MEMORY`, `MemoryError`) instead.

use crate::error::{CoreError, Result};

fn refused<T>(what: &'static str, len: usize) -> CoreError {
    CoreError::OutOfMemory {
        what,
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
    }
}

/// `len` copies of `value`, or [`CoreError::OutOfMemory`].
pub fn try_filled<T: Clone>(len: usize, value: T, what: &'static str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(len, what)?;
    v.resize(len, value);
    Ok(v)
}

/// An empty vector with room for `len` elements, or [`CoreError::OutOfMemory`].
pub fn try_with_capacity<T>(len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| refused::<T>(what, len))?;
    Ok(v)
}

/// A copy of `src`, or [`CoreError::OutOfMemory`].
pub fn try_copy<T: Clone>(src: &[T], what: &'static str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(src.len(), what)?;
    v.extend_from_slice(src);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_an_error_not_an_abort() {
        // More than the address space: the allocator must refuse, and we must say so.
        let err = try_filled::<u64>(usize::MAX / 4, 0, "test buffer").unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::OutOfMemory {
                    what: "test buffer",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("out of memory"), "{err}");
        assert_eq!(try_filled(3, 7u8, "small").unwrap(), vec![7, 7, 7]);
        assert_eq!(try_copy(&[1, 2], "copy").unwrap(), vec![1, 2]);
    }
}
