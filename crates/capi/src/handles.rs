//! Opaque handles: how a C `SparseFlowContext` / `SparseFlowKernel` / `SparseFlowModel` maps
//! to a Rust object.
//!
//! A handle is **not** a pointer to the object: it is a token `(serial << 8) | TAG`, where
//! `serial` counts up from 1 and is never reused, and `TAG` is an odd byte per handle kind.
//! Every live object sits in one global registry (`Mutex<HashMap<token, object>>`). Looking up
//! a handle checks the tag, then registry membership, and only then touches the object, so:
//!
//! * NULL, a foreign pointer (real pointers are aligned, tags are odd), a kernel passed where a
//!   context is expected, and an already-destroyed handle are all `INVALID_HANDLE`. The library
//!   never dereferences memory that C handed it as a handle, so none of these is UB.
//! * A destroyed handle's token is never issued again, so a stale handle cannot silently alias
//!   a newer object (which a freed-and-reallocated pointer could).
//! * Objects are `Arc`s: a lookup clones the `Arc` and releases the lock before any work runs, so
//!   calls on different threads never serialize on the registry, and a `destroy` racing with a
//!   `run` on another thread (a caller bug) is still memory-safe: the object lives until the
//!   run returns.
//!
//! The registry is type-erased (`Arc<dyn Any>`, downcast on lookup after the tag check), so this
//! module knows no object type: `context`, `kernel` and `model` depend on it, never the reverse.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::error::{Error, Result};

/// A Rust object that C holds through an opaque handle type.
pub(crate) trait Handle: Sized + Send + Sync + 'static {
    /// The opaque C struct (`SparseFlowContext_` / `SparseFlowKernel_`).
    type Opaque;
    /// Odd low byte that marks this kind of handle; distinct per kind.
    const TAG: usize;
    /// For error messages: "context", "kernel".
    const NAME: &'static str;
}

/// A registered object of any kind.
type Object = Arc<dyn Any + Send + Sync>;

type Registry = HashMap<usize, Object>;

/// The object as a `T`, or `None` when it is another kind.
fn downcast<T: Handle>(object: &Object) -> Option<Arc<T>> {
    object.clone().downcast::<T>().ok()
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    // The lock is only held for map operations, which do not panic with the map in a broken
    // state, so a poisoned lock (impossible in practice) still guards a consistent map.
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

static NEXT_SERIAL: AtomicUsize = AtomicUsize::new(1);

/// Registers `obj` and returns its new handle (the only way handles are made).
pub(crate) fn new_handle<T: Handle>(obj: T) -> *mut T::Opaque {
    let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
    // 2^56 (64-bit) handles before this wraps; a 32-bit build gets 2^24, and refusing beats
    // reusing a token that a stale handle might still hold.
    let token = serial
        .checked_mul(256)
        .expect("handle serials exhausted: too many objects created in this process")
        | T::TAG;
    registry().insert(token, Arc::new(obj) as Object);
    token as *mut T::Opaque
}

/// Looks a handle up without taking ownership.
pub(crate) fn get<T: Handle>(handle: *mut T::Opaque) -> Result<Arc<T>> {
    let token = check_tag::<T>(handle)?;
    let reg = registry();
    match reg.get(&token) {
        Some(object) => downcast::<T>(object).ok_or_else(|| wrong_kind::<T>(token)),
        None => Err(gone::<T>(token)),
    }
}

/// Removes a handle from the registry; the object is dropped when its last in-flight user
/// returns. A second destroy of the same handle is `INVALID_HANDLE`.
pub(crate) fn destroy<T: Handle>(handle: *mut T::Opaque) -> Result<()> {
    let token = check_tag::<T>(handle)?;
    let mut reg = registry();
    match reg.get(&token) {
        Some(object) if downcast::<T>(object).is_none() => Err(wrong_kind::<T>(token)),
        Some(_) => {
            let object = reg.remove(&token);
            // Drop outside the lock: dropping a context may free GPU memory and take time.
            drop(reg);
            drop(object);
            Ok(())
        }
        None => Err(gone::<T>(token)),
    }
}

/// Number of live handles of every kind (for tests and leak checks).
pub(crate) fn live_count() -> usize {
    registry().len()
}

fn check_tag<T: Handle>(handle: *mut T::Opaque) -> Result<usize> {
    let token = handle as usize;
    if token == 0 {
        return Err(Error::handle(format!("the {} handle is NULL", T::NAME)));
    }
    if token & 0xFF != T::TAG {
        return Err(Error::handle(format!(
            "{token:#x} is not a SparseFlow {} handle (wrong tag: a foreign pointer, a \
             different kind of handle, or corrupted memory)",
            T::NAME
        )));
    }
    Ok(token)
}

fn wrong_kind<T: Handle>(token: usize) -> Error {
    Error::handle(format!("{token:#x} is not a {} handle", T::NAME))
}

fn gone<T: Handle>(token: usize) -> Error {
    Error::handle(format!(
        "{} handle {token:#x} is not live: it was already destroyed (use after destroy or double \
         destroy) or never created by this library",
        T::NAME
    ))
}
