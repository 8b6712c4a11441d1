//! Shared helpers: random 2:4 layers and the f64-oracle comparison with a K-scaled tolerance.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparseflow_core::{oracle_gemm_f64, prune_magnitude, DType, Element, EpilogueKind, Sparse24};

pub struct Case<T> {
    pub w: Sparse24<T>,
    pub dense: Vec<T>,
    pub x: Vec<T>,
    pub bias: Option<Vec<T>>,
}

pub fn random<T: Element>(rng: &mut ChaCha8Rng, len: usize) -> Vec<T> {
    (0..len)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

pub fn case<T: Element>(seed: u64, m: usize, n: usize, k: usize, epi: EpilogueKind) -> Case<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dense = prune_magnitude(&random::<T>(&mut rng, n * k), n, k).unwrap();
    let w = Sparse24::compress(&dense, n, k).unwrap();
    let x = random::<T>(&mut rng, m * k);
    let bias = epi.uses_bias().then(|| random::<T>(&mut rng, n));
    Case { w, dense, x, bias }
}

pub fn out_eps(d: DType) -> f64 {
    match d {
        DType::F32 => 6e-8,
        DType::F16 => 4.9e-4,
        DType::BF16 => 3.9e-3,
    }
}

/// Number of elements outside `|got - want| <= gain·1.2·K·u32·Σ|x·w| + u_out·|want| + 1e-6`
/// (fp32 accumulation in any order, grown through the epilogue by at most its `error_gain`,
/// then one rounding to the output dtype), with the first failure described.
pub fn compare<T: Element>(
    c: &Case<T>,
    m: usize,
    epi: EpilogueKind,
    got: &[T],
) -> (usize, Option<String>) {
    let (n, k) = (c.w.n, c.w.k);
    let want = oracle_gemm_f64(&c.x, m, &c.dense, n, k, c.bias.as_deref(), epi).unwrap();
    let abs = |v: &[T]| {
        v.iter()
            .map(|e| T::from_f64(e.to_f64().abs()))
            .collect::<Vec<T>>()
    };
    let scale = oracle_gemm_f64(
        &abs(&c.x),
        m,
        &abs(&c.dense),
        n,
        k,
        None,
        EpilogueKind::None,
    )
    .unwrap();
    let acc = oracle_gemm_f64(&c.x, m, &c.dense, n, k, None, EpilogueKind::None).unwrap();
    let bias = |j: usize| c.bias.as_ref().map_or(0.0, |b| b[j].to_f64());
    let mut bad = 0;
    let mut first = None;
    for i in 0..m * n {
        let acc_tol = 1.2 * k as f64 * 6e-8 * (scale[i] + bias(i % n).abs());
        let tol = epi.error_gain(acc[i], bias(i % n), acc_tol) * acc_tol
            + out_eps(T::DTYPE) * want[i].abs()
            + 1e-6;
        let g = got[i].to_f64();
        let err = (g - want[i]).abs();
        if err.is_nan() || err > tol {
            bad += 1;
            if first.is_none() {
                first = Some(format!(
                    "row {} col {}: got {g}, want {}, tol {tol}",
                    i / n,
                    i % n,
                    want[i]
                ));
            }
        }
    }
    (bad, first)
}
