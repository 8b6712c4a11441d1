//! SM clocks through NVML (`libnvidia-ml.so.1`, part of the driver), loaded at run time.
//! Best effort: any failure just leaves the clocks unrecorded.

use std::ffi::c_void;

use libloading::Library;

const NVML_CLOCK_SM: i32 = 1;

/// `(current SM clock, max SM clock)` in MHz of device `ordinal`, and the driver version.
pub fn clocks(ordinal: u32) -> (Option<u32>, Option<u32>, Option<String>) {
    // SAFETY: NVML's initialisers are benign; symbol types follow nvml.h.
    unsafe {
        let Ok(lib) = Library::new("libnvidia-ml.so.1") else {
            return (None, None, None);
        };
        type Init = unsafe extern "C" fn() -> i32;
        type Handle = unsafe extern "C" fn(u32, *mut *mut c_void) -> i32;
        type Clock = unsafe extern "C" fn(*mut c_void, i32, *mut u32) -> i32;
        type Version = unsafe extern "C" fn(*mut u8, u32) -> i32;
        let (Ok(init), Ok(handle), Ok(cur), Ok(max)) = (
            lib.get::<Init>(b"nvmlInit_v2"),
            lib.get::<Handle>(b"nvmlDeviceGetHandleByIndex_v2"),
            lib.get::<Clock>(b"nvmlDeviceGetClockInfo"),
            lib.get::<Clock>(b"nvmlDeviceGetMaxClockInfo"),
        ) else {
            return (None, None, None);
        };
        if init() != 0 {
            return (None, None, None);
        }
        let mut dev = std::ptr::null_mut();
        if handle(ordinal, &mut dev) != 0 {
            return (None, None, None);
        }
        let read = |f: &Clock| {
            let mut mhz = 0u32;
            (f(dev, NVML_CLOCK_SM, &mut mhz) == 0).then_some(mhz)
        };
        let driver = lib
            .get::<Version>(b"nvmlSystemGetDriverVersion")
            .ok()
            .and_then(|f| {
                let mut buf = [0u8; 96];
                (f(buf.as_mut_ptr(), buf.len() as u32) == 0).then(|| {
                    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                    String::from_utf8_lossy(&buf[..end]).into_owned()
                })
            });
        (read(&cur), read(&max), driver)
    }
}
