//! The benchmark's output: the JSON schema (serde) and the Markdown table.

use serde::{Deserialize, Serialize};

use super::stats::{geomean, Summary};

/// Bumped when a field changes meaning or disappears (additions keep the version).
/// 2: the dense baseline is the fastest of several dense paths (`Row::dense_best`), no
/// longer the contender `cublas`; `geomean_cusparselt_vs_cublas` became `…_vs_dense`.
pub const SCHEMA: &str = "sparseflow-benchmark/2";

/// Contender names as they appear in the JSON.
pub const SPARSEFLOW: &str = "sparseflow";
/// The dense contenders' names start with this (`cublaslt-h0`…, `cublas-gemmex`; `cublas` alone
/// is the n/a entry when no dense path could run).
pub const CUBLAS: &str = "cublas";
pub const CUSPARSELT: &str = "cusparselt";
pub const CPU_SPARSE: &str = "cpu_sparse";
pub const CPU_DENSE: &str = "cpu_dense";

/// Whether a contender is a dense baseline (timed on the decompressed weight).
pub fn is_dense(contender: &str) -> bool {
    contender == CPU_DENSE || contender.starts_with(CUBLAS)
}

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
    /// Samples timed as CUDA-graph replays (`--graph`) rather than eager launches.
    #[serde(default)]
    pub graph: bool,
    /// SparseFlow kernels launched with programmatic dependent launch (`--pdl`, sm_90+): each
    /// one's launch overlaps the end of the previous kernel.
    #[serde(default)]
    pub programmatic_launch: bool,
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
    /// The SM clock and board power while the samples ran (NVML, one reading after each
    /// sample); absent without NVML and in older reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clocks: Option<ClockReadings>,
}

/// What NVML read while one contender was timed (`bench::gpu::nvml::summarize_readings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockReadings {
    pub readings: usize,
    pub sm_mhz_median: f64,
    pub sm_mhz_min: u32,
    pub power_w_median: Option<f64>,
    /// Clock-event reasons that held the clock down in any reading (e.g. `sw_power_cap`).
    pub limited_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub layer: String,
    pub n: usize,
    pub k: usize,
    pub m: usize,
    pub measurements: Vec<Measurement>,
    /// The dense baseline: the fastest dense contender of this case (on the GPU the best of
    /// the cuBLASLt heuristic algorithms and `cublasGemmEx`; `cpu_dense` on the CPU).
    #[serde(default)]
    pub dense_best: Option<String>,
    /// Subject (SparseFlow, or CPU sparse) over the dense baseline `dense_best`.
    pub speedup_vs_dense: Option<f64>,
    pub speedup_vs_cusparselt: Option<f64>,
}

