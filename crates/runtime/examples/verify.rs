//! GPU verification of the whole path (plan → generate → NVRTC → load → launch) against the
//! float64 reference. Run on the GPU machine by `scripts/device/verify.sh`; writes
//! `$OUT/verify.json` and exits non-zero on any failure.
//!
//! * matrix: M ∈ {1,2,7,16,33,64,127,256,1000,4096} × (N,K) ∈ {(64,64), (4096,4096),
//!   (14336,4096), (4096,14336), (4100,4104)} × every epilogue × {f16, bf16}. Outputs are
//!   NaN-filled before each launch and every output element is scanned for non-finite values;
//!   values are compared with the f64 reference on all rows/columns of small cases and on a
//!   random subset (+ edges) of large ones.
//! * 8 threads sharing one layer, each on its own stream and all on the default stream.
//! * an external stream (created with cudarc, passed as a raw CUstream).
//! * error paths on the device (misaligned / host pointers, f32 weight, m = 0).
//!
//! `verify --precompile DIR` (no GPU needed) fills codegen's disk cache for sm_90a with every
//! kernel the matrix plans, so the device run does not spend its time in NVRTC.
//! `--quick` runs a subset (M ∈ {1, 33}, shapes (64,64), (4100,4104)); `--ms 33,128` and
//! `--shapes 4096x4096,4100x4104` choose the token counts and shapes of the matrix.

use std::collections::BTreeSet;
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Instant;

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{json, Value};
use sparseflow_core::{prune_magnitude, DType, Element, EpilogueKind, Sparse24};
use sparseflow_runtime::{Context, Device, DeviceBuffer, RuntimeError, SparseGemm};

const MS: &[usize] = &[1, 2, 7, 16, 33, 64, 127, 256, 1000, 4096];
const SHAPES: &[(usize, usize)] = &[
    (64, 64),
    (4096, 4096),
    (14336, 4096),
    (4096, 14336),
    (4100, 4104),
];

fn rand_vec<T: Element>(seed: u64, len: usize) -> Vec<T> {
    const CHUNK: usize = 1 << 16;
    let mut v = vec![T::default(); len];
    v.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) + i as u64);
        for e in c {
            *e = T::from_f32(rng.random_range(-1.0f32..1.0));
        }
    });
    v
}

fn out_eps(d: DType) -> f64 {
    match d {
        DType::F32 => 6e-8,
        DType::F16 => 4.9e-4,
        DType::BF16 => 3.9e-3,
    }
}

