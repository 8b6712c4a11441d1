//! Input-channel permutations for 2:4 (after Pool & Yu, "Channel Permutations for N:M
//! Sparsity", NeurIPS 2021): reorder a layer's K channels so that each group of 4 holds
//! channels that do not compete for the two kept slots.
//!
//! A permutation `perm` (new column `c` holds old column `perm[c]`) is free at run time when
//! the layer that *produces* this layer's input emits its output features in the same order:
//!
//! | consumer (permute its columns, K) | producer (permute its output rows, and bias) |
//! | --- | --- |
//! | `mlp.down_proj` | `mlp.gate_proj` **and** `mlp.up_proj` (the same `perm` for both: `act(gate)·up` is elementwise) |
//! | `self_attn.o_proj`, per head: columns `h·d..(h+1)·d` of every query head `h` that reads KV head `j` | `self_attn.v_proj` rows `j·d..(j+1)·d` (a permutation within each head; attention mixes tokens, not channels) |
//! | `fc2` of a plain MLP (`fc2(act(fc1(x)))`, elementwise `act`) | `fc1` |
//!
//! [`permute_columns`] and [`permute_rows`] apply it; the model's output is unchanged
//! (exactly, before pruning). The search maximises the kept importance `Σ kept s²` with
//! `s = |W_ij|·‖X_j‖₂` (Wanda's score; `|W_ij|` without calibration), which is the diagonal
//! approximation of the output error SparseGPT then minimises exactly.

use rayon::prelude::*;

use super::{Calibration, PruneError};
use crate::format::check_finite;
use crate::shape::check_weight;
use crate::{Element, Result};

/// How hard [`find_permutation`] searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermuteOptions {
    /// Channels whose pairwise swaps are tried together (a multiple of 8; default 64). The
    /// cost per pass is about `16 · window · K · n / 8` score evaluations.
    pub window: usize,
    /// Passes of greedy swaps (default 4); odd passes shift the windows by half a window so
    /// channels can travel between them.
    pub passes: usize,
}

impl Default for PermuteOptions {
    fn default() -> Self {
        PermuteOptions {
            window: 64,
            passes: 4,
        }
    }
}

/// Checks that `perm` is a permutation of `0..k`.
pub(crate) fn check_permutation(perm: &[usize], k: usize) -> Result<()> {
    let bad = |problem: String| Err(PruneError::BadPermutation { k, problem }.into());
    if perm.len() != k {
        return bad(format!("it has {} entries", perm.len()));
    }
    let mut seen = vec![false; k];
    for (i, &p) in perm.iter().enumerate() {
        if p >= k {
            return bad(format!("entry {i} is {p}"));
        }
        if std::mem::replace(&mut seen[p], true) {
            return bad(format!("{p} appears twice"));
        }
    }
    Ok(())
}

/// The inverse permutation: `inv[perm[c]] = c`.
pub fn invert_permutation(perm: &[usize]) -> Result<Vec<usize>> {
    check_permutation(perm, perm.len())?;
    let mut inv = vec![0; perm.len()];
    for (c, &p) in perm.iter().enumerate() {
        inv[p] = c;
    }
    Ok(inv)
}

/// `out[:, c] = w[:, perm[c]]` for a row-major `[n, k]` matrix (a consumer's input channels,
/// or activations `X [m, k]`).
pub fn permute_columns<T: Copy>(w: &[T], n: usize, k: usize, perm: &[usize]) -> Result<Vec<T>> {
    crate::shape::expect_len(w.len(), n, k, "matrix [N, K]")?;
    check_permutation(perm, k)?;
    Ok(w.chunks_exact(k)
        .flat_map(|row| perm.iter().map(move |&p| row[p]))
        .collect())
}

/// `out[r, :] = w[perm[r], :]` for a row-major `[n, k]` matrix (a producer's output features;
/// a bias is `[n, 1]`).
pub fn permute_rows<T: Copy>(w: &[T], n: usize, k: usize, perm: &[usize]) -> Result<Vec<T>> {
    crate::shape::expect_len(w.len(), n, k, "matrix [N, K]")?;
    check_permutation(perm, n)?;
    Ok(perm
        .iter()
        .flat_map(|&p| w[p * k..(p + 1) * k].iter().copied())
        .collect())
}

