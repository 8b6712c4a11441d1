//! `convert --method wanda|sparsegpt|sparsegpt-refine --calibration FILE`: the engine prunes
//! each layer from its activations (row chunks give the whole-tensor result), and every bad
//! calibration input is a clear error naming the file and the layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use sparseflow_core::{prune, Calibration, PruneMethod, PruneOptions};
use sparseflow_model::convert::{convert, Method, Options, Silent};
use sparseflow_model::testing::{tiny_llama, values};
use sparseflow_model::ModelDir;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sf-convert-cal-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a calibration file of `kind` holding `[tokens, k]` f32 activations per layer.
fn write_cal(path: &Path, kind: &str, layers: &[(&str, usize, usize)]) {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layers
        .iter()
        .enumerate()
        .map(|(i, &(name, m, k))| {
            let x = values(m * k, 100 + i as u64);
            (
                name.to_string(),
                vec![m, k],
                bytemuck::cast_slice(&x).to_vec(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([
        ("format".to_string(), "sparseflow-calibration".to_string()),
        ("version".to_string(), "1".to_string()),
        ("kind".to_string(), kind.to_string()),
    ]);
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

fn opts(method: PruneMethod, cal: Option<PathBuf>) -> Options {
    Options {
        method: Method::Calibrated(method),
        calibration: cal,
        include: vec!["*.mlp.down_proj.weight".into()],
        force: true,
        ..Options::default()
    }
}

fn error(input: &Path, output: &Path, o: &Options) -> String {
    convert(input, output, o, &mut Silent)
        .unwrap_err()
        .to_string()
}

#[test]
fn sparsegpt_prunes_each_layer_from_its_activations() {
    let dir = tmp("ok");
    let (input, output, cal) = (dir.join("hf"), dir.join("out"), dir.join("cal.safetensors"));
    tiny_llama(&input, 2, 32, 64, false);
    let layers = [
        ("model.layers.0.mlp.down_proj", 96, 64),
        ("model.layers.1.mlp.down_proj", 96, 64),
    ];
    write_cal(&cal, "activations", &layers);
    let report = convert(
        &input,
        &output,
        &opts(PruneMethod::SparseGpt, Some(cal)),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(report.method, "sparsegpt");
    let model = ModelDir::open(&output).unwrap();
    let src =
        sparseflow_model::TensorSet::open_dir(&sparseflow_model::fsx::Root::new(&input).unwrap())
            .unwrap();
    for (i, &(name, m, k)) in layers.iter().enumerate() {
        assert_eq!(model.manifest().layers[name].method, "sparsegpt");
        let w: Vec<f16> = src
            .get(&format!("{name}.weight"))
            .unwrap()
            .bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]))
            .collect();
        let x = values(m * k, 100 + i as u64);
        let c = Calibration::from_activations(&x, m, k).unwrap();
        let (want, _) = prune(
            PruneMethod::SparseGpt,
            &w,
            32,
            k,
            Some(&c),
            &PruneOptions::default(),
        )
        .unwrap();
        assert_eq!(model.layer::<f16>(name).unwrap(), want, "{name}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_calibration_is_a_clear_error() {
    let dir = tmp("bad");
    let (input, output, cal) = (dir.join("hf"), dir.join("out"), dir.join("cal.safetensors"));
    tiny_llama(&input, 2, 32, 64, false);
    let e = error(&input, &output, &opts(PruneMethod::Wanda, None));
    assert!(
        e.contains("--method wanda prunes from calibration activations"),
        "{e}"
    );
    write_cal(
        &cal,
        "activations",
        &[("model.layers.0.mlp.down_proj", 8, 64)],
    );
    let e = error(
        &input,
        &output,
        &opts(PruneMethod::Wanda, Some(cal.clone())),
    );
    assert!(
        e.contains("no activations for layer `model.layers.1.mlp.down_proj`"),
        "{e}"
    );
    write_cal(
        &cal,
        "activations",
        &[
            ("model.layers.0.mlp.down_proj", 8, 32),
            ("model.layers.1.mlp.down_proj", 8, 64),
        ],
    );
    let e = error(
        &input,
        &output,
        &opts(PruneMethod::SparseGpt, Some(cal.clone())),
    );
    assert!(
        e.contains("`model.layers.0.mlp.down_proj` have shape [8, 32]; expected [tokens >= 1, 64]"),
        "{e}"
    );
    write_cal(&cal, "tokens", &[("input_ids", 2, 4)]);
    let e = error(
        &input,
        &output,
        &opts(PruneMethod::SparseGpt, Some(cal.clone())),
    );
    assert!(
        e.contains("holds token ids") && e.contains("write_calibration_from_model"),
        "{e}"
    );
    write_cal(&cal, "weights", &[("a", 2, 4)]);
    assert!(error(
        &input,
        &output,
        &opts(PruneMethod::SparseGpt, Some(cal.clone()))
    )
    .contains("unknown kind"));
    let magnitude = Options {
        method: Method::Magnitude,
        ..opts(PruneMethod::Wanda, Some(cal))
    };
    assert!(error(&input, &output, &magnitude).contains("only read by"));
    assert!(!output.exists(), "a refused conversion writes nothing");
    std::fs::remove_dir_all(dir).unwrap();
}
