//! The tuning table file: what `sparseflow tune` measured on one GPU, as versioned JSON.
//!
//! ```json
//! { "version": 1,
//!   "entries": [ {
//!     "key": { "gpu": "NVIDIA H200", "n": 4096, "k": 4096, "m_bucket": 16,
//!              "dtype": "f16", "epilogue": "plain" },
//!     "measured_epilogue": "none",
//!     "winner": { "family": "decode", "tile_m": 16, "tile_n": 32, "tile_k": 256,
//!                 "warps": 4, "stages": 2, "split_k": 4 },
//!     "cost_model": { ... },
//!     "measurements": [ { "config": { ... }, "est_us": 9.1, "median_us": 8.7,
//!                         "p10_us": 8.6, "p90_us": 8.8, "samples": 10,
//!                         "rel_err": 0.0004, "status": "ok" }, ... ],
//!     "build": "sparseflow 0.1.0 (55e923d)", "date_utc": "2026-12-01T10:00:00Z",
//!     "method": "..." } ] }
//! ```
//!
//! Keys may come in any order; [`TuningTable::save`] writes them sorted, one entry field and
//! one measurement per line. Reading never panics: a file that is not JSON, has another version, misses a field or
//! breaks a rule (a winner that was not measured correct, two entries for one key) is an
//! [`IrError::Tuning`] naming the file, the entry and the rule. Writing is atomic.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sparseflow_core::{DType, EpilogueKind};

use crate::error::IrError;
use crate::family::{find, Families};
use crate::kernel_config::{KernelConfig, KernelConfigOf};
use crate::select::m_bucket;

/// The format version this build reads and writes.
pub const TABLE_VERSION: u32 = 1;

/// Which epilogues share a measurement.
///
/// The epilogue runs once per output element, in registers, after the K loop: against the
/// GEMM's `K` multiply-adds per element it costs well under the run-to-run noise of a timing,
/// so it does not move the ranking through its arithmetic. What it can move is the kernel
/// itself: any fused epilogue adds the epilogue code and (with a bias) a bias load to every
/// output tile, which changes register allocation and so occupancy, while the plain GEMM has
/// neither. Two classes follow: `plain` (no epilogue) and `fused` (every other one, measured
/// with one representative, recorded as `measured_epilogue`). A finer split (per activation)
/// would multiply the tuning time by the number of epilogues for differences that measure
/// as noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpilogueClass {
    Plain,
    Fused,
}

impl EpilogueClass {
    pub fn of(epilogue: EpilogueKind) -> EpilogueClass {
        if epilogue == EpilogueKind::None {
            EpilogueClass::Plain
        } else {
            EpilogueClass::Fused
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EpilogueClass::Plain => "plain",
            EpilogueClass::Fused => "fused",
        }
    }
}

/// What one measurement stands for: a GPU (as the driver names it), a layer shape, an M bucket
/// (the planning rule, [`m_bucket`]), a dtype and an epilogue class.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningKey {
    pub gpu: String,
    pub n: u64,
    pub k: u64,
    pub m_bucket: u64,
    pub dtype: DType,
    pub epilogue: EpilogueClass,
}

impl TuningKey {
    /// The key of `m` tokens of an `n`×`k` layer (M at its bucket).
    pub fn new(
        gpu: &str,
        n: u64,
        k: u64,
        m: u64,
        dtype: DType,
        epilogue: EpilogueKind,
    ) -> Result<TuningKey, IrError> {
        Ok(TuningKey {
            gpu: gpu.to_string(),
            n,
            k,
            m_bucket: m_bucket(m)?,
            dtype,
            epilogue: EpilogueClass::of(epilogue),
        })
    }

    /// The order of a saved table: GPU, dtype, epilogue class, shape, M.
    fn sort_key(&self) -> (&str, &str, EpilogueClass, u64, u64, u64) {
        (
            &self.gpu,
            self.dtype.ir_name(),
            self.epilogue,
            self.n,
            self.k,
            self.m_bucket,
        )
    }
}

impl fmt::Display for TuningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{} M bucket {} {} {}",
            self.gpu,
            self.n,
            self.k,
            self.m_bucket,
            self.dtype,
            self.epilogue.name()
        )
    }
}

/// A [`KernelConfig`] as the file spells it: the family by name.
pub type ConfigRecord = KernelConfigOf<String>;

