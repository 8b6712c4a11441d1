//! Seeded, time-bounded fuzzing of the IR parser and of what `sparseflow opt` does after it
//! (verify, fuse-epilogue, select-tiles, canonicalize, print), starting from the golden files
//! in tests/ir/. Mutations: bit flips, random bytes, truncations (also inside a UTF-8
//! sequence), deleted and duplicated ranges, token swaps, huge numbers, deep nesting,
//! non-UTF-8 bytes, splices from other files, size bombs.
//!
//! Asserts for every input: no panic (`catch_unwind`), every failure is an `Err` whose message
//! is not empty and whose parse location lies inside the input, and no input runs longer than
//! [`PER_INPUT_LIMIT`] (a hang fails the test with the input instead of stalling CI). The run
//! stops after [`MAX_INPUTS`] inputs or [`BUDGET`], whichever comes first; the inputs are one
//! seeded sequence, so input #i is the same on every machine. The figures go to stderr
//! (`cargo test -p sparseflow-ir --test fuzz_parser -- --nocapture`) and docs/RELIABILITY.md.
//! A longer run of the same sequence: `SPARSEFLOW_FUZZ_INPUTS=50000 SPARSEFLOW_FUZZ_SECONDS=120`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::FAMILIES;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparseflow_ir::{
    parse_module, parse_module_bytes, print_module, IrError, PassContext, PassManager, TARGETS,
};

const SEED: u64 = 0x0025_f022;
const MAX_INPUTS: usize = 4_000;
const BUDGET: Duration = Duration::from_secs(4);
/// Fewer inputs than this within the budget means the harness itself got slow.
const MIN_INPUTS: usize = 500;
const PER_INPUT_LIMIT: Duration = Duration::from_secs(5);

const HUGE_NUMBERS: &[&str] = &[
    "0",
    "2147483647",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e308",
    "1e999",
    "-1",
    "-0.0",
    "0x10",
];

const SNIPPETS: &[&str] = &[
    "func.func @g() {\n}\n",
    "tensor<",
    "!sparseflow.sparse24<",
    "?x",
    "xf16>",
    "xi8>",
    "%0",
    "%b",
    "@f",
    "->",
    ":",
    ",",
    "=",
    "\"",
    "\\",
    "//",
    "\n",
    "{epilogue = \"bias_relu\"}",
    "{tile_m = 4294967296}",
    "arith.addf %b, %0 : (tensor<32xf16>, tensor<?x32xf16>) -> tensor<?x32xf16>",
    "sparseflow.fused_sparse_gemm",
    "return",
    "é",
    "\u{0}",
    "\u{feff}",
    "\r\n",
];

/// Byte sequences that are not UTF-8: lone continuation, truncated lead, overlong, surrogate,
/// out of range.
const NOT_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
];

/// `name`'s value from the environment when set and numeric, else `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ir");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mlir"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
        .collect()
}

fn range(rng: &mut ChaCha8Rng, len: usize, max: usize) -> (usize, usize) {
    let at = rng.random_range(0..=len);
    let n = rng.random_range(0..=max).min(len - at);
    (at, at + n)
}

/// Byte ranges of whitespace-separated tokens.
fn tokens(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, b) in s.iter().enumerate() {
        match (b.is_ascii_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(st)) => {
                out.push((st, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, s.len()));
    }
    out
}

