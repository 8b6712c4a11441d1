//! The benchmark's output: the JSON schema (serde) and the Markdown table.

use serde::{Deserialize, Serialize};

use super::stats::{geomean, Summary};

/// Bumped when a field changes meaning or disappears (additions keep the version).
pub const SCHEMA: &str = "sparseflow-benchmark/1";

/// Contender names as they appear in the JSON.
pub const SPARSEFLOW: &str = "sparseflow";
pub const CUBLAS: &str = "cublas";
pub const CUSPARSELT: &str = "cusparselt";
pub const CPU_SPARSE: &str = "cpu_sparse";
pub const CPU_DENSE: &str = "cpu_dense";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub date_utc: String,
    /// The command line that produced this report.
    pub command: String,
    /// `gpu` or `cpu`.
    pub mode: String,
    pub device: DeviceInfo,
    pub config: RunConfig,
    /// One entry per contender: available or why not.
    pub contenders: Vec<ContenderStatus>,
    pub rows: Vec<Row>,
    pub summary: SummaryStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epilogue_overhead: Option<Vec<EpilogueRow>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e: Option<Vec<E2eRow>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub compute_capability: Option<String>,
    pub sm_count: Option<u32>,
    pub l2_bytes: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// SM clock when the run started and its maximum, MHz (NVML; `None` if unavailable).
    pub sm_clock_mhz: Option<u32>,
    pub sm_clock_max_mhz: Option<u32>,
    pub driver_version: Option<String>,
    /// CUDA version the driver supports (cuDriverGetVersion), e.g. `13.0`.
    pub cuda_driver_api: Option<String>,
    pub cublaslt_version: Option<String>,
    pub cusparselt_version: Option<String>,
    /// Measured ceilings used for "% of limit": device-to-device copy (read + write bytes)
    /// and a large dense fp16/bf16 cuBLAS GEMM.
    pub copy_tbps: Option<f64>,
    pub dense_tflops: Option<f64>,
    pub cpu_threads: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub dtype: String,
    pub epilogue: String,
    /// Weights not rotated (L2-resident when they fit): `--hot`.
    pub hot: bool,
    pub samples: usize,
    /// Target duration of one sample; launches per sample derive from it.
    pub sample_ms: f64,
    pub warmup_ms: f64,
    /// Bytes the rotated weight copies of a shape span at least (when not `--hot`).
    pub rotation_bytes: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContenderStatus {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub contender: String,
    /// M actually run (cuSPARSELt pads to a multiple of 8, at least 8).
    pub m_run: usize,
    /// Per-launch time statistics; `None` = n/a (see `note`).
    pub time: Option<Summary>,
    /// Bytes moved at least once (weight as stored + X + Y) over the median time.
    pub tbps: Option<f64>,
    /// Dense-equivalent FLOP (2·M·N·K) over the median time.
    pub tflops: Option<f64>,
    /// Best possible time (bytes / copy bandwidth or FLOP / tensor-core rate) over the median.
    pub pct_of_limit: Option<f64>,
    /// `bandwidth` or `compute`: which limit applies.
    pub bound: Option<String>,
    /// ‖out − ref‖ / ‖ref‖ against the float64 CPU oracle on sampled rows.
    pub rel_err_oracle: Option<f64>,
    /// ‖out − sf‖ / ‖sf‖ against SparseFlow's full output (or cuBLAS's when SparseFlow is n/a).
    pub rel_err_cross: Option<f64>,
    pub weight_copies: usize,
    pub launches_per_sample: usize,
    /// Why n/a, or a remark (padding, chosen algorithm or kernel).
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub layer: String,
    pub n: usize,
    pub k: usize,
    pub m: usize,
    pub measurements: Vec<Measurement>,
    /// Subject (SparseFlow, or CPU sparse) over the dense baseline (cuBLAS, or CPU dense).
    pub speedup_vs_dense: Option<f64>,
    pub speedup_vs_cusparselt: Option<f64>,
}

