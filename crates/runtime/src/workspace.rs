//! Split-K scratch (fp32 partials + arrival counters) per stream.
//!
//! The decode family's split-K kernels need a workspace and counters that are zero before a
//! launch (the kernel leaves them zero after it). Two launches in flight at once must never
//! share them, so buffers are keyed by the stream the launch is queued on: launches on one
//! stream run in order, so they may share; launches on different streams never do. Buffers
//! grow (never shrink) and retired ones are kept until the context goes away, because a
//! launch queued earlier may still be using them.
//!
//! New counters are zeroed by a memset queued on the caller's stream, right before the launch
//! that needs them: stream-ordered, no host synchronisation, so it is legal while the stream
//! is being captured into a CUDA graph (the memset then becomes a graph node). A memset that was
//! only recorded into a graph has not run, so the slot stays marked until one runs eagerly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaContext;

use crate::error::Result;
use crate::launch::{DeviceAlloc, RawStream};

#[derive(Default)]
struct Slot {
    workspace: Option<DeviceAlloc>,
    counters: Option<DeviceAlloc>,
    retired: Vec<DeviceAlloc>,
    /// The counters have not yet been zeroed by work that actually executed.
    counters_need_zero: bool,
}

/// `RawStream::ordering_key`: the handle, plus the thread for the per-thread stream.
type StreamKey = (usize, Option<std::thread::ThreadId>);

pub(crate) struct WorkspacePool {
    ctx: Arc<CudaContext>,
    slots: Mutex<HashMap<StreamKey, Arc<Mutex<Slot>>>>,
}

/// Device addresses of one launch's scratch (0 when not needed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scratch {
    pub(crate) workspace: u64,
    pub(crate) counters: u64,
}

impl WorkspacePool {
    pub(crate) fn new(ctx: Arc<CudaContext>) -> Self {
        WorkspacePool {
            ctx,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Scratch for one launch on `stream` with at least `ws_bytes` and `counters` u32 words.
    pub(crate) fn get(
        &self,
        stream: RawStream,
        ws_bytes: usize,
        counters: usize,
    ) -> Result<Scratch> {
        if ws_bytes == 0 && counters == 0 {
            return Ok(Scratch {
                workspace: 0,
                counters: 0,
            });
        }
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(stream.ordering_key()).or_default().clone()
        };
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        if ws_bytes > 0 && s.workspace.as_ref().is_none_or(|w| w.bytes() < ws_bytes) {
            // Grow geometrically so a sweep over M does not allocate at every step.
            let want = ws_bytes.max(s.workspace.as_ref().map_or(0, |w| w.bytes() * 2));
            let new = DeviceAlloc::new(&self.ctx, want, "split-K workspace")?;
            if let Some(old) = s.workspace.replace(new) {
                s.retired.push(old);
            }
        }
        if counters > 0 && s.counters.as_ref().is_none_or(|c| c.bytes() < counters * 4) {
            let want = (counters * 4).max(s.counters.as_ref().map_or(0, |c| c.bytes() * 2));
            let new = DeviceAlloc::new(&self.ctx, want, "split-K counters")?;
            if let Some(old) = s.counters.replace(new) {
                s.retired.push(old);
            }
            s.counters_need_zero = true;
        }
        if counters > 0 && s.counters_need_zero {
            let c = s.counters.as_ref().expect("allocated above");
            c.memset_u32(0, c.bytes() / 4, stream)?;
            s.counters_need_zero = stream.is_capturing()?;
        }
        Ok(Scratch {
            workspace: s
                .workspace
                .as_ref()
                .filter(|_| ws_bytes > 0)
                .map_or(0, |w| w.ptr()),
            counters: s
                .counters
                .as_ref()
                .filter(|_| counters > 0)
                .map_or(0, |c| c.ptr()),
        })
    }

    /// Bytes held (live + retired), for reports.
    pub(crate) fn bytes(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.workspace.as_ref().map_or(0, |w| w.bytes())
                    + s.counters.as_ref().map_or(0, |c| c.bytes())
                    + s.retired.iter().map(|r| r.bytes()).sum::<usize>()
            })
            .sum()
    }
}
