//! The CPU backend through the runtime API: matches the f64 oracle on random shapes, every
//! epilogue and dtype; shared across 8 threads; raw-pointer entry; bad input.

mod common;

use std::sync::Arc;

use half::{bf16, f16};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sparseflow_core::{CoreError, DType, Element, EpilogueKind, Sparse24};
use sparseflow_runtime::{bucket, Context, Device, RuntimeError, SparseGemm};

fn check<T: Element>(seed: u64, m: usize, n: usize, k: usize, epi: EpilogueKind) {
    let c = common::case::<T>(seed, m, n, k, epi);
    let ctx = Context::cpu();
    let g = SparseGemm::new(&ctx, &c.w, c.bias.as_deref(), epi).unwrap();
    assert_eq!(
        (g.n(), g.k(), g.dtype(), g.epilogue()),
        (n, k, T::DTYPE, epi)
    );
    let y = g.forward_host(&c.x, m).unwrap();
    let (bad, first) = common::compare(&c, m, epi, &y);
    assert_eq!(
        bad,
        0,
        "{:?} {epi} m={m} n={n} k={k}: {bad} bad, first {first:?}",
        T::DTYPE
    );
}

#[test]
fn matches_oracle_on_random_shapes_every_epilogue_and_dtype() {
    let shapes = [
        (1, 1, 4),
        (1, 64, 64),
        (7, 33, 36),
        (16, 8, 128),
        (33, 100, 260),
        (5, 3, 4100),
    ];
    let mut seed = 0;
    for (m, n, k) in shapes {
        for epi in EpilogueKind::all() {
            seed += 1;
            check::<f32>(seed, m, n, k, epi);
            check::<f16>(seed, m, n, k, epi);
            check::<bf16>(seed, m, n, k, epi);
        }
    }
}