impl Row {
    pub fn get(&self, contender: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.contender == contender)
    }
    pub fn median(&self, contender: &str) -> Option<f64> {
        self.get(contender)?.time.map(|t| t.median_us)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub name: String,
    pub geomean_vs_dense: Option<f64>,
    pub geomean_vs_cusparselt: Option<f64>,
    pub cases: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryStats {
    pub geomean_vs_dense: Option<f64>,
    pub geomean_vs_cusparselt: Option<f64>,
    /// cuSPARSELt over cuBLAS (context for the targets).
    pub geomean_cusparselt_vs_cublas: Option<f64>,
    pub bands: Vec<Band>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpilogueRow {
    pub layer: String,
    pub n: usize,
    pub k: usize,
    pub m: usize,
    pub epilogue: String,
    pub plain_us: Option<f64>,
    pub fused_us: Option<f64>,
    pub plain_plus_separate_us: Option<f64>,
    /// fused / plain − 1, in percent.
    pub fused_overhead_pct: Option<f64>,
    /// cuBLAS plain GEMM and cuBLAS + the same separate kernel, for context.
    pub cublas_plain_us: Option<f64>,
    pub cublas_plus_separate_us: Option<f64>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2eRow {
    pub model: String,
    pub batch: usize,
    pub layers: usize,
    pub sparseflow_us_per_token_step: Option<f64>,
    pub cublas_us_per_token_step: Option<f64>,
    pub sparseflow_tokens_per_s: Option<f64>,
    pub cublas_tokens_per_s: Option<f64>,
    pub speedup: Option<f64>,
    pub note: String,
}

fn band_of(m: usize) -> &'static str {
    match m {
        0..=16 => "M 1-16",
        17..=512 => "M 17-512",
        _ => "M >= 1024",
    }
}

/// Geometric means over all rows and per M band.
pub fn summarize_rows(rows: &[Row], dense: &str) -> SummaryStats {
    let col = |rows: &[&Row], f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
        geomean(&v)
    };
    let all: Vec<&Row> = rows.iter().collect();
    let lt_vs_cublas = |r: &Row| Some(r.median(dense)? / r.median(CUSPARSELT)?);
    let bands = ["M 1-16", "M 17-512", "M >= 1024"]
        .iter()
        .filter_map(|name| {
            let rs: Vec<&Row> = rows.iter().filter(|r| band_of(r.m) == *name).collect();
            (!rs.is_empty()).then(|| Band {
                name: name.to_string(),
                geomean_vs_dense: col(&rs, &|r| r.speedup_vs_dense),
                geomean_vs_cusparselt: col(&rs, &|r| r.speedup_vs_cusparselt),
                cases: rs.len(),
            })
        })
        .collect();
    SummaryStats {
        geomean_vs_dense: col(&all, &|r| r.speedup_vs_dense),
        geomean_vs_cusparselt: col(&all, &|r| r.speedup_vs_cusparselt),
        geomean_cusparselt_vs_cublas: col(&all, &lt_vs_cublas),
        bands,
    }
}

fn us(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1000.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "n/a".into(),
    }
}

fn x(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.2}×"))
}

