//! Planning with tuning tables, over the built-in families: a measured winner replaces the cost
//! model's choice and the plan says so; a winner that is no longer legal falls back with the
//! reason; the user's table comes first; what `sparseflow tune` measures per family.

use sparseflow_codegen::{PlannedKernel, Registry};
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::select::{rank, top_k_per_family};
use sparseflow_ir::tuning::{ConfigRecord, Measurement, TuningEntry, TuningKey, STATUS_OK};
use sparseflow_ir::{
    parse_module, target, DeviceFacts, GemmShape, KernelConfig, LayerProblem, PassContext,
    PassManager, PlanSource, Target, TileChoice, Tuning, TuningTable,
};

fn problem(m: u64) -> LayerProblem {
    LayerProblem {
        m,
        n: 4096,
        k: 4096,
        dtype: DType::F16,
        epilogue: EpilogueKind::None,
    }
}

fn h200() -> &'static Target {
    target("h200").unwrap()
}

/// A table for the H200 whose entry for `p` measured `winner` fastest.
fn table_with(p: &LayerProblem, winner: ConfigRecord) -> TuningTable {
    let key = TuningKey::new("NVIDIA H200", p.n, p.k, p.m, p.dtype, p.epilogue).unwrap();
    let mut t = TuningTable::default();
    t.insert(TuningEntry {
        key,
        measured_epilogue: p.epilogue,
        winner: Some(winner.clone()),
        cost_model: None,
        measurements: vec![Measurement {
            config: winner,
            est_us: None,
            median_us: Some(12.5),
            p10_us: Some(12.0),
            p90_us: Some(13.0),
            samples: 10,
            rel_err: Some(1e-4),
            status: STATUS_OK.into(),
        }],
        build: "sparseflow test".into(),
        date_utc: "2026-12-01T00:00:00Z".into(),
        method: "test".into(),
    });
    t
}

fn tuning(tables: &[(&str, &TuningTable)]) -> Tuning {
    Tuning::new(
        tables
            .iter()
            .map(|(name, t)| (name.to_string(), (*t).clone()))
            .collect(),
    )
}

fn plan(p: &LayerProblem, target: &Target, t: &Tuning) -> PlannedKernel {
    Registry::builtin().plan_with(p, target, t).unwrap()
}

/// The cost model's second choice at `p.m`: legal, and not what it plans.
fn runner_up(p: &LayerProblem) -> KernelConfig {
    let shape = GemmShape {
        m: Some(p.m),
        n: p.n,
        k: p.k,
        dtype: p.dtype,
    };
    rank(Registry::builtin().models(), &shape, p.m, h200())[1].config
}

fn why(source: &PlanSource) -> &str {
    match source {
        PlanSource::CostModel { why } => why,
        PlanSource::Tuned { .. } => panic!("tuned: {source}"),
    }
}