#[test]
fn eight_threads_share_one_layer() {
    let (n, k) = (96, 128);
    let epi = EpilogueKind::BiasGelu;
    let c = common::case::<f16>(7, 1, n, k, epi);
    let g = Arc::new(SparseGemm::new(&Context::cpu(), &c.w, c.bias.as_deref(), epi).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let g = g.clone();
            let (w, dense, bias) = (c.w.clone(), c.dense.clone(), c.bias.clone());
            std::thread::spawn(move || {
                for it in 0..5 {
                    let m = 1 + (t * 5 + it) % 19;
                    let x = common::random::<f16>(
                        &mut ChaCha8Rng::seed_from_u64((t * 100 + it) as u64),
                        m * k,
                    );
                    let y = g.forward_host(&x, m).unwrap();
                    let case = common::Case {
                        w: w.clone(),
                        dense: dense.clone(),
                        x,
                        bias: bias.clone(),
                    };
                    let (bad, first) = common::compare(&case, m, epi, &y);
                    assert_eq!(bad, 0, "thread {t} m={m}: {first:?}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn forward_raw_on_host_pointers() {
    let (m, n, k) = (3, 16, 32);
    let c = common::case::<bf16>(3, m, n, k, EpilogueKind::Relu);
    let g = SparseGemm::new(&Context::cpu(), &c.w, None, EpilogueKind::Relu).unwrap();
    let mut y = vec![bf16::from_f32(f32::NAN); m * n];
    // SAFETY: x has m·k and y m·n elements of the layer's dtype; they do not overlap.
    unsafe { g.forward_raw(c.x.as_ptr().cast(), y.as_mut_ptr().cast(), m, None) }.unwrap();
    assert_eq!(y, g.forward_host(&c.x, m).unwrap());
    let (bad, first) = common::compare(&c, m, EpilogueKind::Relu, &y);
    assert_eq!(bad, 0, "{first:?}");
}

fn layer() -> (SparseGemm, Vec<f16>) {
    let c = common::case::<f16>(1, 2, 8, 16, EpilogueKind::None);
    (
        SparseGemm::new(&Context::cpu(), &c.w, None, EpilogueKind::None).unwrap(),
        c.x,
    )
}

#[test]
fn bad_input_is_a_clear_error() {
    let (g, x) = layer();
    let e = g.forward_host(&x, 0).unwrap_err();
    assert!(e.to_string().contains("m (tokens) must be >= 1"), "{e}");
    let e = g.forward_host(&x, 3).unwrap_err();
    assert!(matches!(e, RuntimeError::Shape(_)), "{e}");
    let e = g.forward_host(&[bf16::ZERO; 32], 2).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::DTypeMismatch {
                expected: DType::F16,
                got: DType::BF16
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("convert the input to f16"), "{e}");
    let mut y = vec![f16::ZERO; 16];
    // SAFETY: null pointers are rejected before any access.
    let e = unsafe { g.forward_raw(std::ptr::null(), y.as_mut_ptr().cast(), 2, None) }.unwrap_err();
    assert!(matches!(e, RuntimeError::NullPointer("x")), "{e}");
    // SAFETY: as above.
    let e = unsafe { g.forward_raw(x.as_ptr().cast(), std::ptr::null_mut(), 2, None) }.unwrap_err();
    assert!(matches!(e, RuntimeError::NullPointer("y")), "{e}");
    let mut xy = x.clone();
    // SAFETY: overlap is rejected before any access.
    let e =
        unsafe { g.forward_raw(xy.as_ptr().cast(), xy.as_mut_ptr().cast(), 2, None) }.unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    let e = g.plan(4).unwrap_err();
    assert!(matches!(e, RuntimeError::NeedsGpu(_)), "{e}");
    let decode = sparseflow_ir::KernelConfig {
        family: "decode",
        tile_m: 8,
        tile_n: 16,
        tile_k: 256,
        warps: 4,
        stages: 2,
        split_k: 1,
    };
    let e = g.use_config(4, decode).unwrap_err();
    assert!(matches!(e, RuntimeError::NeedsGpu(_)), "{e}");
    assert!(g.upload_report().weights.is_empty());
    assert!(bucket(0).is_err());
    assert_eq!(
        [1, 2, 3, 7, 16, 17, 1000].map(|m| bucket(m).unwrap()),
        [1, 2, 4, 8, 16, 32, 1024]
    );
}

#[test]
fn bias_must_match_the_epilogue() {
    let c = common::case::<f32>(2, 1, 8, 16, EpilogueKind::Bias);
    let ctx = Context::cpu();
    let e = SparseGemm::new(&ctx, &c.w, None, EpilogueKind::Bias).unwrap_err();
    assert!(e.to_string().contains("needs a bias vector"), "{e}");
    let e = SparseGemm::new(&ctx, &c.w, c.bias.as_deref(), EpilogueKind::Relu).unwrap_err();
    assert!(e.to_string().contains("takes no bias"), "{e}");
    let e = SparseGemm::new(&ctx, &c.w, Some(&[1.0f32; 3]), EpilogueKind::Bias).unwrap_err();
    assert!(
        matches!(e, RuntimeError::Core(CoreError::LengthMismatch { .. })),
        "{e}"
    );
}

#[test]
fn weight_that_is_not_24_is_rejected() {
    let c = common::case::<f16>(4, 1, 4, 16, EpilogueKind::None);
    let mut w: Sparse24<f16> = c.w.clone();
    w.meta[3] = 0x33; // code 0b0011: positions 3 and 0, not increasing
    let e = SparseGemm::new(&Context::cpu(), &w, None, EpilogueKind::None).unwrap_err();
    assert!(
        matches!(e, RuntimeError::Core(CoreError::BadMeta { .. })),
        "{e}"
    );
    let mut w = c.w.clone();
    w.values.pop();
    let e = SparseGemm::new(&Context::cpu(), &w, None, EpilogueKind::None).unwrap_err();
    assert!(
        matches!(e, RuntimeError::Core(CoreError::LengthMismatch { .. })),
        "{e}"
    );
}

#[test]
fn context_api_on_cpu() {
    let ctx = Context::cpu();
    assert_eq!(ctx.device(), Device::Cpu);
    assert!(!ctx.is_gpu());
    assert!(ctx.cuda_context().is_none() && ctx.default_stream().is_none());
    assert_eq!(ctx.info().target, "cpu");
    assert!(Context::new(Device::Cpu)
        .unwrap()
        .fallback_reason()
        .is_none());
    let auto = Context::auto();
    if !auto.is_gpu() {
        let why = auto.fallback_reason().expect("auto() on CPU says why");
        eprintln!("Context::auto() fell back to the CPU: {why}");
    }
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Context>();
    fn send_sync_layer<T: Send + Sync>() {}
    send_sync_layer::<SparseGemm>();
}

#[test]
fn gpu_context_without_driver_is_a_clear_error() {
    match Context::new(Device::Cuda(0)) {
        Ok(ctx) => eprintln!("skipped: a CUDA device is present ({})", ctx.info().name),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("no CUDA driver")
                    || msg.contains("does not exist")
                    || msg.contains("sm_80"),
                "{msg}"
            );
            eprintln!("Context::new(Cuda(0)) -> {msg}");
        }
    }
}

#[test]
fn programmatic_launch_is_an_opt_in_the_cpu_backend_refuses() {
    let ctx = Context::cpu();
    assert!(!ctx.programmatic_launch(), "off by default");
    ctx.set_programmatic_launch(false).unwrap();
    let e = ctx.set_programmatic_launch(true).unwrap_err();
    assert!(matches!(e, RuntimeError::NeedsGpu(_)), "{e}");
    assert!(e.to_string().contains("CUDA context"), "{e}");
    assert!(!ctx.programmatic_launch());
}

#[test]
fn gpu_errors_tell_every_face_how_to_reach_the_cpu_backend() {
    // The messages reach C and Python users too: a Rust-only hint (`Context::cpu()`) would
    // tell them to call something they do not have.
    let e = sparseflow_runtime::RuntimeError::NoDriver("libcuda.so not found".into()).to_string();
    for face in [
        "Context::cpu()",
        "sparseflow_context_create(-1",
        "Python: CPU tensors",
    ] {
        assert!(e.contains(face), "{e}");
    }
}
