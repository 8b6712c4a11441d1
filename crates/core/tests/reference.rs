//! The CPU reference GEMM against the float64 oracle: random shapes (K=4, N=1, M=1, large K),
//! every epilogue, f32 / fp16 / bf16; and bad input.

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparseflow_core::{
    dense_gemm, oracle_gemm_f64, prune_magnitude, sparse_gemm, CoreError, Element, EpilogueKind,
    Sparse24,
};

fn random<T: Element>(rng: &mut ChaCha8Rng, len: usize) -> Vec<T> {
    (0..len)
        .map(|_| T::from_f32(rng.random_range(-1.0f32..1.0)))
        .collect()
}

/// Unit roundoff of the output dtype.
fn out_eps<T: Element>() -> f64 {
    match T::DTYPE {
        sparseflow_core::DType::F32 => 6e-8,
        sparseflow_core::DType::F16 => 4.9e-4,
        sparseflow_core::DType::BF16 => 3.9e-3,
    }
}

fn check_case<T: Element>(seed: u64, m: usize, n: usize, k: usize, kind: EpilogueKind) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = prune_magnitude(&random::<T>(&mut rng, n * k), n, k).unwrap();
    let x = random::<T>(&mut rng, m * k);
    let bias = random::<T>(&mut rng, n);
    let b = kind.uses_bias().then_some(bias.as_slice());
    let s = Sparse24::compress(&w, n, k).unwrap();
    let got = sparse_gemm(&x, m, &s, b, kind).unwrap();
    let dense = dense_gemm(&x, m, &w, n, k, b, kind).unwrap();
    let want = oracle_gemm_f64(&x, m, &w, n, k, b, kind).unwrap();
    // fp32 accumulation error is bounded by acc_tol = K·u32·Σ|x·w|, and grows through the
    // epilogue by at most its error_gain.
    let abs_x: Vec<T> = x.iter().map(|v| T::from_f64(v.to_f64().abs())).collect();
    let abs_w: Vec<T> = w.iter().map(|v| T::from_f64(v.to_f64().abs())).collect();
    let scale = oracle_gemm_f64(&abs_x, m, &abs_w, n, k, None, EpilogueKind::None).unwrap();
    let acc = oracle_gemm_f64(&x, m, &w, n, k, None, EpilogueKind::None).unwrap();
    for i in 0..m * n {
        let acc_tol = 1.2 * k as f64 * 6e-8 * scale[i];
        let gain = kind.error_gain(acc[i], b.map_or(0.0, |b| b[i % n].to_f64()), acc_tol);
        let tol = gain * acc_tol + out_eps::<T>() * want[i].abs() + 1e-6;
        for (what, v) in [("sparse", got[i]), ("dense", dense[i])] {
            let err = (v.to_f64() - want[i]).abs();
            assert!(
                err <= tol,
                "{what} {:?} {kind} m={m} n={n} k={k} i={i}: got {}, want {}, tol {tol}",
                T::DTYPE,
                v.to_f64(),
                want[i]
            );
        }
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 4),
    (1, 7, 4),
    (3, 1, 8),
    (1, 16, 12),
    (5, 9, 36),
    (17, 33, 64),
    (33, 5, 100),
    (2, 3, 4096),
    (20, 40, 260),
];

fn all_cases<T: Element>() {
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        for kind in EpilogueKind::all() {
            check_case::<T>(i as u64 * 31 + kind as u64, m, n, k, kind);
        }
    }
}

#[test]
fn reference_matches_oracle_f32() {
    all_cases::<f32>();
}

#[test]
fn reference_matches_oracle_f16() {
    all_cases::<f16>();
}

#[test]
fn reference_matches_oracle_bf16() {
    all_cases::<bf16>();
}

#[test]
fn bad_operands_are_errors() {
    let s = Sparse24::compress(&[1.0f32, 0.0, 2.0, 0.0], 1, 4).unwrap();
    let none = EpilogueKind::None;
    assert!(matches!(
        sparse_gemm(&[1.0; 3], 1, &s, None, none),
        Err(CoreError::LengthMismatch { .. })
    ));
    assert!(matches!(
        sparse_gemm(&[], 0, &s, None, none),
        Err(CoreError::ZeroDim { .. })
    ));
    assert!(matches!(
        sparse_gemm(&[1.0; 4], usize::MAX, &s, None, none),
        Err(CoreError::Overflow { .. })
    ));
    let e = sparse_gemm(&[1.0; 4], 1, &s, None, EpilogueKind::BiasRelu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bias_relu") && e.contains("needs a bias"), "{e}");
    let e = sparse_gemm(&[1.0; 4], 1, &s, Some(&[1.0]), EpilogueKind::Relu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("takes no bias"), "{e}");
    let e = sparse_gemm(&[1.0; 4], 1, &s, Some(&[1.0, 2.0]), EpilogueKind::Bias).unwrap_err();
    assert!(matches!(
        e,
        CoreError::LengthMismatch {
            what: "bias [N]",
            ..
        }
    ));
    assert_eq!(
        sparse_gemm(&[1.0, 1.0, 1.0, 1.0], 1, &s, None, none).unwrap(),
        vec![3.0]
    );
}
