//! Tensor-parallel model directories (`sparseflow_model::tp`): the split rule, `shard_model` on a
//! converted Llama whose slices reassemble to the unsharded weights, and the validation of the
//! manifest record and the rank files.

use std::path::{Path, PathBuf};

use half::f16;
use serde_json::Value;
use sparseflow_core::Sparse24;
use sparseflow_model::convert::{convert, Options, Silent};
use sparseflow_model::testing::tiny_llama;
use sparseflow_model::tp::{rank_file, shard_bounds, shard_model, Split};
use sparseflow_model::{ModelDir, ModelError};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sf-tp-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A converted tiny Llama: hidden 32 (2 heads of 16), intermediate 200 (down_proj K = 200,
/// 50 groups: shards of 104 and 96 columns, neither a multiple of 64).
fn converted(dir: &Path) -> PathBuf {
    let hf = dir.join("hf");
    tiny_llama(&hf, 2, 32, 200, false);
    let out = dir.join("sparse");
    convert(&hf, &out, &Options::default(), &mut Silent).unwrap();
    out
}

fn weight(dir: &ModelDir, rank_file: Option<&str>, name: &str, n: usize, k: usize) -> Vec<f16> {
    let bytes = |t: &str| -> Vec<u8> {
        match rank_file {
            None => dir.tensor(t).unwrap().bytes.to_vec(),
            Some(f) => {
                let file =
                    sparseflow_model::tensors::TensorFile::open_path(&dir.path().join(f)).unwrap();
                let e = file.get(t).unwrap().clone();
                file.bytes(&e).to_vec()
            }
        }
    };
    let values: Vec<f16> =
        sparseflow_model::tensors::elements::<f16>(&bytes(&format!("{name}.values"))).into_owned();
    Sparse24::from_parts(n, k, values, bytes(&format!("{name}.meta")))
        .unwrap()
        .decompress()
}

#[test]
fn shard_bounds_is_the_python_rule() {
    // The same cases as python/tests/test_parallel.py::test_shard_bounds.
    assert_eq!(shard_bounds(77, 2, 1).unwrap(), vec![[0, 39], [39, 77]]);
    assert_eq!(shard_bounds(200, 2, 8).unwrap(), vec![[0, 104], [104, 200]]);
    assert_eq!(shard_bounds(196, 2, 8).unwrap(), vec![[0, 104], [104, 196]]);
    assert_eq!(
        shard_bounds(72, 4, 8).unwrap(),
        vec![[0, 24], [24, 40], [40, 56], [56, 72]]
    );
    assert!(shard_bounds(16, 3, 8)
        .unwrap_err()
        .contains("a rank would hold nothing"));
}

#[test]
fn shard_model_slices_reassemble_to_the_unsharded_weights() {
    let dir = tmp("roundtrip");
    let src = converted(&dir);
    let out = dir.join("tp2");
    shard_model(&src, &out, 2, false).unwrap();
    let full = ModelDir::open(&src).unwrap();
    let tp_dir = ModelDir::open(&out).unwrap();
    let tp = tp_dir.manifest().tensor_parallel.clone().unwrap();
    assert_eq!(tp.size, 2);
    assert_eq!(tp.files, vec![rank_file(0, 2), rank_file(1, 2)]);
    assert_eq!(tp.layers.len(), 14, "7 layers per block, 2 blocks");
    let down = &tp.layers["model.layers.0.mlp.down_proj"];
    assert_eq!(
        (down.split, down.bounds.clone()),
        (Split::Row, vec![[0, 104], [104, 200]])
    );
    let q = &tp.layers["model.layers.1.self_attn.q_proj"];
    assert_eq!(
        (q.split, q.bounds.clone()),
        (Split::Column, vec![[0, 16], [16, 32]])
    );
    for (name, layer) in &tp.layers {
        let [n, k] = tp_dir.manifest().layers[name].shape;
        let whole = weight(&full, None, name, n, k);
        for (r, &[a, b]) in layer.bounds.iter().enumerate() {
            let file = Some(tp.files[r].as_str());
            match layer.split {
                Split::Column => {
                    let part = weight(&tp_dir, file, name, b - a, k);
                    assert_eq!(part, whole[a * k..b * k], "{name} rank {r}");
                }
                Split::Row => {
                    let part = weight(&tp_dir, file, name, n, b - a);
                    for row in 0..n {
                        assert_eq!(
                            part[row * (b - a)..(row + 1) * (b - a)],
                            whole[row * k + a..row * k + b],
                            "{name} rank {r} row {row}"
                        );
                    }
                }
            }
        }
    }
    // Replicated tensors stay whole and the tokenizer and config are carried.
    assert!(tp_dir.tensor("model.embed_tokens.weight").is_some());
    assert!(tp_dir
        .tensor("model.layers.0.mlp.down_proj.values")
        .is_none());
    assert!(out.join("config.json").is_file() && out.join("tokenizer.json").is_file());
    // A per-rank layer has no whole weight to hand out.
    let err = tp_dir
        .layer::<f16>("model.layers.0.mlp.up_proj")
        .unwrap_err();
    assert!(err.to_string().contains("tensor-parallel"), "{err}");
    // And an already sharded model is not sharded again.
    assert!(shard_model(&out, &dir.join("again"), 2, false).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

fn edit_manifest(dir: &Path, edit: impl Fn(&mut Value)) {
    let path = dir.join("sparseflow.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

const DOWN: &str = "model.layers.0.mlp.down_proj";

/// (what is broken, how, what the error says).
type Case = (&'static str, Box<dyn Fn(&Path)>, &'static str);

#[test]
fn broken_tensor_parallel_directories_are_refused_with_the_reason() {
    let dir = tmp("broken");
    let src = converted(&dir);
    let good = dir.join("tp2");
    shard_model(&src, &good, 2, false).unwrap();
    let cases: Vec<Case> = vec![
        (
            "row bound not on a multiple of 8",
            Box::new(|d| {
                edit_manifest(d, |v| {
                    v["tensor_parallel"]["layers"][DOWN]["bounds"] =
                        serde_json::json!([[0, 100], [100, 200]])
                })
            }),
            "multiples of 8",
        ),
        (
            "bounds with a gap",
            Box::new(|d| {
                edit_manifest(d, |v| {
                    v["tensor_parallel"]["layers"][DOWN]["bounds"] =
                        serde_json::json!([[0, 96], [104, 200]])
                })
            }),
            "does not continue",
        ),
        (
            "a dense layer listed",
            Box::new(|d| {
                edit_manifest(d, |v| {
                    v["tensor_parallel"]["layers"]["lm_head"] =
                        serde_json::json!({"split": "column", "bounds": [[0, 32], [32, 64]]})
                })
            }),
            "not a sparse layer",
        ),
        (
            "a rank file missing",
            Box::new(|d| std::fs::remove_file(d.join(rank_file(1, 2))).unwrap()),
            "is missing",
        ),
        (
            "rank files swapped",
            Box::new(|d| {
                edit_manifest(d, |v| {
                    v["tensor_parallel"]["files"] =
                        serde_json::json!([rank_file(1, 2), rank_file(0, 2)])
                })
            }),
            "slice is",
        ),
        (
            "an unknown key",
            Box::new(|d| {
                edit_manifest(d, |v| v["tensor_parallel"]["ranks"] = serde_json::json!(2))
            }),
            "unknown key",
        ),
    ];
    for (what, edit, expected) in cases {
        let case = dir.join(what.replace(' ', "-"));
        copy_dir(&good, &case);
        edit(&case);
        let err: ModelError = ModelDir::open(&case).expect_err(what);
        assert!(err.to_string().contains(expected), "{what}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
