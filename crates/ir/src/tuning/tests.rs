//! The table format (round trip, every malformed case an error that says what), the
//! precedence of the sources, the GPU name of a target. Planning with a table is tested in
//! `crates/codegen/tests/tuning.rs`, over the real families.

use std::path::PathBuf;

use sparseflow_core::{DType, EpilogueKind};

use super::*;
use crate::targets::target;

fn config(family: &str, tile_m: u32) -> ConfigRecord {
    ConfigRecord {
        family: family.into(),
        tile_m,
        tile_n: 128,
        tile_k: 64,
        warps: 12,
        stages: 4,
        split_k: 1,
    }
}

fn measured(c: ConfigRecord, median_us: Option<f64>, status: &str) -> Measurement {
    Measurement {
        config: c,
        est_us: Some(10.0),
        median_us,
        p10_us: median_us,
        p90_us: median_us,
        samples: 10,
        rel_err: Some(1e-4),
        status: status.into(),
    }
}

pub(crate) fn entry(n: u64, m: u64) -> TuningEntry {
    let (a, b) = (config("sm90", 128), config("sm90", 256));
    TuningEntry {
        key: TuningKey::new("NVIDIA H200", n, 4096, m, DType::F16, EpilogueKind::None).unwrap(),
        measured_epilogue: EpilogueKind::None,
        winner: Some(b.clone()),
        cost_model: None,
        measurements: vec![
            measured(a, Some(20.0), STATUS_OK),
            measured(b, Some(15.0), STATUS_OK),
            measured(config("sm90", 64), None, "wrong result: rel err 1.0e0"),
        ],
        build: "sparseflow 0.1.0 (test)".into(),
        date_utc: "2026-12-01T00:00:00Z".into(),
        method: "test".into(),
    }
}

