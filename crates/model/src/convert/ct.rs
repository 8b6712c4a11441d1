//! compressed-tensors inputs (the format llm-compressor writes), read from `config.json`'s
//! `quantization_config`:
//!
//! * `sparse-24-bitmask` (unquantized): per layer `<p>.compressed [rows, cols/2]` in the model
//!   dtype, `<p>.bitmask [rows, ceil(cols/8)]` uint8 = `numpy.packbits(mask, axis=-1,
//!   bitorder="little")`, `<p>.shape` the original shape as int64 `[2, 1]` (`[2]` accepted),
//!   where `<p>` is the weight's name without `.weight` (compressed-tensors
//!   `Sparse24BitMaskTensor.dict`). Imported bit-exact.
//! * quantized checkpoints (`marlin-24`, int8/fp8 `config_groups`, any other `quant_method`)
//!   are refused: SparseFlow runs fp16/bf16 2:4 today.

use serde_json::{json, Value};
use sparseflow_core::format::meta_bytes_per_row;

use super::report::{Row, Status};

/// What `config.json` says about compression.
#[derive(Debug, Clone, PartialEq)]
pub enum Compression {
    None,
    /// Unquantized compressed-tensors with a `sparse-24-bitmask` sparsity config.
    Bitmask24,
    /// Unquantized compressed-tensors whose sparsity config keeps weights dense.
    DenseSparsityConfig,
    /// Refused, with the reason.
    Quantized(String),
}

/// Reads `quantization_config` (and a top-level `sparsity_config`) of a config.
pub fn detect(config: &Value) -> Compression {
    let q = config.get("quantization_config");
    let Some(q) = q.filter(|q| !q.is_null()) else {
        return sparsity(config.get("sparsity_config"));
    };
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("?");
    if method != "compressed-tensors" {
        return Compression::Quantized(format!(
            "quantization_config.quant_method is `{method}`: a quantized checkpoint"
        ));
    }
    let groups = q.get("config_groups").and_then(Value::as_object);
    if let Some((name, group)) = groups.and_then(|g| g.iter().next()) {
        let w = &group["weights"];
        return Compression::Quantized(format!(
            "compressed-tensors config_groups.{name} quantizes weights ({} bits, type {}, format {})",
            w["num_bits"], w["type"], q.get("format").unwrap_or(&Value::Null)
        ));
    }
    if let Some(f) = q.get("format").and_then(Value::as_str) {
        if !matches!(f, "dense" | "sparse-24-bitmask") {
            return Compression::Quantized(format!("compressed-tensors format `{f}`"));
        }
    }
    sparsity(q.get("sparsity_config"))
}

fn sparsity(s: Option<&Value>) -> Compression {
    let Some(s) = s.filter(|s| !s.is_null()) else {
        return Compression::None;
    };
    let format = s.get("format").and_then(Value::as_str).unwrap_or("dense");
    let structure = s.get("sparsity_structure").and_then(Value::as_str);
    match format {
        "sparse-24-bitmask" if structure.is_none_or(|st| st == "2:4") => Compression::Bitmask24,
        "sparse-24-bitmask" => Compression::Quantized(format!(
            "sparse-24-bitmask with sparsity_structure `{}`",
            structure.unwrap_or("?")
        )),
        "dense" => Compression::DenseSparsityConfig,
        other => Compression::Quantized(format!("sparsity_config.format `{other}`")),
    }
}

/// The three tensor names of a bitmask layer `<p>`.
pub fn parts(prefix: &str) -> [String; 3] {
    [
        format!("{prefix}.compressed"),
        format!("{prefix}.bitmask"),
        format!("{prefix}.shape"),
    ]
}

/// Removes what would make another tool misread the output; returns notes on what changed.
pub fn rewrite_config(config: &mut Value, dtype: &str) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(obj) = config.as_object_mut() {
        for key in ["quantization_config", "sparsity_config"] {
            if obj.remove(key).is_some() {
                notes.push(format!(
                    "config.json: removed `{key}` (the output is not compressed-tensors)"
                ));
            }
        }
        obj.insert("torch_dtype".into(), Value::String(dtype.into()));
        if obj.contains_key("dtype") {
            obj.insert("dtype".into(), Value::String(dtype.into()));
        }
        notes.push(format!("config.json: torch_dtype = {dtype}"));
    }
    notes
}

/// compressed-tensors' packed bitmask (`numpy.packbits(mask, bitorder="little")` per row) of a
/// layer from its SparseFlow metadata: the same `ceil(k/8)` bytes per row, each group's 4-bit
/// code `idx0 | idx1 << 2` becoming the bits of its two kept columns; the padding nibble of a
/// row with `k/4` odd becomes zero bits (packbits pads with zeros).
pub fn bitmask_from_meta(meta: &[u8], k: usize) -> Vec<u8> {
    let groups = k / 4;
    let bits = |code: u8| (1u8 << (code & 3)) | (1u8 << ((code >> 2) & 3));
    meta.chunks_exact(meta_bytes_per_row(k))
        .flat_map(|row| {
            row.iter().enumerate().map(move |(j, &b)| {
                let high = if 2 * j + 1 < groups {
                    bits(b >> 4) << 4
                } else {
                    0
                };
                bits(b & 0xF) | high
            })
        })
        .collect()
}

/// The `<p>.shape` tensor compressed-tensors writes: the dense shape as int64 `[2, 1]`
/// (`torch.tensor(shape).reshape(-1, 1)`), little-endian.
pub fn shape_bytes(n: usize, k: usize) -> Vec<u8> {
    [n as i64, k as i64]
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect()
}

/// Writes `quantization_config` as compressed-tensors does for an unquantized 2:4 model saved
/// with the `sparse-24-bitmask` compressor: `targets` are the layers stored compressed,
/// `ignore` the 2-D weights kept dense, `global_sparsity` the zero fraction of all weights.
/// Returns a note for the report.
pub fn write_sparsity_config(config: &mut Value, rows: &[Row]) -> String {
    let module = |r: &Row| {
        r.name
            .strip_suffix(".weight")
            .unwrap_or(&r.name)
            .to_string()
    };
    let sparse: Vec<&Row> = rows.iter().filter(|r| r.sparsity.is_some()).collect();
    let targets: Vec<String> = sparse.iter().map(|r| module(r)).collect();
    let ignore: Vec<String> = rows
        .iter()
        .filter(|r| r.sparsity.is_none() && r.shape.len() == 2 && r.status != Status::Tied)
        .filter(|r| r.name.ends_with(".weight"))
        .map(module)
        .collect();
    let numel = |r: &Row| r.shape.iter().product::<usize>() as f64;
    let zeros: f64 = sparse
        .iter()
        .map(|r| r.sparsity.unwrap_or(0.0) * numel(r))
        .sum();
    let total: f64 = rows.iter().map(numel).sum();
    let sparsity = json!({
        "format": "sparse-24-bitmask",
        "sparsity_structure": "2:4",
        "targets": targets,
        "ignore": ignore,
        "global_sparsity": if total > 0.0 { zeros / total } else { 0.0 },
        "registry_requires_subclass": false,
    });
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            "quantization_config".into(),
            json!({
                "quant_method": "compressed-tensors",
                "format": "sparse-24-bitmask",
                "sparsity_config": sparsity,
            }),
        );
    }
    format!(
        "config.json: quantization_config.sparsity_config = sparse-24-bitmask 2:4 over {} layers",
        targets.len()
    )
}
