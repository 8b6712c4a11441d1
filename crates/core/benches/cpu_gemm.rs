//! CPU reference: sparse (compressed 2:4) vs dense GEMM of the same code base.
//! `cargo bench -p sparseflow-core --bench cpu_gemm` — the M=64, N=K=4096 case.

use criterion::{criterion_group, criterion_main, Criterion};
use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparseflow_core::{dense_gemm, prune_magnitude, sparse_gemm, EpilogueKind, Sparse24};

fn bench(c: &mut Criterion) {
    let (m, n, k) = (64, 4096, 4096);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let w: Vec<f16> = (0..n * k)
        .map(|_| f16::from_f32(rng.random_range(-1.0..1.0)))
        .collect();
    let x: Vec<f16> = (0..m * k)
        .map(|_| f16::from_f32(rng.random_range(-1.0..1.0)))
        .collect();
    let pruned = prune_magnitude(&w, n, k).unwrap();
    let sparse = Sparse24::compress(&pruned, n, k).unwrap();
    let mut group = c.benchmark_group("gemm_m64_n4096_k4096_f16");
    group.sample_size(10);
    group.bench_function("dense", |b| {
        b.iter(|| dense_gemm(&x, m, &pruned, n, k, None, EpilogueKind::None).unwrap())
    });
    group.bench_function("sparse24", |b| {
        b.iter(|| sparse_gemm(&x, m, &sparse, None, EpilogueKind::None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
