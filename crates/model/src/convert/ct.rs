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

use serde_json::Value;

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
