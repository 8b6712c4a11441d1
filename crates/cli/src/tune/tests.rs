//! The parts of `sparseflow tune` that need no GPU: cases, resuming, candidates, the winner.

use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::target;
use sparseflow_ir::tuning::{ConfigRecord, Measurement, TuningTable, STATUS_OK};

use super::*;

fn layer(n: usize, k: usize) -> Layer {
    Layer {
        name: format!("l{n}x{k}"),
        n,
        k,
    }
}

fn measured(tile_m: u32, median_us: Option<f64>, status: &str) -> Measurement {
    Measurement {
        config: ConfigRecord {
            family: "sm90".into(),
            tile_m,
            tile_n: 128,
            tile_k: 64,
            warps: 12,
            stages: 4,
            split_k: 1,
        },
        est_us: Some(1.0),
        median_us,
        p10_us: median_us,
        p90_us: median_us,
        samples: 10,
        rel_err: Some(1e-4),
        status: status.into(),
    }
}

#[test]
fn cases_take_m_at_its_bucket_once_grouped_by_layer() {
    let layers = [layer(4096, 4096), layer(1024, 4096)];
    let none = EpilogueKind::None;
    let c = cases(
        &layers,
        &[16, 9, 100, 128, 3],
        &[DType::F16, DType::BF16],
        &[none],
    )
    .unwrap();
    // Buckets 4, 16, 128 for each layer and dtype, M ascending within a layer.
    assert_eq!(c.len(), 2 * 2 * 3);
    let ms: Vec<usize> = c.iter().take(3).map(|c| c.m).collect();
    assert_eq!(ms, [4, 16, 128]);
    assert!(c[..3]
        .iter()
        .all(|c| c.layer.n == 4096 && c.dtype == DType::F16));
    assert_eq!(c[6].dtype, DType::BF16);
    assert_eq!(c[0].label(), "l4096x4096 4096×4096 M=4 f16 plain");

    let fused = cases(
        &layers,
        &[16],
        &[DType::F16],
        &[none, EpilogueKind::BiasSilu],
    )
    .unwrap();
    assert_eq!(fused.len(), 4);
    let e = cases(
        &layers,
        &[16],
        &[DType::F16],
        &[EpilogueKind::Relu, EpilogueKind::BiasSilu],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("relu and bias_silu are both of class fused"),
        "{e}"
    );
    assert!(cases(&layers, &[0], &[DType::F16], &[none]).is_err());
}