fn mutate_once(rng: &mut ChaCha8Rng, s: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = s.len();
    match rng.random_range(0..12) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            s[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            s[i] = rng.random();
        }
        2 => s.truncate(rng.random_range(0..=len)),
        3 => {
            let (a, b) = range(rng, len, 40);
            s.drain(a..b);
        }
        4 => {
            let (a, b) = range(rng, len, 200);
            let chunk = s[a..b].to_vec();
            let at = rng.random_range(0..=s.len());
            s.splice(at..at, chunk);
        }
        5 => {
            let toks = tokens(s);
            if toks.len() >= 2 {
                let i = rng.random_range(0..toks.len());
                let j = rng.random_range(0..toks.len());
                let (first, second) = if toks[i].0 <= toks[j].0 {
                    (toks[i], toks[j])
                } else {
                    (toks[j], toks[i])
                };
                if first.1 <= second.0 {
                    let mut out = s[..first.0].to_vec();
                    out.extend_from_slice(&s[second.0..second.1]);
                    out.extend_from_slice(&s[first.1..second.0]);
                    out.extend_from_slice(&s[first.0..first.1]);
                    out.extend_from_slice(&s[second.1..]);
                    *s = out;
                }
            }
        }
        6 => {
            // Replace one run of digits by a huge (or odd) number.
            let runs: Vec<(usize, usize)> = tokens(s)
                .into_iter()
                .flat_map(|(a, b)| {
                    let mut v = Vec::new();
                    let mut i = a;
                    while i < b {
                        if s[i].is_ascii_digit() {
                            let st = i;
                            while i < b && s[i].is_ascii_digit() {
                                i += 1;
                            }
                            v.push((st, i));
                        } else {
                            i += 1;
                        }
                    }
                    v
                })
                .collect();
            if !runs.is_empty() {
                let (a, b) = runs[rng.random_range(0..runs.len())];
                let n = HUGE_NUMBERS[rng.random_range(0..HUGE_NUMBERS.len())];
                s.splice(a..b, n.bytes());
            }
        }
        7 => {
            // Deep nesting: thousands of openers (or openers and closers) at one place.
            let unit: &[u8] = match rng.random_range(0..5) {
                0 => b"(",
                1 => b"{",
                2 => b"tensor<",
                3 => b"[",
                _ => b"<(",
            };
            let depth = rng.random_range(100..20_000);
            let at = rng.random_range(0..=len);
            let mut nest = unit.repeat(depth);
            if rng.random_bool(0.5) {
                nest.extend(unit.iter().rev().map(|&c| match c {
                    b'(' => b')',
                    b'{' => b'}',
                    b'[' => b']',
                    _ => b'>',
                }));
            }
            s.splice(at..at, nest);
        }
        8 => {
            let snip = SNIPPETS[rng.random_range(0..SNIPPETS.len())];
            let at = rng.random_range(0..=len);
            s.splice(at..at, snip.bytes());
        }
        9 => {
            let bad = NOT_UTF8[rng.random_range(0..NOT_UTF8.len())];
            let at = rng.random_range(0..=len);
            s.splice(at..at, bad.iter().copied());
        }
        10 => {
            let other = &corpus[rng.random_range(0..corpus.len())];
            let (a, b) = range(rng, other.len(), 400);
            let at = rng.random_range(0..=len);
            s.splice(at..at, other[a..b].iter().copied());
        }
        _ => {
            // Size bomb: one line repeated (many ops, long lines), capped at ~1 MB.
            let (a, b) = range(rng, len, 120);
            let times = rng.random_range(2..(1_000_000 / (b - a).max(1)).clamp(3, 5_000));
            let chunk = s[a..b].repeat(times);
            s.splice(b..b, chunk);
        }
    }
}

fn input(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    if rng.random_ratio(1, 20) {
        let n = rng.random_range(0..300);
        return (0..n).map(|_| rng.random()).collect();
    }
    let mut s = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        mutate_once(rng, &mut s, corpus);
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    ParseError,
    VerifyOrPassError,
    Optimized,
}

/// What `sparseflow opt --pass-pipeline=fuse-epilogue,select-tiles,canonicalize` does with the
/// bytes. `Err` describes a broken promise (an empty message, a location outside the input, a
/// pass that produced invalid IR, output that does not parse back).
fn exercise(bytes: &[u8], target: usize) -> Result<Outcome, String> {
    let clear = |e: &IrError| -> Result<(), String> {
        let msg = e.to_string();
        if msg.trim().is_empty() {
            return Err(format!("error with an empty message: {e:?}"));
        }
        if let IrError::PassBrokeIr { .. } = e {
            return Err(format!("a pass broke the IR: {msg}"));
        }
        Ok(())
    };
    let mut module = match parse_module_bytes(bytes) {
        Ok(m) => m,
        Err(e) => {
            clear(&e)?;
            let IrError::Parse { loc, .. } = e else {
                return Err(format!("parse failed with a non-parse error: {e}"));
            };
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            if loc.line == 0 || loc.col == 0 || loc.line as usize > lines {
                return Err(format!(
                    "parse error at {loc}, outside the input ({lines} lines)"
                ));
            }
            return Ok(Outcome::ParseError);
        }
    };
    let mut cx = PassContext::new(Some(&TARGETS[target % TARGETS.len()])).with_families(FAMILIES);
    cx.explain = true;
    let pipeline = PassManager::parse_pipeline("fuse-epilogue,select-tiles,canonicalize")
        .map_err(|e| e.to_string())?;
    if let Err(e) = pipeline.run(&mut module, &mut cx) {
        clear(&e)?;
        return Ok(Outcome::VerifyOrPassError);
    }
    let printed = print_module(&module);
    let again = parse_module(&printed).map_err(|e| format!("output does not parse: {e}"))?;
    if print_module(&again) != printed {
        return Err("output does not round-trip".into());
    }
    Ok(Outcome::Optimized)
}

#[derive(Debug, Default)]
struct Figures {
    tried: usize,
    parse_errors: usize,
    verify_or_pass_errors: usize,
    optimized: usize,
    not_utf8: usize,
    crashes: Vec<String>,
    broken_promises: Vec<String>,
    slowest: Duration,
    largest_bytes: usize,
}