/// Sum of the two largest of four.
fn top2(a: f64, b: f64, c: f64, d: f64) -> f64 {
    let (hi1, lo1) = (a.max(b), a.min(b));
    let (hi2, lo2) = (c.max(d), c.min(d));
    hi1.max(hi2) + hi1.min(hi2).max(lo1.max(lo2))
}

/// Kept importance of a group of 4 columns (each `n` squared scores), summed over rows.
fn group_kept(cols: [&[f64]; 4]) -> f64 {
    (0..cols[0].len())
        .map(|r| top2(cols[0][r], cols[1][r], cols[2][r], cols[3][r]))
        .sum()
}

/// Total kept importance of the column-major squared scores `s [k][n]` under `perm`.
fn kept_total(s: &[f64], n: usize, perm: &[usize]) -> f64 {
    perm.chunks_exact(4)
        .map(|g| group_kept(std::array::from_fn(|t| &s[g[t] * n..(g[t] + 1) * n])))
        .sum()
}

/// A permutation of the input channels of `w [n, k]` under which 2:4 keeps more importance
/// (`Σ kept (|W_ij|·‖X_j‖)²`; `|W_ij|²` without calibration). Starts from the better of the
/// identity and a deal of channels by total importance (each group gets two channels from the
/// top half), then greedy channel swaps between groups of a window while they gain.
/// Deterministic.
pub fn find_permutation<T: Element>(
    w: &[T],
    n: usize,
    k: usize,
    calibration: Option<&Calibration>,
    options: &PermuteOptions,
) -> Result<Vec<usize>> {
    check_weight(w.len(), n, k)?;
    check_finite(w, k)?;
    if options.window == 0 || !options.window.is_multiple_of(8) {
        return Err(PruneError::BadOption {
            what: "permutation window",
            value: options.window as f64,
            expected: "a positive multiple of 8, e.g. 64",
        }
        .into());
    }
    let norms = match calibration {
        Some(cal) => {
            cal.check_for(k)?;
            cal.column_norms()
        }
        None => vec![1.0; k],
    };
    // Squared scores, column-major: s[j*n + r].
    let mut s = vec![0.0f64; n * k];
    for (r, row) in w.chunks_exact(k).enumerate() {
        for (j, v) in row.iter().enumerate() {
            let sc = v.to_f64().abs() * norms[j];
            s[j * n + r] = sc * sc;
        }
    }
    let identity: Vec<usize> = (0..k).collect();
    let dealt = deal_by_importance(&s, n, k);
    let mut perm = if kept_total(&s, n, &dealt) > kept_total(&s, n, &identity) {
        dealt
    } else {
        identity
    };
    let mut sp = vec![0.0f64; n * k];
    for (c, &p) in perm.iter().enumerate() {
        sp[c * n..(c + 1) * n].copy_from_slice(&s[p * n..(p + 1) * n]);
    }
    let window = options.window.min(k.next_multiple_of(8));
    for pass in 0..options.passes {
        let offset = if pass % 2 == 1 { window / 2 } else { 0 };
        if offset >= k {
            continue;
        }
        let improved: usize = sp[offset * n..]
            .par_chunks_mut(window * n)
            .zip(perm[offset..].par_chunks_mut(window))
            .map(|(cols, perm)| swap_within(cols, perm, n))
            .sum();
        if improved == 0 && pass > 0 {
            break;
        }
    }
    Ok(perm)
}

/// Channels sorted by total importance, dealt so that group `g` of `G` gets ranks `g` and
/// `2G−1−g` from the top half and `2G+g`, `4G−1−g` from the bottom half.
fn deal_by_importance(s: &[f64], n: usize, k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..k).collect();
    let total = |j: usize| s[j * n..(j + 1) * n].iter().sum::<f64>();
    let totals: Vec<f64> = (0..k).map(total).collect();
    order.sort_by(|&a, &b| totals[b].total_cmp(&totals[a]).then(a.cmp(&b)));
    let groups = k / 4;
    let mut perm = vec![0; k];
    for (rank, &j) in order.iter().enumerate() {
        let (round, pos) = (rank / groups, rank % groups);
        let g = if round % 2 == 0 {
            pos
        } else {
            groups - 1 - pos
        };
        perm[g * 4 + round] = j;
    }
    perm
}

