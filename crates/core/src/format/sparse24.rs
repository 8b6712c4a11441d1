//! The compressed 2:4 weight: `values [N, K/2]` + `meta [N, ceil(K/8)]`.
//!
//! Each group of 4 along K keeps two entries, stored in increasing column order, and a 4-bit
//! code `idx0 | idx1 << 2` (idx0 < idx1), two groups per byte, low nibble first. This is the
//! hardware's own encoding (PTX `mma.sp`), and the six increasing pairs are also the only codes
//! `mma.sp::ordered_metadata` accepts. A group with fewer than two non-zeros still names two
//! distinct positions: its non-zeros, filled up with the lowest unused positions, so the
//! encoding is deterministic. When K/4 is odd the last byte's high nibble is padding and holds
//! the all-zero code `0b0100`.

use crate::format::{check_finite, two_largest_magnitudes, validate};
use crate::shape::{check_weight, expect_len};
use crate::{CoreError, DType, Element, Result};

/// The six valid metadata codes (`idx0 | idx1 << 2`, idx0 < idx1).
pub const VALID_META_CODES: [u8; 6] = [0b0100, 0b1000, 0b1100, 0b1001, 0b1101, 0b1110];

/// Code of an all-zero group (positions 0 and 1), also used for the padding nibble.
const ZERO_GROUP_CODE: u8 = 0b0100;

/// Metadata bytes per row for a given K: one nibble per group of 4, rounded up to whole bytes.
pub fn meta_bytes_per_row(k: usize) -> usize {
    (k / 4).div_ceil(2)
}

/// A 2:4-compressed weight `[n, k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse24<T> {
    pub n: usize,
    pub k: usize,
    /// `[n, k/2]` row-major: the two kept entries of each group, in increasing column order.
    pub values: Vec<T>,
    /// `[n, meta_bytes_per_row(k)]` row-major metadata nibbles.
    pub meta: Vec<u8>,
}

impl<T: Element> Sparse24<T> {
    /// Compresses a dense `[n, k]` 2:4 matrix. A matrix that is not 2:4 is an error (never a
    /// silent prune: call [`crate::prune_magnitude`] first); so are NaN/Inf entries.
    pub fn compress(w: &[T], n: usize, k: usize) -> Result<Self> {
        check_weight(w.len(), n, k)?;
        let mut values = crate::alloc::try_filled(w.len() / 2, T::default(), "values [n, k/2]")?;
        let mut meta = crate::alloc::try_filled(n * meta_bytes_per_row(k), 0u8, "meta [n, k/8]")?;
        Self::compress_into(w, n, k, false, &mut values, &mut meta)?;
        Ok(Sparse24 { n, k, values, meta })
    }

    /// Magnitude-prunes the dense `[n, k]` `w` to 2:4 and compresses it, in one parallel pass
    /// ([`Sparse24::compress_into`] with `prune`).
    pub fn prune_compress(w: &[T], n: usize, k: usize) -> Result<Self> {
        check_weight(w.len(), n, k)?;
        let mut values = crate::alloc::try_filled(w.len() / 2, T::default(), "values [n, k/2]")?;
        let mut meta = crate::alloc::try_filled(n * meta_bytes_per_row(k), 0u8, "meta [n, k/8]")?;
        Self::compress_into(w, n, k, true, &mut values, &mut meta)?;
        Ok(Sparse24 { n, k, values, meta })
    }

