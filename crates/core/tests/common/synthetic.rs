//! Seeded Llama-style layers for the pruning tests, the accuracy example and docs/ACCURACY.md:
//! Gaussian weights, and correlated (non-isotropic) activations with heavy-tailed channel
//! scales and a few outlier channels, as the inputs of real transformer linears have.
//!
//! `X = (Z·M + ε) ∘ scale`: `Z [m, r]` latent factors (r = K/8) mixed by `M [r, K]` make the
//! channels strongly correlated; `ε` (σ = 0.5) keeps `XᵀX` full rank; `scale_j` is log-normal
//! (σ = 0.6) with 1 % of the channels ×10 (the outlier features of LLM activations).

#![allow(dead_code)] // each test crate uses a different part

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Layer {
    pub n: usize,
    pub k: usize,
    /// `[n, k]` row-major.
    pub w: Vec<f32>,
    /// Calibration activations `[m_cal, k]`.
    pub x_cal: Vec<f32>,
    pub m_cal: usize,
    /// Held-out activations from the same distribution `[m_held, k]`.
    pub x_held: Vec<f32>,
    pub m_held: usize,
}

/// Standard normal by Box–Muller.
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A seeded layer `[n, k]` with `m_cal` calibration and `m_held` held-out tokens.
pub fn layer(seed: u64, n: usize, k: usize, m_cal: usize, m_held: usize) -> Layer {
    layer_with_latent(seed, n, k, m_cal, m_held, (k / 8).max(1))
}

/// [`layer`] with `r` latent factors (fewer make big layers quick to generate).
pub fn layer_with_latent(
    seed: u64,
    n: usize,
    k: usize,
    m_cal: usize,
    m_held: usize,
    r: usize,
) -> Layer {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mix: Vec<f64> = (0..r * k)
        .map(|_| normal(&mut rng) / (r as f64).sqrt())
        .collect();
    let scale: Vec<f64> = (0..k)
        .map(|_| {
            let s = (0.6 * normal(&mut rng)).exp();
            if rng.random::<f64>() < 0.01 {
                10.0 * s
            } else {
                s
            }
        })
        .collect();
    let activations = |m: usize, rng: &mut ChaCha8Rng| -> Vec<f32> {
        let mut x = vec![0.0f32; m * k];
        for row in x.chunks_exact_mut(k) {
            let z: Vec<f64> = (0..r).map(|_| normal(rng)).collect();
            for (j, v) in row.iter_mut().enumerate() {
                let mixed: f64 = z
                    .iter()
                    .enumerate()
                    .map(|(t, zt)| zt * mix[t * k + j])
                    .sum();
                *v = ((mixed + 0.5 * normal(rng)) * scale[j]) as f32;
            }
        }
        x
    };
    let x_cal = activations(m_cal, &mut rng);
    let x_held = activations(m_held, &mut rng);
    let w = (0..n * k)
        .map(|_| (normal(&mut rng) / (k as f64).sqrt()) as f32)
        .collect();
    Layer {
        n,
        k,
        w,
        x_cal,
        m_cal,
        x_held,
        m_held,
    }
}