/// Rows/columns compared against f64: everything when small, else a random subset + edges.
fn sample(len: usize, max: usize, seed: u64, tile_edges: bool) -> Vec<usize> {
    if len <= max {
        return (0..len).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut s: BTreeSet<usize> = (0..max).map(|_| rng.random_range(0..len)).collect();
    s.extend([0, 1, len - 2, len - 1]);
    if tile_edges {
        for e in [31, 32, 63, 64, 127, 128, 255, 256] {
            if e < len {
                s.insert(e);
            }
        }
        // The last partial tile (N = 4100 → columns 4096..4099).
        for e in (len / 128) * 128..len {
            s.insert(e);
        }
    }
    s.into_iter().collect()
}

struct Layer<T> {
    n: usize,
    k: usize,
    dense: Vec<T>,
    sparse: Sparse24<T>,
    bias: Vec<T>,
    x: Vec<T>,
}

/// Compares `y [m, n]` with the f64 reference. Tolerance: fp32 accumulation in any order
/// (products of f16/bf16 inputs are exact in fp32) ≈ 8·√K·u32·Σ|x·w|, grown through the
/// epilogue by its `error_gain`, plus up to one output ulp (2·u_out·|want|). Returns (checked,
/// bad, nonfinite, max err/tol, first failure).
fn check<T: Element>(
    l: &Layer<T>,
    m: usize,
    epi: EpilogueKind,
    y: &[T],
    seed: u64,
) -> (usize, usize, usize, f64, Option<String>) {
    let nonfinite = y.par_iter().filter(|v| !v.to_f64().is_finite()).count();
    let rows = sample(m, 24, seed, false);
    let cols = sample(l.n, 384, seed + 1, true);
    let k = l.k;
    let tol_k = 8.0 * (k as f64).sqrt() * 6e-8;
    let results: Vec<(usize, f64, Option<String>)> = rows
        .par_iter()
        .map(|&i| {
            let xr = &l.x[i * k..(i + 1) * k];
            let mut bad = 0;
            let mut worst = 0.0f64;
            let mut first = None;
            for &j in &cols {
                let wr = &l.dense[j * k..(j + 1) * k];
                let (mut acc, mut scale) = (0.0f64, 0.0f64);
                for (a, b) in xr.iter().zip(wr) {
                    let p = a.to_f64() * b.to_f64();
                    acc += p;
                    scale += p.abs();
                }
                let b = if epi.uses_bias() {
                    l.bias[j].to_f64()
                } else {
                    0.0
                };
                let want = epi.apply(acc, b);
                let acc_tol = tol_k * (scale + b.abs());
                let tol = 2.0 * out_eps(T::DTYPE) * want.abs()
                    + epi.error_gain(acc, b, acc_tol) * acc_tol
                    + 1e-5;
                let got = y[i * l.n + j].to_f64();
                let err = (got - want).abs();
                let ratio = if err.is_finite() {
                    err / tol
                } else {
                    f64::INFINITY
                };
                worst = worst.max(ratio);
                if ratio > 1.0 || ratio.is_nan() {
                    bad += 1;
                    if first.is_none() {
                        first = Some(format!("y[{i},{j}] = {got}, want {want:.6}, tol {tol:.3e}"));
                    }
                }
            }
            (bad, worst, first)
        })
        .collect();
    let bad = results.iter().map(|r| r.0).sum();
    let worst = results.iter().map(|r| r.1).fold(0.0, f64::max);
    let first = results.into_iter().find_map(|r| r.2);
    (rows.len() * cols.len(), bad, nonfinite, worst, first)
}

struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<Value>,
}

impl Tally {
    fn record(&mut self, ok: bool, what: Value) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            eprintln!("FAIL {what}");
            if self.failures.len() < 200 {
                self.failures.push(what);
            }
        }
    }
}

fn build_layer<T: Element>(n: usize, k: usize, max_m: usize, seed: u64) -> Layer<T> {
    let dense = prune_magnitude(&rand_vec::<T>(seed, n * k), n, k).expect("prune");
    let sparse = Sparse24::compress(&dense, n, k).expect("compress");
    Layer {
        n,
        k,
        dense,
        sparse,
        bias: rand_vec(seed + 1, n),
        x: rand_vec(seed + 2, max_m * k),
    }
}

