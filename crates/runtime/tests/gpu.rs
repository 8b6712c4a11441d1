//! GPU checks. Without a usable GPU (CI) each test prints why it is skipped; the full matrix
//! runs on the GPU machine through `scripts/device/verify.sh` (examples/verify.rs).

mod common;

use half::{bf16, f16};
use sparseflow_core::{Element, EpilogueKind};
use sparseflow_runtime::{Context, Device, DeviceBuffer, RuntimeError, SparseGemm};

fn gpu() -> Option<Context> {
    match Context::new(Device::Cuda(0)) {
        Ok(c) => Some(c),
        Err(e) => {
            let why = match &e {
                RuntimeError::NoDriver(_) => "no CUDA driver".to_string(),
                other => other.to_string(),
            };
            eprintln!("skipped: {why} ({e})");
            None
        }
    }
}

fn check<T: Element>(ctx: &Context, m: usize, n: usize, k: usize, epi: EpilogueKind) {
    let c = common::case::<T>(m as u64 * 7 + n as u64, m, n, k, epi);
    let g = SparseGemm::new(ctx, &c.w, c.bias.as_deref(), epi).unwrap();
    let x = DeviceBuffer::from_host(ctx, &c.x).unwrap();
    let mut y = DeviceBuffer::<T>::uninit(ctx, m * n).unwrap();
    // SAFETY: default stream; buffers of m·k / m·n elements on ctx.
    unsafe {
        y.fill_nan_async(None).unwrap();
        g.forward_raw(x.as_ptr(), y.as_mut_ptr(), m, None).unwrap();
    }
    ctx.synchronize().unwrap();
    let got = y.to_host().unwrap();
    let (bad, first) = common::compare(&c, m, epi, &got);
    assert_eq!(bad, 0, "{:?} {epi} m={m} n={n} k={k}: {first:?}", T::DTYPE);
    assert_eq!(
        g.forward_host(&c.x, m).unwrap(),
        got,
        "forward_host and forward_raw differ"
    );
}

/// Every epilogue of the table (so a new one is covered with no edit here), both dtypes, on a
/// shape whose N and K are not tile multiples and two M that pick different families.
#[test]
fn every_epilogue_matches_oracle() {
    let Some(ctx) = gpu() else { return };
    for epi in EpilogueKind::all() {
        for m in [3, 70] {
            check::<f16>(&ctx, m, 100, 136, epi);
            check::<bf16>(&ctx, m, 100, 136, epi);
        }
    }
}

#[test]
fn gpu_matches_oracle() {
    let Some(ctx) = gpu() else { return };
    // n = 100: the last 16-byte bias chunk of the decode kernel is a partial copy (4 of 8).
    for (n, k) in [(64, 64), (200, 264), (100, 136)] {
        for m in [1, 7, 33] {
            for epi in [
                EpilogueKind::None,
                EpilogueKind::BiasGelu,
                EpilogueKind::Silu,
            ] {
                check::<f16>(&ctx, m, n, k, epi);
                check::<bf16>(&ctx, m, n, k, epi);
            }
        }
    }
}

#[test]
fn gpu_rejects_bad_input() {
    let Some(ctx) = gpu() else { return };
    let c = common::case::<f16>(1, 2, 64, 64, EpilogueKind::None);
    let g = SparseGemm::new(&ctx, &c.w, None, EpilogueKind::None).unwrap();
    let x = DeviceBuffer::from_host(&ctx, &c.x).unwrap();
    let mut y = DeviceBuffer::<f16>::uninit(&ctx, 2 * 64).unwrap();
    // SAFETY: rejected before any access.
    let e = unsafe {
        g.forward_raw(
            (x.as_ptr() as *const u8).add(2).cast(),
            y.as_mut_ptr(),
            1,
            None,
        )
    }
    .unwrap_err();
    assert!(matches!(e, RuntimeError::Misaligned { .. }), "{e}");
    // SAFETY: rejected before any access.
    let e = unsafe { g.forward_raw(c.x.as_ptr().cast(), y.as_mut_ptr(), 1, None) }.unwrap_err();
    assert!(matches!(e, RuntimeError::ForeignPointer { .. }), "{e}");
    let w32 = common::case::<f32>(1, 1, 8, 16, EpilogueKind::None).w;
    let e = SparseGemm::new(&ctx, &w32, None, EpilogueKind::None).unwrap_err();
    assert!(matches!(e, RuntimeError::UnsupportedDType { .. }), "{e}");
    let plan = g.plan(1).unwrap();
    assert_eq!(plan.config.family, "decode");
}

