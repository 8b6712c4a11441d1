//! `sparseflow demo`: the README's first command. Its JSON rows carry the same diff keys as
//! Python's `from_dense(..., return_diff=True)`, and it makes no CPU speed claim.

use std::process::Command;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sparseflow"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run sparseflow")
}

#[test]
fn json_rows_carry_the_python_diff_keys() {
    let out = demo(&["--scale", "32", "--tokens", "4", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON only");
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 7);
    for row in layers {
        for key in [
            "max_error",
            "mean_abs_error",
            "rel_fro_error",
            "kept_magnitude",
            "sparsity",
            "bytes_dense",
            "bytes_sparse",
            "output_max_error",
            "output_rel_error",
            "max_error_vs_oracle",
        ] {
            assert!(row[key].is_number(), "{key} missing in {row}");
        }
        assert!(row["sparsity"].as_f64().unwrap() >= 0.5);
        assert!(row["max_error_vs_oracle"].as_f64().unwrap() < 1e-2);
    }
    assert!(
        v.get("total_dense_ms").is_none(),
        "no speed totals: the CPU loops are no baseline"
    );
}

#[test]
fn table_says_speed_is_not_measured() {
    let out = demo(&["--scale", "32", "--tokens", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("| ") || text.contains("q_proj"), "{text}");
    assert!(!text.contains("speedup"), "{text}");
    assert!(text.contains("Speed is not measured here"), "{text}");
}