fn run_matrix<T: Element>(
    ctx: &Context,
    ms: &[usize],
    shapes: &[(usize, usize)],
    t: &mut Tally,
    cases: &mut Vec<Value>,
    uploads: &mut Vec<Value>,
) {
    let max_m = *ms.iter().max().unwrap();
    for (si, &(n, k)) in shapes.iter().enumerate() {
        let t0 = Instant::now();
        let l = build_layer::<T>(n, k, max_m, 1000 + si as u64);
        let x_dev = DeviceBuffer::from_host(ctx, &l.x).expect("upload x");
        let mut y_dev = DeviceBuffer::<T>::uninit(ctx, max_m * n).expect("alloc y");
        eprintln!(
            "{} N={n} K={k}: data ready in {:.1}s",
            T::DTYPE,
            t0.elapsed().as_secs_f64()
        );
        for epi in EpilogueKind::all() {
            let bias = epi.uses_bias().then_some(l.bias.as_slice());
            let g = match SparseGemm::new(ctx, &l.sparse, bias, epi) {
                Ok(g) => g,
                Err(e) => {
                    t.record(false, json!({"dtype": T::DTYPE.ir_name(), "n": n, "k": k, "epilogue": epi.name(), "error": e.to_string()}));
                    continue;
                }
            };
            for &m in ms {
                let case = json!({"dtype": T::DTYPE.ir_name(), "n": n, "k": k, "m": m, "epilogue": epi.name()});
                let info = match g.kernel_info(m) {
                    Ok(i) => i,
                    Err(e) => {
                        t.record(false, json!({"case": case, "error": e.to_string()}));
                        continue;
                    }
                };
                let res = (|| -> Result<Vec<T>, RuntimeError> {
                    // SAFETY: default stream; buffers belong to ctx.
                    unsafe { y_dev.fill_nan_async(None)? };
                    // SAFETY: x_dev holds ≥ m·k and y_dev ≥ m·n elements of T; no overlap.
                    unsafe { g.forward_raw(x_dev.as_ptr(), y_dev.as_mut_ptr(), m, None)? };
                    ctx.synchronize()?;
                    let mut y = y_dev.to_host()?;
                    y.truncate(m * n);
                    Ok(y)
                })();
                let y = match res {
                    Ok(y) => y,
                    Err(e) => {
                        t.record(
                            false,
                            json!({"case": case, "kernel": info.name, "error": e.to_string()}),
                        );
                        if e.cuda_error_name().is_some() {
                            eprintln!("CUDA error; the context may be unusable: {e}");
                        }
                        continue;
                    }
                };
                let (checked, bad, nonfinite, worst, first) =
                    check(&l, m, epi, &y, (m * 31 + n) as u64);
                let ok = bad == 0 && nonfinite == 0;
                let row = json!({
                    "dtype": T::DTYPE.ir_name(), "n": n, "k": k, "m": m, "epilogue": epi.name(),
                    "family": info.config.family, "kernel": info.name, "split_k": info.config.split_k,
                    "checked": checked, "bad": bad, "nonfinite": nonfinite,
                    "max_err_over_tol": if worst.is_finite() { json!(worst) } else { json!("inf") },
                    "first_failure": first, "ok": ok,
                });
                t.record(ok, row.clone());
                cases.push(row);
            }
            if epi == EpilogueKind::None {
                uploads.push(json!({"dtype": T::DTYPE.ir_name(), "n": n, "k": k, "upload": format!("{:?}", g.upload_report()), "device_bytes": g.upload_report().device_bytes()}));
            }
        }
        eprintln!(
            "{} N={n} K={k}: done in {:.1}s (passed {}, failed {})",
            T::DTYPE,
            t0.elapsed().as_secs_f64(),
            t.passed,
            t.failed
        );
    }
}

