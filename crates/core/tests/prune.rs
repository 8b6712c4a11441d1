//! Activation-aware pruning: valid 2:4 masks, the accuracy order on a seeded correlated layer,
//! SparseGPT against a plain transcription of the paper's algorithm, permutations that leave a
//! two-layer MLP unchanged, and clear errors for bad calibration input.

mod common;

use common::synthetic;
use half::f16;
use sparseflow_core::prune::{
    find_permutation, output_rel_error, permute_columns, permute_rows, PermuteOptions, Progress,
};
use sparseflow_core::{
    prune, validate, Calibration, CoreError, PruneError, PruneMethod, PruneOptions,
};

fn prune_err(e: CoreError) -> PruneError {
    match e {
        CoreError::Prune(p) => p,
        e => panic!("expected a PruneError, got {e}"),
    }
}

#[test]
fn every_method_gives_a_valid_24_mask() {
    let l = synthetic::layer(1, 24, 64, 256, 0);
    let cal = Calibration::from_activations(&l.x_cal, l.m_cal, l.k).unwrap();
    let w16: Vec<f16> = l.w.iter().map(|&v| f16::from_f32(v)).collect();
    for method in PruneMethod::ALL {
        let opts = PruneOptions {
            block_size: 32,
            ..PruneOptions::default()
        };
        let (sparse, report) = prune(method, &l.w, l.n, l.k, Some(&cal), &opts).unwrap();
        validate(&sparse.decompress(), l.n, l.k).unwrap();
        assert_eq!(report.method, method);
        assert!(
            (report.diff.sparsity - 0.5).abs() < 0.01,
            "{method}: {}",
            report.diff.sparsity
        );
        let (sparse16, _) = prune(method, &w16, l.n, l.k, Some(&cal), &opts).unwrap();
        validate(&sparse16.decompress(), l.n, l.k).unwrap();
    }
    // magnitude needs no calibration, and prune() agrees with prune_magnitude.
    let (sparse, _) = prune(
        PruneMethod::Magnitude,
        &l.w,
        l.n,
        l.k,
        None,
        &PruneOptions::default(),
    )
    .unwrap();
    assert_eq!(
        sparse.decompress(),
        sparseflow_core::prune_magnitude(&l.w, l.n, l.k).unwrap()
    );
}

/// Held-out relative output error of `method` (optionally after a channel permutation).
fn heldout_error(
    l: &synthetic::Layer,
    cal: &Calibration,
    method: PruneMethod,
    permute: bool,
) -> f64 {
    let opts = PruneOptions::default();
    if !permute {
        let (s, _) = prune(method, &l.w, l.n, l.k, Some(cal), &opts).unwrap();
        return output_rel_error(&l.x_held, l.m_held, &l.w, &s.decompress(), l.n, l.k).unwrap();
    }
    let perm = find_permutation(&l.w, l.n, l.k, Some(cal), &PermuteOptions::default()).unwrap();
    let wp = permute_columns(&l.w, l.n, l.k, &perm).unwrap();
    let xp = permute_columns(&l.x_held, l.m_held, l.k, &perm).unwrap();
    let (s, _) = prune(
        method,
        &wp,
        l.n,
        l.k,
        Some(&cal.permuted(&perm).unwrap()),
        &opts,
    )
    .unwrap();
    output_rel_error(&xp, l.m_held, &wp, &s.decompress(), l.n, l.k).unwrap()
}

#[test]
fn accuracy_order_on_correlated_activations() {
    // Issue 27's targets: sparsegpt <= 0.7 x wanda <= 0.85 x magnitude, and refinement +
    // permutation <= 0.9 x sparsegpt, on held-out tokens (mean over two seeded layers).
    let mut e = [0.0f64; 4];
    for seed in [11, 12] {
        let l = synthetic::layer(seed, 64, 128, 512, 256);
        let cal = Calibration::from_activations(&l.x_cal, l.m_cal, l.k).unwrap();
        e[0] += heldout_error(&l, &cal, PruneMethod::Magnitude, false);
        e[1] += heldout_error(&l, &cal, PruneMethod::Wanda, false);
        e[2] += heldout_error(&l, &cal, PruneMethod::SparseGpt, false);
        e[3] += heldout_error(&l, &cal, PruneMethod::SparseGptRefine, true);
    }
    let [mag, wanda, sgpt, ours] = e.map(|v| v / 2.0);
    eprintln!("magnitude {mag:.4} wanda {wanda:.4} sparsegpt {sgpt:.4} refine+perm {ours:.4}");
    assert!(wanda <= 0.85 * mag, "wanda {wanda} vs magnitude {mag}");
    assert!(sgpt <= 0.7 * wanda, "sparsegpt {sgpt} vs wanda {wanda}");
    assert!(ours <= 0.9 * sgpt, "refine+perm {ours} vs sparsegpt {sgpt}");
}

