//! CI without a GPU: every generated kernel variant must compile with NVRTC, spill-free.
//!
//! NVRTC must be loadable (LD_LIBRARY_PATH=.venv/lib/python3.11/site-packages/nvidia/cu13/lib);
//! if it is not, these tests FAIL with the install hint — they never skip.
//!
//! Coverage (the full cross product is ~1,900 kernels, too slow for CI on 2 cores):
//! * every configuration of both families' spaces, on sm_90a (f16, `none`) and on sm_80
//!   (bf16, `bias_gelu`: the plain `mma.sp` form and the longest epilogue);
//! * every epilogue × dtype for one configuration per family on sm_90a;
//! * one configuration per family × dtype on sm_86 and sm_89.
//!
//! The epilogue only changes one `#define`d expression and the dtype one typedef block, so
//! configurations and epilogues are independent axes.

use sparseflow_codegen::{generate, CodegenError, Compiler, CompilerOptions, KernelSpec, Registry};
use sparseflow_core::{DType, EpilogueKind};
use std::sync::Mutex;

fn compiler() -> Compiler {
    match Compiler::with_options(CompilerOptions {
        cache_dir: None,
        deny_spills: true,
        use_cache: false,
    }) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn enumerate(family: &str, dtype: DType, epilogue: EpilogueKind, target: &str) -> Vec<KernelSpec> {
    Registry::builtin()
        .enumerate(family, dtype, epilogue, target)
        .unwrap()
}

/// A configuration from the middle of the family's space (none when the family has no kernel
/// for `target`).
fn one_config(
    family: &str,
    dtype: DType,
    epilogue: EpilogueKind,
    target: &str,
) -> Option<KernelSpec> {
    let mut s = enumerate(family, dtype, epilogue, target);
    (!s.is_empty()).then(|| s.swap_remove(s.len() / 2))
}

/// Every registered family: adding one to the registry adds its kernels here.
fn variants() -> Vec<KernelSpec> {
    let mut v = Vec::new();
    for family in Registry::builtin().families() {
        let family = family.name();
        v.extend(enumerate(family, DType::F16, EpilogueKind::None, "sm_90a"));
        v.extend(enumerate(
            family,
            DType::BF16,
            EpilogueKind::BiasGelu,
            "sm_80",
        ));
        for dtype in [DType::F16, DType::BF16] {
            for epi in EpilogueKind::all() {
                v.extend(one_config(family, dtype, epi, "sm_90a"));
            }
            for target in ["sm_86", "sm_89"] {
                v.extend(one_config(family, dtype, EpilogueKind::BiasSilu, target));
            }
        }
    }
    v.sort_by_key(|s| format!("{s:?}"));
    v.dedup();
    v
}

#[test]
fn every_variant_compiles_without_spills() {
    let c = compiler();
    let specs = variants();
    let next = Mutex::new(0usize);
    let failures = Mutex::new(Vec::<String>::new());
    let total_ms = Mutex::new(0f64);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(spec) = specs.get(i) else { break };
                let k = generate(spec).unwrap_or_else(|e| panic!("generate {spec:?}: {e}"));
                match c.compile(&k) {
                    Ok(out) => {
                        assert!(!out.cubin.is_empty());
                        *total_ms.lock().unwrap() += out.compile_ms;
                    }
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{} ({}): {e}", k.name, spec.target)),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "compiled {} variants, {:.1} s of NVRTC time, {} failed",
        specs.len(),
        total_ms.into_inner().unwrap() / 1e3,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} variants failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn compile_error_names_the_generated_line() {
    let c = compiler();
    let spec = one_config("decode", DType::F16, EpilogueKind::None, "sm_90a").unwrap();
    let mut k = generate(&spec).unwrap();
    k.source = k.source.replace(
        "#define SF_EPILOGUE(acc, bias) (acc)",
        "#define SF_EPILOGUE(acc, bias) (acc + undefined_symbol)",
    );
    let err = c.compile(&k).expect_err("must not compile");
    let msg = err.to_string();
    assert!(matches!(err, CodegenError::Compile { .. }), "{msg}");
    assert!(msg.contains("undefined_symbol"), "{msg}");
    assert!(
        msg.contains(">>"),
        "the excerpt marks the failing line: {msg}"
    );
}

#[test]
fn disk_cache_hits_and_recovers_from_corruption() {
    let dir = std::env::temp_dir().join(format!("sparseflow-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = Compiler::with_options(CompilerOptions {
        cache_dir: Some(dir.clone()),
        deny_spills: false,
        use_cache: true,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = one_config("sm80", DType::BF16, EpilogueKind::Relu, "sm_80").unwrap();
    let k = generate(&spec).unwrap();
    let first = c.compile(&k).unwrap();
    assert!(!first.from_cache);
    let second = c.compile(&k).unwrap();
    assert!(second.from_cache);
    assert_eq!(first.cubin, second.cubin);
    // Corrupt every entry: the next compile must notice and rebuild.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        std::fs::write(&p, bytes).unwrap();
    }
    let third = c.compile(&k).unwrap();
    assert!(!third.from_cache);
    assert_eq!(third.cubin, first.cubin);
    // Another target is another entry.
    let mut k90 = k.clone();
    k90.spec.target = "sm_90a".into();
    assert!(!c.compile(&k90).unwrap().from_cache);
    let _ = std::fs::remove_dir_all(&dir);
}

/// ptxas's "wgmma serialized" diagnostics (each wgmma waited for before the next issues).
const SERIALIZED: [&str; 3] = ["C7512", "C7514", "C7520"];

/// The `sm90a` family (the sm90 template with `SF_ASYNC_MAINLOOP`, kernels/sm90_sparse_gemm.cu)
/// exists to keep the wgmmas of a stage in flight: `sm90` itself comes out with every wgmma of
/// every one-split configuration serialized (ptxas C7514 / C7520: each HGMMA waited for before
/// the next issues). No configuration of `sm90a`'s space (f16, every split), of `sm90d2`'s (two
/// stages in flight), `sm90sk`'s (stream-K) or of `sm90c2`'s and `sm90c4`'s (the same loop in
/// multicast clusters), and no
/// epilogue or dtype of one configuration, may
/// come out serialized. A change that brings the serialization back fails here, without a GPU.
#[test]
fn the_async_family_keeps_its_wgmmas_pipelined() {
    let c = compiler();
    let mut specs = Vec::new();
    for (family, at_least) in [
        ("sm90a", 32),
        ("sm90d2", 16),
        ("sm90sk", 8),
        ("sm90c2", 8),
        ("sm90c4", 8),
    ] {
        let space = enumerate(family, DType::F16, EpilogueKind::None, "sm_90a");
        assert!(
            space.len() >= at_least,
            "{} {family} configurations",
            space.len()
        );
        specs.extend(space);
        for dtype in [DType::F16, DType::BF16] {
            for epi in EpilogueKind::all() {
                specs.extend(one_config(family, dtype, epi, "sm_90a"));
            }
        }
    }
    let serialized: Vec<String> = specs
        .iter()
        .filter_map(|spec| {
            let k = generate(spec).unwrap();
            assert!(
                k.source.contains("#define SF_ASYNC_MAINLOOP 1"),
                "{}",
                k.name
            );
            // The spliced defines come first; the template's own fallbacks are 1.
            let family = spec.config.family;
            for (name, value) in [
                ("SF_CLUSTER_N", family.strip_prefix("sm90c").unwrap_or("1")),
                (
                    "SF_WGMMA_INFLIGHT",
                    family.strip_prefix("sm90d").unwrap_or("1"),
                ),
            ] {
                let define = format!("#define {name} ");
                assert_eq!(
                    k.source
                        .lines()
                        .find(|l| l.trim_start().starts_with(&define))
                        .and_then(|l| l.split_whitespace().nth(2)),
                    Some(value),
                    "{} {name}",
                    k.name
                );
            }
            let out = c.compile(&k).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            let found: Vec<&str> = SERIALIZED
                .into_iter()
                .filter(|w| out.log.contains(w))
                .collect();
            (!found.is_empty()).then(|| format!("{}: {found:?}", k.name))
        })
        .collect();
    assert!(
        serialized.is_empty(),
        "wgmma serialized:\n{}",
        serialized.join("\n")
    );
}
