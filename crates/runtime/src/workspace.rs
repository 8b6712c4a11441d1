//! Split-K hand-off workspace (fp32 partials) per stream.
//!
//! The decode family's split-K kernels pass partial tiles from peer CTAs to the tile's reducer
//! through workspace words that hold the empty sentinel (`WORKSPACE_EMPTY`, every bit set) when
//! no launch is running: the reducer waits for each word to leave that state and sets it back
//! (crates/codegen/kernels/README.md). So a new buffer must be filled with the sentinel once,
//! and two launches in flight at once must never share one. Buffers are keyed by the stream the
//! launch is queued on: launches on one stream run in order, so they may share; launches on
//! different streams never do. Buffers grow (never shrink) and retired ones are kept until the
//! context goes away, because a launch queued earlier may still be using them.
//!
//! The fill is a memset queued on the caller's stream, right before the launch that needs it:
//! stream-ordered, no host synchronisation, so it is legal while the stream is being captured
//! into a CUDA graph (the memset then becomes a graph node). A memset that was only recorded
//! into a graph has not run, so the slot stays marked until one runs eagerly; but one memset
//! per capture is enough (every launch after it on the stream leaves the words empty again),
//! so the slot remembers the capture it was recorded into and later launches of the same
//! capture add none. (Before, every launch captured into a graph carried its own memset node:
//! in a PyTorch CUDA graph that was a memset before every sparse linear.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaContext;
use sparseflow_codegen::WORKSPACE_EMPTY;

use crate::error::Result;
use crate::launch::{DeviceAlloc, RawStream};

#[derive(Default)]
struct Slot {
    workspace: Option<DeviceAlloc>,
    retired: Vec<DeviceAlloc>,
    /// The workspace has not yet been filled with the sentinel by work that actually executed.
    needs_fill: bool,
    /// The capture whose recorded work already fills the workspace before any launch in it.
    filled_in_capture: Option<u64>,
}

/// `RawStream::ordering_key`: the handle, plus the thread for the per-thread stream.
type StreamKey = (usize, Option<std::thread::ThreadId>);

pub(crate) struct WorkspacePool {
    ctx: Arc<CudaContext>,
    slots: Mutex<HashMap<StreamKey, Arc<Mutex<Slot>>>>,
}

impl WorkspacePool {
    pub(crate) fn new(ctx: Arc<CudaContext>) -> Self {
        WorkspacePool {
            ctx,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Device address of a workspace of at least `bytes` for one launch on `stream`, every
    /// word empty once the stream reaches the launch (0 when `bytes` is 0).
    pub(crate) fn get(&self, stream: RawStream, bytes: usize) -> Result<u64> {
        if bytes == 0 {
            return Ok(0);
        }
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(stream.ordering_key()).or_default().clone()
        };
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if s.workspace.as_ref().is_none_or(|w| w.bytes() < bytes) {
            // Grow geometrically so a sweep over M does not allocate at every step.
            let want = bytes.max(s.workspace.as_ref().map_or(0, |w| w.bytes() * 2));
            let new = DeviceAlloc::new(&self.ctx, want, "split-K workspace")?;
            if let Some(old) = s.workspace.replace(new) {
                s.retired.push(old);
            }
            s.needs_fill = true;
            s.filled_in_capture = None;
        }
        let w = s.workspace.as_ref().expect("allocated above");
        let ptr = w.ptr();
        if s.needs_fill {
            let capture = stream.capture_id()?;
            if capture.is_none() || capture != s.filled_in_capture {
                w.memset_u32(WORKSPACE_EMPTY, w.bytes() / 4, stream)?;
            }
            s.needs_fill = capture.is_some();
            s.filled_in_capture = capture;
        }
        Ok(ptr)
    }

    /// Bytes held (live + retired), for reports.
    pub(crate) fn bytes(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.workspace.as_ref().map_or(0, |w| w.bytes())
                    + s.retired.iter().map(|r| r.bytes()).sum::<usize>()
            })
            .sum()
    }
}
