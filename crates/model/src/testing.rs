//! Test fixtures shared by the crates' tests and the docs' examples: writing small Hugging
//! Face checkpoints (sharded, with index), deterministic weights. Not part of the API.

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use safetensors::tensor::Dtype;
use serde_json::{json, Value};
use sparseflow_core::prune_magnitude;

use crate::write::{index_json, write_json, Planned, ShardWriter};

/// One tensor to write: name, dtype, shape, bytes.
pub type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Deterministic values in about [-1, 1).
pub fn values(count: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// An fp16 tensor `[n, k]`, pruned to 2:4 first when `pruned`.
pub fn f16_matrix(name: &str, n: usize, k: usize, seed: u64, pruned: bool) -> Tensor {
    let mut w: Vec<f16> = values(n * k, seed).into_iter().map(f16::from_f32).collect();
    if pruned {
        w = prune_magnitude(&w, n, k).expect("valid shape");
    }
    (
        name.into(),
        Dtype::F16,
        vec![n, k],
        bytemuck::cast_slice(&w).to_vec(),
    )
}

/// Writes one safetensors file.
pub fn write_file(path: &Path, tensors: &[Tensor]) {
    let planned = tensors
        .iter()
        .map(|(n, d, s, _)| Planned::new(n.clone(), *d, s.clone()))
        .collect();
    let mut w = ShardWriter::create(path, planned, &BTreeMap::new()).expect("create");
    for t in tensors {
        w.write(&t.3).expect("write");
    }
    w.finish().expect("finish");
}

/// Writes a Hugging Face directory: one shard → `model.safetensors`, several → numbered
/// shards and `model.safetensors.index.json`; plus `config.json` and a tokenizer file.
pub fn write_hf_dir(dir: &Path, shards: &[Vec<Tensor>], config: &Value) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut weight_map = BTreeMap::new();
    let mut total = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let name = if shards.len() == 1 {
            crate::WEIGHTS.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len())
        };
        for t in shard {
            weight_map.insert(t.0.clone(), name.clone());
            total += t.3.len() as u64;
        }
        write_file(&dir.join(&name), shard);
    }
    if shards.len() > 1 {
        write_json(&dir.join(crate::INDEX), &index_json(&weight_map, total)).expect("index");
    }
    write_json(&dir.join("config.json"), config).expect("config");
    std::fs::write(dir.join("tokenizer.json"), "{\"version\": \"1.0\"}\n").expect("tokenizer");
}

/// The config of [`tiny_llama`].
pub fn tiny_config(layers: usize, hidden: usize, intermediate: usize) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": hidden, "intermediate_size": intermediate,
        "num_attention_heads": 2, "num_key_value_heads": 2, "num_hidden_layers": layers,
        "vocab_size": 64, "tie_word_embeddings": true, "torch_dtype": "float16",
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
    })
}

/// A tiny Llama-style checkpoint (fp16, tied lm_head), one shard per layer; `pruned`: its
/// block weights are already 2:4.
pub fn tiny_llama(dir: &Path, layers: usize, hidden: usize, intermediate: usize, pruned: bool) {
    let ones = |name: &str, n: usize| -> Tensor {
        let v = vec![f16::ONE; n];
        (
            name.into(),
            Dtype::F16,
            vec![n],
            bytemuck::cast_slice(&v).to_vec(),
        )
    };
    let mut shards = vec![vec![
        f16_matrix("model.embed_tokens.weight", 64, hidden, 1, false),
        ones("model.norm.weight", hidden),
    ]];
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let seed = 100 * (l as u64 + 1);
        shards.push(vec![
            f16_matrix(&p("self_attn.q_proj.weight"), hidden, hidden, seed, pruned),
            f16_matrix(
                &p("self_attn.k_proj.weight"),
                hidden,
                hidden,
                seed + 1,
                pruned,
            ),
            f16_matrix(
                &p("self_attn.v_proj.weight"),
                hidden,
                hidden,
                seed + 2,
                pruned,
            ),
            f16_matrix(
                &p("self_attn.o_proj.weight"),
                hidden,
                hidden,
                seed + 3,
                pruned,
            ),
            f16_matrix(
                &p("mlp.gate_proj.weight"),
                intermediate,
                hidden,
                seed + 4,
                pruned,
            ),
            f16_matrix(
                &p("mlp.up_proj.weight"),
                intermediate,
                hidden,
                seed + 5,
                pruned,
            ),
            f16_matrix(
                &p("mlp.down_proj.weight"),
                hidden,
                intermediate,
                seed + 6,
                pruned,
            ),
            ones(&p("input_layernorm.weight"), hidden),
            ones(&p("post_attention_layernorm.weight"), hidden),
        ]);
    }
    write_hf_dir(dir, &shards, &tiny_config(layers, hidden, intermediate));
}

/// compressed-tensors `sparse-24-bitmask` parts of a 2:4 fp16 weight `<prefix>.weight`, laid
/// out as `Sparse24BitMaskTensor.dict` writes them (the mask keeps exactly two positions per
/// group: the non-zeros, completed by the first zero positions).
pub fn bitmask_parts(prefix: &str, dense: &[f16], n: usize, k: usize) -> Vec<Tensor> {
    let per_row = k.div_ceil(8);
    let mut bitmask = vec![0u8; n * per_row];
    let mut compressed = Vec::with_capacity(n * k / 2);
    for r in 0..n {
        for g in 0..k / 4 {
            let group = &dense[r * k + g * 4..r * k + g * 4 + 4];
            let mut keep: Vec<usize> = (0..4).filter(|&i| group[i] != f16::ZERO).collect();
            keep.extend(
                (0..4)
                    .filter(|&i| group[i] == f16::ZERO)
                    .take(2 - keep.len().min(2)),
            );
            keep.sort_unstable();
            for i in keep {
                let col = g * 4 + i;
                bitmask[r * per_row + col / 8] |= 1 << (col % 8);
                compressed.push(group[i]);
            }
        }
    }
    let shape: Vec<u8> = [n as i64, k as i64]
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect();
    vec![
        (
            format!("{prefix}.compressed"),
            Dtype::F16,
            vec![n, k / 2],
            bytemuck::cast_slice(&compressed).to_vec(),
        ),
        (
            format!("{prefix}.bitmask"),
            Dtype::U8,
            vec![n, per_row],
            bitmask,
        ),
        (format!("{prefix}.shape"), Dtype::I64, vec![2, 1], shape),
    ]
}

/// Names of the staging directories (`.sft-*`) a writer left in `dir`: tests check that none
/// survive an interrupted or finished write.
pub fn staging_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".sft-"))
        .collect()
}
