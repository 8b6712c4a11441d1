//! The model format: round trip, manifest validation, and the safety cases of readers and the
//! writer (confinement, non-regular files, corrupt files, force, stale staging, long names).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::f16;
use sparseflow_core::{prune_magnitude, DType, Sparse24};
use sparseflow_model::testing::staging_entries;
use sparseflow_model::{
    manifest::LayerEntry, save_model, Dtype, Manifest, ModelDir, ModelError, TensorData,
};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sf-model-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bytes_of(v: &[f16]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// A two-layer model: one sparse layer `a` [8, 16] and a dense `emb.weight` [4, 8].
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

fn sample() -> (Manifest, Tensors, Sparse24<f16>) {
    let w: Vec<f16> = (0..128)
        .map(|i| f16::from_f32((i as f32 * 0.37).sin()))
        .collect();
    let s = Sparse24::compress(&prune_magnitude(&w, 8, 16).unwrap(), 8, 16).unwrap();
    let mut m = Manifest::new();
    m.layers.insert(
        "a".into(),
        LayerEntry {
            shape: [8, 16],
            dtype: DType::F16,
            method: "magnitude".into(),
            epilogue: "none".into(),
            diff: BTreeMap::new(),
            fused_activation: None,
        },
    );
    let emb: Vec<f16> = (0..32).map(|i| f16::from_f32(i as f32)).collect();
    let tensors = vec![
        (
            "a.values".into(),
            Dtype::F16,
            vec![8, 8],
            bytes_of(&s.values),
        ),
        ("a.meta".into(), Dtype::U8, vec![8, 2], s.meta.clone()),
        ("emb.weight".into(), Dtype::F16, vec![4, 8], bytes_of(&emb)),
    ];
    (m, tensors, s)
}

fn save(dest: &Path, force: bool) -> Result<(), ModelError> {
    let (m, tensors, _) = sample();
    let data: Vec<TensorData> = tensors
        .iter()
        .map(|(n, d, s, b)| TensorData {
            name: n,
            dtype: *d,
            shape: s,
            bytes: b,
        })
        .collect();
    save_model(dest, force, &m, &data, &[("config.json", b"{}\n")]).map(|_| ())
}

#[test]
fn round_trip_layer_and_tensors() {
    let dir = tmp("rt");
    let dest = dir.join("m");
    save(&dest, false).unwrap();
    let model = ModelDir::open(&dest).unwrap();
    let (_, _, s) = sample();
    assert_eq!(model.layer::<f16>("a").unwrap(), s);
    assert_eq!(model.tensor("emb.weight").unwrap().shape, &[4, 8]);
    assert!(model
        .layer::<f16>("b")
        .unwrap_err()
        .to_string()
        .contains("no sparse layer `b`"));
    assert!(staging_entries(&dir).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn existing_output_needs_force_and_force_needs_a_sparseflow_model() {
    let dir = tmp("force");
    let dest = dir.join("m");
    save(&dest, false).unwrap();
    let err = save(&dest, false).unwrap_err();
    assert!(err.to_string().contains("pass --force"), "{err}");
    save(&dest, true).unwrap();
    ModelDir::open(&dest).unwrap();

    let foreign = dir.join("project");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("train.py"), "print('precious')").unwrap();
    let err = save(&foreign, true).unwrap_err();
    assert!(matches!(err, ModelError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("refusing to replace it"), "{err}");
    assert!(foreign.join("train.py").exists());
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        save(&file, true).unwrap_err(),
        ModelError::NotOurs { .. }
    ));
    assert!(staging_entries(&dir).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn long_names_work() {
    let dir = tmp("long");
    let dest = dir.join("x".repeat(250));
    save(&dest, false).unwrap();
    save(&dest, true).unwrap();
    ModelDir::open(&dest).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn stale_staging_of_dead_writers_is_cleaned_live_ones_kept() {
    let dir = tmp("stale");
    // A dead writer: lock file without a holder, and its directory.
    std::fs::create_dir(dir.join(".sft-0badc0de")).unwrap();
    std::fs::write(dir.join(".sft-0badc0de/model.safetensors"), "half").unwrap();
    std::fs::write(dir.join(".sft-0badc0de.lock"), "").unwrap();
    // Not ours: no lock file.
    std::fs::create_dir(dir.join(".sft-12345678")).unwrap();
    // A live writer: its lock is held.
    let live = std::fs::File::create(dir.join(".sft-aaaaaaaa.lock")).unwrap();
    rustix::fs::flock(&live, rustix::fs::FlockOperation::LockExclusive).unwrap();
    std::fs::create_dir(dir.join(".sft-aaaaaaaa")).unwrap();
    save(&dir.join("m"), false).unwrap();
    let mut left = staging_entries(&dir);
    left.sort();
    assert_eq!(
        left,
        [".sft-12345678", ".sft-aaaaaaaa", ".sft-aaaaaaaa.lock"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn write_manifest(dest: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dest.join("sparseflow.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

fn open_err(dest: &Path) -> String {
    ModelDir::open(dest).unwrap_err().to_string()
}

#[test]
fn manifest_problems_name_the_key() {
    let dir = tmp("manifest");
    let dest = dir.join("m");
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["surprise"] = 1.into()),
            "key `surprise`: unknown key",
        ),
        (
            Box::new(|v| v["layers"]["a"]["colour"] = 1.into()),
            "key `layers.a.colour`: unknown key",
        ),
        (
            Box::new(|v| v["format_version"] = 2.into()),
            "format_version 2 is not supported",
        ),
        (Box::new(|v| v["format"] = "other".into()), "key `format`"),
        (
            Box::new(|v| v["layers"]["a"]["shape"] = serde_json::json!([8, 15])),
            "key `layers.a.shape`",
        ),
        (
            Box::new(|v| v["layers"]["a"]["shape"] = serde_json::json!([8, 32])),
            "tensor `a.values` is F16 [8, 8]",
        ),
        (
            Box::new(|v| v["layers"]["a"]["dtype"] = "int4".into()),
            "key `layers.a.dtype`",
        ),
        (
            Box::new(|v| v["layers"]["a"]["epilogue"] = "tanh".into()),
            "key `layers.a.epilogue`",
        ),
        (
            Box::new(|v| v["layers"]["a"]["fused_activation"] = "act".into()),
            "applies no activation",
        ),
        (
            Box::new(|v| v["layers"]["a"]["diff"] = serde_json::json!({"x": "y"})),
            "key `layers.a.diff.x`",
        ),
        (
            Box::new(
                |v| v["layers"]["b"] = serde_json::json!({"shape": [8, 16], "dtype": "float16", "method": "magnitude", "epilogue": "none"}),
            ),
            "tensor `b.values` is missing",
        ),
        (
            Box::new(|v| v["aliases"] = serde_json::json!({"emb.weight": "a.values"})),
            "may not overwrite it",
        ),
        (
            Box::new(|v| v["aliases"] = serde_json::json!({"x.weight": "nope"})),
            "target `nope`",
        ),
        (
            Box::new(|v| v["aliases"] = serde_json::json!({"a.meta": "emb.weight"})),
            "overwrites a tensor of sparse layer `a`",
        ),
        (
            Box::new(|v| v["layers"] = serde_json::json!([1])),
            "key `layers`: expected an object",
        ),
    ];
    for (edit, want) in cases {
        let _ = std::fs::remove_dir_all(&dest);
        save(&dest, false).unwrap();
        write_manifest(&dest, edit);
        let err = open_err(&dest);
        assert!(err.contains(want), "want `{want}` in: {err}");
    }
    std::fs::write(dest.join("sparseflow.json"), "{not json").unwrap();
    assert!(open_err(&dest).contains("sparseflow.json: invalid JSON"));
    // Deep nesting is an error, not a stack overflow.
    std::fs::write(dest.join("sparseflow.json"), "[".repeat(100_000)).unwrap();
    assert!(open_err(&dest).contains("invalid JSON"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_files_name_file_and_tensor() {
    let dir = tmp("corrupt");
    let dest = dir.join("m");
    save(&dest, false).unwrap();
    let weights = dest.join("model.safetensors");
    let full = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &full[..full.len() - 10]).unwrap();
    let err = open_err(&dest);
    assert!(
        err.contains("model.safetensors")
            && err.contains("tensor `emb.weight`")
            && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&weights, &full[..4]).unwrap();
    assert!(open_err(&dest).contains("truncated"));
    std::fs::write(&weights, b"").unwrap();
    assert!(open_err(&dest).contains("0 bytes: truncated"));
    let mut garbage = full.clone();
    garbage[8] = b'[';
    std::fs::write(&weights, &garbage).unwrap();
    assert!(open_err(&dest).contains("not a valid safetensors file"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Turns the model into a sharded one whose index names `shard`.
fn shard_with(dest: &Path, shard: &str) {
    std::fs::rename(
        dest.join("model.safetensors"),
        dest.join("model-00001-of-00001.safetensors"),
    )
    .unwrap();
    shard_with_name(dest, shard);
}

#[test]
fn readers_stay_inside_the_directory_and_read_regular_files_only() {
    let dir = tmp("confine");
    let dest = dir.join("m");
    save(&dest, false).unwrap();
    shard_with(&dest, "model-00001-of-00001.safetensors");
    ModelDir::open(&dest).unwrap();

    let outside = dir.join("elsewhere.safetensors");
    std::fs::copy(dest.join("model-00001-of-00001.safetensors"), &outside).unwrap();
    for (shard, want) in [
        (outside.to_str().unwrap().to_string(), "an absolute path"),
        ("../elsewhere.safetensors".to_string(), "`..` in the name"),
        (
            "missing.safetensors".to_string(),
            "shard `missing.safetensors` (holding tensor `a.meta`) is missing",
        ),
    ] {
        shard_with_name(&dest, &shard);
        let err = open_err(&dest);
        assert!(err.contains(want), "want `{want}` in: {err}");
    }
    std::os::unix::fs::symlink(&outside, dest.join("link.safetensors")).unwrap();
    shard_with_name(&dest, "link.safetensors");
    assert!(open_err(&dest).contains("a symlink leads out of the directory"));

    let fifo = dest.join("fifo.safetensors");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    shard_with_name(&dest, "fifo.safetensors");
    let err = open_err(&dest);
    assert!(err.contains("a FIFO, not a regular file"), "{err}");
    std::fs::remove_file(dest.join("sparseflow.json")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dest.join("sparseflow.json"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    assert!(open_err(&dest).contains("sparseflow.json: a FIFO"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn shard_with_name(dest: &Path, shard: &str) {
    let map: BTreeMap<&str, &str> = [
        ("a.values", shard),
        ("a.meta", shard),
        ("emb.weight", shard),
    ]
    .into();
    std::fs::write(
        dest.join("model.safetensors.index.json"),
        serde_json::json!({"weight_map": map}).to_string(),
    )
    .unwrap();
}
