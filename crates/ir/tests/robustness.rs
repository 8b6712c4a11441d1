//! The parser, verifier, passes and printer never panic: ≥10,000 mutated valid
//! files plus raw bytes per run, seeded so a failure reproduces.

mod common;

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

fn mutate(rng: &mut ChaCha8Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..5) {
            0 if at < chars.len() => {
                let len = rng.random_range(1..8).min(chars.len() - at);
                chars.drain(at..at + len);
            }
            1 => {
                let s = SNIPPETS[rng.random_range(0..SNIPPETS.len())];
                chars.splice(at..at, s.chars());
            }
            2 if at < chars.len() => chars[at] = rng.random_range(32u8..127) as char,
            3 => {
                // Duplicate a line (redefinitions, ops after return).
                let s: String = chars.iter().collect();
                let lines: Vec<&str> = s.lines().collect();
                let i = rng.random_range(0..lines.len().max(1));
                let mut out: Vec<&str> = lines.clone();
                if let Some(l) = lines.get(i) {
                    out.insert(i, l);
                }
                chars = out.join("\n").chars().collect();
            }
            _ => {
                let s: String = chars.iter().collect();
                let digits = ["0", "3", "7", "65536", "999999999999"];
                chars = s
                    .replacen("4096", digits[rng.random_range(0..digits.len())], 1)
                    .chars()
                    .collect();
            }
        }
    }
    chars.into_iter().collect()
}

/// Everything a user can do with text must return, never panic.
fn exercise(text: &str, rng: &mut ChaCha8Rng) {
    let Ok(mut m) = parse_module(text) else {
        return;
    };
    let printed = print_module(&m);
    if verify_module(&m, &VerifyOptions::default()).is_err() {
        return;
    }
    // Verified IR prints to text that parses back to the same thing.
    let again = parse_module(&printed).unwrap_or_else(|e| panic!("reparse failed: {e}\n{printed}"));
    assert_eq!(print_module(&again), printed);
    let t = &TARGETS[rng.random_range(0..TARGETS.len())];
    let mut cx = PassContext::new(Some(t));
    cx.explain = true;
    let result = PassManager::parse_pipeline("fuse-epilogue,select-tiles,canonicalize")
        .unwrap()
        .run(&mut m, &mut cx);
    if let Err(e @ IrError::PassBrokeIr { .. }) = result {
        panic!("{e}\n{printed}");
    }
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
    for i in 0..CASES {
        let text = mutate(&mut rng, seeds[i % seeds.len()]);
        exercise(&text, &mut rng);
    }
}

#[test]
fn raw_bytes_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xb17e5);
    for _ in 0..CASES {
        let len = rng.random_range(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        exercise(&String::from_utf8_lossy(&bytes), &mut rng);
    }
}