#[test]
fn a_measured_winner_replaces_the_cost_models_choice_and_the_plan_says_so() {
    let p = problem(512);
    let by_model = plan(&p, h200(), Tuning::none());
    assert!(!by_model.plan.source.is_tuned());
    assert!(why(&by_model.plan.source)
        .contains("no tuning entry for NVIDIA H200 4096x4096 M bucket 512 f16 plain"));

    let second = runner_up(&p);
    assert_ne!(second, by_model.plan.config);
    let t = table_with(&p, (&second).into());
    let tuned = plan(&p, h200(), &tuning(&[("mine.json", &t)]));
    assert_eq!(tuned.plan.config, second);
    assert_eq!(tuned.spec.config, second);
    assert_eq!(tuned.plan.source.label(), "tuned");
    let text = tuned.plan.source.to_string();
    assert!(
        text.starts_with("tuned (table mine.json: 12.5 us median"),
        "{text}"
    );
    assert!(tuned
        .plan
        .ir_text
        .contains(&format!("tile_m = {}", second.tile_m)));

    // Every M of the bucket, and the GPU's own target (the name its driver reports) too.
    assert_eq!(
        plan(&problem(300), h200(), &tuning(&[("t", &t)]))
            .plan
            .config,
        second
    );
    let device = Target::for_device(&DeviceFacts {
        name: "NVIDIA H200".into(),
        compute_capability: (9, 0),
        sm_count: 132,
        smem_per_sm: 233472,
        max_smem_per_block: 232448,
        regs_per_sm: 65536,
        max_threads_per_sm: 2048,
        max_blocks_per_sm: 32,
        l2_bytes: 62914560,
    });
    assert_eq!(plan(&p, &device, &tuning(&[("t", &t)])).plan.config, second);
    // Another GPU, bucket, dtype or epilogue class: the cost model.
    let others = [
        (problem(1024), h200()),
        (p, target("sm_90a").unwrap()),
        (
            LayerProblem {
                dtype: DType::BF16,
                ..p
            },
            h200(),
        ),
        (
            LayerProblem {
                epilogue: EpilogueKind::Relu,
                ..p
            },
            h200(),
        ),
    ];
    for (q, tg) in others {
        assert!(
            !plan(&q, tg, &tuning(&[("t", &t)])).plan.source.is_tuned(),
            "{q:?} {}",
            tg.name
        );
    }
}

#[test]
fn measurement_sets_the_decode_hopper_crossover() {
    // At 32 tokens the cost model does not rank the Hopper family at all (decode streams the
    // weight); a table that measured it faster there moves the crossover.
    let p = problem(32);
    assert_eq!(
        plan(&p, h200(), Tuning::none()).plan.config.family,
        "decode"
    );
    let shape = GemmShape {
        m: Some(32),
        n: 4096,
        k: 4096,
        dtype: DType::F16,
    };
    let sm90 = top_k_per_family(Registry::builtin().models(), &shape, 32, h200(), 8)
        .into_iter()
        .find(|c| c.config.family == "sm90")
        .expect("tune measures the Hopper family at M = 32");
    let t = table_with(&p, (&sm90.config).into());
    let tuned = plan(&p, h200(), &tuning(&[("t", &t)]));
    assert_eq!(tuned.plan.config, sm90.config);
}

#[test]
fn a_winner_that_is_no_longer_legal_falls_back_to_the_cost_model_with_the_reason() {
    let p = problem(512);
    let by_model = plan(&p, h200(), Tuning::none()).plan.config;
    let mut unknown: ConfigRecord = (&by_model).into();
    unknown.family = "retired".into();
    let decode = ConfigRecord {
        family: "decode".into(),
        tile_m: 16,
        tile_n: 32,
        tile_k: 256,
        warps: 4,
        stages: 2,
        split_k: 4,
    };
    let mut off_space: ConfigRecord = (&by_model).into();
    off_space.tile_k = 96;
    for (winner, reason) in [
        (unknown, "family 'retired' is not registered"),
        (decode, "handles M <= 64"),
        (off_space, "tile_k = 96 is not supported"),
    ] {
        let t = table_with(&p, winner.clone());
        let planned = plan(&p, h200(), &tuning(&[("old.json", &t)]));
        assert_eq!(planned.plan.config, by_model, "{winner}");
        let why = why(&planned.plan.source);
        assert!(
            why.contains("old.json: winner") && why.contains(reason),
            "{why}"
        );
    }
}

