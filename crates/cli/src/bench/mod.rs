//! `sparseflow benchmark`: SparseFlow vs the best dense path vs cuSPARSELt on the same shapes and
//! inputs, in one process, with the method written down in `--help` and docs/PERFORMANCE.md.

pub mod cpu;
pub mod gpu;
pub mod output;
pub mod plot;
pub mod report;
pub mod shapes;
pub mod stats;
pub mod table;
pub mod timing;

/// The method, as `sparseflow benchmark --help` prints it (docs/PERFORMANCE.md has the long form).
pub const METHOD: &str = "\
Method: all contenders run in one process on the same random inputs (never zeros). Before
timing, each contender's output (poisoned with NaN first) is checked against a float64 CPU
oracle on sampled rows and against SparseFlow's full output (dense's when SparseFlow is n/a);
rel. Frobenius error above 1e-2 → \"n/a (wrong result)\", never a number. Timing: CUDA events
around many back-to-back launches (enough for --sample-ms), after a warm-up of --warmup-ms;
--samples samples; median with p10/p90. Weight copies are rotated so the set spans 2×L2 (L2
size queried from the device) unless --hot. Dense = the fastest, per case, of cuBLASLt with
each of its top --lt-algos heuristic algorithms (cublaslt-h0…) and cublasGemmEx with the
default algorithm (cublas-gemmex), each checked and timed alike, fp32 compute, on the
decompressed 2:4 weight in F.linear's layout; the table and JSON name the winner. cuSPARSELt is loaded at run time (--cusparselt,
$SPARSEFLOW_CUSPARSELT, the loader path, torch's nvidia/cusparselt/lib); plan built and
cusparseLtMatmulSearch run once, untimed; output Yᵀ row-major; M padded to a multiple of 8.
TB/s counts weight (as stored) + X + Y once; TFLOP/s is dense-equivalent 2·M·N·K; \"% of
limit\" is the roofline time (bytes / measured copy bandwidth, or FLOP / measured dense
peak, halved for 2:4) over the median. GPU name, SM clock, driver and CUDA versions go in the
JSON. Exit code 3: --min-speedup not met.";

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days; no date crate needed).
pub fn utc_string(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_string(secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc() {
        assert_eq!(super::utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc_string(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
