//! Wall time of SparseGPT 2:4 on one layer (default: Llama-3-8B `down_proj`, out 4096, in
//! 14336, with 2048 calibration tokens; target: under a minute on a 2-core machine).
//!
//! `cargo run --release -p sparseflow-core --example sparsegpt_bench [-- N K TOKENS [METHOD]]`

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

use std::time::Instant;

use sparseflow_core::prune::Progress;
use sparseflow_core::{prune, Calibration, PruneMethod, PruneOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| {
        args.get(i)
            .map(|s| s.parse())
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let (n, k, m) = (arg(0, 4096)?, arg(1, 14336)?, arg(2, 2048)?);
    let method = PruneMethod::from_name(args.get(3).map_or("sparsegpt", String::as_str))?;
    let t = Instant::now();
    let layer = synthetic::layer_with_latent(7, n, k, m, 0, 64);
    println!(
        "generated [{n}, {k}] + {m} tokens in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let cal = Calibration::from_activations(&layer.x_cal, m, k)?;
    let t_h = start.elapsed().as_secs_f64();
    println!("H = XᵀX (f64): {t_h:.1} s");
    let last = std::sync::Mutex::new(0usize);
    let progress = |p: Progress| {
        let mut last = last.lock().unwrap();
        if p.done * 10 / p.total > *last * 10 / p.total || p.done == p.total {
            println!(
                "  {} {}/{} at {:.1} s",
                p.stage,
                p.done,
                p.total,
                start.elapsed().as_secs_f64()
            );
            *last = p.done;
        }
    };
    let opts = PruneOptions {
        progress: Some(&progress),
        ..PruneOptions::default()
    };
    let (sparse, report) = prune(method, &layer.w, n, k, Some(&cal), &opts)?;
    let total = start.elapsed().as_secs_f64();
    println!(
        "{method} [{n}, {k}], {m} tokens: {total:.1} s total (Hessian {t_h:.1} s + pruning {:.1} s); kept magnitude {:.3}, damping {:?}, {} values",
        total - t_h,
        report.diff.kept_magnitude,
        report.damping,
        sparse.values.len()
    );
    Ok(())
}
