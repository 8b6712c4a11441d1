//! Property tests of the 2:4 format invariants.

use half::{bf16, f16};
use proptest::prelude::*;
use sparseflow_core::format::VALID_META_CODES;
use sparseflow_core::{prune_magnitude, validate, CoreError, Element, Sparse24};

/// A random `[n, k]` matrix with many exact zeros and ties (the interesting cases).
fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1usize..6, 1usize..10).prop_flat_map(|(n, groups)| {
        let k = groups * 4;
        let value = prop_oneof![
            3 => Just(0.0f32),
            1 => Just(-0.0f32),
            2 => (-4i32..=4).prop_map(|v| v as f32),
            4 => -100.0f32..100.0,
        ];
        (Just(n), Just(k), proptest::collection::vec(value, n * k))
    })
}

fn cast<T: Element>(w: &[f32]) -> Vec<T> {
    w.iter().map(|&v| T::from_f32(v)).collect()
}

fn check_invariants<T: Element>(n: usize, k: usize, w: &[T]) -> Result<(), TestCaseError> {
    let pruned = prune_magnitude(w, n, k).unwrap();
    // Every group has at most two non-zeros, and they are among the largest magnitudes.
    for (g, p) in w.chunks(4).zip(pruned.chunks(4)) {
        prop_assert!(p.iter().filter(|v| !v.is_zero()).count() <= 2);
        let kept_min = p
            .iter()
            .zip(g)
            .filter(|(p, _)| !p.is_zero())
            .map(|(_, v)| v.to_f64().abs());
        let dropped_max = p
            .iter()
            .zip(g)
            .filter(|(p, _)| p.is_zero())
            .map(|(_, v)| v.to_f64().abs());
        let kept_min = kept_min.fold(f64::INFINITY, f64::min);
        let dropped_max = dropped_max.fold(0.0, f64::max);
        prop_assert!(kept_min >= dropped_max || kept_min == f64::INFINITY);
    }
    validate(&pruned, n, k).unwrap();
    let s = Sparse24::compress(&pruned, n, k).unwrap();
    // Bit-exact round trip.
    let back = s.decompress();
    prop_assert_eq!(
        back.iter()
            .map(|v| v.to_f64().to_bits())
            .collect::<Vec<_>>(),
        pruned
            .iter()
            .map(|v| v.to_f64().to_bits())
            .collect::<Vec<_>>()
    );
    // Two distinct increasing positions per group, in the valid code set.
    for byte in &s.meta {
        prop_assert!(VALID_META_CODES.contains(&(byte & 0xF)));
        prop_assert!(VALID_META_CODES.contains(&(byte >> 4)));
    }
    for m in s.mask() {
        prop_assert_eq!(m.count_ones(), 2);
    }
    // from_parts accepts what compress produced.
    let again = Sparse24::from_parts(n, k, s.values.clone(), s.meta.clone()).unwrap();
    prop_assert_eq!(again, s);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_f32((n, k, w) in matrix()) { check_invariants(n, k, &w)?; }

    #[test]
    fn invariants_f16((n, k, w) in matrix()) { check_invariants(n, k, &cast::<f16>(&w))?; }

    #[test]
    fn invariants_bf16((n, k, w) in matrix()) { check_invariants(n, k, &cast::<bf16>(&w))?; }

    /// validate accepts exactly the 2:4 matrices, and compress refuses the others.
    #[test]
    fn validate_accepts_exactly_24((n, k, w) in matrix()) {
        let is_24 = w.chunks(4).all(|g| g.iter().filter(|v| **v != 0.0).count() <= 2);
        prop_assert_eq!(validate(&w, n, k).is_ok(), is_24);
        match Sparse24::compress(&w, n, k) {
            Ok(_) => prop_assert!(is_24),
            Err(CoreError::Not24 { nonzeros, .. }) => prop_assert!(!is_24 && nonzeros > 2),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    /// Arbitrary metadata bytes: accepted exactly when every nibble is a valid code.
    #[test]
    fn from_parts_checks_every_nibble(meta in proptest::collection::vec(any::<u8>(), 2)) {
        let valid = meta.iter().all(|b| VALID_META_CODES.contains(&(b & 0xF)) && VALID_META_CODES.contains(&(b >> 4)));
        let r = Sparse24::<f32>::from_parts(1, 16, vec![1.0; 8], meta);
        prop_assert_eq!(r.is_ok(), valid);
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let w = vec![1.0f32; 12];
    assert!(matches!(
        prune_magnitude(&w, 2, 6),
        Err(CoreError::KNotMultipleOf4 { k: 6 })
    ));
    assert!(matches!(
        prune_magnitude(&w, 0, 4),
        Err(CoreError::ZeroDim { .. })
    ));
    assert!(matches!(
        prune_magnitude(&w, 2, 8),
        Err(CoreError::LengthMismatch { .. })
    ));
    assert!(matches!(
        prune_magnitude(&w, usize::MAX, 8),
        Err(CoreError::Overflow { .. })
    ));
    assert!(matches!(
        Sparse24::compress(&[f32::INFINITY, 0.0, 0.0, 0.0], 1, 4),
        Err(CoreError::NonFinite { .. })
    ));
    assert!(matches!(
        Sparse24::<f32>::from_parts(1, 8, vec![0.0; 3], vec![0x44]),
        Err(CoreError::LengthMismatch { .. })
    ));
    assert!(matches!(
        Sparse24::<f32>::from_parts(1, 8, vec![f32::NAN; 4], vec![0x44]),
        Err(CoreError::NonFinite { .. })
    ));
    let err = validate(&[1.0f32, 2.0, 3.0, 0.0], 1, 4)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 0, group 0") && err.contains("3 non-zeros"),
        "{err}"
    );
}