/// `use_config` runs an explicit configuration in place of the plan (what `sparseflow tune`
/// measures) and refuses one that cannot serve the M.
#[test]
fn an_explicit_configuration_replaces_the_plan() {
    let Some(ctx) = gpu() else { return };
    let (m, n, k, epi) = (33, 200, 264, EpilogueKind::BiasGelu);
    let c = common::case::<f16>(5, m, n, k, epi);
    let g = SparseGemm::new(&ctx, &c.w, c.bias.as_deref(), epi).unwrap();
    let decode = sparseflow_ir::KernelConfig {
        family: "decode",
        tile_m: 16,
        tile_n: 32,
        tile_k: 256,
        warps: 4,
        stages: 2,
        split_k: 2,
    };
    let registry = sparseflow_codegen::Registry::builtin();
    let problem = sparseflow_ir::LayerProblem {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        dtype: sparseflow_core::DType::F16,
        epilogue: epi,
    };
    let target = ctx.target().unwrap();
    let sm80 = registry
        .enumerate("sm80", problem.dtype, epi, &target.arch)
        .unwrap()
        .into_iter()
        .map(|spec| spec.config)
        .find(|&config| registry.kernel_for(&problem, target, config).is_ok())
        .expect("an sm80 configuration for the shape");
    for config in [decode, sm80] {
        g.use_config(m, config).unwrap();
        assert_eq!(g.kernel_info(m).unwrap().config, config);
        let got = g.forward_host(&c.x, m).unwrap();
        let (bad, first) = common::compare(&c, m, epi, &got);
        assert_eq!(bad, 0, "{config:?}: {first:?}");
    }
    let e = g.use_config(100, decode).unwrap_err();
    assert!(e.to_string().contains("handles M <= 64"), "{e}");
}

/// A chain of launches where each layer reads the previous one's output, queued without a host
/// sync, with programmatic dependent launch (sm_90+) on and off: each step is compared with the
/// oracle applied to the step's actual input. Decode (M = 4) and sm80 (M = 96) plans. It
/// exercises the programmatic launch path end to end; since no kernel triggers its successor
/// early, the overlap is only the launch, so a missing `griddepcontrol.wait` would likely still
/// pass here — that wait is checked by reading the kernel templates (kernels/README.md).
#[test]
fn gpu_chained_layers_read_finished_inputs() {
    let Some(ctx) = gpu() else { return };
    let (n, k, steps) = (2048usize, 2048usize, 6usize);
    // |w| ~ 1/sqrt(k/2) keeps activations at a steady scale through the chain.
    let mut c = common::case::<f16>(11, 1, n, k, EpilogueKind::Bias);
    let s = 1.3 / ((k / 2) as f32).sqrt();
    c.dense
        .iter_mut()
        .for_each(|v| *v = f16::from_f32(v.to_f32() * s));
    c.w = sparseflow_core::Sparse24::compress(&c.dense, n, k).unwrap();
    let g = SparseGemm::new(&ctx, &c.w, c.bias.as_deref(), EpilogueKind::Bias).unwrap();
    let modes: &[bool] = if ctx.info().compute_capability.0 >= 9 {
        &[true, false]
    } else {
        &[false]
    };
    for &pdl in modes {
        ctx.set_programmatic_launch(pdl).unwrap();
        for m in [4usize, 96] {
            g.prepare(m).unwrap(); // compile first: the chain below is launches only
            let x0 = common::case::<f16>(m as u64, m, n, k, EpilogueKind::None).x;
            let mut bufs = vec![DeviceBuffer::from_host(&ctx, &x0).unwrap()];
            for _ in 0..steps {
                let y = DeviceBuffer::<f16>::uninit(&ctx, m * n).unwrap();
                // SAFETY: default stream, a buffer of this context.
                unsafe { y.fill_nan_async(None).unwrap() };
                bufs.push(y);
            }
            // Back-to-back kernels (no memset between them, which would end the overlap).
            for i in 0..steps {
                let (head, tail) = bufs.split_at_mut(i + 1);
                // SAFETY: default stream; buffers of m·k (k = n) elements on ctx.
                unsafe {
                    g.forward_raw(head[i].as_ptr(), tail[0].as_mut_ptr(), m, None)
                        .unwrap();
                }
            }
            ctx.synchronize().unwrap();
            for i in 0..steps {
                c.x = bufs[i].to_host().unwrap();
                let got = bufs[i + 1].to_host().unwrap();
                let (bad, first) = common::compare(&c, m, EpilogueKind::Bias, &got);
                assert_eq!(bad, 0, "pdl={pdl} m={m} step {i}: {first:?}");
            }
        }
    }
    ctx.set_programmatic_launch(false).unwrap(); // the default
}
