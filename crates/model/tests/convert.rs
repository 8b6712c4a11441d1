//! `convert` end to end on checkpoints written by the test: sharded HF layout, already-2:4,
//! almost-2:4, compressed-tensors sparse-24-bitmask, dtypes, quantized refusals, memory bound.

use std::path::{Path, PathBuf};

use half::f16;
use serde_json::json;
use sparseflow_core::{prune_magnitude, DType, Sparse24};
use sparseflow_model::convert::{convert, Options, OutputFormat, Report, Silent, Status};
use sparseflow_model::testing::{bitmask_parts, f16_matrix, tiny_config, tiny_llama, write_hf_dir};
use sparseflow_model::{Dtype, ModelDir};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sf-convert-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(input: &Path, output: &Path, opts: &Options) -> Report {
    convert(input, output, opts, &mut Silent).unwrap()
}

fn f16s(bytes: &[u8]) -> Vec<f16> {
    bytes
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn row<'a>(r: &'a Report, name: &str) -> &'a sparseflow_model::convert::Row {
    r.rows
        .iter()
        .find(|row| row.name == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

#[test]
fn sharded_checkpoint_converts_layer_by_layer() {
    let dir = tmp("sharded");
    let (input, output) = (dir.join("hf"), dir.join("out"));
    tiny_llama(&input, 2, 32, 64, false);
    let report = run(&input, &output, &Options::default());
    let model = ModelDir::open(&output).unwrap();
    let src =
        sparseflow_model::TensorSet::open_dir(&sparseflow_model::fsx::Root::new(&input).unwrap())
            .unwrap();
    let q = "model.layers.1.self_attn.q_proj";
    let w = f16s(src.get(&format!("{q}.weight")).unwrap().bytes);
    let want = Sparse24::compress(&prune_magnitude(&w, 32, 32).unwrap(), 32, 32).unwrap();
    assert_eq!(model.layer::<f16>(q).unwrap(), want);
    assert_eq!(model.manifest().layers.len(), 14);
    assert_eq!(model.manifest().layers[q].method, "magnitude");
    // Dense tensors are copied bit for bit; shards and index mirror the input.
    assert_eq!(
        model.tensor("model.norm.weight").unwrap().bytes,
        src.get("model.norm.weight").unwrap().bytes
    );
    assert!(model.tensors().sharded());
    assert!(
        output.join("model-00003-of-00003.safetensors").exists()
            && output.join("tokenizer.json").exists()
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["torch_dtype"], "float16");
    let r = row(&report, &format!("{q}.weight"));
    assert_eq!(r.status, Status::Pruned);
    assert!(r.rel_error.unwrap() > 0.1 && (r.sparsity.unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(r.bytes_after * 16, r.bytes_before * 9);
    assert_eq!(row(&report, "lm_head.weight").status, Status::Tied);
    assert!(row(&report, "model.embed_tokens.weight")
        .reason
        .contains("embedding"));
    assert_eq!(report.totals.sparse_layers, 14);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn already_24_is_lossless_and_almost_24_needs_prune() {
    let dir = tmp("already");
    let (input, output) = (dir.join("hf"), dir.join("out"));
    let mut pruned = f16_matrix("model.layers.0.mlp.up_proj.weight", 16, 32, 7, true);
    let almost = {
        let mut t = f16_matrix("model.layers.0.mlp.down_proj.weight", 64, 64, 8, true);
        t.3[0..8].copy_from_slice(bytemuck::cast_slice(&[f16::ONE; 4])); // one dense group
        t
    };
    pruned.0 = "model.layers.0.mlp.up_proj.weight".into();
    write_hf_dir(
        &input,
        &[vec![pruned.clone(), almost.clone()]],
        &tiny_config(1, 32, 16),
    );
    let report = run(&input, &output, &Options::default());
    let r = row(&report, "model.layers.0.mlp.up_proj.weight");
    assert_eq!(
        (r.status, r.rel_error, r.max_error),
        (Status::Already24, Some(0.0), Some(0.0))
    );
    assert_eq!(r.reason, "already 2:4, error 0");
    let model = ModelDir::open(&output).unwrap();
    let layer = model.layer::<f16>("model.layers.0.mlp.up_proj").unwrap();
    assert_eq!(
        bytemuck::cast_slice::<f16, u8>(&layer.decompress()),
        &pruned.3[..]
    );
    assert_eq!(
        model.manifest().layers["model.layers.0.mlp.up_proj"].method,
        "already-2:4"
    );
    let a = row(&report, "model.layers.0.mlp.down_proj.weight");
    assert_eq!(
        (a.status, a.violating_groups),
        (Status::AlmostKeptDense, Some(1))
    );
    assert!(a.reason.contains("1 of 1024 groups") && a.reason.contains("--prune"));
    assert_eq!(
        model
            .tensor("model.layers.0.mlp.down_proj.weight")
            .unwrap()
            .bytes,
        &almost.3[..]
    );

    let opts = Options {
        prune: true,
        force: true,
        ..Options::default()
    };
    let report = run(&input, &output, &opts);
    assert_eq!(
        row(&report, "model.layers.0.mlp.down_proj.weight").status,
        Status::Pruned
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sparse_24_bitmask_imports_bit_exact() {
    let dir = tmp("bitmask");
    let (input, output) = (dir.join("ct"), dir.join("out"));
    let (n, k) = (16, 40); // K/8 not whole: the last bitmask byte is padded
    let t = f16_matrix("w", n, k, 9, true);
    let dense = f16s(&t.3);
    let mut tensors = bitmask_parts("model.layers.0.mlp.up_proj", &dense, n, k);
    tensors.push(f16_matrix("model.embed_tokens.weight", 8, 8, 1, false));
    let mut config = tiny_config(1, 8, 16);
    config["quantization_config"] = json!({
        "quant_method": "compressed-tensors", "format": "dense", "config_groups": {},
        "sparsity_config": {"format": "sparse-24-bitmask", "sparsity_structure": "2:4",
                            "targets": ["Linear"], "ignore": ["lm_head"], "global_sparsity": 0.5},
    });
    write_hf_dir(&input, &[tensors], &config);
    let report = run(&input, &output, &Options::default());
    assert_eq!(report.input_kind, "compressed-tensors sparse-24-bitmask");
    let r = row(&report, "model.layers.0.mlp.up_proj.weight");
    assert_eq!((r.status, r.rel_error), (Status::Imported, Some(0.0)));
    let model = ModelDir::open(&output).unwrap();
    assert_eq!(
        model
            .layer::<f16>("model.layers.0.mlp.up_proj")
            .unwrap()
            .decompress(),
        dense
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("config.json")).unwrap())
            .unwrap();
    assert!(config.get("quantization_config").is_none());
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("removed `quantization_config`")));

    // The dense output decompresses it.
    let dense_out = dir.join("dense");
    let opts = Options {
        format: OutputFormat::Dense,
        ..Options::default()
    };
    run(&input, &dense_out, &opts);
    let model = ModelDir::open(&dense_out).unwrap();
    assert_eq!(
        f16s(
            model
                .tensor("model.layers.0.mlp.up_proj.weight")
                .unwrap()
                .bytes
        ),
        dense
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn quantized_and_fp32_inputs_are_refused_clearly() {
    let dir = tmp("refuse");
    let input = dir.join("q");
    let mut config = tiny_config(1, 8, 16);
    config["quantization_config"] = json!({"quant_method": "compressed-tensors", "format": "marlin-24",
        "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int"}}}});
    write_hf_dir(
        &input,
        &[vec![f16_matrix(
            "model.layers.0.mlp.up_proj.weight",
            8,
            8,
            1,
            false,
        )]],
        &config,
    );
    let err = convert(&input, &dir.join("o"), &Options::default(), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config_groups.group_0 quantizes weights") && err.contains("quantized"),
        "{err}"
    );

    let input = dir.join("packed");
    let packed = (
        "model.layers.0.mlp.up_proj.weight_packed".to_string(),
        Dtype::I32,
        vec![8, 1],
        vec![0u8; 32],
    );
    write_hf_dir(&input, &[vec![packed]], &tiny_config(1, 8, 16));
    let err = convert(&input, &dir.join("o"), &Options::default(), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor `model.layers.0.mlp.up_proj.weight_packed`")
            && err.contains("quantized"),
        "{err}"
    );

    let input = dir.join("fp32");
    let w: Vec<f32> = sparseflow_model::testing::values(64, 3);
    let t = (
        "model.layers.0.mlp.up_proj.weight".to_string(),
        Dtype::F32,
        vec![8, 8],
        bytemuck::cast_slice(&w).to_vec(),
    );
    write_hf_dir(&input, &[vec![t]], &tiny_config(1, 8, 16));
    let err = convert(&input, &dir.join("o"), &Options::default(), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("float32") && err.contains("--dtype"), "{err}");
    let opts = Options {
        dtype: Some(DType::BF16),
        ..Options::default()
    };
    let report = run(&input, &dir.join("o"), &opts);
    assert_eq!(report.dtype, "bfloat16");
    let model = ModelDir::open(&dir.join("o")).unwrap();
    assert_eq!(
        model.layer_dtype("model.layers.0.mlp.up_proj").unwrap(),
        DType::BF16
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn output_overlapping_the_input_is_refused() {
    let dir = tmp("overlap");
    tiny_llama(&dir.join("hf"), 1, 8, 16, false);
    let err = convert(
        &dir.join("hf"),
        &dir.join("hf/out"),
        &Options::default(),
        &mut Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("overlaps the input"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Peak anonymous memory stays under 2 x largest tensor + 256 MB (it is in fact bounded by
/// the chunk size). The figure is printed for docs/TOOLS.md and `convert --help`.
#[test]
fn convert_memory_is_bounded() {
    let dir = tmp("memory");
    let (input, output) = (dir.join("hf"), dir.join("out"));
    let (n, k) = (2048, 8192); // 32 MB fp16
    let big = f16_matrix("model.layers.0.mlp.up_proj.weight", n, k, 5, false);
    let largest = big.3.len() as u64;
    write_hf_dir(&input, &[vec![big]], &tiny_config(1, k, n));
    let report = run(&input, &output, &Options::default());
    let peak = report.peak_rss_anon_bytes.expect("Linux has RssAnon");
    let baseline = sparseflow_model::convert::rss_anon().unwrap();
    eprintln!(
        "convert: largest tensor {} MB, peak RssAnon {} MB (process baseline after the run {} MB)",
        largest >> 20,
        peak >> 20,
        baseline >> 20
    );
    assert!(peak <= 2 * largest + (256 << 20), "peak {peak} > bound");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--format sparse-24-bitmask` writes what compressed-tensors writes (the three tensors per
/// layer, the packed mask of the kept positions, the sparsity config), and importing that output
/// gives back the very same SparseFlow model, bit for bit.
#[test]
fn sparse_24_bitmask_output_round_trips_bit_exact() {
    let dir = tmp("bitmask-out");
    let (input, direct, ct_out, back) = (
        dir.join("hf"),
        dir.join("direct"),
        dir.join("ct"),
        dir.join("back"),
    );
    // K = 36 and 44: K/4 odd, so every row ends in a padding nibble / a half-used mask byte.
    tiny_llama(&input, 2, 36, 44, false);
    run(&input, &direct, &Options::default());
    let opts = Options {
        format: OutputFormat::Bitmask24,
        ..Options::default()
    };
    let report = run(&input, &ct_out, &opts);
    assert_eq!(report.format, "sparse-24-bitmask");
    let a = ModelDir::open(&direct).unwrap();
    let root = sparseflow_model::fsx::Root::new(&ct_out).unwrap();
    let ct = sparseflow_model::TensorSet::open_dir(&root).unwrap();
    for (name, entry) in &a.manifest().layers {
        let [n, k] = entry.shape;
        let dense = a.layer::<f16>(name).unwrap().decompress();
        for (want_name, dtype, shape, bytes) in bitmask_parts(name, &dense, n, k) {
            let got = ct
                .get(&want_name)
                .unwrap_or_else(|| panic!("no {want_name}"));
            assert_eq!((got.dtype, got.shape), (dtype, &shape[..]), "{want_name}");
            assert_eq!(got.bytes, &bytes[..], "{want_name}");
        }
        assert!(ct.get(&format!("{name}.weight")).is_none());
    }
    let config = root.read_json("config.json").unwrap();
    let q = &config["quantization_config"];
    assert_eq!(q["quant_method"], "compressed-tensors");
    assert!(q.get("config_groups").is_none(), "unquantized");
    let sc = &q["sparsity_config"];
    assert_eq!(
        (&sc["format"], &sc["sparsity_structure"]),
        (&json!("sparse-24-bitmask"), &json!("2:4"))
    );
    let targets = sc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), a.manifest().layers.len());
    assert!(targets.contains(&json!("model.layers.1.mlp.down_proj")));

    let report = run(&ct_out, &back, &Options::default());
    let b = ModelDir::open(&back).unwrap();
    assert_eq!(a.manifest().layers.len(), b.manifest().layers.len());
    for name in a.manifest().layers.keys() {
        assert_eq!(
            a.layer::<f16>(name).unwrap(),
            b.layer::<f16>(name).unwrap(),
            "{name}"
        );
        let r = row(&report, &format!("{name}.weight"));
        assert_eq!((r.status, r.rel_error), (Status::Imported, Some(0.0)));
    }
    for t in a.tensors().iter() {
        assert_eq!(b.tensor(t.name).unwrap().bytes, t.bytes, "{}", t.name);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
