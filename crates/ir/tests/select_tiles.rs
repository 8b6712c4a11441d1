//! `select-tiles` and the cost model: decode for small M with enough split-K to
//! cover the SMs, big tiles for large M, determinism, legality on every target.

mod common;

use common::MLP_UP;
use sparseflow_core::DType;
use sparseflow_ir::kernel_space::DECODE as DECODE_SPACE;
use sparseflow_ir::kernel_space::{candidates, check, smem_bytes, FAMILIES, SM80};
use sparseflow_ir::select::rank;
use sparseflow_ir::{
    parse_module, print_module, select_for_m, target, GemmShape, PassContext, PassManager, TARGETS,
};

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
    for fam in FAMILIES {
        let product = fam.tile_m.len()
            * fam.tile_n.len()
            * fam.tile_k.len()
            * fam.warps.len()
            * fam.stages.len()
            * fam.split_k.len();
        assert_eq!(candidates(fam).count(), product, "{}", fam.name);
        assert!(candidates(fam).all(|c| c.family == fam.name));
    }
    assert!(DECODE_SPACE.max_m.is_some() && SM80.max_m.is_none());
    let big = candidates(&SM80)
        .find(|c| c.tile_m == 128 && c.tile_n == 128 && c.stages == 4)
        .unwrap();
    // stages × (values n·k/2·2 + meta n·k/8 + X m·k·2)
    assert_eq!(
        smem_bytes(&big, DType::F16),
        4 * (128 * 64 + 128 * 64 / 8 + 128 * 64 * 2)
    );
}

#[test]
fn decode_for_small_m_fills_the_sms() {
    for t in TARGETS {
        for m in [1u64, 4, 16] {
            let c = select_for_m(&shape(4096, 4096), m, t).unwrap().config;
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
fn large_m_uses_a_big_sm80_tile() {
    let t = target("sm_90a").unwrap();
    let c = select_for_m(&shape(14336, 4096), 4096, t).unwrap().config;
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
                let ranked = rank(&s, m, t);
                assert!(!ranked.is_empty(), "{} {m}x{n}x{k}", t.name);
                for c in &ranked {
                    check(&c.config, &s, Some(t)).unwrap();
                }
                assert_eq!(ranked, rank(&s, m, t));
            }
        }
    }
    assert!(FAMILIES.iter().any(|f| f.name == "sm80"));
}

#[test]
fn pass_annotates_and_is_idempotent() {
    let run = |text: &str| {
        let mut m = parse_module(text).unwrap();
        let mut cx = PassContext::new(Some(target("sm_90a").unwrap()));
        cx.explain = true;
        PassManager::parse_pipeline("fuse-epilogue,select-tiles,canonicalize")
            .unwrap()
            .run(&mut m, &mut cx)
            .unwrap();
        (print_module(&m), cx.notes)
    };
    let (out, notes) = run(common::DECODE);
    assert!(
        out.contains("{epilogue = \"relu\", family = \"decode\", tile_m = 8,"),
        "{out}"
    );
    assert!(notes.iter().any(|n| n.contains("#1 decode")), "{notes:?}");
    assert_eq!(run(&out).0, out);
    let (out, notes) = run(MLP_UP);
    assert!(out.contains("family = \"sm80\""), "{out}");
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
            .contains("needs a target GPU; pass --target=<sm_80|sm_86|sm_89|sm_90a>"),
        "{err}"
    );
}