/// The main table as Markdown: subject, dense baseline and (GPU) cuSPARSELt.
pub fn table(report: &Report) -> String {
    let gpu = report.mode == "gpu";
    let (subj, dense) = if gpu {
        (SPARSEFLOW, CUBLAS)
    } else {
        (CPU_SPARSE, CPU_DENSE)
    };
    let mut s = String::new();
    if gpu {
        s.push_str("| layer | N×K | M | SparseFlow µs | cuBLAS µs | cuSPARSELt µs | vs cuBLAS | vs cuSPARSELt | SF TB/s | SF TFLOP/s | SF % of limit |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        s.push_str("| layer | N×K | M | CPU sparse µs | CPU dense µs | speedup | sparse GB/s | sparse GFLOP/s |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    }
    for r in &report.rows {
        let sm = r.get(subj);
        let lt = r.get(CUSPARSELT);
        let lt_cell = match lt {
            Some(m) if m.time.is_some() && m.m_run != r.m => {
                format!("{} (M→{})", us(r.median(CUSPARSELT)), m.m_run)
            }
            _ => us(r.median(CUSPARSELT)),
        };
        let pct = sm.and_then(|m| Some(format!("{:.0}% {}", m.pct_of_limit?, m.bound.as_deref()?)));
        if gpu {
            s.push_str(&format!(
                "| {} | {}×{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.layer,
                r.n,
                r.k,
                r.m,
                us(r.median(subj)),
                us(r.median(dense)),
                lt_cell,
                x(r.speedup_vs_dense),
                x(r.speedup_vs_cusparselt),
                sm.and_then(|m| m.tbps)
                    .map_or("n/a".into(), |v| format!("{v:.2}")),
                sm.and_then(|m| m.tflops)
                    .map_or("n/a".into(), |v| format!("{v:.1}")),
                pct.unwrap_or_else(|| "n/a".into()),
            ));
        } else {
            s.push_str(&format!(
                "| {} | {}×{} | {} | {} | {} | {} | {} | {} |\n",
                r.layer,
                r.n,
                r.k,
                r.m,
                us(r.median(subj)),
                us(r.median(dense)),
                x(r.speedup_vs_dense),
                sm.and_then(|m| m.tbps)
                    .map_or("n/a".into(), |v| format!("{:.1}", v * 1e3)),
                sm.and_then(|m| m.tflops)
                    .map_or("n/a".into(), |v| format!("{:.1}", v * 1e3)),
            ));
        }
    }
    s.push('\n');
    let sm = &report.summary;
    s.push_str(&format!(
        "geomean speedup vs {}: {}",
        if gpu { "cuBLAS" } else { "CPU dense" },
        x(sm.geomean_vs_dense)
    ));
    if gpu {
        s.push_str(&format!(
            " · vs cuSPARSELt: {} · cuSPARSELt vs cuBLAS: {}",
            x(sm.geomean_vs_cusparselt),
            x(sm.geomean_cusparselt_vs_cublas)
        ));
    }
    s.push('\n');
    for b in &sm.bands {
        s.push_str(&format!(
            "  {:<10} ({} cases): vs dense {} · vs cuSPARSELt {}\n",
            b.name,
            b.cases,
            x(b.geomean_vs_dense),
            x(b.geomean_vs_cusparselt)
        ));
    }
    let na: Vec<String> = report
        .rows
        .iter()
        .flat_map(|r| r.measurements.iter().map(move |m| (r, m)))
        .filter(|(_, m)| m.time.is_none())
        .map(|(r, m)| {
            format!(
                "  n/a: {} {}×{} M={}: {}",
                m.contender, r.n, r.k, r.m, m.note
            )
        })
        .collect();
    if !na.is_empty() {
        s.push_str("\nnot measured:\n");
        s.push_str(&na.join("\n"));
        s.push('\n');
    }
    s
}

/// The epilogue-overhead and e2e tables (Markdown), when measured; and the device line.
pub fn extras(report: &Report) -> String {
    let mut s = String::new();
    let o = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    if let Some(rows) = &report.epilogue_overhead {
        s.push_str("\nepilogue overhead (µs, medians):\n\n| layer | N×K | M | epilogue | SF plain | SF fused | SF plain + separate | fused overhead | cuBLAS plain | cuBLAS + separate | note |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
        for r in rows {
            s.push_str(&format!(
                "| {} | {}×{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.layer,
                r.n,
                r.k,
                r.m,
                r.epilogue,
                o(r.plain_us),
                o(r.fused_us),
                o(r.plain_plus_separate_us),
                r.fused_overhead_pct
                    .map_or("n/a".into(), |v| format!("{v:+.1}%")),
                o(r.cublas_plain_us),
                o(r.cublas_plus_separate_us),
                r.note
            ));
        }
    }
    if let Some(rows) = &report.e2e {
        s.push_str("\nend to end (decoder-layer linears, token by token):\n\n| model | batch | layers | SparseFlow µs/step | cuBLAS µs/step | SparseFlow tok/s | cuBLAS tok/s | speedup | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.model,
                r.batch,
                r.layers,
                o(r.sparseflow_us_per_token_step),
                o(r.cublas_us_per_token_step),
                o(r.sparseflow_tokens_per_s),
                o(r.cublas_tokens_per_s),
                x(r.speedup),
                r.note
            ));
        }
    }
    let d = &report.device;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    s.push_str(&format!(
        "\ndevice: {} (cc {}, {} SMs, L2 {} MB), SM clock {}/{} MHz, driver {}, CUDA {}, cuBLASLt {}, cuSPARSELt {}; measured copy {} TB/s, dense {} TFLOP/s; {} {}\n",
        d.name,
        opt(&d.compute_capability),
        d.sm_count.map_or("?".into(), |v| v.to_string()),
        d.l2_bytes.map_or("?".into(), |v| (v >> 20).to_string()),
        d.sm_clock_mhz.map_or("?".into(), |v| v.to_string()),
        d.sm_clock_max_mhz.map_or("?".into(), |v| v.to_string()),
        opt(&d.driver_version),
        opt(&d.cuda_driver_api),
        opt(&d.cublaslt_version),
        opt(&d.cusparselt_version),
        d.copy_tbps.map_or("?".into(), |v| format!("{v:.2}")),
        d.dense_tflops.map_or("?".into(), |v| format!("{v:.0}")),
        report.date_utc,
        report.command
    ));
    s
}
