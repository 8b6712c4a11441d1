//! Handle lifetime through the Rust side of the ABI (the same functions C calls): no leaks, and
//! a destroy racing with runs on other threads stays memory-safe (runs either finish or get
//! `INVALID_HANDLE`).

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sparseflow::*;

const N: usize = 16;
const K: usize = 32;

fn cpu_context() -> SparseFlowContext {
    let mut ctx: SparseFlowContext = std::ptr::null_mut();
    // SAFETY: `ctx` is a valid out-pointer.
    let status = unsafe { sparseflow_context_create(-1, &mut ctx) };
    assert_eq!(status, SparseFlowStatus::SPARSEFLOW_STATUS_OK);
    ctx
}

fn kernel(ctx: SparseFlowContext) -> SparseFlowKernel {
    let w: Vec<f32> = (0..N * K).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut k: SparseFlowKernel = std::ptr::null_mut();
    // SAFETY: `w` holds N*K floats; `k` is a valid out-pointer.
    let status = unsafe {
        sparseflow_kernel_create_from_dense(
            ctx,
            SparseFlowDType::SPARSEFLOW_DTYPE_F32 as u32,
            N as i64,
            K as i64,
            w.as_ptr().cast(),
            std::ptr::null(),
            SparseFlowEpilogue::SPARSEFLOW_EPILOGUE_RELU as u32,
            &mut k,
        )
    };
    assert_eq!(status, SparseFlowStatus::SPARSEFLOW_STATUS_OK);
    k
}

/// Handles are plain values; sharing one across threads is the point of the test.
#[derive(Clone, Copy)]
struct Shared(SparseFlowKernel);
// SAFETY: a handle is a token; the library synchronises all access to the object behind it.
unsafe impl Send for Shared {}

#[test]
fn destroy_racing_with_runs_is_safe() {
    for _ in 0..20 {
        let ctx = cpu_context();
        let k = Shared(kernel(ctx));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let k = k;
                    let x = vec![1.0f32; 8 * K];
                    let mut y = vec![0.0f32; 8 * N];
                    let mut after_destroy = 0;
                    while after_destroy < 3 {
                        // SAFETY: x holds 8*K and y 8*N floats, on the host.
                        let status = unsafe {
                            sparseflow_kernel_run(
                                k.0,
                                x.as_ptr().cast(),
                                8,
                                y.as_mut_ptr().cast::<c_void>(),
                                std::ptr::null_mut(),
                            )
                        };
                        match status {
                            SparseFlowStatus::SPARSEFLOW_STATUS_OK => {}
                            SparseFlowStatus::SPARSEFLOW_STATUS_INVALID_HANDLE => {
                                assert!(stop.load(Ordering::SeqCst));
                                after_destroy += 1;
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(2));
        stop.store(true, Ordering::SeqCst);
        assert_eq!(
            sparseflow_kernel_destroy(k.0),
            SparseFlowStatus::SPARSEFLOW_STATUS_OK
        );
        for t in threads {
            t.join().expect("worker panicked");
        }
        assert_eq!(
            sparseflow_context_destroy(ctx),
            SparseFlowStatus::SPARSEFLOW_STATUS_OK
        );
    }
}

#[test]
fn destroyed_handles_leave_the_registry() {
    // Other tests in this binary run concurrently: only count our own handles.
    let handles: Vec<_> = (0..50).map(|_| cpu_context()).collect();
    let kernels: Vec<_> = handles.iter().map(|&c| kernel(c)).collect();
    assert!(live_handle_count() >= 100);
    let before = live_handle_count();
    for (&c, &k) in handles.iter().zip(&kernels) {
        assert_eq!(
            sparseflow_context_destroy(c),
            SparseFlowStatus::SPARSEFLOW_STATUS_OK
        );
        assert_eq!(
            sparseflow_kernel_destroy(k),
            SparseFlowStatus::SPARSEFLOW_STATUS_OK
        );
        assert_eq!(
            sparseflow_kernel_destroy(k),
            SparseFlowStatus::SPARSEFLOW_STATUS_INVALID_HANDLE
        );
    }
    // The racing test holds at most two handles at a time.
    assert!(live_handle_count() <= before - 100 + 2);
}
