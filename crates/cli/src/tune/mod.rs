//! `sparseflow tune`'s logic that needs no GPU: the cases (shape × M bucket × dtype × epilogue
//! class), which of them a table already holds (a rerun skips those), the candidates the cost
//! model offers per family, the winner and the table entry. The measuring is `gpu.rs`'s.

pub mod gpu;

use anyhow::{bail, Result};
use sparseflow_codegen::Registry;
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::family::{check, find};
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

/// The configurations measured for `case`: the cost model's best `top_k` of every family in
/// `families` that can run it on `target` (`sparseflow_ir::select::top_k_per_family`).
pub fn candidates(
    case: &Case,
    target: &Target,
    top_k: usize,
    families: &[&str],
) -> Vec<TileChoice> {
    let all = Registry::builtin().models();
    top_k_per_family(all, &case.shape(), case.m as u64, target, top_k)
        .into_iter()
        .filter(|c| families.contains(&c.config.family))
        .collect()
}

/// `cands` plus the winner `table` holds for the same case in the other epilogue class, when it
/// is of one of `families`, legal here, not offered yet and estimated by its family's model. An
/// epilogue changes a kernel's time little, so the other class's measured best is a likely
/// winner the cost model may not rank (on the H200 the fused class at M = 64 missed the plain
/// class's 64-token tile, 1.7x faster).
pub fn with_sibling_winner(
    mut cands: Vec<TileChoice>,
    case: &Case,
    table: &TuningTable,
    gpu: &str,
    target: &Target,
    families: &[&str],
) -> Vec<TileChoice> {
    let mut key = case.key(gpu);
    key.epilogue = match key.epilogue {
        EpilogueClass::Plain => EpilogueClass::Fused,
        EpilogueClass::Fused => EpilogueClass::Plain,
    };
    let models = Registry::builtin().models();
    let sibling = table
        .get(&key)
        .and_then(|e| e.winner.as_ref())
        .and_then(|w| w.resolve(models).ok())
        .filter(|cfg| families.contains(&cfg.family))
        .filter(|cfg| !cands.iter().any(|c| c.config == *cfg))
        .filter(|cfg| check(models, cfg, &case.shape(), Some(target)).is_ok())
        .and_then(|cfg| {
            find(models, cfg.family)?.estimate(&cfg, &case.shape(), case.m as u64, target)
        });
    cands.extend(sibling);
    cands
}

/// Merges `from` into `into`, case by case: an entry `into` lacks is added; of two entries for
/// one case the one whose winner measured faster stays (each entry remains one run's record,
/// its build and date with it). Returns (added, replaced).
pub fn merge_faster(into: &mut TuningTable, from: TuningTable) -> (usize, usize) {
    let winner_us = |e: &TuningEntry| {
        e.winner_measurement()
            .and_then(|m| m.median_us)
            .unwrap_or(f64::INFINITY)
    };
    let (mut added, mut replaced) = (0, 0);
    for e in from.entries {
        match into.get(&e.key) {
            None => added += 1,
            Some(old) if winner_us(&e) < winner_us(old) => replaced += 1,
            Some(_) => continue,
        }
        into.insert(e);
    }
    (added, replaced)
}

/// `--families`: the registered families named in `list` (comma-separated), or all of them.
/// An unknown name is an error listing the registered ones.
pub fn families(list: Option<&str>) -> Result<Vec<&'static str>> {
    let registry = Registry::builtin();
    let all: Vec<&'static str> = registry.families().iter().map(|f| f.name()).collect();
    let Some(list) = list else {
        return Ok(all);
    };
    let named = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            all.iter().copied().find(|f| *f == name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--families: no family {name:?} (registered: {})",
                    all.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if named.is_empty() {
        bail!("--families: the list is empty");
    }
    Ok(named)
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

/// The configuration being measured, written beside the table before it runs and removed once
/// its case is saved. A run that hangs or crashes on a kernel (and is killed) leaves it behind;
/// the rerun records that configuration as failed instead of running it again, so one bad
/// kernel cannot stall resuming.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InFlight {
    pub case: String,
    pub config: ConfigRecord,
}

/// Where the in-flight marker of table `out` lives: `<out>.inflight`.
pub fn inflight_path(out: &std::path::Path) -> std::path::PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".inflight");
    name.into()
}

/// The marker an earlier run left, if any. An unreadable marker is an error naming the file
/// (delete it to retry the configuration it named).
pub fn read_inflight(path: &std::path::Path) -> Result<Option<InFlight>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{}: not an in-flight marker ({e}); delete it to measure every configuration again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// The status recorded for the configuration an earlier run did not finish.
pub const STATUS_UNFINISHED: &str =
    "failed: an earlier run did not finish measuring it (hang or crash); not run again";

/// Whether `marker` names this candidate of `case`.
pub fn is_unfinished(marker: Option<&InFlight>, case: &Case, config: &ConfigRecord) -> bool {
    marker.is_some_and(|m| m.case == case.label() && &m.config == config)
}

/// Ends the process when one configuration runs longer than a limit: a kernel that never
/// finishes leaves the GPU call blocked, and only leaving the process frees the GPU (the driver
/// tears the context down). The in-flight marker names the configuration for the rerun.
pub struct Watchdog {
    /// Milliseconds since `start` after which the process exits; 0 = disarmed.
    deadline_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    start: std::time::Instant,
    limit: std::time::Duration,
}

/// The exit code of a run the watchdog ended (sysexits' EX_TEMPFAIL: rerun to resume).
pub const WATCHDOG_EXIT: i32 = 75;

impl Watchdog {
    /// Starts the watching thread; nothing is watched until [`Watchdog::arm`].
    pub fn start(limit: std::time::Duration) -> Watchdog {
        use std::sync::atomic::Ordering;
        let deadline_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = std::time::Instant::now();
        let watched = deadline_ms.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let d = watched.load(Ordering::Relaxed);
            if d != 0 && start.elapsed().as_millis() as u64 > d {
                eprintln!(
                    "sparseflow tune: one configuration ran longer than {} s (a hung kernel?); \
                     exiting so the GPU is freed — rerun the same command: the configuration is \
                     named in the table's .inflight file and recorded as failed",
                    limit.as_secs()
                );
                std::process::exit(WATCHDOG_EXIT);
            }
        });
        Watchdog {
            deadline_ms,
            start,
            limit,
        }
    }

    /// Watches from now for the configuration about to run.
    pub fn arm(&self) {
        let d = (self.start.elapsed() + self.limit).as_millis() as u64;
        self.deadline_ms
            .store(d.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn disarm(&self) {
        self.deadline_ms
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
}
