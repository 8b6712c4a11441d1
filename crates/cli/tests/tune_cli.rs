//! `sparseflow tune` from the outside: argument errors before any GPU work, a malformed
//! table refused and left as it was, and a clear error (no panic) without a GPU.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparseflow"))
        .arg("tune")
        .args(args)
        .output()
        .expect("run sparseflow")
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sf-tune-{}-{name}", std::process::id()))
}

fn expect_error(args: &[&str], needle: &str) -> String {
    let out = tune(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        stderr.contains(needle),
        "{args:?}: `{needle}` not in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_arguments_fail_before_the_gpu_is_touched() {
    let out = tmp("args.json");
    let o = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--m", "16", "--out", o], "nothing to tune"),
        (
            &["--shapes", "64x130", "--m", "16", "--out", o],
            "multiple of 4",
        ),
        (
            &["--shapes", "64x128", "--m", "0", "--out", o],
            "at least 1",
        ),
        (
            &[
                "--shapes", "64x128", "--m", "16", "--dtype", "fp32", "--out", o,
            ],
            "--dtype",
        ),
        (
            &[
                "--shapes", "64x128", "--m", "16", "--top-k", "0", "--out", o,
            ],
            "--top-k",
        ),
        (
            &[
                "--shapes",
                "64x128",
                "--m",
                "16",
                "--budget-s",
                "0",
                "--out",
                o,
            ],
            "--budget-s",
        ),
        (
            &["--model", "gpt9", "--m", "16", "--out", o],
            "unknown model",
        ),
        (
            &[
                "--shapes",
                "64x128",
                "--m",
                "16",
                "--epilogue",
                "relu,gelu",
                "--out",
                o,
            ],
            "both of class fused",
        ),
        (
            &[
                "--shapes",
                "64x128",
                "--m",
                "16",
                "--out",
                "/no/such/dir/t.json",
            ],
            "does not exist",
        ),
    ];
    for (args, needle) in cases {
        expect_error(args, needle);
    }
    assert!(!out.exists());
}

#[test]
fn a_malformed_table_is_refused_and_left_as_it_was() {
    let out = tmp("bad.json");
    for (text, needle) in [
        ("{ not json", "not valid JSON"),
        (
            "{\"version\": 7, \"entries\": []}",
            "version 7 is not supported",
        ),
    ] {
        std::fs::write(&out, text).unwrap();
        expect_error(
            &[
                "--shapes",
                "64x128",
                "--m",
                "16",
                "--out",
                out.to_str().unwrap(),
            ],
            needle,
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    }
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn without_a_gpu_it_fails_with_a_clear_error() {
    let out = tmp("nogpu.json");
    let o = out.to_str().unwrap();
    let run = tune(&[
        "--shapes",
        "64x128",
        "--m",
        "16",
        "--budget-s",
        "0.001",
        "--out",
        o,
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if !run.status.success() {
        // No GPU here: said so, and nothing written.
        assert!(stderr.contains("on a GPU"), "{stderr}");
        assert!(!out.exists());
    }
    let _ = std::fs::remove_file(&out);
}

#[test]
fn help_documents_the_method_and_the_table() {
    let out = tune(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--top-k",
        "--budget-s",
        "M bucket",
        "CPU reference",
        "rotated past L2",
        "SPARSEFLOW_TUNING",
        "resumes",
    ] {
        assert!(text.contains(needle), "--help lacks `{needle}`");
    }
}
