//! `sparseflow benchmark` from the outside: the `--cpu` smoke run and its JSON schema,
//! argument errors, the `--min-speedup` gate, and the no-GPU message.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparseflow"))
        .arg("benchmark")
        .args(args)
        .output()
        .expect("run sparseflow")
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sf-bench-{}-{name}", std::process::id()))
}

const TINY: &[&str] = &[
    "--cpu",
    "--shape",
    "64,128",
    "--m",
    "1,3",
    "--samples",
    "3",
    "--sample-ms",
    "1",
    "--warmup-ms",
    "1",
];

#[test]
fn cpu_smoke_run_writes_table_json_and_plot() {
    let (json, svg, md) = (tmp("smoke.json"), tmp("smoke.svg"), tmp("smoke.md"));
    let mut args = TINY.to_vec();
    let (j, s, m) = (
        json.to_str().unwrap(),
        svg.to_str().unwrap(),
        md.to_str().unwrap(),
    );
    args.extend([
        "--json",
        j,
        "--plot",
        s,
        "--markdown",
        m,
        "--epilogue",
        "bias_relu",
    ]);
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| custom_64x128 | 64×128 | 1 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("geomean speedup vs the CPU dense reference loop"),
        "{stdout}"
    );
    assert!(stdout.contains("no speed claim"), "{stdout}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "schema",
        "date_utc",
        "command",
        "mode",
        "device",
        "config",
        "contenders",
        "rows",
        "summary",
    ] {
        assert!(v.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(v["schema"], "sparseflow-benchmark/2");
    assert_eq!(v["mode"], "cpu");
    assert_eq!(v["config"]["epilogue"], "bias_relu");
    assert_eq!(v["config"]["samples"], 3);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, m) in rows.iter().zip([1, 3]) {
        assert_eq!(row["m"], m);
        assert_eq!(
            (row["n"].as_u64(), row["k"].as_u64()),
            (Some(64), Some(128))
        );
        let meas = row["measurements"].as_array().unwrap();
        let names: Vec<&str> = meas
            .iter()
            .map(|x| x["contender"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["cpu_sparse", "cpu_dense"]);
        for x in meas {
            let t = &x["time"];
            let (p10, med, p90) = (
                t["p10_us"].as_f64().unwrap(),
                t["median_us"].as_f64().unwrap(),
                t["p90_us"].as_f64().unwrap(),
            );
            assert!(0.0 < p10 && p10 <= med && med <= p90, "{t}");
            assert_eq!(t["samples"], 3);
        }
        // The sparse and dense CPU paths agree (checked before timing).
        assert!(meas[0]["rel_err_cross"].as_f64().unwrap() < 1e-2);
        assert!(row["speedup_vs_dense"].as_f64().unwrap() > 0.0);
        assert_eq!(row["dense_best"], "cpu_dense");
    }
    assert!(v["summary"]["geomean_vs_dense"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    assert!(std::fs::read_to_string(&md).unwrap().contains("| layer |"));
    for p in [json, svg, md] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn min_speedup_gate_exits_3() {
    let mut args = TINY.to_vec();
    args.extend(["--min-speedup", "1000"]);
    let out = bench(&args);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAIL"));
}

fn expect_error(args: &[&str], needle: &str) {
    let out = bench(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected `{needle}` in: {stderr}"
    );
}

#[test]
fn argument_errors_are_clear() {
    // (arguments, a phrase the error must contain). Endless samples (`inf`, `nan`) are refused,
    // not run.
    let cases: &[(&[&str], &str)] = &[
        (&["--cpu", "--shape", "64,126"], "multiple of 4"),
        (&["--cpu", "--shape", "64"], "N,K"),
        (&["--cpu", "--shape", "64,128", "--m", "0"], "at least 1"),
        (
            &["--cpu", "--shape", "64,128", "--m", "a,b"],
            "positive integer",
        ),
        (&["--cpu", "--model", "gpt5"], "unknown model"),
        (
            &["--cpu", "--shape", "64,128", "--epilogue", "bogus"],
            "bias_silu",
        ),
        (
            &["--cpu", "--shape", "64,128", "--min-speedup", "0"],
            "positive",
        ),
        (
            &["--cpu", "--shape", "64,128", "--skip", "cublas"],
            "unknown contender",
        ),
        (&["--shape", "64,128", "--e2e"], "--e2e needs --model"),
        (
            &["--cpu", "--shape", "64,128", "--samples", "0"],
            "at least 1",
        ),
        (&["--dtype", "fp8"], "fp16"),
        (
            &["--cpu", "--model", "llama3-8b", "--e2e"],
            "leave them out with --cpu",
        ),
        (
            &["--cpu", "--shape", "64,128", "--pdl"],
            "leave them out with --cpu",
        ),
        (
            &["--shape", "64,128", "--pdl", "--skip", "sparseflow"],
            "--skip leaves SparseFlow out",
        ),
        (
            &["--cpu", "--shape", "64,128", "--sample-ms", "inf"],
            "at most",
        ),
        (
            &["--cpu", "--shape", "64,128", "--warmup-ms", "nan"],
            "between 0",
        ),
        (
            &["--cpu", "--shape", "64,128", "--lt-algos", "0"],
            "--lt-algos",
        ),
    ];
    for (args, needle) in cases {
        expect_error(args, needle);
    }
}

#[test]
fn cases_larger_than_host_memory_are_refused_not_aborted() {
    // 2³¹×4 fp16 weights (and a 10⁹-token input) cannot fit: a clear error up front, where
    // the allocation used to abort the process.
    expect_error(
        &["--cpu", "--shape", "2147483648,4", "--m", "1"],
        "of host memory",
    );
    expect_error(
        &["--cpu", "--shape", "64,128", "--m", "1000000000"],
        "of host memory",
    );
}

#[test]
fn bad_output_paths_fail_before_the_run() {
    // Checked first: a long GPU run must not end in "cannot write" and lose its results.
    let missing = tmp("no-such-dir").join("r.json");
    expect_error(
        &[
            "--cpu",
            "--shape",
            "64,128",
            "--json",
            missing.to_str().unwrap(),
        ],
        "does not exist",
    );
    let dir = std::env::temp_dir();
    expect_error(
        &[
            "--cpu",
            "--shape",
            "64,128",
            "--plot",
            dir.to_str().unwrap(),
        ],
        "not a regular file",
    );
}

#[test]
fn help_documents_the_method() {
    let out = bench(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "CUDA events",
        "median",
        "p10/p90",
        "L2",
        "cusparseLtMatmulSearch",
        "--min-speedup",
    ] {
        assert!(text.contains(needle), "--help lacks `{needle}`");
    }
}

#[test]
fn without_a_gpu_the_error_suggests_cpu() {
    let out = bench(&["--shape", "64,128", "--m", "1", "--samples", "1"]);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--cpu"), "{stderr}");
    }
}
