//! `sparseflow opt`: parse, verify, run a pass pipeline, print IR — like `mlir-opt`.
//! IR goes to stdout; diagnostics go to stderr as `file:line:col: error: ...` and
//! the exit code is non-zero. `--explain` adds the passes' reasoning as `//`
//! comment lines before the IR, so the output still parses.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use sparseflow_codegen::Registry;
use sparseflow_ir::passes::PASSES;
use sparseflow_ir::{
    parse_module_bytes, print_module, target, IrError, PassContext, PassManager, Tuning,
};

#[derive(clap::Args)]
pub struct Args {
    /// IR file to read, or `-` for stdin.
    #[arg(required_unless_present_any = ["list_passes", "list_targets"])]
    input: Option<String>,
    /// Comma-separated passes to run in order, e.g. `fuse-epilogue,select-tiles,canonicalize`.
    #[arg(long = "pass-pipeline", default_value = "")]
    pass_pipeline: String,
    /// GPU target preset for select-tiles and tile verification (sm_80, sm_86, sm_89,
    /// sm_90a, h200).
    #[arg(long)]
    target: Option<String>,
    /// Print the passes' decisions (which source chose the tiles, tuning table or cost model,
    /// and the top candidates with their scores) as comments.
    #[arg(long)]
    explain: bool,
    /// List the available passes, one line each, and exit.
    #[arg(long)]
    list_passes: bool,
    /// List the known targets and exit.
    #[arg(long)]
    list_targets: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.list_passes {
        for p in PASSES {
            println!("{:<16} {}", p.name, p.summary);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.list_targets {
        for t in sparseflow_ir::TARGETS {
            println!("{:<8} {}", t.name, t.description);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let input = args.input.as_deref().unwrap_or("-");
    let (display, bytes) = if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        ("<stdin>".to_string(), buf)
    } else {
        let bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
        (input.to_string(), bytes)
    };

    let target = args.target.as_deref().map(target).transpose()?;
    let pipeline = PassManager::parse_pipeline(&args.pass_pipeline)?;
    let mut module = match parse_module_bytes(&bytes) {
        Ok(m) => m,
        Err(err) => return Ok(report(&display, &err)),
    };
    // The registered kernel families and the tuning tables: what the runtime plans with.
    let mut cx = PassContext::new(target)
        .with_families(Registry::builtin().models())
        .with_tuning(Tuning::active()?);
    cx.explain = args.explain;
    if let Err(err) = pipeline.run(&mut module, &mut cx) {
        return Ok(report(&display, &err));
    }
    let mut out = String::new();
    for note in &cx.notes {
        out.push_str("// ");
        out.push_str(note);
        out.push('\n');
    }
    out.push_str(&print_module(&module));
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Prints each diagnostic as `file:line:col: error: message` and returns failure.
fn report(file: &str, err: &IrError) -> ExitCode {
    match err {
        IrError::Parse { .. } => eprintln!("{file}:{err}"),
        _ if !err.diagnostics().is_empty() => {
            if let IrError::PassBrokeIr { pass, .. } = err {
                eprintln!("{file}: error: pass '{pass}' produced invalid IR (a bug in the pass):");
            }
            for d in err.diagnostics() {
                match d.loc {
                    Some(loc) => eprintln!("{file}:{loc}: error: '{}' op {}", d.op, d.message),
                    None => eprintln!("{file}: error: '{}' op {}", d.op, d.message),
                }
            }
        }
        _ => eprintln!("{file}: error: {err}"),
    }
    ExitCode::FAILURE
}
