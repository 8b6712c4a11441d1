//! `select-tiles` and the cost model: decode for small M with enough split-K to
//! cover the SMs, big tiles for large M, determinism, legality on every target.

use sparseflow_codegen::families::{DECODE, SM80};
use sparseflow_codegen::Registry;
use sparseflow_core::DType;
use sparseflow_ir::family::check;
use sparseflow_ir::kernel_config::candidates;
use sparseflow_ir::select::{rank, select_for_m};
use sparseflow_ir::{
    parse_module, print_module, target, FamilyModel, GemmShape, PassContext, PassManager, Target,
    TARGETS,
};

const MLP_UP: &str = "func.func @mlp_up(%x: tensor<?x4096xf16>, %w: !sparseflow.sparse24<14336x4096xf16>, %b: tensor<14336xf16>) -> tensor<?x14336xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<?x4096xf16>, !sparseflow.sparse24<14336x4096xf16>) -> tensor<?x14336xf16>
  %1 = arith.addf %0, %b : (tensor<?x14336xf16>, tensor<14336xf16>) -> tensor<?x14336xf16>
  %2 = arith.silu %1 : tensor<?x14336xf16>
  return %2 : tensor<?x14336xf16>
}
";

const DECODE_IR: &str = "func.func @decode(%x: tensor<1x4096xbf16>, %w: !sparseflow.sparse24<4096x4096xbf16>) -> tensor<1x4096xbf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<1x4096xbf16>, !sparseflow.sparse24<4096x4096xbf16>) -> tensor<1x4096xbf16>
  %1 = arith.relu %0 : tensor<1x4096xbf16>
  return %1 : tensor<1x4096xbf16>
}
";

fn families() -> &'static [&'static dyn FamilyModel] {
    Registry::builtin().models()
}

fn best(shape: &GemmShape, m: u64, t: &Target) -> sparseflow_ir::KernelConfig {
    select_for_m(families(), shape, m, t).unwrap().config
}

fn shape(n: u64, k: u64) -> GemmShape {
    GemmShape {
        m: None,
        n,
        k,
        dtype: DType::F16,
    }
}

#[test]
fn space_matches_the_contract() {
    // The codegen owners may edit the values; the iterator must stay the full product.
    for fam in families() {
        let space = fam.space();
        let product = space.tile_m.len()
            * space.tile_n.len()
            * space.tile_k.len()
            * space.warps.len()
            * space.stages.len()
            * space.split_k.len();
        assert_eq!(space.size(), product, "{}", fam.name());
        assert_eq!(candidates(fam.name(), space).count(), product);
        assert!(candidates(fam.name(), space).all(|c| c.family == fam.name()));
    }
    assert!(DECODE.max_m().is_some() && SM80.max_m().is_none());
    let big = candidates(SM80.name(), SM80.space())
        .find(|c| c.tile_m == 128 && c.tile_n == 128 && c.stages == 4)
        .unwrap();
    // stages × (values n·k/2·2 + meta n·k/8 + X m·k·2)
    assert_eq!(
        SM80.resources(&big, DType::F16).dynamic_smem,
        4 * (128 * 64 + 128 * 64 / 8 + 128 * 64 * 2)
    );
    // The decode family keeps everything in static shared memory and registers.
    let dec = candidates(DECODE.name(), DECODE.space()).next().unwrap();
    assert_eq!(DECODE.resources(&dec, DType::F16).dynamic_smem, 0);
}

#[test]
fn decode_for_small_m_fills_the_sms() {
    for t in TARGETS {
        for m in [1u64, 4, 16] {
            let c = best(&shape(4096, 4096), m, t);
            assert_eq!(c.family, "decode", "{} M={m}", t.name);
            assert!(c.tile_m as u64 >= m);
            let blocks = 4096u64.div_ceil(c.tile_n as u64) * c.split_k as u64;
            assert!(
                blocks >= t.sm_count as u64,
                "{} M={m}: {c:?} gives {blocks} blocks",
                t.name
            );
        }
    }
}

#[test]
fn large_m_uses_the_biggest_tile_of_the_targets_family() {
    // Hopper: the wgmma.sp family with its 256-token tile; before it, sm80's 128x128.
    let c = best(&shape(14336, 4096), 4096, target("sm_90a").unwrap());
    assert_eq!(c.family, "sm90");
    assert_eq!((c.tile_m, c.tile_n), (256, 128), "{c:?}");
    let c = best(&shape(14336, 4096), 4096, target("sm_80").unwrap());
    assert_eq!(c.family, "sm80");
    assert_eq!((c.tile_m, c.tile_n), (128, 128), "{c:?}");
}

#[test]
fn every_choice_is_legal_for_its_target_and_deterministic() {
    for t in TARGETS {
        for (n, k) in [
            (4096, 4096),
            (14336, 4096),
            (4096, 14336),
            (32, 64),
            (1000, 100),
        ] {
            for m in [1u64, 8, 16, 17, 64, 333, 2048, 16384] {
                let s = GemmShape {
                    m: Some(m),
                    ..shape(n, k)
                };
                let ranked = rank(families(), &s, m, t);
                assert!(!ranked.is_empty(), "{} {m}x{n}x{k}", t.name);
                for c in &ranked {
                    check(families(), &c.config, &s, Some(t)).unwrap();
                }
                assert_eq!(ranked, rank(families(), &s, m, t));
            }
        }
    }
    assert!(families().iter().any(|f| f.name() == "sm80"));
}

#[test]
fn pass_annotates_and_is_idempotent() {
    let run = |text: &str| {
        let mut m = parse_module(text).unwrap();
        let mut cx = PassContext::new(Some(target("sm_90a").unwrap())).with_families(families());
        cx.explain = true;
        PassManager::parse_pipeline("fuse-epilogue,select-tiles,canonicalize")
            .unwrap()
            .run(&mut m, &mut cx)
            .unwrap();
        (print_module(&m), cx.notes)
    };
    let (out, notes) = run(DECODE_IR);
    assert!(
        out.contains("{epilogue = \"relu\", family = \"decode\", tile_m = 8,"),
        "{out}"
    );
    assert!(notes.iter().any(|n| n.contains("#1 decode")), "{notes:?}");
    assert_eq!(run(&out).0, out);
    let (out, notes) = run(MLP_UP);
    assert!(out.contains("family = \"sm90\""), "{out}");
    assert!(
        notes.iter().any(|n| n.contains("M=? (using 2048)")),
        "{notes:?}"
    );
}

#[test]
fn select_tiles_without_target_is_a_clear_error() {
    let mut m = parse_module(MLP_UP).unwrap();
    let mut cx = PassContext::new(None);
    let err = PassManager::parse_pipeline("select-tiles")
        .unwrap()
        .run(&mut m, &mut cx)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("needs a target GPU; pass --target=<sm_80|sm_86|sm_89|sm_90a|h200>"),
        "{err}"
    );
}
