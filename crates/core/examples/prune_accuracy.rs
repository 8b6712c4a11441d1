//! Held-out output error of every pruning method on seeded Llama-style layers with correlated
//! activations (the numbers in docs/ACCURACY.md).
//!
//! `cargo run --release -p sparseflow-core --example prune_accuracy [-- SCALE]`: layer shapes
//! are Llama-3-8B's divided by SCALE (default 16), 4·K calibration and 2·K held-out tokens.

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

use std::time::Instant;

use sparseflow_core::prune::{find_permutation, output_rel_error, permute_columns, PermuteOptions};
use sparseflow_core::{prune, Calibration, PruneMethod, PruneOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scale: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(16);
    let shapes = [
        ("q_proj", 4096, 4096),
        ("k_proj", 1024, 4096),
        ("o_proj", 4096, 4096),
        ("gate_proj", 14336, 4096),
        ("down_proj", 4096, 14336),
    ];
    println!("layer        [n, k]        magnitude  wanda    sparsegpt  +refine  +perm+refine  (held-out relative output error)");
    let mut sums = [0.0f64; 5];
    for (i, (name, n, k)) in shapes.iter().enumerate() {
        let (n, k) = (n / scale, k / scale);
        let layer = synthetic::layer(100 + i as u64, n, k, 4 * k, 2 * k);
        let t = Instant::now();
        let cal = Calibration::from_activations(&layer.x_cal, layer.m_cal, k)?;
        let opts = PruneOptions::default();
        let mut errs = [0.0f64; 5];
        for (slot, method) in PruneMethod::ALL.into_iter().enumerate() {
            let (sparse, _) = prune(method, &layer.w, n, k, Some(&cal), &opts)?;
            errs[slot] = output_rel_error(
                &layer.x_held,
                layer.m_held,
                &layer.w,
                &sparse.decompress(),
                n,
                k,
            )?;
        }
        let perm = find_permutation(&layer.w, n, k, Some(&cal), &PermuteOptions::default())?;
        let wp = permute_columns(&layer.w, n, k, &perm)?;
        let xp = permute_columns(&layer.x_held, layer.m_held, k, &perm)?;
        let (sparse, _) = prune(
            PruneMethod::SparseGptRefine,
            &wp,
            n,
            k,
            Some(&cal.permuted(&perm)?),
            &opts,
        )?;
        errs[4] = output_rel_error(&xp, layer.m_held, &wp, &sparse.decompress(), n, k)?;
        println!(
            "{name:<12} [{n:>5}, {k:>5}]  {:.4}     {:.4}   {:.4}     {:.4}   {:.4}        ({:.1} s)",
            errs[0], errs[1], errs[2], errs[3], errs[4], t.elapsed().as_secs_f64()
        );
        for (s, e) in sums.iter_mut().zip(errs) {
            *s += e / shapes.len() as f64;
        }
    }
    println!(
        "mean                       {:.4}     {:.4}   {:.4}     {:.4}   {:.4}",
        sums[0], sums[1], sums[2], sums[3], sums[4]
    );
    println!(
        "ratios: wanda/magnitude {:.3}, sparsegpt/wanda {:.3}, refine/sparsegpt {:.3}, perm+refine/sparsegpt {:.3}",
        sums[1] / sums[0],
        sums[2] / sums[1],
        sums[3] / sums[2],
        sums[4] / sums[2]
    );
    Ok(())
}
