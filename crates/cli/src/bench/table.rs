//! The benchmark's tables as Markdown: the main table, epilogue overhead, e2e, device line.

use super::report::{Report, CPU_SPARSE, CUSPARSELT, SPARSEFLOW};
use super::stats::median;

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

/// The main table as Markdown: subject, the best dense path (and which it was) and (GPU)
/// cuSPARSELt.
pub fn table(report: &Report) -> String {
    let gpu = report.mode == "gpu";
    let subj = if gpu { SPARSEFLOW } else { CPU_SPARSE };
    let mut s = String::new();
    if gpu {
        s.push_str("| layer | N×K | M | SparseFlow µs | best dense µs | dense path | cuSPARSELt µs | vs dense | vs cuSPARSELt | SF TB/s | SF TFLOP/s | SF % of limit |\n");
        s.push_str("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
    } else {
        s.push_str("| layer | N×K | M | CPU sparse µs | CPU dense (reference loop) µs | ratio | sparse GB/s | sparse GFLOP/s |\n");
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
                "| {} | {}×{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.layer,
                r.n,
                r.k,
                r.m,
                us(r.median(subj)),
                us(r.dense_median()),
                r.dense_best.as_deref().unwrap_or("n/a"),
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
                us(r.dense_median()),
                x(r.speedup_vs_dense),
                sm.and_then(|m| m.tbps)
                    .map_or("n/a".into(), |v| format!("{:.1}", v * 1e3)),
                sm.and_then(|m| m.tflops)
                    .map_or("n/a".into(), |v| format!("{:.1}", v * 1e3)),
            ));
        }
    }
    s.push('\n');
    if !gpu {
        s.push_str("CPU mode checks the harness and the CPU reference: both sides are SparseFlow's own exact, untuned loops (no BLAS), so the ratio is no speed claim.\n");
    }
    let sm = &report.summary;
    s.push_str(&format!(
        "geomean speedup vs {}: {}",
        if gpu {
            "the best dense path"
        } else {
            "the CPU dense reference loop"
        },
        x(sm.geomean_vs_dense)
    ));
    if gpu {
        s.push_str(&format!(
            " · vs cuSPARSELt: {} · cuSPARSELt vs dense: {}",
            x(sm.geomean_vs_cusparselt),
            x(sm.geomean_cusparselt_vs_dense)
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
        s.push_str("\nepilogue overhead (µs, medians):\n\n| layer | N×K | M | epilogue | SF plain | SF fused | SF plain + separate | fused overhead | best dense plain | best dense + separate | note |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
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
        s.push_str("\nend to end (decoder-layer linears, token by token):\n\n| model | batch | layers | SparseFlow µs/step | best dense µs/step | SparseFlow tok/s | dense tok/s | speedup | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
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
    s.push_str(&clocks(report));
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

/// The clocks each contender was timed at (NVML readings, `Measurement::clocks`), medians over
/// the cases; empty when no reading was taken. A large GEMM on an H200 runs at the power cap,
/// and the clock it leaves differs per kernel: the times mean little without it.
pub fn clocks(report: &Report) -> String {
    let mut names: Vec<&str> = vec![];
    for m in report.rows.iter().flat_map(|r| &r.measurements) {
        if m.clocks.is_some() && !names.contains(&m.contender.as_str()) {
            names.push(&m.contender);
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\nclocks while timed (NVML, a reading after each sample; medians over the cases):\n",
    );
    for name in names {
        let c: Vec<_> = report
            .rows
            .iter()
            .flat_map(|r| &r.measurements)
            .filter(|m| m.contender == name)
            .filter_map(|m| m.clocks.as_ref())
            .collect();
        let clock: Vec<f64> = c.iter().map(|c| c.sm_mhz_median).collect();
        let power: Vec<f64> = c.iter().filter_map(|c| c.power_w_median).collect();
        let held: Vec<_> = c.iter().filter(|c| !c.limited_by.is_empty()).collect();
        let mut reasons: Vec<&str> = held
            .iter()
            .flat_map(|c| c.limited_by.iter().map(String::as_str))
            .collect();
        reasons.sort();
        reasons.dedup();
        s.push_str(&format!(
            "  {name}: SM {:.0} MHz (lowest {}), {}, clock held down in {} of {} timings{}\n",
            median(&clock).unwrap_or(f64::NAN),
            c.iter().map(|c| c.sm_mhz_min).min().unwrap_or(0),
            median(&power).map_or("power n/a".to_string(), |w| format!("{w:.0} W")),
            held.len(),
            c.len(),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        ));
    }
    s
}