#[test]
fn the_first_table_with_a_legal_winner_decides() {
    let p = problem(512);
    let second: ConfigRecord = (&runner_up(&p)).into();
    let by_model = plan(&p, h200(), Tuning::none()).plan.config;
    let user = table_with(&p, (&by_model).into());
    let embedded = table_with(&p, second.clone());
    let both = tuning(&[("user.json", &user), ("h200.json (embedded)", &embedded)]);
    let planned = plan(&p, h200(), &both);
    assert_eq!(planned.plan.config, by_model);
    assert!(planned.plan.source.to_string().contains("table user.json"));
    // Without the user's entry, the embedded one.
    let only = tuning(&[
        ("user.json", &TuningTable::default()),
        ("h200.json (embedded)", &embedded),
    ]);
    let planned = plan(&p, h200(), &only);
    assert_eq!(ConfigRecord::from(&planned.plan.config), second);
    assert!(planned
        .plan
        .source
        .to_string()
        .contains("h200.json (embedded)"));
    // A user winner that is refused gives way to the next table.
    let mut bad = ConfigRecord::from(&by_model);
    bad.family = "retired".into();
    let refused = tuning(&[
        ("user.json", &table_with(&p, bad)),
        ("h200.json (embedded)", &embedded),
    ]);
    assert_eq!(
        ConfigRecord::from(&plan(&p, h200(), &refused).plan.config),
        second
    );
}

#[test]
fn select_tiles_explain_names_the_source() {
    let p = problem(512);
    let second = runner_up(&p);
    let t = tuning(&[("mine.json", &table_with(&p, (&second).into()))]);
    let ir = "func.func @f(%x: tensor<512x4096xf16>, %w: !sparseflow.sparse24<4096x4096xf16>) -> tensor<512x4096xf16> {
  %0 = sparseflow.sparse_gemm %x, %w : (tensor<512x4096xf16>, !sparseflow.sparse24<4096x4096xf16>) -> tensor<512x4096xf16>
  return %0 : tensor<512x4096xf16>
}
";
    let explain = |tuning: &Tuning| {
        let mut module = parse_module(ir).unwrap();
        let mut cx = PassContext::new(Some(h200()))
            .with_families(Registry::builtin().models())
            .with_tuning(tuning);
        cx.explain = true;
        PassManager::parse_pipeline("fuse-epilogue,select-tiles")
            .unwrap()
            .run(&mut module, &mut cx)
            .unwrap();
        cx.notes.join("\n")
    };
    let tuned = explain(&t);
    assert!(
        tuned.contains("chosen by tuned (table mine.json: 12.5 us median"),
        "{tuned}"
    );
    assert!(tuned.contains(&second.describe_tiles()), "{tuned}");
    let model = explain(Tuning::none());
    assert!(model.contains("chosen by cost model (no tuning entry for NVIDIA H200 4096x4096 M bucket 512 f16 plain)"), "{model}");
}

#[test]
fn an_explicit_configuration_gets_its_kernel_only_where_it_is_legal() {
    let r = Registry::builtin();
    let p = problem(512);
    let second = runner_up(&p);
    assert_eq!(r.kernel_for(&p, h200(), second).unwrap().config, second);
    let decode = KernelConfig {
        family: "decode",
        tile_m: 16,
        tile_n: 32,
        tile_k: 256,
        warps: 4,
        stages: 2,
        split_k: 4,
    };
    let e = r.kernel_for(&p, h200(), decode).unwrap_err().to_string();
    assert!(
        e.contains("cannot serve M=512") && e.contains("handles M <= 64"),
        "{e}"
    );
    assert!(r.kernel_for(&problem(16), h200(), decode).is_ok());
}

