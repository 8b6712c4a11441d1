//! Tests of the upload layout: round trip, and a CPU emulation of how `mma.sp.m16n8k32` reads
//! the fragments (kernels/README.md, "Sparse MMA facts"), which must reproduce the dense weight
//! exactly.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sparseflow_core::Sparse24;

const CODES: [u8; 6] = [0x4, 0x8, 0xC, 0x9, 0xD, 0xE];

fn random_weight<T: Element>(n: usize, k: usize, seed: u64) -> (Vec<f32>, Sparse24<T>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut dense = vec![0f32; n * k];
    for row in 0..n {
        for grp in 0..k / 4 {
            let code = CODES[rng.random_range(0..6)];
            for idx in [code & 3, code >> 2] {
                // Integers keep the values exact in f16 / bf16.
                dense[row * k + grp * 4 + idx as usize] = rng.random_range(1..64) as f32;
            }
        }
    }
    let typed: Vec<T> = dense.iter().map(|&v| T::from_f32(v)).collect();
    let w = Sparse24::compress(&typed, n, k).expect("2:4 by construction");
    (dense, w)
}

fn value_bits(up: &UploadLayout, off: usize) -> u16 {
    u16::from_le_bytes([up.values[off], up.values[off + 1]])
}

/// Rebuilds the dense [n, k] weight the way the tensor core sees it: per 16x32 block, A
/// registers of every lane plus the metadata register chosen by selector `ks % 2`.
fn emulate_mma_view<T: Element>(up: &UploadLayout, n: usize, k: usize) -> Vec<f32> {
    let (np, kp) = padded_dims(n, k);
    let (ks_count, kp_count) = (kp / 32, kp / 64);
    let mut out = vec![0f32; np * kp];
    for rb in 0..np / 16 {
        for ks in 0..ks_count {
            let sel = ks % 2;
            let meta_block = (rb * kp_count + ks / 2) * 128;
            for lane in 0..32 {
                let (g, t) = (lane / 4, lane % 4);
                for reg in 0..4 {
                    for hf in 0..2 {
                        // PTX: a0 row g cols 2t..2t+1; a1 row g+8; a2 row g cols 2t+8..; a3 row g+8.
                        let r = g + 8 * (reg & 1);
                        let c = 2 * t + 8 * (reg >> 1) + hf; // compressed column in the step
                        let q = c / 2; // group within the step
                                       // Metadata of row r, group q: lane (r % 8) * 4 + 2*sel + q / 4, half r / 8.
                        let mlane = (r % 8) * 4 + 2 * sel + q / 4;
                        let at = meta_block + mlane * 4;
                        let word = u32::from_le_bytes(up.meta[at..at + 4].try_into().unwrap());
                        let code = (word >> (16 * (r / 8) + 4 * (q % 4))) & 0xF;
                        let idx = if c % 2 == 0 { code & 3 } else { code >> 2 } as usize;
                        let bits = value_bits(
                            up,
                            (rb * ks_count + ks) * 512 + lane * 16 + reg * 4 + hf * 2,
                        );
                        let v = match T::DTYPE {
                            DType::BF16 => half::bf16::from_bits(bits).to_f32(),
                            _ => half::f16::from_bits(bits).to_f32(),
                        };
                        out[(rb * 16 + r) * kp + ks * 32 + q * 4 + idx] += v;
                    }
                }
            }
        }
    }
    out
}

fn check_shape<T: Element>(n: usize, k: usize, seed: u64) {
    let (dense, w) = random_weight::<T>(n, k, seed);
    for layout in [WeightLayout::Fragment] {
        let up = upload_layout(layout, &w).unwrap();
        let (np, kp) = padded_dims(n, k);
        assert_eq!(up.k_padded, kp);
        assert_eq!(
            up.values.len(),
            np * kp,
            "values bytes = padded N x K/2 x 2"
        );
        let back: Sparse24<T> = from_upload_layout(layout, &up, n, k).unwrap();
        assert_eq!(back.values, w.values, "values round trip {n}x{k}");
        assert_eq!(back.meta, w.meta, "meta round trip {n}x{k}");
        let seen = emulate_mma_view::<T>(&up, n, k);
        for row in 0..np {
            for col in 0..kp {
                let want = if row < n && col < k {
                    dense[row * k + col]
                } else {
                    0.0
                };
                assert_eq!(
                    seen[row * kp + col],
                    want,
                    "mma view at ({row}, {col}) of {n}x{k}"
                );
            }
        }
    }
}

#[test]
fn round_trip_and_mma_view_f16() {
    for (i, &(n, k)) in [
        (16, 64),
        (64, 64),
        (100, 204),
        (130, 132),
        (1, 4),
        (257, 1000),
    ]
    .iter()
    .enumerate()
    {
        check_shape::<half::f16>(n, k, i as u64);
    }
}

#[test]
fn round_trip_and_mma_view_bf16() {
    for (i, &(n, k)) in [(48, 96), (129, 68)].iter().enumerate() {
        check_shape::<half::bf16>(n, k, 100 + i as u64);
    }
}

#[test]
fn padding_uses_valid_metadata_code() {
    let (_, w) = random_weight::<half::f16>(3, 4, 7);
    let up = upload_layout(WeightLayout::Fragment, &w).unwrap();
    // Every nibble of every meta word is one of the six increasing codes (never 0).
    for word in up.meta.chunks_exact(4) {
        let word = u32::from_le_bytes(word.try_into().unwrap());
        for i in 0..8 {
            assert!(
                CODES.contains(&(((word >> (4 * i)) & 0xF) as u8)),
                "nibble {i} of {word:#x}"
            );
        }
    }
}

#[test]
fn rejects_f32() {
    let w = Sparse24::<f32>::compress(&[1.0, 0.0, 0.0, 2.0], 1, 4).unwrap();
    assert!(upload_layout(WeightLayout::Fragment, &w).is_err());
}

/// Fixed pattern shared with scripts/device/kernel_dev.py's numpy layout (`--selftest`).
#[test]
fn layout_digest_matches_python_port() {
    let (n, k) = (40, 200);
    let mut dense = vec![half::f16::ZERO; n * k];
    for row in 0..n {
        for grp in 0..k / 4 {
            let code = CODES[(row * 7 + grp * 3) % 6];
            for (j, idx) in [code & 3, code >> 2].into_iter().enumerate() {
                dense[row * k + grp * 4 + idx as usize] =
                    half::f16::from_f32((1 + (row * 13 + grp * 5 + j) % 97) as f32);
            }
        }
    }
    let w = Sparse24::compress(&dense, n, k).unwrap();
    let up = upload_layout(WeightLayout::Fragment, &w).unwrap();
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| {
        Sha256::digest(b)
            .iter()
            .take(8)
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let got = format!("{} {}", hex(&up.values), hex(&up.meta));
    // Printed by `python3 scripts/device/kernel_dev.py --selftest`.
    assert_eq!(got, include_str!("../tests/layout_digest.txt").trim());
}