#[test]
fn a_rerun_skips_the_cases_the_table_holds_for_this_gpu() {
    let all = cases(
        &[layer(4096, 4096)],
        &[16, 32, 64],
        &[DType::F16],
        &[EpilogueKind::None],
    )
    .unwrap();
    let mut table = TuningTable::default();
    assert_eq!(pending(&table, &all, "NVIDIA H200").len(), 3);
    let target = target("h200").unwrap();
    let e = entry(
        &all[1],
        "NVIDIA H200",
        cost_model_pick(&all[1], target).as_ref(),
        vec![],
        "test",
    );
    assert_eq!(e.winner, None);
    table.insert(e);
    let left = pending(&table, &all, "NVIDIA H200");
    assert_eq!(left, [&all[0], &all[2]]);
    // Another GPU's entries do not count, nor another dtype's.
    assert_eq!(pending(&table, &all, "NVIDIA H100 80GB HBM3").len(), 3);
    let bf16 = cases(
        &[layer(4096, 4096)],
        &[32],
        &[DType::BF16],
        &[EpilogueKind::None],
    )
    .unwrap();
    assert_eq!(pending(&table, &bf16, "NVIDIA H200").len(), 1);
    // The table as saved and read back resumes the same way.
    let path = std::env::temp_dir().join(format!("sf-tune-resume-{}.json", std::process::id()));
    table.save(&path).unwrap();
    let again = TuningTable::load_or_empty(&path).unwrap();
    assert_eq!(pending(&again, &all, "NVIDIA H200"), left);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_winner_is_the_fastest_configuration_measured_correct() {
    let ms = [
        measured(64, None, "wrong result: rel err vs oracle 1.0e0"),
        measured(128, Some(20.0), STATUS_OK),
        measured(192, Some(15.0), STATUS_OK),
        measured(256, Some(15.0), STATUS_OK),
        measured(256, Some(1.0), "failed: launch"),
    ];
    assert_eq!(winner(&ms).unwrap().tile_m, 192, "fastest, first of equals");
    assert_eq!(winner(&ms[..1]), None);
    assert_eq!(winner(&[]), None);
}

#[test]
fn an_entry_records_the_case_the_winner_and_the_cost_models_pick() {
    let c = &cases(
        &[layer(14336, 4096)],
        &[512],
        &[DType::BF16],
        &[EpilogueKind::BiasSilu],
    )
    .unwrap()[0];
    let target = target("h200").unwrap();
    let all = families(None).unwrap();
    let cands = candidates(c, target, 2, &all);
    // The top 2 of every family, plus each family's best of every token-tile height they lack.
    assert!(!cands.is_empty());
    for f in &all {
        let of: Vec<_> = cands.iter().filter(|t| t.config.family == *f).collect();
        let extra = &of[of.len().min(2)..];
        assert!(extra
            .iter()
            .all(|t| of[..2].iter().all(|k| k.config.tile_m != t.config.tile_m)));
    }
    let pick = cost_model_pick(c, target).unwrap();
    assert!(
        cands.iter().any(|t| t.config == pick),
        "the cost model's pick is measured"
    );
    let e = entry(
        c,
        "NVIDIA H200",
        Some(&pick),
        vec![measured(128, Some(3.0), STATUS_OK)],
        "m",
    );
    assert_eq!(
        e.key.to_string(),
        "NVIDIA H200 14336x4096 M bucket 512 bf16 fused"
    );
    assert_eq!(e.measured_epilogue, EpilogueKind::BiasSilu);
    assert_eq!(e.winner.as_ref().unwrap().tile_m, 128);
    assert_eq!(e.cost_model, Some(ConfigRecord::from(&pick)));
    assert!(e.build.starts_with("sparseflow "));
    // A table holding it parses back (the winner is among its correct measurements).
    let mut t = TuningTable::default();
    t.insert(e);
    let text = serde_json::to_string(&t).unwrap();
    assert_eq!(TuningTable::parse(&text, "x").unwrap(), t);
}

#[test]
fn an_unfinished_configuration_is_named_beside_the_table_and_not_run_again() {
    let dir = std::env::temp_dir().join(format!("sf-tune-inflight-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("h200.json");
    let marker = inflight_path(&out);
    assert_eq!(marker, dir.join("h200.json.inflight"));
    assert_eq!(
        read_inflight(&marker).unwrap(),
        None,
        "no marker: nothing unfinished"
    );

    let case = &cases(
        &[layer(1024, 4096)],
        &[256],
        &[DType::F16],
        &[EpilogueKind::None],
    )
    .unwrap()[0];
    let config = measured(128, None, "").config;
    let m = InFlight {
        case: case.label(),
        config: config.clone(),
    };
    std::fs::write(&marker, serde_json::to_string(&m).unwrap()).unwrap();
    let read = read_inflight(&marker).unwrap();
    assert_eq!(read.as_ref(), Some(&m));
    assert!(is_unfinished(read.as_ref(), case, &config));
    let other = measured(256, None, "").config;
    assert!(
        !is_unfinished(read.as_ref(), case, &other),
        "only that configuration"
    );
    let other_case = &cases(
        &[layer(1024, 4096)],
        &[512],
        &[DType::F16],
        &[EpilogueKind::None],
    )
    .unwrap()[0];
    assert!(
        !is_unfinished(read.as_ref(), other_case, &config),
        "only that case"
    );

    std::fs::write(&marker, "{ not json").unwrap();
    let e = read_inflight(&marker).unwrap_err().to_string();
    assert!(
        e.contains("h200.json.inflight") && e.contains("delete it"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_disarmed_watchdog_lets_the_run_go_on() {
    // Armed and disarmed around each configuration: past its limit with nothing armed, the
    // process must still be here (an armed one past its limit exits; that path is the device
    // script's retry, scripts/device/tune.sh).
    let w = Watchdog::start(std::time::Duration::from_millis(100));
    w.arm();
    w.disarm();
    std::thread::sleep(std::time::Duration::from_millis(1200));
}

#[test]
fn families_narrow_the_candidates_and_unknown_names_are_errors() {
    let all = families(None).unwrap();
    assert!(all.contains(&"sm90") && all.contains(&"sm90a") && all.contains(&"decode"));
    assert_eq!(
        families(Some("sm90a, sm90")).unwrap(),
        vec!["sm90a", "sm90"]
    );
    let e = families(Some("sm90,nope")).unwrap_err().to_string();
    assert!(e.contains("\"nope\"") && e.contains("registered: "), "{e}");
    assert!(families(Some(" , ")).is_err());
    let c = &cases(
        &[layer(4096, 4096)],
        &[256],
        &[DType::F16],
        &[EpilogueKind::None],
    )
    .unwrap()[0];
    let target = target("h200").unwrap();
    let only = candidates(c, target, 4, &["sm90a"]);
    assert!(!only.is_empty() && only.iter().all(|t| t.config.family == "sm90a"));
}

#[test]
fn the_other_epilogue_class_winner_joins_the_candidates() {
    let target = target("h200").unwrap();
    let gpu = "NVIDIA H200";
    let both = cases(
        &[layer(14336, 4096)],
        &[64],
        &[DType::BF16],
        &[EpilogueKind::None, EpilogueKind::Silu],
    )
    .unwrap();
    let (plain, fused) = (&both[0], &both[1]);
    // The plain class's winner: a 64-token sm90 tile with 128-wide K stages (the H200's).
    let mut winner = measured(64, Some(20.0), STATUS_OK);
    winner.config.tile_k = 128;
    let mut table = TuningTable::default();
    table.insert(entry(plain, gpu, None, vec![winner.clone()], "test"));
    let cfg = winner.config.resolve(Registry::builtin().models()).unwrap();
    let offered = candidates(fused, target, 1, &["sm90"]);
    assert!(
        !offered.iter().any(|c| c.config == cfg),
        "the cost model's top 1 is another tile"
    );
    let with = with_sibling_winner(offered.clone(), fused, &table, gpu, target, &["sm90"]);
    assert_eq!(with.len(), offered.len() + 1);
    assert_eq!(with.last().unwrap().config, cfg);
    // Not for a family the run leaves out, another GPU, or when already offered.
    assert_eq!(
        with_sibling_winner(offered.clone(), fused, &table, gpu, target, &["sm90a"]),
        offered
    );
    assert_eq!(
        with_sibling_winner(offered.clone(), fused, &table, "other", target, &["sm90"]),
        offered
    );
    assert_eq!(
        with_sibling_winner(with.clone(), fused, &table, gpu, target, &["sm90"]),
        with
    );
}
