//! Shapes: model presets (the real linear layers of a decoder block), `--shape N,K`, `--m`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Names accepted by `--model`.
pub const MODELS: &[&str] = &[
    "llama3-8b",
    "llama2-7b",
    "mistral-7b",
    "llama3-70b-tp8",
    "bert-base",
];

/// The M list used when `--m` is not given.
pub const DEFAULT_M: &[usize] = &[1, 16, 64, 256, 1024, 4096, 16384];

/// One linear layer of a transformer block: `W [n = out_features, k = in_features]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    pub n: usize,
    pub k: usize,
}

/// A transformer block's dimensions, from the model's `config.json`.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Tensor-parallel degree (column-parallel q/k/v/gate/up, row-parallel o/down).
    pub tp: usize,
    /// Gated MLP (gate, up, down) as in Llama; otherwise BERT's up/down.
    pub gated: bool,
    pub layers: usize,
}

pub fn block_config(model: &str) -> Result<BlockConfig> {
    let llama = |hidden, intermediate, heads, kv_heads, layers, tp| BlockConfig {
        hidden,
        intermediate,
        heads,
        kv_heads,
        head_dim: hidden / heads,
        tp,
        gated: true,
        layers,
    };
    Ok(match model {
        "llama3-8b" | "mistral-7b" => llama(4096, 14336, 32, 8, 32, 1),
        "llama2-7b" => llama(4096, 11008, 32, 32, 32, 1),
        "llama3-70b-tp8" => llama(8192, 28672, 64, 8, 80, 8),
        "bert-base" => BlockConfig {
            gated: false,
            ..llama(768, 3072, 12, 12, 12, 1)
        },
        other => bail!(
            "unknown model `{other}`; valid: {} (or give shapes with --shape N,K)",
            MODELS.join(", ")
        ),
    })
}

/// Every linear layer of one block, in execution order (duplicated shapes included).
pub fn block_layers(cfg: &BlockConfig) -> Vec<Layer> {
    let h = cfg.hidden;
    let tp = cfg.tp;
    let q = cfg.heads * cfg.head_dim / tp;
    // KV heads are replicated when there are fewer than the TP degree.
    let kv = (cfg.kv_heads / tp).max(1) * cfg.head_dim;
    let i = cfg.intermediate / tp;
    let l = |name: &str, n, k| Layer {
        name: name.to_string(),
        n,
        k,
    };
    let mut v = vec![
        l("q_proj", q, h),
        l("k_proj", kv, h),
        l("v_proj", kv, h),
        l("o_proj", h, q),
    ];
    if cfg.gated {
        v.extend([
            l("gate_proj", i, h),
            l("up_proj", i, h),
            l("down_proj", h, i),
        ]);
    } else {
        v.extend([l("intermediate", i, h), l("output", h, i)]);
    }
    v
}

/// The distinct shapes of a block, names of layers sharing a shape joined with `/`.
pub fn unique_layers(layers: &[Layer]) -> Vec<Layer> {
    let mut out: Vec<Layer> = Vec::new();
    for layer in layers {
        match out.iter_mut().find(|u| u.n == layer.n && u.k == layer.k) {
            Some(u) => u.name = format!("{}/{}", u.name, layer.name),
            None => out.push(layer.clone()),
        }
    }
    out
}

/// Parses `N,K` (also `NxK`); K must be a multiple of 4 (2:4 groups) and both positive.
pub fn parse_shape(s: &str) -> Result<Layer> {
    let parts: Vec<&str> = s.split([',', 'x', 'X']).map(str::trim).collect();
    if parts.len() != 2 {
        bail!("--shape expects N,K (out_features,in_features), got `{s}`");
    }
    let n: usize = parts[0]
        .parse()
        .with_context(|| format!("--shape `{s}`: N `{}` is not a number", parts[0]))?;
    let k: usize = parts[1]
        .parse()
        .with_context(|| format!("--shape `{s}`: K `{}` is not a number", parts[1]))?;
    if n == 0 || k == 0 {
        bail!("--shape `{s}`: N and K must be positive");
    }
    if !k.is_multiple_of(4) {
        bail!("--shape `{s}`: K = {k} is not a multiple of 4 (2:4 groups run along K)");
    }
    Ok(Layer {
        name: format!("custom_{n}x{k}"),
        n,
        k,
    })
}

/// Parses `--m 1,16,64`; every entry positive.
pub fn parse_m_list(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let m: usize = part
            .parse()
            .with_context(|| format!("--m: `{part}` is not a positive integer"))?;
        if m == 0 {
            bail!("--m: M must be at least 1");
        }
        out.push(m);
    }
    if out.is_empty() {
        bail!("--m: give at least one M, e.g. --m 1,16,256");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(model: &str) -> Vec<(usize, usize)> {
        let cfg = block_config(model).unwrap();
        block_layers(&cfg).iter().map(|l| (l.n, l.k)).collect()
    }

    #[test]
    fn llama3_8b_shapes() {
        assert_eq!(
            shapes("llama3-8b"),
            vec![
                (4096, 4096),
                (1024, 4096),
                (1024, 4096),
                (4096, 4096),
                (14336, 4096),
                (14336, 4096),
                (4096, 14336)
            ]
        );
        let u = unique_layers(&block_layers(&block_config("llama3-8b").unwrap()));
        assert_eq!(u.len(), 4);
        assert_eq!(u[0].name, "q_proj/o_proj");
    }

    #[test]
    fn llama3_70b_tp8_shapes() {
        assert_eq!(
            shapes("llama3-70b-tp8"),
            vec![
                (1024, 8192),
                (128, 8192),
                (128, 8192),
                (8192, 1024),
                (3584, 8192),
                (3584, 8192),
                (8192, 3584)
            ]
        );
    }

    #[test]
    fn other_presets() {
        assert_eq!(shapes("llama2-7b")[1], (4096, 4096));
        assert_eq!(shapes("llama2-7b")[6], (4096, 11008));
        assert_eq!(
            shapes("bert-base"),
            vec![(768, 768); 4]
                .into_iter()
                .chain([(3072, 768), (768, 3072)])
                .collect::<Vec<_>>()
        );
        assert!(block_config("gpt5").is_err());
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse_shape("4096,1024").unwrap().n, 4096);
        assert_eq!(parse_shape("64x128").unwrap().k, 128);
        assert!(parse_shape("4096").is_err());
        assert!(parse_shape("4096,1023").is_err());
        assert!(parse_shape("0,64").is_err());
        assert!(parse_shape("a,64").is_err());
        assert_eq!(parse_m_list("1, 16,256").unwrap(), vec![1, 16, 256]);
        assert!(parse_m_list("0").is_err());
        assert!(parse_m_list("x").is_err());
        assert!(parse_m_list("").is_err());
    }
}