    /// Compresses the dense `[n, k]` `w` into caller buffers (`values [n, k/2]`, `meta
    /// [n, k/8]`), rows in parallel. With `prune`, each group keeps its two largest magnitudes
    /// (ties to the lower index) — the same result as [`crate::prune_magnitude`] then
    /// [`Sparse24::compress`], in one pass and without the pruned dense copy; without, a
    /// matrix that is not 2:4 is an error. NaN/Inf is an error either way (the first in
    /// row-major order is named); the buffers are then unspecified.
    pub fn compress_into(
        w: &[T],
        n: usize,
        k: usize,
        prune: bool,
        values: &mut [T],
        meta: &mut [u8],
    ) -> Result<()> {
        use rayon::prelude::*;
        check_weight(w.len(), n, k)?;
        expect_len(values.len(), n, k / 2, "values [N, K/2]")?;
        expect_len(meta.len(), n, meta_bytes_per_row(k), "meta [N, K/8]")?;
        check_finite(w, k)?;
        if !prune {
            validate(w, n, k)?;
        }
        let groups_per_row = k / 4;
        values
            .par_chunks_mut(k / 2)
            .zip(meta.par_chunks_mut(meta_bytes_per_row(k)))
            .zip(w.par_chunks(k))
            .for_each(|((v_row, meta_row), w_row)| {
                meta_row.fill(0);
                for (g, group) in w_row.chunks_exact(4).enumerate() {
                    let [i0, i1] = if prune {
                        two_largest_magnitudes(group)
                    } else {
                        kept_positions(group)
                    };
                    v_row[2 * g] = group[i0];
                    v_row[2 * g + 1] = group[i1];
                    meta_row[g / 2] |= ((i0 | (i1 << 2)) as u8) << (4 * (g % 2));
                }
                if groups_per_row % 2 == 1 {
                    meta_row[groups_per_row / 2] |= ZERO_GROUP_CODE << 4;
                }
            });
        Ok(())
    }

    /// Builds from already-compressed parts, checking lengths, metadata codes and finiteness.
    pub fn from_parts(n: usize, k: usize, values: Vec<T>, meta: Vec<u8>) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(CoreError::ZeroDim {
                what: "weight [N, K]",
            });
        }
        if !k.is_multiple_of(4) {
            return Err(CoreError::KNotMultipleOf4 { k });
        }
        expect_len(values.len(), n, k / 2, "values [N, K/2]")?;
        expect_len(meta.len(), n, meta_bytes_per_row(k), "meta [N, K/8]")?;
        check_finite(&values, k / 2)?;
        let groups_per_row = k / 4;
        for row in 0..n {
            for group in 0..groups_per_row.next_multiple_of(2) {
                let byte = meta[row * meta_bytes_per_row(k) + group / 2];
                let code = (byte >> (4 * (group % 2))) & 0xF;
                if !VALID_META_CODES.contains(&code) {
                    return Err(CoreError::BadMeta {
                        row,
                        group: group.min(groups_per_row),
                        code,
                    });
                }
            }
        }
        Ok(Sparse24 { n, k, values, meta })
    }

    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// The two kept positions (0..4) of group `group` of row `row`.
    pub fn positions(&self, row: usize, group: usize) -> [usize; 2] {
        let byte = self.meta[row * meta_bytes_per_row(self.k) + group / 2];
        let code = (byte >> (4 * (group % 2))) & 0xF;
        [(code & 3) as usize, (code >> 2) as usize]
    }

    /// The exact inverse of [`Sparse24::compress`]: the dense `[n, k]` matrix.
    pub fn decompress(&self) -> Vec<T> {
        let mut w = vec![T::default(); self.n * self.k];
        for row in 0..self.n {
            for group in 0..self.k / 4 {
                let [i0, i1] = self.positions(row, group);
                let v = row * self.k / 2 + group * 2;
                let base = row * self.k + group * 4;
                w[base + i0] = self.values[v];
                w[base + i1] = self.values[v + 1];
            }
        }
        w
    }

    /// The 4-bit keep mask of every group, `[n, k/4]` row-major: bit `i` set when position `i`
    /// is stored (`0b1001` = positions 0 and 3). Always two bits set.
    pub fn mask(&self) -> Vec<u8> {
        (0..self.n)
            .flat_map(|row| (0..self.k / 4).map(move |g| (row, g)))
            .map(|(row, g)| {
                let [i0, i1] = self.positions(row, g);
                (1u8 << i0) | (1u8 << i1)
            })
            .collect()
    }

    /// Bytes of the compressed form (values + metadata).
    pub fn bytes(&self) -> usize {
        self.values.len() * T::DTYPE.size_bytes() + self.meta.len()
    }
}

