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

#[test]
fn gpu_matches_oracle() {
    let Some(ctx) = gpu() else { return };
    for (n, k) in [(64, 64), (200, 264)] {
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
    assert_eq!(plan.family, "decode");
}