fn table(entries: Vec<TuningEntry>) -> TuningTable {
    TuningTable {
        version: TABLE_VERSION,
        entries,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sf-tuning-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn parse_err(text: &str) -> String {
    TuningTable::parse(text, "t.json").unwrap_err().to_string()
}

#[test]
fn a_table_round_trips_through_its_file_and_the_write_leaves_nothing_behind() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("h200.json");
    let mut t = TuningTable::default();
    t.insert(entry(14336, 512));
    t.insert(entry(4096, 16));
    t.insert(entry(4096, 9)); // bucket 16: replaces the entry above
    assert_eq!(t.entries.len(), 2);
    assert_eq!(t.entries[0].key.n, 4096, "sorted by key");
    t.save(&path).unwrap();
    assert_eq!(TuningTable::load(&path).unwrap(), t);
    // One measurement per line.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("\"est_us\"")).count(), 6);
    assert!(text.lines().all(|l| l.matches("\"est_us\"").count() <= 1));
    assert_eq!(
        TuningTable::default().to_text().unwrap(),
        "{\n  \"version\": 1,\n  \"entries\": []\n}\n"
    );
    // A second save replaces the file; only the table is in the folder.
    t.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["h200.json"]);
    assert_eq!(
        TuningTable::load_or_empty(&dir.join("none.json")).unwrap(),
        TuningTable::default()
    );
    let missing = TuningTable::load(&dir.join("none.json"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("none.json") && missing.contains("cannot read"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_tables_are_errors_that_name_the_problem() {
    let good = serde_json::to_value(table(vec![entry(4096, 16)])).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        parse_err(&v.to_string())
    };
    assert!(parse_err("{").contains("not valid JSON"));
    assert!(parse_err("[]").contains("no \"version\""));
    assert!(parse_err(r#"{"entries": []}"#).contains("no \"version\""));
    let v2 = parse_err(r#"{"version": 2, "entries": []}"#);
    assert!(
        v2.contains("version 2 is not supported") && v2.contains("reads version 1"),
        "{v2}"
    );
    assert!(parse_err(r#"{"version": "1", "entries": []}"#).contains("version \"1\""));
    assert!(with(&|v| {
        v["entries"][0]["key"].as_object_mut().unwrap().remove("k");
    })
    .contains("missing field `k`"));
    assert!(with(&|v| v["entries"][0]["key"]["bogus"] = 1.into()).contains("unknown field `bogus`"));
    assert!(with(&|v| v["entries"][0]["key"]["dtype"] = "f8".into()).contains("malformed"));
    assert!(
        with(&|v| v["entries"][0]["key"]["m_bucket"] = 24.into()).contains("not a power of two")
    );
    assert!(with(&|v| v["entries"][0]["key"]["dtype"] = "f32".into()).contains("f16 or bf16"));
    assert!(
        with(&|v| v["entries"][0]["measured_epilogue"] = "relu".into())
            .contains("not of class plain")
    );
    assert!(
        with(&|v| v["entries"][0]["measurements"][0]["median_us"] = (-1.0).into())
            .contains("not a positive number")
    );
    // The winner must be a configuration measured correct: not unmeasured, not failed.
    assert!(with(&|v| v["entries"][0]["winner"]["tile_m"] = 192.into())
        .contains("not among its configurations measured correct"));
    assert!(with(&|v| v["entries"][0]["winner"]["tile_m"] = 64.into())
        .contains("not among its configurations measured correct"));
    let dup = with(&|v| {
        let e = v["entries"][0].clone();
        v["entries"].as_array_mut().unwrap().push(e);
    });
    assert!(
        dup.contains("entry 1 (NVIDIA H200 4096x4096 M bucket 16 f16 plain): a second entry"),
        "{dup}"
    );
    // Every message starts with the file.
    assert!(parse_err("{").starts_with("tuning table t.json: "));
    // No winner (nothing measured correct) is a valid entry.
    let mut none = entry(4096, 16);
    none.winner = None;
    let text = serde_json::to_string(&table(vec![none])).unwrap();
    assert!(TuningTable::parse(&text, "t.json").is_ok());
}

#[test]
fn the_embedded_tables_parse() {
    let tables = Tuning::embedded().unwrap();
    assert_eq!(tables.len(), EMBEDDED.len());
    assert_eq!(tables[0].0, "h200.json (embedded)");
}

#[test]
fn the_user_file_comes_before_the_embedded_tables_and_off_turns_all_off() {
    let dir = temp_dir("precedence");
    let path = dir.join("mine.json");
    table(vec![entry(4096, 16)]).save(&path).unwrap();

    let unset = Tuning::from_env_value(None).unwrap();
    assert_eq!(unset.tables().len(), EMBEDDED.len());
    let empty = Tuning::from_env_value(Some("".as_ref())).unwrap();
    assert_eq!(empty.tables().len(), EMBEDDED.len());
    let user = Tuning::from_env_value(Some(path.as_os_str())).unwrap();
    assert_eq!(user.tables().len(), EMBEDDED.len() + 1);
    assert_eq!(user.tables()[0].0, path.display().to_string());
    assert!(Tuning::from_env_value(Some("off".as_ref()))
        .unwrap()
        .tables()
        .is_empty());

    let missing = Tuning::from_env_value(Some(dir.join("none.json").as_os_str())).unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("SPARSEFLOW_TUNING: tuning table "),
        "{missing}"
    );
    std::fs::write(&path, "{\"version\": 1}").unwrap();
    let bad = Tuning::from_env_value(Some(path.as_os_str()))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("missing field `entries`"), "{bad}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tables_are_keyed_by_the_gpu_the_driver_names() {
    assert_eq!(gpu_name(target("h200").unwrap()), "NVIDIA H200");
    assert_eq!(gpu_name(target("sm_90a").unwrap()), "sm_90a");
    assert_eq!(EpilogueClass::of(EpilogueKind::None), EpilogueClass::Plain);
    assert_eq!(
        EpilogueClass::of(EpilogueKind::BiasSilu),
        EpilogueClass::Fused
    );
    let key = TuningKey::new(
        "NVIDIA H200",
        4096,
        4096,
        100,
        DType::BF16,
        EpilogueKind::Gelu,
    )
    .unwrap();
    assert_eq!(key.m_bucket, 128);
    assert_eq!(
        key.to_string(),
        "NVIDIA H200 4096x4096 M bucket 128 bf16 fused"
    );
    assert!(TuningKey::new("x", 1, 1, 0, DType::F16, EpilogueKind::None).is_err());
}