impl From<&KernelConfig> for ConfigRecord {
    fn from(c: &KernelConfig) -> Self {
        c.with_family(c.family.to_string())
    }
}

impl ConfigRecord {
    /// The configuration with its family resolved among `families`; `Err` when none is
    /// registered under that name.
    pub fn resolve(&self, families: &Families<'_>) -> Result<KernelConfig, String> {
        let family = find(families, &self.family)
            .ok_or_else(|| format!("family '{}' is not registered", self.family))?;
        Ok(self.clone().with_family(family.name()))
    }
}

impl fmt::Display for ConfigRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family, self.describe_tiles())
    }
}

/// The status of a configuration that was checked correct and timed.
pub const STATUS_OK: &str = "ok";

/// One configuration's result in one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    pub config: ConfigRecord,
    /// The cost model's estimate, µs (for recalibrating it against `median_us`).
    pub est_us: Option<f64>,
    /// Median over `samples` samples of the per-launch time, µs; `None` when not timed.
    pub median_us: Option<f64>,
    pub p10_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub samples: usize,
    /// Relative error of the checked output against the CPU reference.
    pub rel_err: Option<f64>,
    /// [`STATUS_OK`], or why there is no time (compile or launch failure, wrong result).
    pub status: String,
}

impl Measurement {
    /// Checked correct and timed.
    pub fn ok(&self) -> bool {
        self.status == STATUS_OK && self.median_us.is_some()
    }
}

/// The measurements of one case and the configuration planning takes from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningEntry {
    pub key: TuningKey,
    /// The epilogue the case ran with (the class's representative).
    pub measured_epilogue: EpilogueKind,
    /// The fastest correct configuration; `None` when none was (planning then uses the cost
    /// model).
    pub winner: Option<ConfigRecord>,
    /// What the cost model plans for this case, for comparison with the winner.
    pub cost_model: Option<ConfigRecord>,
    pub measurements: Vec<Measurement>,
    /// The build that measured (`sparseflow <version> (<commit>)`).
    pub build: String,
    pub date_utc: String,
    /// How it was timed, in words.
    pub method: String,
}

impl TuningEntry {
    /// `config`'s measurement, when it was measured correct.
    pub fn measured(&self, config: &ConfigRecord) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.ok() && m.config == *config)
    }

    /// The winner's measurement.
    pub fn winner_measurement(&self) -> Option<&Measurement> {
        self.measured(self.winner.as_ref()?)
    }
}

/// A tuning table: entries of one or more GPUs, at most one per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningTable {
    pub version: u32,
    pub entries: Vec<TuningEntry>,
}

impl Default for TuningTable {
    fn default() -> Self {
        TuningTable {
            version: TABLE_VERSION,
            entries: Vec::new(),
        }
    }
}

impl TuningTable {
    /// Parses and checks a table; `origin` (a path or the embedded name) starts every error.
    pub fn parse(text: &str, origin: &str) -> Result<TuningTable, IrError> {
        let err = |why: String| IrError::Tuning(format!("tuning table {origin}: {why}"));
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        // The version first: a newer file's other changes would otherwise read as breakage.
        match value.get("version").map(|v| v.as_u64()) {
            None => return Err(err("no \"version\" field (not a sparseflow tuning table?)".into())),
            Some(Some(v)) if v == u64::from(TABLE_VERSION) => {}
            Some(v) => {
                return Err(err(format!(
                    "version {} is not supported; this build reads version {TABLE_VERSION} (re-run `sparseflow tune` with this build)",
                    v.map_or_else(|| value["version"].to_string(), |v| v.to_string())
                )))
            }
        }
        let table: TuningTable =
            serde_json::from_value(value).map_err(|e| err(format!("malformed: {e}")))?;
        table.check().map_err(err)?;
        Ok(table)
    }

