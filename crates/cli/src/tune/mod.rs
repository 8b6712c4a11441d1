//! `sparseflow tune`'s logic that needs no GPU: the cases (shape × M bucket × dtype × epilogue
//! class), which of them a table already holds (a rerun skips those), the candidates the cost
//! model offers per family, the winner and the table entry. The measuring is `gpu.rs`'s.

pub mod gpu;

use anyhow::{bail, Result};
use sparseflow_codegen::Registry;
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::select::{m_bucket, rank, top_k_per_family};
use sparseflow_ir::tuning::{ConfigRecord, EpilogueClass, Measurement, TuningEntry, TuningKey};
use sparseflow_ir::{GemmShape, KernelConfig, LayerProblem, Target, TileChoice, TuningTable};

use crate::bench::shapes::Layer;

/// One measurement case: a layer shape at an M bucket, a dtype and an epilogue (its class's
/// representative).
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub layer: Layer,
    /// The M bucket, which is also the M measured: the largest M the bucket's plan serves.
    pub m: usize,
    pub dtype: DType,
    pub epilogue: EpilogueKind,
}

impl Case {
    pub fn key(&self, gpu: &str) -> TuningKey {
        TuningKey {
            gpu: gpu.to_string(),
            n: self.layer.n as u64,
            k: self.layer.k as u64,
            m_bucket: self.m as u64,
            dtype: self.dtype,
            epilogue: EpilogueClass::of(self.epilogue),
        }
    }

    pub fn problem(&self) -> LayerProblem {
        LayerProblem {
            m: self.m as u64,
            n: self.layer.n as u64,
            k: self.layer.k as u64,
            dtype: self.dtype,
            epilogue: self.epilogue,
        }
    }

    fn shape(&self) -> GemmShape {
        GemmShape {
            m: Some(self.m as u64),
            n: self.layer.n as u64,
            k: self.layer.k as u64,
            dtype: self.dtype,
        }
    }

    /// `q_proj 4096×4096 M=16 f16 plain`, for progress and logs.
    pub fn label(&self) -> String {
        format!(
            "{} {}×{} M={} {} {}",
            self.layer.name,
            self.layer.n,
            self.layer.k,
            self.m,
            self.dtype,
            EpilogueClass::of(self.epilogue).name()
        )
    }
}

/// Every case, grouped by dtype, epilogue and layer (one weight upload each), M ascending.
/// Each M is taken at its bucket (duplicates merged); two epilogues of one class are refused
/// (a class is measured once).
pub fn cases(
    layers: &[Layer],
    ms: &[usize],
    dtypes: &[DType],
    epilogues: &[EpilogueKind],
) -> Result<Vec<Case>> {
    let mut buckets = ms
        .iter()
        .map(|&m| m_bucket(m as u64).map(|b| b as usize))
        .collect::<Result<Vec<_>, _>>()?;
    buckets.sort_unstable();
    buckets.dedup();
    for (i, a) in epilogues.iter().enumerate() {
        if let Some(b) = epilogues[..i]
            .iter()
            .find(|b| EpilogueClass::of(**b) == EpilogueClass::of(*a))
        {
            bail!(
                "--epilogue: {} and {} are both of class {}, which is measured once; give one of them",
                b.name(),
                a.name(),
                EpilogueClass::of(*a).name()
            );
        }
    }
    let mut out = Vec::new();
    for &dtype in dtypes {
        for &epilogue in epilogues {
            for layer in layers {
                for &m in &buckets {
                    out.push(Case {
                        layer: layer.clone(),
                        m,
                        dtype,
                        epilogue,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The cases `table` does not hold yet for `gpu`: what a (re)run measures.
pub fn pending<'a>(table: &TuningTable, cases: &'a [Case], gpu: &str) -> Vec<&'a Case> {
    cases
        .iter()
        .filter(|c| table.get(&c.key(gpu)).is_none())
        .collect()
}

/// The configurations measured for `case`: the cost model's best `top_k` of every family that
/// can run it on `target` (`sparseflow_ir::select::top_k_per_family`).
pub fn candidates(case: &Case, target: &Target, top_k: usize) -> Vec<TileChoice> {
    let families = Registry::builtin().models();
    top_k_per_family(families, &case.shape(), case.m as u64, target, top_k)
}

/// What the cost model alone plans for `case` (no table).
pub fn cost_model_pick(case: &Case, target: &Target) -> Option<KernelConfig> {
    let families = Registry::builtin().models();
    rank(families, &case.shape(), case.m as u64, target)
        .first()
        .map(|c| c.config)
}

/// The fastest configuration measured correct (the first of equals).
pub fn winner(measurements: &[Measurement]) -> Option<ConfigRecord> {
    measurements
        .iter()
        .filter(|m| m.ok())
        .min_by(|a, b| {
            a.median_us
                .unwrap_or(f64::INFINITY)
                .total_cmp(&b.median_us.unwrap_or(f64::INFINITY))
        })
        .map(|m| m.config.clone())
}

/// `sparseflow <version> (<$SPARSEFLOW_BUILD, the commit the device scripts record>)`.
pub fn build_id() -> String {
    let commit = std::env::var("SPARSEFLOW_BUILD")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "commit unknown: set SPARSEFLOW_BUILD".into());
    format!("sparseflow {} ({commit})", env!("CARGO_PKG_VERSION"))
}

/// The table entry of a measured case.
pub fn entry(
    case: &Case,
    gpu: &str,
    cost_model: Option<&KernelConfig>,
    measurements: Vec<Measurement>,
    method: &str,
) -> TuningEntry {
    TuningEntry {
        key: case.key(gpu),
        measured_epilogue: case.epilogue,
        winner: winner(&measurements),
        cost_model: cost_model.map(ConfigRecord::from),
        measurements,
        build: build_id(),
        date_utc: crate::bench::now_utc(),
        method: method.to_string(),
    }
}

#[cfg(test)]
mod tests;
