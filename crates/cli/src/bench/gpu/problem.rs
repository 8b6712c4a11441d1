//! Inputs of one benchmark case: a random 2:4 weight (magnitude-pruned), its bias, and random
//! activations. Never zeros: they hide unwritten outputs and can run faster than real data.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sparseflow_core::{prune_magnitude, Element, EpilogueKind, Sparse24};

use anyhow::Result;

/// Uniform random values in [-1, 1), deterministic in `seed`, generated in parallel.
pub fn random<T: Element>(len: usize, seed: u64) -> Vec<T> {
    const CHUNK: usize = 1 << 16;
    let mut v = vec![T::default(); len];
    v.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for e in c {
            *e = T::from_f32(rng.random_range(-1.0f32..1.0));
        }
    });
    v
}

/// One layer's weights on the host.
pub struct HostLayer<T> {
    pub n: usize,
    pub k: usize,
    /// The pruned dense `[n×k]` weight (what cuBLAS multiplies).
    pub dense: Vec<T>,
    pub sparse: Sparse24<T>,
    pub bias: Option<Vec<T>>,
}

impl<T: Element> HostLayer<T> {
    pub fn new(n: usize, k: usize, epilogue: EpilogueKind, seed: u64) -> Result<Self> {
        let dense = prune_magnitude(&random::<T>(n * k, seed), n, k)?;
        let sparse = Sparse24::compress(&dense, n, k)?;
        let bias = epilogue.uses_bias().then(|| random::<T>(n, seed ^ 0xB1A5));
        Ok(HostLayer {
            n,
            k,
            dense,
            sparse,
            bias,
        })
    }
}

/// The float64 truth for the given rows of `x [.., k]`: `rows × n` values.
pub fn oracle_rows<T: Element>(
    x: &[T],
    layer: &HostLayer<T>,
    epilogue: EpilogueKind,
    rows: &[usize],
) -> Vec<Vec<f64>> {
    let (n, k) = (layer.n, layer.k);
    rows.iter()
        .map(|&r| {
            let xr: Vec<f64> = x[r * k..(r + 1) * k].iter().map(|v| v.to_f64()).collect();
            (0..n)
                .into_par_iter()
                .map(|j| {
                    let w = &layer.dense[j * k..(j + 1) * k];
                    let acc: f64 = w.iter().zip(&xr).map(|(a, b)| a.to_f64() * b).sum();
                    let b = layer.bias.as_ref().map_or(0.0, |b| b[j].to_f64());
                    epilogue.apply(acc, b)
                })
                .collect()
        })
        .collect()
}

/// Rows read back from every contender's output and compared across contenders: all of them up
/// to 64, else 64 spread over M plus the oracle rows. Reading a whole 32768 × 14336 output back
/// as f64 for each of six contenders took minutes (`audit --gpu auto` at its default prefill
/// sizes); a spread sample still catches a wrong tile anywhere along M.
pub fn sample_rows(m: usize) -> Vec<usize> {
    const SAMPLE: usize = 64;
    let mut r: Vec<usize> = if m <= SAMPLE {
        (0..m).collect()
    } else {
        (0..SAMPLE).map(|i| i * (m - 1) / (SAMPLE - 1)).collect()
    };
    r.extend(check_rows(m));
    r.sort_unstable();
    r.dedup();
    r
}

/// Rows checked against the oracle: first, middle and last (distinct).
pub fn check_rows(m: usize) -> Vec<usize> {
    let mut r = vec![0, m / 2, m - 1];
    r.dedup();
    r
}
