//! The diff report against numbers computed by hand.

use sparseflow_core::{diff_report, prune_magnitude, Sparse24};

#[test]
fn diff_fields_match_manual_computation() {
    // One row, two groups: [4, -3, 2, 1 | 0, 0, 5, 0] → prune drops 2, 1.
    let w = [4.0f32, -3.0, 2.0, 1.0, 0.0, 0.0, 5.0, 0.0];
    let pruned = prune_magnitude(&w, 1, 8).unwrap();
    let s = Sparse24::compress(&pruned, 1, 8).unwrap();
    let x = [1.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    let d = diff_report(&w, &s, Some((&x, 1))).unwrap();
    assert_eq!(d.max_error, 2.0);
    assert_eq!(d.mean_abs_error, 3.0 / 8.0);
    let fro_w = (16.0f64 + 9.0 + 4.0 + 1.0 + 25.0).sqrt();
    assert!((d.rel_fro_error - 5.0f64.sqrt() / fro_w).abs() < 1e-12);
    assert!((d.kept_magnitude - 12.0 / 15.0).abs() < 1e-12);
    assert_eq!(d.sparsity, 5.0 / 8.0);
    assert_eq!(d.bytes_dense, 32);
    assert_eq!(d.bytes_sparse, 4 * 4 + 1);
    // Y = 9 dense vs 6 sparse.
    assert_eq!(d.output_max_error, Some(3.0));
    assert!((d.output_rel_error.unwrap() - 3.0 / 9.0).abs() < 1e-12);
}

#[test]
fn diff_without_sample_has_no_output_error() {
    let w = [0.0f32; 4];
    let s = Sparse24::compress(&w, 1, 4).unwrap();
    let d = diff_report(&w, &s, None).unwrap();
    assert_eq!(
        (d.rel_fro_error, d.kept_magnitude, d.sparsity),
        (0.0, 1.0, 1.0)
    );
    assert_eq!(d.output_max_error, None);
    assert!(diff_report(&w, &s, Some((&[f32::NAN; 4], 1))).is_err());
}
