//! Shape checks shared by every entry point: non-zero dims, overflow-safe products, buffer lengths.

use crate::error::{CoreError, Result};

/// `rows * cols`, refusing zero dims and overflow.
pub(crate) fn checked_len(rows: usize, cols: usize, what: &'static str) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Err(CoreError::ZeroDim { what });
    }
    rows.checked_mul(cols).ok_or(CoreError::Overflow { what })
}

/// Checks that `got` equals `rows * cols`.
pub(crate) fn expect_len(got: usize, rows: usize, cols: usize, what: &'static str) -> Result<()> {
    let expected = checked_len(rows, cols, what)?;
    if got != expected {
        return Err(CoreError::LengthMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Checks a weight shape `[n, k]`: non-zero, K a multiple of 4, and the buffer length.
pub(crate) fn check_weight(len: usize, n: usize, k: usize) -> Result<()> {
    expect_len(len, n, k, "weight [N, K]")?;
    if !k.is_multiple_of(4) {
        return Err(CoreError::KNotMultipleOf4 { k });
    }
    Ok(())
}