/// Greedy swaps between the groups of one window (`cols`: its columns' squared scores,
/// column-major, `perm`: their original indices). Returns the number of swaps made.
fn swap_within(cols: &mut [f64], perm: &mut [usize], n: usize) -> usize {
    let groups = perm.len() / 4;
    let col = |cols: &[f64], c: usize| -> Vec<f64> { cols[c * n..(c + 1) * n].to_vec() };
    let kept_of = |cols: &[f64], g: usize| {
        group_kept(std::array::from_fn(|t| {
            &cols[(4 * g + t) * n..(4 * g + t + 1) * n]
        }))
    };
    let mut kept: Vec<f64> = (0..groups).map(|g| kept_of(cols, g)).collect();
    let scale: f64 = kept.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut swaps = 0;
    // Bounded: every swap raises the total, and the number of rounds is capped.
    for _ in 0..8 {
        let mut changed = false;
        for ga in 0..groups {
            for gb in ga + 1..groups {
                let (mut best, mut best_pair) = (1e-12 * scale, None);
                for ta in 0..4 {
                    for tb in 0..4 {
                        let (a, b) = (4 * ga + ta, 4 * gb + tb);
                        let ca: [&[f64]; 4] = std::array::from_fn(|t| {
                            let c = if t == ta { b } else { 4 * ga + t };
                            &cols[c * n..(c + 1) * n]
                        });
                        let cb: [&[f64]; 4] = std::array::from_fn(|t| {
                            let c = if t == tb { a } else { 4 * gb + t };
                            &cols[c * n..(c + 1) * n]
                        });
                        let gain = group_kept(ca) + group_kept(cb) - kept[ga] - kept[gb];
                        if gain > best {
                            best = gain;
                            best_pair = Some((a, b));
                        }
                    }
                }
                if let Some((a, b)) = best_pair {
                    let (va, vb) = (col(cols, a), col(cols, b));
                    cols[a * n..(a + 1) * n].copy_from_slice(&vb);
                    cols[b * n..(b + 1) * n].copy_from_slice(&va);
                    perm.swap(a, b);
                    kept[ga] = kept_of(cols, ga);
                    kept[gb] = kept_of(cols, gb);
                    swaps += 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    swaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_round_trip_and_are_checked() {
        let w: Vec<i32> = (0..8).collect(); // [2, 4]
        let perm = [2, 0, 3, 1];
        let cols = permute_columns(&w, 2, 4, &perm).unwrap();
        assert_eq!(cols, vec![2, 0, 3, 1, 6, 4, 7, 5]);
        let inv = invert_permutation(&perm).unwrap();
        assert_eq!(permute_columns(&cols, 2, 4, &inv).unwrap(), w);
        assert_eq!(
            permute_rows(&w, 2, 4, &[1, 0]).unwrap(),
            vec![4, 5, 6, 7, 0, 1, 2, 3]
        );
        assert!(permute_columns(&w, 2, 4, &[0, 1, 1, 2]).is_err());
        assert!(permute_columns(&w, 2, 4, &[0, 1, 2]).is_err());
        assert!(invert_permutation(&[0, 5]).is_err());
    }

    #[test]
    fn top2_is_the_sum_of_the_two_largest() {
        for v in [
            [1.0, 2.0, 3.0, 4.0],
            [4.0, 3.0, 2.0, 1.0],
            [1.0, 4.0, 2.0, 3.0],
            [3.0, 1.0, 4.0, 2.0],
        ] {
            assert_eq!(top2(v[0], v[1], v[2], v[3]), 7.0);
        }
    }

    #[test]
    fn search_keeps_more_than_identity() {
        // Columns 0-3 important, 4-7 not: identity prunes two important columns per row.
        let w: Vec<f32> = (0..64)
            .map(|i| if i % 8 < 4 { 1.0 + (i % 5) as f32 } else { 0.1 })
            .collect();
        let perm = find_permutation(&w, 8, 8, None, &PermuteOptions::default()).unwrap();
        let pw = permute_columns(&w, 8, 8, &perm).unwrap();
        let kept = |w: &[f32]| -> f32 {
            crate::prune_magnitude(w, 8, 8)
                .unwrap()
                .iter()
                .map(|v| v.abs())
                .sum()
        };
        // Every important weight (4 per row) survives after the permutation.
        let important: f32 = w.iter().filter(|v| **v > 0.5).sum();
        assert!(
            kept(&pw) >= important && kept(&w) < 0.8 * important,
            "{} vs {}",
            kept(&pw),
            kept(&w)
        );
    }
}