/// The paper's Algorithm 1 for 2:4, transcribed directly: explicit `(H + λI)⁻¹`, its upper
/// Cholesky factor `U`, and the column-by-column update (no blocks, no lazy GEMMs).
fn reference_sparsegpt(w: &[f32], n: usize, k: usize, cal: &Calibration, damping: f64) -> Vec<f64> {
    let mean = (0..k).map(|j| cal.hessian(j, j)).sum::<f64>() / k as f64;
    let mut a: Vec<f64> = (0..k * k)
        .map(|t| cal.hessian(t / k, t % k) + if t / k == t % k { damping * mean } else { 0.0 })
        .collect();
    // Gauss-Jordan inverse.
    let mut inv: Vec<f64> = (0..k * k)
        .map(|t| f64::from(u8::from(t / k == t % k)))
        .collect();
    for c in 0..k {
        let p = a[c * k + c];
        for j in 0..k {
            a[c * k + j] /= p;
            inv[c * k + j] /= p;
        }
        for r in (0..k).filter(|&r| r != c) {
            let f = a[r * k + c];
            for j in 0..k {
                a[r * k + j] -= f * a[c * k + j];
                inv[r * k + j] -= f * inv[c * k + j];
            }
        }
    }
    // Upper Cholesky: inv = Uᵀ U.
    let mut u = vec![0.0f64; k * k];
    for i in 0..k {
        let d = inv[i * k + i] - (0..i).map(|t| u[t * k + i] * u[t * k + i]).sum::<f64>();
        u[i * k + i] = d.sqrt();
        for j in i + 1..k {
            let s = inv[i * k + j] - (0..i).map(|t| u[t * k + i] * u[t * k + j]).sum::<f64>();
            u[i * k + j] = s / u[i * k + i];
        }
    }
    let mut out = vec![0.0f64; n * k];
    for r in 0..n {
        let mut row: Vec<f64> = w[r * k..(r + 1) * k]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let mut keep = [false; 4];
        for c in 0..k {
            if c % 4 == 0 {
                let sal: Vec<f64> = (0..4)
                    .map(|t| (row[c + t] / u[(c + t) * k + c + t]).powi(2))
                    .collect();
                let mut order = [0usize, 1, 2, 3];
                order.sort_by(|&x, &y| sal[y].total_cmp(&sal[x]));
                keep = [false; 4];
                keep[order[0]] = true;
                keep[order[1]] = true;
            }
            let q = if keep[c % 4] { row[c] } else { 0.0 };
            let err = (row[c] - q) / u[c * k + c];
            for j in c + 1..k {
                row[j] -= err * u[c * k + j];
            }
            out[r * k + c] = q;
        }
    }
    out
}