impl Row {
    /// A row with its baseline and speedups derived from the measurements: `subject` over
    /// the fastest dense contender and over cuSPARSELt.
    pub fn new(
        layer: String,
        n: usize,
        k: usize,
        m: usize,
        subject: &str,
        measurements: Vec<Measurement>,
    ) -> Row {
        let dense_best = measurements
            .iter()
            .filter(|x| is_dense(&x.contender))
            .filter_map(|x| Some((x.time?.median_us, &x.contender)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name.clone());
        let mut row = Row {
            layer,
            n,
            k,
            m,
            measurements,
            dense_best,
            speedup_vs_dense: None,
            speedup_vs_cusparselt: None,
        };
        let s = row.median(subject);
        row.speedup_vs_dense = s.zip(row.dense_median()).map(|(s, d)| d / s);
        row.speedup_vs_cusparselt = s.zip(row.median(CUSPARSELT)).map(|(s, l)| l / s);
        row
    }
    /// The dense baseline's median time (µs).
    pub fn dense_median(&self) -> Option<f64> {
        self.median(self.dense_best.as_deref()?)
    }
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
    /// cuSPARSELt over the dense baseline (context for the targets).
    #[serde(alias = "geomean_cusparselt_vs_cublas")]
    pub geomean_cusparselt_vs_dense: Option<f64>,
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
    /// The fastest dense path's plain GEMM, and it + the same separate kernel, for context
    /// (field names kept from schema 1).
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
pub fn summarize_rows(rows: &[Row]) -> SummaryStats {
    let col = |rows: &[&Row], f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
        geomean(&v)
    };
    let all: Vec<&Row> = rows.iter().collect();
    let lt_vs_dense = |r: &Row| Some(r.dense_median()? / r.median(CUSPARSELT)?);
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
        geomean_cusparselt_vs_dense: col(&all, &lt_vs_dense),
        bands,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::summarize;

    fn meas(name: &str, us: Option<f64>) -> Measurement {
        Measurement {
            contender: name.into(),
            m_run: 8,
            time: us.and_then(|u| summarize(&[u, u + 1.0, u + 2.0, u + 3.0, u + 4.0])),
            tbps: us.map(|_| 1.5),
            tflops: None,
            pct_of_limit: Some(50.0),
            bound: Some("bandwidth".into()),
            rel_err_oracle: Some(2e-4),
            rel_err_cross: None,
            weight_copies: 3,
            launches_per_sample: 100,
            note: if us.is_none() {
                "n/a: reason".into()
            } else {
                String::new()
            },
            clocks: None,
        }
    }

    fn sample() -> Report {
        let rows: Vec<Row> = [(1usize, 10.0), (16, 12.0), (4096, 100.0)]
            .iter()
            .map(|&(m, sf)| {
                let meas = vec![
                    meas(SPARSEFLOW, Some(sf)),
                    meas("cublaslt-h0", Some(2.5 * sf)),
                    meas("cublas-gemmex", Some(2.0 * sf)),
                    meas(CUSPARSELT, None),
                ];
                Row::new("q_proj".into(), 4096, 4096, m, SPARSEFLOW, meas)
            })
            .collect();
        Report {
            schema: SCHEMA.into(),
            date_utc: "2026-11-25T00:00:00Z".into(),
            command: "sparseflow benchmark".into(),
            mode: "gpu".into(),
            device: DeviceInfo {
                name: "H100".into(),
                sm_clock_mhz: Some(1980),
                ..Default::default()
            },
            config: RunConfig {
                dtype: "f16".into(),
                epilogue: "none".into(),
                hot: false,
                graph: false,
                programmatic_launch: false,
                samples: 10,
                sample_ms: 2.0,
                warmup_ms: 30.0,
                rotation_bytes: 100 << 20,
                seed: 0,
            },
            contenders: vec![ContenderStatus {
                name: CUSPARSELT.into(),
                available: false,
                detail: "not found".into(),
            }],
            summary: summarize_rows(&rows),
            rows,
            epilogue_overhead: None,
            e2e: Some(vec![]),
        }
    }

    #[test]
    fn clocks_line_per_contender_with_the_power_cap_named() {
        let mut r = sample();
        for (row, (sf, dense)) in
            r.rows
                .iter_mut()
                .zip([(1350.0, 1500.0), (1410.0, 1980.0), (1380.0, 1600.0)])
        {
            for m in &mut row.measurements {
                let (mhz, capped) = match m.contender.as_str() {
                    SPARSEFLOW => (sf, true),
                    "cublas-gemmex" => (dense, false),
                    _ => continue,
                };
                m.clocks = Some(ClockReadings {
                    readings: 10,
                    sm_mhz_median: mhz,
                    sm_mhz_min: mhz as u32 - 30,
                    power_w_median: Some(691.0),
                    limited_by: if capped {
                        vec!["sw_power_cap".into()]
                    } else {
                        vec![]
                    },
                });
            }
        }
        let s = crate::bench::table::clocks(&r);
        assert!(
            s.contains("sparseflow: SM 1380 MHz (lowest 1320), 691 W, clock held down in 3 of 3 timings (sw_power_cap)\n"),
            "{s}"
        );
        assert!(
            s.contains("cublas-gemmex: SM 1600 MHz (lowest 1470), 691 W, clock held down in 0 of 3 timings\n"),
            "{s}"
        );
        // Contenders without readings get no line; a report without any, no section (and its
        // JSON no `clocks` field).
        assert!(!s.contains("cublaslt-h0"), "{s}");
        assert!(crate::bench::table::extras(&r).contains("clocks while timed"));
        assert_eq!(crate::bench::table::clocks(&sample()), "");
        assert!(!serde_json::to_string(&sample()).unwrap().contains("clocks"));
    }

    #[test]
    fn json_round_trip() {
        let r = sample();
        let s = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(
            v.get("epilogue_overhead").is_none(),
            "absent optional sections are omitted"
        );
        assert_eq!(
            v["rows"][0]["measurements"][3]["time"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn summary_bands_and_table() {
        let r = sample();
        // The baseline is the faster dense path (gemmex, 2× the subject's samples), not the
        // heuristic's first cuBLASLt algorithm (2.5×).
        assert!(r
            .rows
            .iter()
            .all(|r| r.dense_best.as_deref() == Some("cublas-gemmex")));
        let want: Vec<f64> = r
            .rows
            .iter()
            .map(|r| r.median("cublas-gemmex").unwrap() / r.median(SPARSEFLOW).unwrap())
            .collect();
        assert!((r.summary.geomean_vs_dense.unwrap() - geomean(&want).unwrap()).abs() < 1e-12);
        assert_eq!(
            r.summary.bands.iter().map(|b| b.cases).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert!(r.summary.geomean_vs_cusparselt.is_none());
        let t = crate::bench::table::table(&r);
        assert!(
            t.contains("| q_proj | 4096×4096 | 1 | 12.0 | 22.0 | cublas-gemmex | n/a | 1.83× |"),
            "{t}"
        );
        assert!(
            t.contains("n/a: cusparselt 4096×4096 M=1: n/a: reason"),
            "{t}"
        );
    }
}
