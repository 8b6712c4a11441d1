//! Measured tuning: `select-tiles` takes a configuration from a tuning table (what `sparseflow
//! tune` measured on a GPU) before it asks the cost model.
//!
//! Precedence, first match wins:
//! 1. the file named by `$SPARSEFLOW_TUNING` (a table `sparseflow tune --out` wrote on your
//!    GPU); `SPARSEFLOW_TUNING=off` turns every table off, the embedded ones included;
//! 2. the tables checked in under `crates/ir/tuning/` and embedded in the library (the H200's),
//!    so nothing is read from disk at run time;
//! 3. the cost model.
//!
//! A table entry applies when its key matches the call: the GPU's name as the driver reports
//! it ([`gpu_name`]; the preset `h200` stands for "NVIDIA H200"), N, K, the M bucket, the dtype
//! and the [`EpilogueClass`]. Its winner is used only while it is still a legal configuration of
//! a registered family for that shape and target ([`crate::family::check`]); otherwise the next
//! table, then the cost model decides, and the plan says why ([`PlanSource`]).

mod table;

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

pub use table::{
    ConfigRecord, EpilogueClass, Measurement, TuningEntry, TuningKey, TuningTable, STATUS_OK,
    TABLE_VERSION,
};

use crate::error::IrError;
use crate::family::{check, Families};
use crate::kernel_config::{GemmShape, KernelConfig};
use crate::targets::Target;

/// The environment variable naming the user's tuning table (`off`: no tables at all).
pub const TUNING_ENV: &str = "SPARSEFLOW_TUNING";

/// The checked-in tables (`crates/ir/tuning/`), lowest precedence last.
pub const EMBEDDED: &[(&str, &str)] = &[("h200.json", include_str!("../../tuning/h200.json"))];

/// Presets that are one product: their tables are the product's.
const PRESET_GPUS: &[(&str, &str)] = &[("h200", "NVIDIA H200")];

/// The GPU name tables are keyed by for `target`: the driver's name for a device's target
/// (`Target::for_device`), the product's for a preset that is one product (`h200`), else the
/// preset's own name (which no measured table holds).
pub fn gpu_name(target: &Target) -> &str {
    PRESET_GPUS
        .iter()
        .find(|(preset, _)| *preset == target.name)
        .map_or(&target.name, |(_, gpu)| gpu)
}

/// Which source chose a plan's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSource {
    /// A tuning table's measured winner.
    Tuned {
        /// The table: the user file's path or the embedded table's name.
        table: String,
        /// The measurement, in words (median, build, date).
        measured: String,
    },
    /// The cost model; `why` says why no table decided.
    CostModel { why: String },
}

impl PlanSource {
    pub fn is_tuned(&self) -> bool {
        matches!(self, PlanSource::Tuned { .. })
    }

    /// `tuned` or `cost model`, for tables.
    pub fn label(&self) -> &'static str {
        match self {
            PlanSource::Tuned { .. } => "tuned",
            PlanSource::CostModel { .. } => "cost model",
        }
    }
}

impl fmt::Display for PlanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanSource::Tuned { table, measured } => {
                write!(f, "tuned (table {table}: {measured})")
            }
            PlanSource::CostModel { why } => write!(f, "cost model ({why})"),
        }
    }
}

/// The tuning tables planning consults, highest precedence first.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    tables: Vec<(String, TuningTable)>,
}

impl Tuning {
    /// No tables: every plan comes from the cost model.
    pub fn none() -> &'static Tuning {
        static NONE: Tuning = Tuning { tables: Vec::new() };
        &NONE
    }

    /// These tables, each named by its origin, highest precedence first.
    pub fn new(tables: Vec<(String, TuningTable)>) -> Tuning {
        Tuning { tables }
    }

    /// The embedded tables, parsed.
    pub fn embedded() -> Result<Vec<(String, TuningTable)>, IrError> {
        EMBEDDED
            .iter()
            .map(|(name, text)| {
                let origin = format!("{name} (embedded)");
                TuningTable::parse(text, &origin).map(|t| (origin, t))
            })
            .collect()
    }

    /// The tables for a value of `$SPARSEFLOW_TUNING` (`None`: unset): the user's file, then the
    /// embedded tables; `off` gives none. A file that cannot be read or parsed is an error, not
    /// silently skipped: it was asked for by name.
    pub fn from_env_value(value: Option<&OsStr>) -> Result<Tuning, IrError> {
        let value = value.filter(|v| !v.is_empty());
        if value.is_some_and(|v| v == "off") {
            return Ok(Tuning::default());
        }
        let mut tables = Vec::new();
        if let Some(path) = value {
            let path = Path::new(path);
            let table = TuningTable::load(path)
                .map_err(|e| IrError::Tuning(format!("{TUNING_ENV}: {e}")))?;
            tables.push((path.display().to_string(), table));
        }
        tables.extend(Tuning::embedded()?);
        Ok(Tuning { tables })
    }

    /// The process's tables ([`Tuning::from_env_value`] of `$SPARSEFLOW_TUNING`), read once.
    pub fn active() -> Result<&'static Tuning, IrError> {
        static ACTIVE: OnceLock<Result<Tuning, String>> = OnceLock::new();
        ACTIVE
            .get_or_init(|| {
                Tuning::from_env_value(std::env::var_os(TUNING_ENV).as_deref())
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| IrError::Tuning(e.clone()))
    }

    pub fn tables(&self) -> &[(String, TuningTable)] {
        &self.tables
    }

    /// The measured configuration for `key`, legal for `shape` (M concrete) on `target` among
    /// `families`: the first table whose entry has a winner that still is, with its source.
    /// `Err` is the cost model's source: no entry, or why each winner was refused.
    pub fn choose(
        &self,
        key: &TuningKey,
        families: &Families<'_>,
        shape: &GemmShape,
        target: &Target,
    ) -> Result<(KernelConfig, PlanSource), PlanSource> {
        let mut refused = Vec::new();
        for (origin, table) in &self.tables {
            let Some(entry) = table.get(key) else {
                continue;
            };
            let (Some(winner), Some(m)) = (&entry.winner, entry.winner_measurement()) else {
                refused.push(format!("{origin}: no configuration measured correct"));
                continue;
            };
            let legal = winner
                .resolve(families)
                .and_then(|cfg| check(families, &cfg, shape, Some(target)).map(|()| cfg));
            match legal {
                Ok(config) => {
                    let measured = format!(
                        "{:.1} us median of {} configurations measured, {}, {}",
                        m.median_us.unwrap_or(f64::NAN),
                        entry.measurements.len(),
                        entry.build,
                        entry.date_utc
                    );
                    return Ok((
                        config,
                        PlanSource::Tuned {
                            table: origin.clone(),
                            measured,
                        },
                    ));
                }
                Err(why) => refused.push(format!("{origin}: winner {winner} refused: {why}")),
            }
        }
        let why = if refused.is_empty() {
            format!("no tuning entry for {key}")
        } else {
            format!("{key}: {}", refused.join("; "))
        };
        Err(PlanSource::CostModel { why })
    }
}

#[cfg(test)]
mod tests;