#[test]
fn sparsegpt_matches_the_papers_algorithm() {
    let l = synthetic::layer(5, 8, 48, 192, 0);
    let cal = Calibration::from_activations(&l.x_cal, l.m_cal, l.k).unwrap();
    let want = reference_sparsegpt(&l.w, l.n, l.k, &cal, 0.01);
    for block_size in [4, 16, 128] {
        let opts = PruneOptions {
            block_size,
            ..PruneOptions::default()
        };
        let (s, report) = prune(PruneMethod::SparseGpt, &l.w, l.n, l.k, Some(&cal), &opts).unwrap();
        assert_eq!(report.damping, Some(0.01));
        let got = s.decompress();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-4 * scale,
                "block {block_size}, entry {i}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn refinement_never_raises_the_calibration_objective() {
    let l = synthetic::layer(9, 16, 64, 256, 0);
    let cal = Calibration::from_activations(&l.x_cal, l.m_cal, l.k).unwrap();
    let calls = std::sync::Mutex::new(Vec::new());
    let cb = |p: Progress| calls.lock().unwrap().push(p);
    let opts = PruneOptions {
        block_size: 32,
        progress: Some(&cb),
        ..PruneOptions::default()
    };
    let (_, report) = prune(
        PruneMethod::SparseGptRefine,
        &l.w,
        l.n,
        l.k,
        Some(&cal),
        &opts,
    )
    .unwrap();
    let stats = report.refine.unwrap();
    assert!(
        stats.sweeps >= 1 && stats.objective_after < stats.objective_before,
        "{stats:?}"
    );
    let calls = calls.into_inner().unwrap();
    let sgpt: Vec<usize> = calls
        .iter()
        .filter(|p| p.stage == "sparsegpt")
        .map(|p| p.done)
        .collect();
    assert_eq!(sgpt, vec![32, 64]);
    assert!(calls.iter().any(|p| p.stage == "refine"));
}

#[test]
fn permutation_through_a_producer_leaves_the_mlp_unchanged() {
    // y = W2 · relu(W1 · x): permuting W1's rows (and bias) and W2's columns alike is exact.
    let (d, hdim, m) = (8, 16, 4);
    let l = synthetic::layer(3, d, hdim, 64, m);
    let w1: Vec<f32> = (0..hdim * d)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0)
        .collect();
    let b1: Vec<f32> = (0..hdim).map(|i| i as f32 / 10.0 - 0.8).collect();
    let x: Vec<f32> = (0..m * d)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
        .collect();
    let cal = Calibration::from_activations(&l.x_cal, l.m_cal, hdim).unwrap();
    let perm = find_permutation(&l.w, d, hdim, Some(&cal), &PermuteOptions::default()).unwrap();
    let mlp = |w1: &[f32], b1: &[f32], w2: &[f32]| -> Vec<f32> {
        let mut y = vec![0.0f32; m * d];
        for t in 0..m {
            let h: Vec<f32> = (0..hdim)
                .map(|j| {
                    (b1[j] + (0..d).map(|i| w1[j * d + i] * x[t * d + i]).sum::<f32>()).max(0.0)
                })
                .collect();
            for o in 0..d {
                y[t * d + o] = (0..hdim).map(|j| w2[o * hdim + j] * h[j]).sum();
            }
        }
        y
    };
    let before = mlp(&w1, &b1, &l.w);
    let after = mlp(
        &permute_rows(&w1, hdim, d, &perm).unwrap(),
        &permute_rows(&b1, hdim, 1, &perm).unwrap(),
        &permute_columns(&l.w, d, hdim, &perm).unwrap(),
    );
    for (a, b) in before.iter().zip(&after) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn bad_calibration_is_a_named_error() {
    let l = synthetic::layer(2, 8, 32, 64, 0);
    let opts = PruneOptions::default();
    let cal = Calibration::from_activations(&l.x_cal, l.m_cal, l.k).unwrap();
    let run = |method, cal: Option<&Calibration>, opts: &PruneOptions| {
        prune_err(prune(method, &l.w, l.n, l.k, cal, opts).unwrap_err())
    };
    for method in [
        PruneMethod::Wanda,
        PruneMethod::SparseGpt,
        PruneMethod::SparseGptRefine,
    ] {
        assert!(matches!(
            run(method, None, &opts),
            PruneError::MissingCalibration { .. }
        ));
        // Wrong K.
        let other = Calibration::from_activations(&l.x_cal[..64 * 16], 64, 16).unwrap();
        assert_eq!(
            run(method, Some(&other), &opts),
            PruneError::CalibrationK {
                expected: 32,
                got: 16
            }
        );
        // Empty and all-zero.
        let empty = Calibration::new(32).unwrap();
        assert_eq!(
            run(method, Some(&empty), &opts),
            PruneError::EmptyCalibration
        );
        let zero = Calibration::from_activations(&[0.0f32; 64], 2, 32).unwrap();
        assert_eq!(run(method, Some(&zero), &opts), PruneError::ZeroCalibration);
    }
    // NaN, wrong length, no tokens: refused when building the calibration.
    let mut x = l.x_cal.clone();
    x[5 * 32 + 7] = f32::NAN;
    assert!(matches!(
        prune_err(Calibration::from_activations(&x, l.m_cal, 32).unwrap_err()),
        PruneError::NonFiniteCalibration {
            token: 5,
            channel: 7,
            ..
        }
    ));
    assert!(matches!(
        prune_err(Calibration::from_activations(&x[..100], 4, 32).unwrap_err()),
        PruneError::CalibrationShape { .. }
    ));
    assert_eq!(
        prune_err(Calibration::from_activations::<f32>(&[], 0, 32).unwrap_err()),
        PruneError::EmptyCalibration
    );
    assert_eq!(
        prune_err(Calibration::new(0).unwrap_err()),
        PruneError::ZeroChannels
    );
    // Options and names.
    let bad = PruneOptions {
        block_size: 6,
        ..PruneOptions::default()
    };
    assert!(matches!(
        run(PruneMethod::SparseGpt, Some(&cal), &bad),
        PruneError::BadOption {
            what: "block_size",
            ..
        }
    ));
    let bad = PruneOptions {
        damping: f64::NAN,
        ..PruneOptions::default()
    };
    assert!(matches!(
        run(PruneMethod::SparseGpt, Some(&cal), &bad),
        PruneError::BadOption {
            what: "damping",
            ..
        }
    ));
    let err = PruneMethod::from_name("obs").unwrap_err();
    assert!(
        err.to_string()
            .contains("valid: magnitude, wanda, sparsegpt"),
        "{err}"
    );
    assert_eq!(
        "sparsegpt-refine".parse::<PruneMethod>().unwrap(),
        PruneMethod::SparseGptRefine
    );
}
