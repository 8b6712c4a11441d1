//! The worked examples of `tests/data/format_vectors.safetensors` (see tests/data/README.md;
//! `gen_format_vectors.py` beside it regenerates the file from the rules of docs/FORMAT.md):
//! pruning, compression and every epilogue must reproduce them exactly / to fp tolerance.

use std::path::PathBuf;

use half::f16;
use safetensors::SafeTensors;
use sparseflow_core::{prune_magnitude, sparse_gemm, EpilogueKind, Sparse24};

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/format_vectors.safetensors")
}

fn f16s(st: &SafeTensors, name: &str) -> Vec<f16> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    t.data()
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn format_vectors_match() {
    let path = vectors_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (regenerate it with tests/data/gen_format_vectors.py)",
            path.display()
        )
    });
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (n, k, m) = (8, 32, 3);

    let pruned = prune_magnitude(&f16s(&st, "w_dense"), n, k).unwrap();
    let want_pruned = f16s(&st, "w_pruned");
    assert_eq!(
        pruned.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want_pruned.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );

    let sparse = Sparse24::compress(&pruned, n, k).unwrap();
    assert_eq!(sparse.values, f16s(&st, "values"));
    assert_eq!(sparse.meta, st.tensor("meta").unwrap().data());
    assert_eq!(sparse.decompress(), pruned);

    let x = f16s(&st, "x");
    let bias = f16s(&st, "bias");
    for kind in EpilogueKind::all() {
        let name = format!("y_{}", kind.name());
        if st.tensor(&name).is_err() {
            continue; // the file covers the kinds its README lists
        }
        let want = f32s(&st, &name);
        let b = kind.uses_bias().then_some(bias.as_slice());
        let got = sparse_gemm(&x, m, &sparse, b, kind).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = 1e-3 * w.abs().max(1.0);
            assert!(
                (g.to_f32() - w).abs() <= tol,
                "{name}[{i}]: got {g}, want {w}"
            );
        }
    }
}