#[test]
fn tune_measures_the_best_few_of_every_family_that_can_run_the_m() {
    let families = Registry::builtin().models();
    let shape = GemmShape {
        m: None,
        n: 14336,
        k: 4096,
        dtype: DType::BF16,
    };
    // At M = 16 the Hopper families offer nothing: their smallest token tile, 64, is more than
    // twice M.
    for (m, expect) in [
        (16, &["sm80", "decode"][..]),
        (
            32,
            &[
                "sm80", "decode", "sm90", "sm90a", "sm90d2", "sm90sk", "sm90c2", "sm90c4",
            ],
        ),
        (
            64,
            &[
                "sm80", "decode", "sm90", "sm90a", "sm90d2", "sm90sk", "sm90c2", "sm90c4",
            ],
        ),
        (
            128,
            &[
                "sm80", "sm90", "sm90a", "sm90d2", "sm90sk", "sm90c2", "sm90c4",
            ],
        ),
    ] {
        let picked = top_k_per_family(families, &shape, m, h200(), 3);
        let mut names: Vec<&str> = picked.iter().map(|c| c.config.family).collect();
        names.dedup();
        assert_eq!(names, expect, "M = {m}");
        for f in expect {
            let of: Vec<&TileChoice> = picked.iter().filter(|c| c.config.family == *f).collect();
            let (top, extra) = of.split_at(of.len().min(3));
            assert!(!top.is_empty(), "{f} at M = {m}");
            assert!(
                of.windows(2).all(|w| w[0].est_us <= w[1].est_us),
                "{f} best first"
            );
            // Past its top 3, a family adds only token-tile heights the top 3 lacks, one each.
            let mut heights: Vec<u32> = top.iter().map(|c| c.config.tile_m).collect();
            for c in extra {
                assert!(!heights.contains(&c.config.tile_m), "{f} at M = {m}");
                heights.push(c.config.tile_m);
            }
            // ...so every height the family can run here is measured.
            let every = top_k_per_family(families, &shape, m, h200(), usize::MAX);
            assert!(
                every
                    .iter()
                    .filter(|c| c.config.family == *f)
                    .all(|c| heights.contains(&c.config.tile_m)),
                "{f} at M = {m}"
            );
        }
        // The cost model's own pick is among them.
        let best = rank(families, &shape, m, h200())[0].config;
        assert!(picked.iter().any(|c| c.config == best), "M = {m}");
    }
    // sm_80 has no Hopper kernel to measure.
    let sm80 = top_k_per_family(families, &shape, 512, target("sm_80").unwrap(), 8);
    assert!(sm80.iter().all(|c| c.config.family == "sm80"));
}

#[test]
fn measured_only_configurations_run_only_from_a_table() {
    // 1024x4096 (k_proj) at M = 256: few feature tiles, where the 64-feature sm90 CTA is offered.
    let p = LayerProblem {
        n: 1024,
        ..problem(256)
    };
    let shape = GemmShape {
        m: None,
        n: p.n,
        k: p.k,
        dtype: p.dtype,
    };
    let models = Registry::builtin().models();
    // The 64-feature and 5-stage sm90 CTAs and every sm90a (asynchronous loop), sm90d2 (two
    // stages in flight), sm90sk (stream-K), sm90c2 and sm90c4 (multicast cluster) configuration.
    let narrow = |c: &KernelConfig| {
        (c.family == "sm90" && (c.tile_n == 64 || c.stages > 4))
            || ["sm90a", "sm90d2", "sm90sk", "sm90c2", "sm90c4"].contains(&c.family)
    };
    // The cost model alone never ranks them, so planning without a table never picks them.
    assert!(!rank(models, &shape, p.m, h200())
        .iter()
        .any(|c| narrow(&c.config)));
    for m in [65, 128, 256, 512, 1024, 4096] {
        let planned = plan(&LayerProblem { m, ..p }, h200(), Tuning::none());
        assert!(
            !narrow(&planned.plan.config),
            "M={m}: {:?}",
            planned.plan.config
        );
    }
    // `tune` measures them, and a table that found one fastest is followed.
    let offered = top_k_per_family(models, &shape, p.m, h200(), 64);
    let measured = offered
        .iter()
        .map(|c| c.config)
        .find(narrow)
        .expect("tune offers the 64-feature CTA");
    assert_eq!(measured.warps, 8);
    let t = table_with(&p, ConfigRecord::from(&measured));
    let planned = plan(&p, h200(), &tuning(&[("t", &t)]));
    assert_eq!(planned.plan.config, measured);
    assert_eq!(planned.spec.config.tile_n, 64);
}