/// 8 threads share one layer: each on its own stream, then all on the default stream.
fn run_concurrency(ctx: &Context, t: &mut Tally) -> Value {
    let (n, k) = (4096, 4096);
    let ms = [1usize, 7, 16, 33, 128, 256, 1000, 2];
    let l = Arc::new(build_layer::<f16>(n, k, 1000, 77));
    let epi = EpilogueKind::BiasSilu;
    let g = Arc::new(SparseGemm::new(ctx, &l.sparse, Some(&l.bias), epi).expect("layer"));
    let mut out = vec![];
    for own_stream in [true, false] {
        let handles: Vec<_> = (0..8)
            .map(|ti| {
                let (ctx, g, l) = (ctx.clone(), g.clone(), l.clone());
                std::thread::spawn(move || -> Result<(usize, usize), String> {
                    let cuda = ctx.cuda_context().unwrap();
                    let stream = if own_stream { Some(cuda.new_stream().map_err(|e| e.to_string())?) } else { None };
                    let raw = stream.as_ref().map(|s| s.cu_stream() as *mut c_void);
                    let x = DeviceBuffer::from_host(&ctx, &l.x).map_err(|e| e.to_string())?;
                    let mut y = DeviceBuffer::<f16>::uninit(&ctx, 1000 * n).map_err(|e| e.to_string())?;
                    let (mut bad_total, mut runs) = (0, 0);
                    for it in 0..6 {
                        let m = ms[(ti + it) % ms.len()];
                        // SAFETY: raw is a live stream of ctx (or None); buffers are large enough.
                        unsafe {
                            y.fill_nan_async(raw).map_err(|e| e.to_string())?;
                            g.forward_raw(x.as_ptr(), y.as_mut_ptr(), m, raw).map_err(|e| e.to_string())?;
                        }
                        match &stream {
                            Some(s) => s.synchronize().map_err(|e| e.to_string())?,
                            None => ctx.synchronize().map_err(|e| e.to_string())?,
                        }
                        let mut h = y.to_host().map_err(|e| e.to_string())?;
                        h.truncate(m * n);
                        let (_, bad, nonfinite, _, first) = check(&l, m, epi, &h, (ti * 10 + it) as u64);
                        if bad + nonfinite > 0 {
                            return Err(format!("thread {ti} m={m}: {bad} bad, {nonfinite} non-finite, first {first:?}"));
                        }
                        bad_total += bad;
                        runs += 1;
                    }
                    Ok((runs, bad_total))
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect();
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().cloned())
            .collect();
        let ok = errors.is_empty();
        let v = json!({"test": "8 threads", "own_streams": own_stream, "ok": ok, "errors": errors,
                       "runs": results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.0).sum::<usize>()});
        t.record(ok, v.clone());
        out.push(v);
    }
    json!(out)
}

/// A stream created apart from the runtime, passed as a raw CUstream, while the default
/// stream is kept busy by another layer.
fn run_external_stream(ctx: &Context, t: &mut Tally) -> Value {
    let (n, k) = (4100, 4104);
    let l = build_layer::<bf16>(n, k, 256, 91);
    let epi = EpilogueKind::BiasGeluTanh;
    let g = SparseGemm::new(ctx, &l.sparse, Some(&l.bias), epi).expect("layer");
    let cuda = ctx.cuda_context().unwrap();
    let res = (|| -> Result<Vec<Value>, String> {
        let stream = cuda.new_stream().map_err(|e| e.to_string())?;
        let raw = stream.cu_stream() as *mut c_void;
        let x = DeviceBuffer::from_host(ctx, &l.x).map_err(|e| e.to_string())?;
        let mut y = DeviceBuffer::<bf16>::uninit(ctx, 256 * n).map_err(|e| e.to_string())?;
        let mut rows = vec![];
        for m in [1usize, 16, 256] {
            // SAFETY: raw is a live stream of ctx; buffers are large enough.
            unsafe {
                y.fill_nan_async(Some(raw)).map_err(|e| e.to_string())?;
                g.forward_raw(x.as_ptr(), y.as_mut_ptr(), m, Some(raw))
                    .map_err(|e| e.to_string())?;
            }
            stream.synchronize().map_err(|e| e.to_string())?;
            let mut h = y.to_host().map_err(|e| e.to_string())?;
            h.truncate(m * n);
            let (checked, bad, nonfinite, worst, first) = check(&l, m, epi, &h, m as u64);
            rows.push(json!({"m": m, "checked": checked, "bad": bad, "nonfinite": nonfinite, "max_err_over_tol": worst, "first_failure": first}));
        }
        // forward_host: host in/out through the per-thread stream.
        let h = g
            .forward_host(&l.x[..7 * k], 7)
            .map_err(|e| e.to_string())?;
        let (checked, bad, nonfinite, worst, first) = check(&l, 7, epi, &h, 3);
        rows.push(json!({"m": 7, "entry": "forward_host", "checked": checked, "bad": bad, "nonfinite": nonfinite, "max_err_over_tol": worst, "first_failure": first}));
        // forward_device: the typed cudarc entry on the same stream.
        let xs = stream
            .clone_htod(&l.x[..16 * k])
            .map_err(|e| e.to_string())?;
        let mut ys = stream
            .alloc_zeros::<bf16>(16 * n)
            .map_err(|e| e.to_string())?;
        g.forward_device(&xs, &mut ys, 16, Some(&stream))
            .map_err(|e| e.to_string())?;
        let h = stream.clone_dtoh(&ys).map_err(|e| e.to_string())?;
        let (checked, bad, nonfinite, worst, first) = check(&l, 16, epi, &h, 5);
        rows.push(json!({"m": 16, "entry": "forward_device", "checked": checked, "bad": bad, "nonfinite": nonfinite, "max_err_over_tol": worst, "first_failure": first}));
        Ok(rows)
    })();
    let (ok, v) = match res {
        Ok(rows) => (
            rows.iter().all(|r| r["bad"] == 0 && r["nonfinite"] == 0),
            json!(rows),
        ),
        Err(e) => (false, json!(e)),
    };
    let v = json!({"test": "external stream", "ok": ok, "results": v});
    t.record(ok, v.clone());
    v
}

/// Bad input on the device gives the documented errors.
fn run_errors(ctx: &Context, t: &mut Tally) -> Value {
    let l = build_layer::<f16>(64, 64, 4, 5);
    let g = SparseGemm::new(ctx, &l.sparse, None, EpilogueKind::None).expect("layer");
    let x = DeviceBuffer::from_host(ctx, &l.x).unwrap();
    let mut y = DeviceBuffer::<f16>::uninit(ctx, 4 * 64).unwrap();
    let host_x = l.x.clone();
    let mut results = vec![];
    let mut expect = |name: &str, r: Result<(), RuntimeError>, needle: &str| {
        let (ok, msg) = match r {
            Ok(()) => (false, "no error".to_string()),
            Err(e) => (e.to_string().contains(needle), e.to_string()),
        };
        t.record(ok, json!({"error_test": name, "message": msg}));
        results.push(json!({"test": name, "ok": ok, "message": msg}));
    };
    // SAFETY (all below): the checks reject these pointers before the kernel could touch them.
    expect(
        "misaligned x",
        unsafe {
            g.forward_raw(
                (x.as_ptr() as *const u8).add(2).cast(),
                y.as_mut_ptr(),
                1,
                None,
            )
        },
        "16-byte aligned",
    );
    expect(
        "host x",
        unsafe { g.forward_raw(host_x.as_ptr().cast(), y.as_mut_ptr(), 1, None) },
        "is not CUDA memory",
    );
    expect(
        "m = 0",
        unsafe { g.forward_raw(x.as_ptr(), y.as_mut_ptr(), 0, None) },
        "must be >= 1",
    );
    expect(
        "null y",
        unsafe { g.forward_raw(x.as_ptr(), std::ptr::null_mut(), 1, None) },
        "null",
    );
    let w32 = build_layer::<f32>(64, 64, 1, 6).sparse;
    expect(
        "f32 weight on GPU",
        SparseGemm::new(ctx, &w32, None, EpilogueKind::None).map(|_| ()),
        "f16 or bf16",
    );
    expect(
        "dtype mismatch",
        g.forward_host(&[bf16::ZERO; 64], 1).map(|_| ()),
        "dtype mismatch",
    );
    expect(
        "no such device",
        Context::new(Device::Cuda(999)).map(|_| ()),
        "does not exist",
    );
    json!(results)
}

fn precompile(dir: &str) {
    std::env::set_var("SPARSEFLOW_CACHE_DIR", dir);
    let compiler = sparseflow_codegen::Compiler::new().expect("NVRTC");
    // The GPU machine's preset: the runtime there plans with the H200's own numbers.
    let target = sparseflow_ir::target("h200").expect("preset");
    let registry = sparseflow_codegen::Registry::builtin();
    let mut specs = BTreeSet::new();
    for dtype in [DType::F16, DType::BF16] {
        for &(n, k) in SHAPES {
            for epi in EpilogueKind::all() {
                for &m in MS.iter().chain(&[128, 1000, 2]) {
                    let problem = sparseflow_ir::LayerProblem {
                        m: m as u64,
                        n: n as u64,
                        k: k as u64,
                        dtype,
                        epilogue: epi,
                    };
                    let spec = registry.plan(&problem, target).expect("plan").spec;
                    specs.insert(sparseflow_codegen::kernel_name(&spec));
                    let gk = registry.generate(&spec).expect("generate");
                    compiler.compile(&gk).expect("compile");
                }
            }
        }
    }
    println!(
        "precompiled {} kernels for {} into {dir}",
        specs.len(),
        target.name
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--precompile") {
        precompile(
            args.get(i + 1)
                .map(String::as_str)
                .unwrap_or("kernel-cache"),
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out_dir = std::env::var("OUT").unwrap_or_else(|_| ".".into());
    let ctx = match Context::new(Device::Cuda(0)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("verify: no usable GPU: {e}");
            std::process::exit(2);
        }
    };
    let info = ctx.info().clone();
    eprintln!(
        "verify on {} ({}, {} SMs, driver {})",
        info.name, info.target, info.sm_count, info.driver_version
    );
    let t0 = Instant::now();
    let (mut ms, mut shapes): (Vec<usize>, Vec<(usize, usize)>) = if quick {
        (vec![1, 33], vec![(64, 64), (4100, 4104)])
    } else {
        (MS.to_vec(), SHAPES.to_vec())
    };
    // `--ms 33,128 --shapes 4096x4096,4100x4104`: a chosen slice of the matrix (a short GPU visit
    // aimed at one family); malformed values are an error, not a silent default.
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args.get(i + 1));
    let bad = |what: &str| -> ! {
        eprintln!("verify: {what}");
        std::process::exit(2);
    };
    if let Some(v) = value("--ms") {
        let v = v.unwrap_or_else(|| bad("--ms needs a list such as 33,128"));
        ms = v
            .split(',')
            .map(|x| {
                x.parse()
                    .unwrap_or_else(|_| bad(&format!("--ms: bad token count {x:?}")))
            })
            .collect();
    }
    if let Some(v) = value("--shapes") {
        let v = v.unwrap_or_else(|| bad("--shapes needs a list such as 4096x4096"));
        shapes = v
            .split(',')
            .map(|x| {
                let (n, k) = x
                    .split_once('x')
                    .unwrap_or_else(|| bad(&format!("--shapes: {x:?} is not NxK")));
                match (n.parse(), k.parse()) {
                    (Ok(n), Ok(k)) => (n, k),
                    _ => bad(&format!("--shapes: {x:?} is not NxK")),
                }
            })
            .collect();
    }
    let mut t = Tally {
        passed: 0,
        failed: 0,
        failures: vec![],
    };
    let (mut cases, mut uploads) = (vec![], vec![]);
    let errors = run_errors(&ctx, &mut t);
    let external = run_external_stream(&ctx, &mut t);
    let concurrency = run_concurrency(&ctx, &mut t);
    run_matrix::<f16>(&ctx, &ms, &shapes, &mut t, &mut cases, &mut uploads);
    run_matrix::<bf16>(&ctx, &ms, &shapes, &mut t, &mut cases, &mut uploads);
    let summary = json!({
        "device": info.name, "target": info.target, "driver": info.driver_version, "sm_count": info.sm_count,
        "passed": t.passed, "failed": t.failed, "seconds": t0.elapsed().as_secs_f64(),
        "kernels_loaded": ctx.loaded_kernel_count(), "workspace_bytes": ctx.workspace_bytes(),
        "failures": t.failures, "errors": errors, "external_stream": external, "concurrency": concurrency,
        "uploads": uploads, "cases": cases,
    });
    let path = format!("{out_dir}/verify.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary).unwrap()).expect("write summary");
    println!(
        "verify: {} passed, {} failed ({:.0}s) -> {path}",
        t.passed,
        t.failed,
        t0.elapsed().as_secs_f64()
    );
    if t.failed > 0 {
        std::process::exit(1);
    }
}