    /// Reads and checks the table at `path`.
    pub fn load(path: &Path) -> Result<TuningTable, IrError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            IrError::Tuning(format!("tuning table {}: cannot read: {e}", path.display()))
        })?;
        TuningTable::parse(&text, &path.display().to_string())
    }

    /// [`TuningTable::load`], or an empty table when nothing is at `path` yet.
    pub fn load_or_empty(path: &Path) -> Result<TuningTable, IrError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TuningTable::default()),
            _ => TuningTable::load(path),
        }
    }

    /// The rules a parsed table must keep; `Err` names the entry and the rule.
    fn check(&self) -> Result<(), String> {
        let mut keys = HashSet::new();
        for (i, e) in self.entries.iter().enumerate() {
            let at = |why: String| format!("entry {i} ({}): {why}", e.key);
            let k = &e.key;
            if k.n == 0 || k.k == 0 {
                return Err(at("n and k must be >= 1".into()));
            }
            if !k.m_bucket.is_power_of_two() {
                return Err(at(format!(
                    "m_bucket {} is not a power of two (the planning buckets are)",
                    k.m_bucket
                )));
            }
            if !matches!(k.dtype, DType::F16 | DType::BF16) {
                return Err(at(format!(
                    "dtype {} (sparse kernels take f16 or bf16)",
                    k.dtype
                )));
            }
            if EpilogueClass::of(e.measured_epilogue) != k.epilogue {
                return Err(at(format!(
                    "measured_epilogue {} is not of class {}",
                    e.measured_epilogue.name(),
                    k.epilogue.name()
                )));
            }
            for m in &e.measurements {
                for t in [m.median_us, m.p10_us, m.p90_us].into_iter().flatten() {
                    if !(t.is_finite() && t > 0.0) {
                        return Err(at(format!(
                            "{}: time {t} is not a positive number",
                            m.config
                        )));
                    }
                }
            }
            if let Some(w) = &e.winner {
                if e.winner_measurement().is_none() {
                    return Err(at(format!(
                        "winner {w} is not among its configurations measured correct"
                    )));
                }
            }
            if !keys.insert(k) {
                return Err(at("a second entry for this key".into()));
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &TuningKey) -> Option<&TuningEntry> {
        self.entries.iter().find(|e| e.key == *key)
    }

    /// Adds `entry`, replacing the entry of the same key; entries stay sorted by key so a
    /// checked-in table diffs by case.
    pub fn insert(&mut self, entry: TuningEntry) {
        self.entries.retain(|e| e.key != entry.key);
        self.entries.push(entry);
        self.entries
            .sort_by(|a, b| a.key.sort_key().cmp(&b.key.sort_key()));
    }

    /// The saved text: JSON with one entry field per line and one measurement per line, so a
    /// checked-in table stays compact and diffs by case and configuration.
    pub fn to_text(&self) -> serde_json::Result<String> {
        let mut out = format!("{{\n  \"version\": {},\n  \"entries\": [", self.version);
        for (i, e) in self.entries.iter().enumerate() {
            out.push_str(if i == 0 { "\n    {" } else { ",\n    {" });
            let serde_json::Value::Object(fields) = serde_json::to_value(e)? else {
                out.push_str(&serde_json::to_string(e)?);
                continue;
            };
            for (j, (name, value)) in fields.iter().enumerate() {
                out.push_str(if j == 0 { "\n      " } else { ",\n      " });
                out.push_str(&serde_json::to_string(name)?);
                out.push_str(": ");
                match value {
                    serde_json::Value::Array(items) if !items.is_empty() => {
                        out.push('[');
                        for (k, item) in items.iter().enumerate() {
                            out.push_str(if k == 0 { "\n        " } else { ",\n        " });
                            out.push_str(&serde_json::to_string(item)?);
                        }
                        out.push_str("\n      ]");
                    }
                    other => out.push_str(&serde_json::to_string(other)?),
                }
            }
            out.push_str("\n    }");
        }
        out.push_str(if self.entries.is_empty() {
            "]\n}\n"
        } else {
            "\n  ]\n}\n"
        });
        Ok(out)
    }

    /// Writes the table to a temporary file beside `path` (named after it and this process),
    /// then renames it over `path`: a reader sees the old table or the new one. On failure
    /// only that temporary file is removed.
    pub fn save(&self, path: &Path) -> Result<(), IrError> {
        let err = |why: String| IrError::Tuning(format!("writing {}: {why}", path.display()));
        let text = self.to_text().map_err(|e| err(e.to_string()))?;
        let tmp = temp_path(path);
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e.to_string())
        })
    }
}

/// `.<name>.sparseflow-tmp-<pid>` in `path`'s directory.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(String::new, |n| {
        n.to_string_lossy().chars().take(64).collect()
    });
    let tmp = format!(".{name}.sparseflow-tmp-{}", std::process::id());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp),
        _ => PathBuf::from(tmp),
    }
}
