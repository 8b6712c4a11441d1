//! `sparseflow compile`: dimensions the runtime refuses are refused up front, and the
//! progress/summary contract on stderr (issue 25).

use std::path::PathBuf;
use std::process::{Command, Output};

fn compile(args: &[&str], cache: &PathBuf) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparseflow"))
        .arg("compile")
        .args(args)
        .env("SPARSEFLOW_CACHE_DIR", cache)
        .output()
        .expect("running sparseflow")
}

fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sf-compile-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn dimensions_beyond_32_bits_are_refused_before_planning() {
    let cache = cache_dir("dims");
    for (args, phrase) in [
        (
            &["--shape", "2147483648,4096"][..],
            "N = 2147483648 exceeds the kernels' 32-bit limit of 2147483647 (i32::MAX)",
        ),
        (
            &["--shape", "4096,2147483652"][..],
            "K = 2147483652 exceeds the kernels' 32-bit limit of 2147483647",
        ),
        (
            &["--shape", "4096,4096", "--m", "1,2147483648"][..],
            "--m: M = 2147483648 exceeds the kernels' 32-bit limit of 2147483647",
        ),
    ] {
        let mut all = vec!["--target", "sm_90a"];
        all.extend_from_slice(args);
        let out = compile(&all, &cache);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(phrase), "{args:?}: {stderr}");
        // Refused before NVRTC is even looked up: nothing was written.
        assert!(!cache.exists(), "{args:?} touched the cache");
    }
}

/// Not a terminal here, so indicatif draws no bar; the summary line is printed anyway,
/// and `--quiet` leaves stderr empty.
#[test]
fn summary_on_stderr_unless_quiet() {
    let cache = cache_dir("summary");
    let args = ["--target", "sm_80", "--shape", "64,64", "--m", "1"];
    let out = compile(&args, &cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("could not be loaded") {
        eprintln!("skipped: NVRTC not found (scripts/test puts it on LD_LIBRARY_PATH)");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 kernels for sm_80: 1 compiled") && stderr.contains("threads"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\r'),
        "progress bar drawn to a non-terminal: {stderr:?}"
    );
    let quiet = compile(&[&args[..], &["--quiet"]].concat(), &cache);
    assert!(quiet.status.success());
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let stdout = String::from_utf8_lossy(&quiet.stdout);
    assert!(stdout.contains("cache"), "{stdout}");
    let _ = std::fs::remove_dir_all(&cache);
}

/// After `scripts/setup`, NVRTC sits in `.venv`, not on the loader's path: compile must find it
/// through `$SPARSEFLOW_NVRTC_DIR` (or the active/`./.venv` environment) with LD_LIBRARY_PATH
/// unset, its builtins library included (the pip wheel of NVRTC 13.0 has no RUNPATH for it).
#[test]
fn nvrtc_is_found_without_ld_library_path() {
    let dir = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.join("libnvrtc.so.13").is_file());
    let Some(dir) = dir else {
        eprintln!("skipped: no libnvrtc.so.13 on LD_LIBRARY_PATH to point SPARSEFLOW_NVRTC_DIR at (scripts/test sets it)");
        return;
    };
    let cache = cache_dir("nvrtc-dir");
    let out = Command::new(env!("CARGO_BIN_EXE_sparseflow"))
        .args([
            "compile", "--target", "sm_90a", "--shape", "64,64", "--m", "1", "--quiet",
        ])
        .env("SPARSEFLOW_CACHE_DIR", &cache)
        .env("SPARSEFLOW_NVRTC_DIR", &dir)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("VIRTUAL_ENV")
        .current_dir(std::env::temp_dir()) // no ./.venv to fall back on
        .output()
        .expect("running sparseflow");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// `--m 33` prepares the kernel a 33-token call runs: the runtime plans M = 33 at its bucket
/// (64). Planning M itself picked another kernel for 4096×4096 at M = 33 and M = 300 (the
/// cost model sees a different M), which the runtime never asked for.
#[test]
fn odd_token_counts_are_planned_at_the_runtime_bucket() {
    let cache = cache_dir("bucket");
    let kernel = |m: &str| -> Option<String> {
        let out = compile(
            &[
                "--target",
                "sm_90a",
                "--shape",
                "4096,4096",
                "--m",
                m,
                "--quiet",
                "--json",
            ],
            &cache,
        );
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(err.contains("could not be loaded"), "{err}");
            return None; // no NVRTC
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        Some(v["kernels"][0]["kernel"].as_str().unwrap().to_string())
    };
    for (m, bucket) in [("33", "64"), ("300", "512")] {
        match (kernel(m), kernel(bucket)) {
            (Some(a), Some(b)) => assert_eq!(a, b, "M = {m} must compile M = {bucket}'s kernel"),
            _ => {
                eprintln!("skipped: NVRTC not found (scripts/test puts it on LD_LIBRARY_PATH)");
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
}