/// The two positions stored for a 2:4 group: its non-zeros, filled up with the lowest unused
/// positions, in increasing order.
fn kept_positions<T: Element>(group: &[T]) -> [usize; 2] {
    let mut picked = [usize::MAX; 2];
    let mut count = 0;
    for (i, v) in group.iter().enumerate() {
        if !v.is_zero() {
            picked[count] = i;
            count += 1;
        }
    }
    for i in 0..4 {
        if count == 2 {
            break;
        }
        if !picked[..count].contains(&i) {
            picked[count] = i;
            count += 1;
        }
    }
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_rule_matches_design() {
        assert_eq!(kept_positions(&[0.0f32, 0.0, 0.0, 0.0]), [0, 1]);
        assert_eq!(kept_positions(&[0.0f32, 0.0, 5.0, 0.0]), [0, 2]);
        assert_eq!(kept_positions(&[0.0f32, 1.0, 0.0, 2.0]), [1, 3]);
        assert_eq!(kept_positions(&[3.0f32, 0.0, 0.0, 0.0]), [0, 1]);
    }

    #[test]
    fn odd_group_count_pads_with_zero_code() {
        let s = Sparse24::compress(&[0.0f32, 0.0, 0.0, 7.0], 1, 4).unwrap();
        assert_eq!(s.meta, vec![0b0100_1100]);
        assert_eq!(s.decompress(), vec![0.0, 0.0, 0.0, 7.0]);
        assert_eq!(s.mask(), vec![0b1001]);
    }

    #[test]
    fn bad_meta_is_rejected() {
        let err = Sparse24::<f32>::from_parts(1, 8, vec![0.0; 4], vec![0x55]).unwrap_err();
        assert!(
            matches!(err, CoreError::BadMeta { code: 0b0101, .. }),
            "{err}"
        );
    }
}

#[cfg(test)]
mod one_pass_tests {
    use super::*;
    use crate::prune_magnitude;
    use half::bf16;

    /// Random bf16 rows with many zeros and repeated magnitudes (ties), odd K/4 included.
    fn awkward(n: usize, k: usize, seed: u64) -> Vec<bf16> {
        let mut s = seed;
        (0..n * k)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (s >> 33) % 7;
                bf16::from_f32(match r {
                    0 | 1 => 0.0,
                    2 => 1.0,
                    3 => -1.0,
                    4 => -0.0,
                    _ => ((s >> 40) % 1000) as f32 / 100.0 - 5.0,
                })
            })
            .collect()
    }

    #[test]
    fn one_pass_prune_compress_equals_prune_then_compress() {
        for (n, k, seed) in [
            (1, 4, 1),
            (3, 12, 2),
            (17, 36, 3),
            (64, 256, 4),
            (5, 1028, 5),
        ] {
            let w = awkward(n, k, seed);
            let two_step = Sparse24::compress(&prune_magnitude(&w, n, k).unwrap(), n, k).unwrap();
            let one_pass = Sparse24::prune_compress(&w, n, k).unwrap();
            assert_eq!(one_pass, two_step, "n={n} k={k}");
        }
    }

    #[test]
    fn errors_name_the_first_offender_in_row_major_order() {
        let (n, k) = (40, 64);
        let mut w = vec![0.0f32; n * k];
        w[7 * k + 9] = f32::NAN;
        w[30 * k + 1] = f32::INFINITY;
        match Sparse24::prune_compress(&w, n, k).unwrap_err() {
            CoreError::NonFinite { row, col, .. } => assert_eq!((row, col), (7, 9)),
            e => panic!("{e}"),
        }
        let mut w = vec![0.0f32; n * k];
        w[(20 * k + 8)..(20 * k + 11)].copy_from_slice(&[1.0, 2.0, 3.0]);
        w[(3 * k + 4)..(3 * k + 7)].copy_from_slice(&[1.0, 2.0, 3.0]);
        match Sparse24::compress(&w, n, k).unwrap_err() {
            CoreError::Not24 { row, group, .. } => assert_eq!((row, group), (3, 1)),
            e => panic!("{e}"),
        }
    }
}
