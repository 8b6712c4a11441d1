//! Which tensors `convert` sparsifies: the linear weights of transformer blocks by name, with
//! `--include` / `--exclude` globs; everything else stays dense, with the reason recorded.

use globset::{Glob, GlobSet, GlobSetBuilder};
use safetensors::tensor::Dtype;

use crate::error::{ModelError, Result};

/// Path segments that introduce a numbered transformer block (`model.layers.3.`, `h.3.`, ...).
const BLOCK_SEGMENTS: &[&str] = &["layers", "layer", "h", "blocks", "block"];
/// Name parts of tensors that stay dense by default even inside blocks.
const DENSE_PARTS: &[(&str, &str)] = &[
    ("embed", "an embedding"),
    ("wte", "an embedding"),
    ("wpe", "an embedding"),
    ("lm_head", "lm_head"),
    ("norm", "a norm"),
];

/// The compiled selection rules.
#[derive(Debug)]
pub struct Selector {
    include: Option<(GlobSet, Vec<String>)>,
    exclude: (GlobSet, Vec<String>),
}

fn compile(patterns: &[String], flag: &str) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| ModelError::Usage(format!("{flag} `{p}`: {e}")))?);
    }
    b.build()
        .map_err(|e| ModelError::Usage(format!("{flag}: {e}")))
}

impl Selector {
    /// `include` empty: the default (linear weights of transformer blocks). With patterns, a
    /// tensor must match one of them (then embeddings and lm_head are allowed too).
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selector> {
        Ok(Selector {
            include: if include.is_empty() {
                None
            } else {
                Some((compile(include, "--include")?, include.to_vec()))
            },
            exclude: (compile(exclude, "--exclude")?, exclude.to_vec()),
        })
    }

    /// `Ok(())` when `name` is to be sparsified, else why it stays dense.
    pub fn decide(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
    ) -> std::result::Result<(), String> {
        if shape.len() != 2 {
            return Err(if name.ends_with(".bias") {
                "a bias".into()
            } else {
                format!("{}-D, not a matrix", shape.len())
            });
        }
        if !matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64) {
            return Err(format!("dtype {dtype} is not floating point"));
        }
        let matched = self.exclude.0.matches(name);
        if let Some(&i) = matched.first() {
            return Err(format!("excluded by --exclude `{}`", self.exclude.1[i]));
        }
        match &self.include {
            Some((set, _)) => {
                if !set.is_match(name) {
                    return Err("not matched by --include".into());
                }
            }
            None => {
                if !name.ends_with(".weight") {
                    return Err("not a `.weight`".into());
                }
                let lower = name.to_ascii_lowercase();
                if let Some((_, what)) = DENSE_PARTS.iter().find(|(p, _)| lower.contains(p)) {
                    return Err(format!("{what} (dense by default; --include to change)"));
                }
                if !in_block(name) {
                    return Err("outside the transformer blocks".into());
                }
            }
        }
        let k = shape[1];
        if !k.is_multiple_of(4) {
            return Err(format!(
                "K = {k} is not a multiple of 4 (2:4 groups run along K)"
            ));
        }
        Ok(())
    }
}

/// Whether the name has a numbered block segment (`layers.<i>`).
fn in_block(name: &str) -> bool {
    let segs: Vec<&str> = name.split('.').collect();
    segs.windows(2).any(|w| {
        BLOCK_SEGMENTS.contains(&w[0])
            && !w[1].is_empty()
            && w[1].bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules() {
        let s = Selector::new(&[], &[]).unwrap();
        let d = |n: &str, shape: &[usize]| s.decide(n, Dtype::F16, shape);
        assert!(d("model.layers.0.mlp.up_proj.weight", &[8, 16]).is_ok());
        assert!(d("transformer.h.11.attn.c_attn.weight", &[8, 16]).is_ok());
        assert!(d("model.embed_tokens.weight", &[8, 16])
            .unwrap_err()
            .contains("embedding"));
        assert!(d("lm_head.weight", &[8, 16])
            .unwrap_err()
            .contains("lm_head"));
        assert!(d("model.layers.0.input_layernorm.weight", &[16]).is_err());
        assert!(d("model.layers.0.mlp.up_proj.bias", &[16])
            .unwrap_err()
            .contains("bias"));
        assert!(d("model.layers.0.mlp.up_proj.weight", &[8, 10])
            .unwrap_err()
            .contains("K = 10"));
        assert!(d("vision.proj.weight", &[8, 16])
            .unwrap_err()
            .contains("outside"));
        let s = Selector::new(&["lm_head.weight".into()], &[]).unwrap();
        assert!(s.decide("lm_head.weight", Dtype::F16, &[8, 16]).is_ok());
        let s = Selector::new(&[], &["*.down_proj.*".into()]).unwrap();
        assert!(s
            .decide("model.layers.0.mlp.down_proj.weight", Dtype::F16, &[8, 16])
            .unwrap_err()
            .contains("--exclude `*.down_proj.*`"));
    }
}
