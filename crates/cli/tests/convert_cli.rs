//! `sparseflow convert` from the outside: the report, `--force` over a foreign directory,
//! `kill -9` mid-run, corrupt and FIFO inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sparseflow_model::testing::{
    f16_matrix, staging_entries, tiny_config, tiny_llama, write_hf_dir,
};

fn sparseflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparseflow"))
        .args(args)
        .output()
        .expect("run sparseflow")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sf-convert-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn json_report_table_and_force() {
    let dir = tmp("json");
    let (input, out) = (dir.join("hf"), dir.join("out"));
    tiny_llama(&input, 1, 16, 32, false);
    let o = sparseflow(&["convert", s(&input), "-o", s(&out), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["schema"], "sparseflow-convert/1");
    assert_eq!(report["totals"]["sparse_layers"], 7);
    let o = sparseflow(&["convert", s(&input), "-o", s(&out), "--quiet"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --force"));
    let o = sparseflow(&["convert", s(&input), "-o", s(&out), "--force"]);
    assert!(o.status.success());
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("model.layers.0.mlp.up_proj.weight") && table.contains("pruned"),
        "{table}"
    );

    let foreign = dir.join("project");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("train.py"), "precious").unwrap();
    let o = sparseflow(&[
        "convert",
        s(&input),
        "-o",
        s(&foreign),
        "--force",
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a SparseFlow model directory"));
    assert_eq!(
        std::fs::read_to_string(foreign.join("train.py")).unwrap(),
        "precious"
    );
    assert!(staging_entries(&dir).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn kill_9_leaves_nothing_half_written_and_the_next_run_cleans_up() {
    let dir = tmp("kill");
    let (input, out) = (dir.join("hf"), dir.join("out"));
    tiny_llama(&input, 4, 512, 1024, false); // a run of about a second
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparseflow"))
        .args(["convert", s(&input), "-o", s(&out), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // Kill once the staging directory holds a shard being written.
    loop {
        let busy = staging_entries(&dir).iter().any(|n| {
            !n.ends_with(".lock")
                && std::fs::read_dir(dir.join(n)).is_ok_and(|mut d| d.next().is_some())
        });
        if busy || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !out.exists(),
        "a killed run must not leave its output visible"
    );
    assert!(
        !staging_entries(&dir).is_empty(),
        "the killed run's staging directory is still there"
    );
    let small = dir.join("small");
    tiny_llama(&small, 1, 16, 32, false);
    let o = sparseflow(&["convert", s(&small), "-o", s(&out), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        staging_entries(&dir).is_empty(),
        "left: {:?}",
        staging_entries(&dir)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_fifo_and_outside_inputs_are_errors_not_hangs() {
    let dir = tmp("bad");
    let input = dir.join("hf");
    write_hf_dir(
        &input,
        &[
            vec![f16_matrix(
                "model.layers.0.mlp.up_proj.weight",
                8,
                8,
                1,
                false,
            )],
            vec![f16_matrix(
                "model.layers.0.mlp.down_proj.weight",
                8,
                8,
                2,
                false,
            )],
        ],
        &tiny_config(1, 8, 8),
    );
    let shard = input.join("model-00002-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 3]).unwrap();
    let o = sparseflow(&["convert", s(&input), "-o", s(&dir.join("o")), "--quiet"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("model-00002-of-00002.safetensors")
            && err.contains("model.layers.0.mlp.down_proj.weight")
            && err.contains("truncated"),
        "{err}"
    );

    std::fs::remove_file(&shard).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &shard,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    let o = sparseflow(&["convert", s(&input), "-o", s(&dir.join("o")), "--quiet"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("a FIFO, not a regular file"));
    let o = sparseflow(&["convert", s(&shard), "-o", s(&dir.join("o")), "--quiet"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("a FIFO"));

    std::fs::remove_file(&shard).unwrap();
    std::fs::write(
        input.join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.layers.0.mlp.up_proj.weight": "/etc/passwd"}}"#,
    )
    .unwrap();
    let o = sparseflow(&["convert", s(&input), "-o", s(&dir.join("o")), "--quiet"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside the model directory"));
    std::fs::write(input.join("config.json"), "{oops").unwrap();
    let o = sparseflow(&["convert", s(&input), "-o", s(&dir.join("o")), "--quiet"]);
    assert!(!o.status.success());
    assert!(!dir.join("o").exists() && staging_entries(&dir).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tp_writes_one_file_per_rank_and_leaves_no_unsharded_copy() {
    let dir = tmp("tp");
    let (input, out) = (dir.join("hf"), dir.join("out"));
    tiny_llama(&input, 1, 32, 200, false);
    let o = sparseflow(&["convert", s(&input), "-o", s(&out), "--tp", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["output"], s(&out.canonicalize().unwrap()));
    let model = sparseflow_model::ModelDir::open(&out).unwrap();
    let tp = model.manifest().tensor_parallel.clone().unwrap();
    assert_eq!(tp.layers.len(), 7);
    assert!(tp.files.iter().all(|f| out.join(f).is_file()));
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["hf", "out"], "the unsharded copy is removed");
    // An unsharded SparseFlow model as input is only sharded; other formats are refused.
    let plain = dir.join("plain");
    assert!(
        sparseflow(&["convert", s(&input), "-o", s(&plain), "--quiet"])
            .status
            .success()
    );
    let o = sparseflow(&["convert", s(&plain), "-o", s(&dir.join("tp4")), "--tp", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = sparseflow(&[
        "convert",
        s(&input),
        "-o",
        s(&dir.join("d")),
        "--tp",
        "2",
        "--format",
        "dense",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tp writes a SparseFlow model"));
    // Heads that do not split: 2 heads over 4 ranks.
    let o = sparseflow(&[
        "convert",
        s(&plain),
        "-o",
        s(&dir.join("tp-bad")),
        "--tp",
        "4",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("do not split over 4 ranks"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}