enum Msg {
    Done {
        index: usize,
        bytes: Vec<u8>,
        result: Result<Result<Outcome, String>, String>,
        took: Duration,
    },
    Finished,
}

fn excerpt(bytes: &[u8]) -> String {
    let head: Vec<u8> = bytes.iter().take(300).copied().collect();
    format!(
        "{} bytes, starting {:?}",
        bytes.len(),
        String::from_utf8_lossy(&head)
    )
}

#[test]
fn fuzzed_ir_never_crashes_hangs_or_fails_unclearly() {
    let corpus = corpus();
    assert!(corpus.len() >= 25, "golden corpus too small");
    let current: Arc<Mutex<(usize, Vec<u8>)>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let worker_current = Arc::clone(&current);
    // Panics are caught and counted; keep their default report off the test output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let max_inputs = env_or("SPARSEFLOW_FUZZ_INPUTS", MAX_INPUTS as u64) as usize;
    let budget = Duration::from_secs(env_or("SPARSEFLOW_FUZZ_SECONDS", BUDGET.as_secs()));
    let start = Instant::now();
    let worker = std::thread::spawn(move || {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        for i in 0..max_inputs {
            if start.elapsed() > budget {
                break;
            }
            let bytes = input(&mut rng, &corpus);
            let target = rng.random_range(0..TARGETS.len());
            if let Ok(mut c) = worker_current.lock() {
                *c = (i, bytes.clone());
            }
            let t = Instant::now();
            let result =
                catch_unwind(AssertUnwindSafe(|| exercise(&bytes, target))).map_err(|payload| {
                    payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "non-string panic".into())
                });
            let took = t.elapsed();
            let done = Msg::Done {
                index: i,
                bytes,
                result,
                took,
            };
            if tx.send(done).is_err() {
                return;
            }
        }
        let _ = tx.send(Msg::Finished);
    });

    let mut fig = Figures::default();
    loop {
        let msg = match rx.recv_timeout(PER_INPUT_LIMIT) {
            Ok(m) => m,
            Err(_) => {
                std::panic::set_hook(default_hook);
                let (i, bytes) = current.lock().map(|c| c.clone()).unwrap_or_default();
                panic!(
                    "HANG: seed {SEED:#x} input #{i} ran longer than {PER_INPUT_LIMIT:?}: {}",
                    excerpt(&bytes)
                );
            }
        };
        let Msg::Done {
            index: i,
            bytes,
            result,
            took,
        } = msg
        else {
            break;
        };
        fig.tried += 1;
        fig.slowest = fig.slowest.max(took);
        fig.largest_bytes = fig.largest_bytes.max(bytes.len());
        fig.not_utf8 += usize::from(std::str::from_utf8(&bytes).is_err());
        match result {
            Ok(Ok(Outcome::ParseError)) => fig.parse_errors += 1,
            Ok(Ok(Outcome::VerifyOrPassError)) => fig.verify_or_pass_errors += 1,
            Ok(Ok(Outcome::Optimized)) => fig.optimized += 1,
            Ok(Err(why)) => fig
                .broken_promises
                .push(format!("input #{i}: {why}\n  {}", excerpt(&bytes))),
            Err(panic) => fig
                .crashes
                .push(format!("input #{i}: panic: {panic}\n  {}", excerpt(&bytes))),
        }
    }
    std::panic::set_hook(default_hook);
    let _ = worker.join();
    eprintln!(
        "fuzz_parser (seed {SEED:#x}): {} inputs in {:.1} s ({} not UTF-8, largest {} bytes): \
         {} parse errors, {} verify/pass errors, {} optimized and printed; \
         {} crashes, 0 hangs (slowest input {:.0} ms), {} unclear errors",
        fig.tried,
        start.elapsed().as_secs_f64(),
        fig.not_utf8,
        fig.largest_bytes,
        fig.parse_errors,
        fig.verify_or_pass_errors,
        fig.optimized,
        fig.crashes.len(),
        fig.slowest.as_secs_f64() * 1e3,
        fig.broken_promises.len(),
    );
    assert!(
        fig.crashes.is_empty() && fig.broken_promises.is_empty(),
        "seed {SEED:#x}: {} crash(es), {} unclear error(s):\n{}",
        fig.crashes.len(),
        fig.broken_promises.len(),
        fig.crashes
            .iter()
            .chain(&fig.broken_promises)
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        fig.tried >= MIN_INPUTS.min(max_inputs),
        "only {} inputs in {budget:?}; the fuzz harness got slow",
        fig.tried
    );
    // The mutations must reach past the parser, not only its error paths.
    assert!(
        fig.verify_or_pass_errors > 0 && fig.optimized > 0,
        "coverage: {fig:?}"
    );
}
