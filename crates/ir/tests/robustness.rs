//! The parser, verifier, passes and printer never panic: ≥10,000 mutated valid
//! files plus raw bytes per run, seeded so a failure reproduces.

mod common;

use common::FAMILIES;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparseflow_ir::{
    parse_module, print_module, verify_module, IrError, PassContext, PassManager, VerifyOptions,
    TARGETS,
};

const CASES: usize = 10_000;

/// Fragments that steer mutations towards interesting near-valid input.
const SNIPPETS: &[&str] = &[
    "%0", "%x", "%b", "?", "x", "0", "4", "18446744073709551616", "-1", "1e999", "{", "}", "(", ")", "<", ">", ":", ",",
    "=", "->", "\"", "\\", "//", "\n", "tensor<", "!sparseflow.sparse24<", "f16", "bf16", "i8", "func.func", "@g",
    "return", "arith.addf", "arith.relu", "sparseflow.sparse_gemm", "sparseflow.fused_sparse_gemm", "arith.constant",
    "{epilogue = \"bias_relu\"}", "{tile_m = 4294967296}", "{family = \"decode\", tile_m = 8, tile_n = 64, tile_k = 128, warps = 4, stages = 4, split_k = 32}",
    "é", "\u{0}",
];

/// Same-class substitutions: keep the text parseable so the verifier and the
/// passes see many near-valid modules, not just parse errors.
const SWAPS: &[&[&str]] = &[
    &[
        "4096", "14336", "4094", "1", "16", "17", "0", "64", "99999999",
    ],
    &[
        "arith.relu",
        "arith.silu",
        "arith.gelu",
        "arith.gelu_tanh",
        "arith.relu2",
    ],
    &["arith.addf", "arith.mulf"],
    &["sparseflow.sparse_gemm", "sparseflow.fused_sparse_gemm"],
    &["xf16", "xbf16", "xf32"],
    &["%0", "%1", "%2", "%x", "%w", "%b"],
    &[
        "\"bias_relu\"",
        "\"none\"",
        "\"relu\"",
        "\"bias\"",
        "\"swish\"",
    ],
];

fn mutate(rng: &mut ChaCha8Rng, text: &str) -> String {
    let mut s = text.to_string();
    for _ in 0..rng.random_range(1..3) {
        let mut chars: Vec<char> = s.chars().collect();
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..8) {
            0 if at < chars.len() => {
                let len = rng.random_range(1..8).min(chars.len() - at);
                chars.drain(at..at + len);
            }
            1 => {
                let snippet = SNIPPETS[rng.random_range(0..SNIPPETS.len())];
                chars.splice(at..at, snippet.chars());
            }
            2 if at < chars.len() => chars[at] = rng.random_range(32u8..127) as char,
            3 => {
                // Duplicate or drop a line (redefinitions, dangling uses, ops after return).
                let lines: Vec<&str> = s.lines().collect();
                let i = rng.random_range(0..lines.len().max(1));
                let mut out = lines.clone();
                if i < lines.len() {
                    if rng.random_bool(0.5) {
                        out.insert(i, lines[i]);
                    } else {
                        out.remove(i);
                    }
                }
                chars = out.join("\n").chars().collect();
            }
            _ => {
                let class = SWAPS[rng.random_range(0..SWAPS.len())];
                let from = class[rng.random_range(0..class.len())];
                let to = class[rng.random_range(0..class.len())];
                let hits: Vec<usize> = s.match_indices(from).map(|(i, _)| i).collect();
                if !hits.is_empty() {
                    let i = hits[rng.random_range(0..hits.len())];
                    s.replace_range(i..i + from.len(), to);
                }
                continue;
            }
        }
        s = chars.into_iter().collect();
    }
    s
}

/// Everything a user can do with text must return, never panic. Returns how
/// far the input got: 0 = parse error, 1 = verify error, 2 = passes ran.
fn exercise(text: &str, rng: &mut ChaCha8Rng) -> u8 {
    let Ok(mut m) = parse_module(text) else {
        return 0;
    };
    let printed = print_module(&m);
    if verify_module(&m, &VerifyOptions::default()).is_err() {
        return 1;
    }
    // Verified IR prints to text that parses back to the same thing.
    let again = parse_module(&printed).unwrap_or_else(|e| panic!("reparse failed: {e}\n{printed}"));
    assert_eq!(print_module(&again), printed);
    let t = &TARGETS[rng.random_range(0..TARGETS.len())];
    let mut cx = PassContext::new(Some(t)).with_families(FAMILIES);
    // Explanations format every candidate; sample them to keep the test fast.
    cx.explain = rng.random_ratio(1, 10);
    let result = PassManager::parse_pipeline("fuse-epilogue,select-tiles,canonicalize")
        .unwrap()
        .run(&mut m, &mut cx);
    if let Err(e @ IrError::PassBrokeIr { .. }) = result {
        panic!("{e}\n{printed}");
    }
    2
}

#[test]
fn mutated_inputs_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0004);
    let fused = common::small(&format!(
        "{}  %1 = arith.addf %0, %b : ({T}, tensor<32xf16>) -> {T}\n  %2 = arith.constant {{value = 1.0}} : {T}\n  %3 = arith.mulf %1, %2 : {T}\n  %4 = arith.relu %3 : {T}\n  return %4 : {T}\n",
        common::G,
        T = common::T
    ));
    let seeds = [common::MLP_UP, common::DECODE, fused.as_str()];
    let mut reached = [0usize; 3];
    for i in 0..CASES {
        let text = mutate(&mut rng, seeds[i % seeds.len()]);
        reached[exercise(&text, &mut rng) as usize] += 1;
    }
    // The mutations must exercise every layer, not just the parser's error paths.
    eprintln!("parse error / verify error / passes ran: {reached:?}");
    assert!(
        reached[1] >= CASES / 50 && reached[2] >= CASES / 10,
        "coverage {reached:?}"
    );
}

#[test]
fn raw_bytes_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xb17e5);
    for _ in 0..CASES {
        let len = rng.random_range(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = exercise(&String::from_utf8_lossy(&bytes), &mut rng);
    }
}
