//! Fallible allocation for buffers whose size comes from a caller (a shape, a token count).
//!
//! `vec![x; n]` aborts the process when the allocator refuses, which no API of a library may
//! do: a C caller passing a 2 TB shape, or a Python caller a huge K, must get an
//! out-of-memory error (`SPARSEFLOW_STATUS_OUT_OF_MEMORY`, `MemoryError`) instead.

use std::sync::OnceLock;

use crate::error::{CoreError, Result};

/// RAM + swap of this machine (Linux `/proc/meminfo`), `None` where it cannot be read. A
/// request above it can never be served; with memory overcommit on (`vm.overcommit_memory =
/// 1`, as on the GPU machine) the allocator would still say yes, and the process would be
/// killed or read past a caller's buffer later — so such requests are refused up front.
pub fn host_memory_ceiling() -> Option<usize> {
    static CEILING: OnceLock<Option<usize>> = OnceLock::new();
    *CEILING.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        Some(
            meminfo_field(&info, "MemTotal")?
                .saturating_add(meminfo_field(&info, "SwapTotal").unwrap_or(0)),
        )
    })
}

/// One field of /proc/meminfo in bytes (`"MemAvailable"`, ...), `None` where it cannot be read.
pub fn meminfo_bytes(key: &str) -> Option<usize> {
    meminfo_field(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

fn meminfo_field(info: &str, key: &str) -> Option<usize> {
    let line = info.lines().find(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

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
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    if host_memory_ceiling().is_some_and(|max| bytes > max) {
        return Err(refused::<T>(what, len));
    }
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
    fn meminfo_fields_are_read_by_exact_name_in_bytes() {
        let info = "MemTotalX:  5 kB\nMemTotal:   10 kB\nSwapTotal: 0 kB\n";
        assert_eq!(meminfo_field(info, "MemTotal"), Some(10 * 1024));
        assert_eq!(meminfo_field(info, "SwapTotal"), Some(0));
        assert_eq!(meminfo_field(info, "MemAvailable"), None);
    }

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
        // Above RAM + swap: refused even where the allocator would overcommit.
        if let Some(max) = host_memory_ceiling() {
            assert!(try_with_capacity::<u8>(max + 1, "over the ceiling").is_err());
        }
        assert_eq!(try_copy(&[1, 2], "copy").unwrap(), vec![1, 2]);
    }
}
