//! Dev tool: compiles the kernels named on the command line (or a default set) and writes
//! `<name>.cubin` plus a `kernels.json` index into the output directory, for the device harness
//! in scripts/device/kernel_dev.py.
//! Usage: kernel_dev_dump OUT_DIR TARGET [--decode-bench | --decode-sweep [--variant TAG=FILE]...]
use sparseflow_codegen::families::{DECODE, SM80};
use sparseflow_codegen::{
    generate, Compiler, CompilerOptions, Family, GeneratedKernel, KernelSpec, Registry,
};
use sparseflow_core::{DType, EpilogueKind};
use sparseflow_ir::{FamilyModel, KernelConfig};

fn enumerate(family: &str, dtype: DType, epilogue: EpilogueKind, target: &str) -> Vec<KernelSpec> {
    Registry::builtin()
        .enumerate(family, dtype, epilogue, target)
        .unwrap()
}
use std::fmt::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(args.get(1).map(String::as_str).unwrap_or(".carry/kernels"));
    let target = args.get(2).cloned().unwrap_or_else(|| "sm_90a".into());
    std::fs::create_dir_all(&out).unwrap();
    let compiler = Compiler::with_options(CompilerOptions {
        use_cache: false,
        deny_spills: true,
        ..Default::default()
    })
    .unwrap();
    let decode_bench = args.iter().any(|a| a == "--decode-bench");
    // --decode-sweep: every f16 decode config plain and with bias_silu, plus experimental
    // variants of the template (`--variant TAG=FILE`, see `variants`) for kernel_dev.py.
    let decode_sweep = args.iter().any(|a| a == "--decode-sweep");
    assert!(
        decode_sweep || !args.iter().any(|a| a == "--variant"),
        "--variant needs --decode-sweep"
    );
    let mut specs = Vec::new();
    if decode_sweep {
        for epi in [EpilogueKind::None, EpilogueKind::BiasSilu] {
            specs.extend(enumerate("decode", DType::F16, epi, &target));
        }
    }
    if decode_bench {
        specs = enumerate("decode", DType::F16, EpilogueKind::None, &target);
        specs.extend(enumerate("sm80", DType::F16, EpilogueKind::None, &target));
        // Every decode config again with the fused epilogue the issue-7 overhead target names.
        specs.extend(enumerate(
            "decode",
            DType::F16,
            EpilogueKind::BiasSilu,
            &target,
        ));
    }
    for dtype in [DType::F16, DType::BF16] {
        if decode_bench || decode_sweep {
            break;
        }
        for epi in EpilogueKind::all() {
            let spec = |config| KernelSpec {
                config,
                dtype,
                epilogue: epi,
                target: target.clone(),
            };
            specs.push(spec(KernelConfig {
                family: SM80.name(),
                tile_m: 64,
                tile_n: 128,
                tile_k: 64,
                warps: 4,
                stages: 3,
                split_k: 1,
            }));
            specs.push(spec(KernelConfig {
                family: DECODE.name(),
                tile_m: 16,
                tile_n: 64,
                tile_k: 256,
                warps: 4,
                stages: 2,
                split_k: 4,
            }));
        }
        // every sm80 config and every decode config for `none`
        for fam in [SM80.name(), DECODE.name()] {
            for s in enumerate(fam, dtype, EpilogueKind::None, &target) {
                // bf16 decode differs from f16 only in the typedef: one config per epilogue above.
                let bf16_decode = fam == DECODE.name() && dtype == DType::BF16;
                if !bf16_decode && !specs.contains(&s) {
                    specs.push(s);
                }
            }
        }
    }
    let mut index = String::from("[\n");
    let kernels = specs.iter().flat_map(|s| {
        let g = generate(s).unwrap();
        let extra = if decode_sweep {
            variants(&g, &args)
        } else {
            Vec::new()
        };
        std::iter::once((g, String::new())).chain(extra)
    });
    for (g, variant) in kernels {
        let (s, cfg) = (&g.spec, &g.spec.config);
        let c = match compiler.compile(&g) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "SKIP {}: {}",
                    g.name,
                    e.to_string().lines().last().unwrap_or("")
                );
                continue;
            }
        };
        std::fs::write(out.join(format!("{}.cubin", g.name)), &c.cubin).unwrap();
        let regs = c
            .log
            .lines()
            .find(|l| l.contains("registers"))
            .unwrap_or("")
            .trim()
            .to_string();
        let _ = writeln!(
            index,
            "  {{\"name\": \"{}\", \"variant\": \"{}\", \"family\": \"{}\", \"dtype\": \"{}\", \"epilogue\": \"{}\", \"uses_bias\": {}, \"tile_m\": {}, \"tile_n\": {}, \"tile_k\": {}, \"warps\": {}, \"stages\": {}, \"split_k\": {}, \"threads\": {}, \"smem\": {}, \"regs\": \"{}\"}},",
            g.name, variant, cfg.family, s.dtype, s.epilogue.name(), s.epilogue.uses_bias(), cfg.tile_m, cfg.tile_n, cfg.tile_k, cfg.warps, cfg.stages, cfg.split_k,
            g.family.resources(cfg, s.dtype).threads, g.smem_bytes(), regs.replace('"', "'")
        );
    }
    index.pop();
    index.pop();
    index.push_str("\n]\n");
    std::fs::write(out.join("kernels.json"), index).unwrap();
    println!("{} specs -> {}", specs.len(), out.display());
}

/// Experimental variants of one generated decode kernel, as (kernel, variant tag): for each
/// `--variant TAG=FILE` on the command line, the same spec with FILE as the decode template and
/// `_TAG` appended to the entry-point name. Variants never reach the library; kernel_dev.py
/// times them beside the library's kernels (same config, same inputs).
fn variants(g: &GeneratedKernel, args: &[String]) -> Vec<(GeneratedKernel, String)> {
    if g.spec.config.family != DECODE.name() {
        return Vec::new();
    }
    // The decode template the library compiles; `--variant TAG=FILE` swaps it for FILE.
    let decode_cu = DECODE.template().text;
    args.windows(2)
        .filter(|w| w[0] == "--variant")
        .map(|w| {
            let (tag, file) = w[1].split_once('=').expect("--variant TAG=FILE");
            let template = std::fs::read_to_string(file).expect("variant template");
            let name = format!("{}_{tag}", g.name);
            assert!(
                g.source.contains(decode_cu),
                "decode template not found in the source"
            );
            let source = g.source.replace(decode_cu, &template).replace(
                &format!("#define SF_KERNEL_NAME {}\n", g.name),
                &format!("#define SF_KERNEL_NAME {name}\n"),
            );
            let kernel = GeneratedKernel {
                name,
                source,
                spec: g.spec.clone(),
                family: g.family,
            };
            (kernel, tag.to_string())
        })
        .collect()
}
