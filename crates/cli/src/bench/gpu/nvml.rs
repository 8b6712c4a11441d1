//! SM clock, board power and clock-event reasons through NVML (`libnvidia-ml.so.1`, part of the
//! driver), loaded at run time. Best effort: without NVML the values are simply not recorded.
//!
//! Why the benchmark reads them: on the H200 a sustained GEMM at large M runs at the board's
//! power limit, dense and sparse alike, and the clock the power cap leaves differs per kernel
//! (docs/PERFORMANCE.md, "H200 large M"). A time means little without the clock it ran at.

use std::ffi::c_void;

use libloading::Library;

use crate::bench::report::ClockReadings;
use crate::bench::stats::median;

const NVML_CLOCK_SM: i32 = 1;
const NVML_SUCCESS: i32 = 0;

type ClockFn = unsafe extern "C" fn(*mut c_void, i32, *mut u32) -> i32;
type PowerFn = unsafe extern "C" fn(*mut c_void, *mut u32) -> i32;
type ReasonsFn = unsafe extern "C" fn(*mut c_void, *mut u64) -> i32;

/// One device opened through NVML.
pub struct Nvml {
    dev: *mut c_void,
    clock: ClockFn,
    max_clock: ClockFn,
    power: Option<PowerFn>,
    reasons: Option<ReasonsFn>,
    driver: Option<String>,
    // Last: the function pointers above point into it.
    _lib: Library,
}

// SAFETY: NVML is thread-safe (nvml.h: "all NVML functions are thread-safe"); the handle and
// the function pointers are plain values that stay valid while `_lib` is loaded.
unsafe impl Send for Nvml {}
// SAFETY: as above; `&Nvml` only calls NVML query functions.
unsafe impl Sync for Nvml {}

/// One reading: SM clock (MHz), board power (W) and the clock-event reason bits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub sm_mhz: Option<u32>,
    pub power_w: Option<f64>,
    pub reasons: Option<u64>,
}

impl Nvml {
    /// Device `ordinal`, or `None` when NVML, the device or a required symbol is missing.
    pub fn open(ordinal: u32) -> Option<Nvml> {
        // SAFETY: loading the driver's NVML runs no user-visible initialisers; every symbol's
        // type follows nvml.h, and NVML is initialised before any device call.
        unsafe {
            let lib = Library::new("libnvidia-ml.so.1").ok()?;
            type Init = unsafe extern "C" fn() -> i32;
            type Handle = unsafe extern "C" fn(u32, *mut *mut c_void) -> i32;
            type Version = unsafe extern "C" fn(*mut u8, u32) -> i32;
            let init = *lib.get::<Init>(b"nvmlInit_v2").ok()?;
            let handle = *lib.get::<Handle>(b"nvmlDeviceGetHandleByIndex_v2").ok()?;
            let clock = *lib.get::<ClockFn>(b"nvmlDeviceGetClockInfo").ok()?;
            let max_clock = *lib.get::<ClockFn>(b"nvmlDeviceGetMaxClockInfo").ok()?;
            let power = lib
                .get::<PowerFn>(b"nvmlDeviceGetPowerUsage")
                .ok()
                .map(|f| *f);
            // The newer name first (driver 535+), the deprecated one as a fallback.
            let reasons = lib
                .get::<ReasonsFn>(b"nvmlDeviceGetCurrentClocksEventReasons")
                .or_else(|_| lib.get::<ReasonsFn>(b"nvmlDeviceGetCurrentClocksThrottleReasons"))
                .ok()
                .map(|f| *f);
            if init() != NVML_SUCCESS {
                return None;
            }
            let mut dev = std::ptr::null_mut();
            if handle(ordinal, &mut dev) != NVML_SUCCESS {
                return None;
            }
            let driver = lib
                .get::<Version>(b"nvmlSystemGetDriverVersion")
                .ok()
                .and_then(|f| {
                    let mut buf = [0u8; 96];
                    (f(buf.as_mut_ptr(), buf.len() as u32) == NVML_SUCCESS).then(|| {
                        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                        String::from_utf8_lossy(&buf[..end]).into_owned()
                    })
                });
            Some(Nvml {
                dev,
                clock,
                max_clock,
                power,
                reasons,
                driver,
                _lib: lib,
            })
        }
    }

    fn read_clock(&self, f: ClockFn) -> Option<u32> {
        let mut mhz = 0u32;
        // SAFETY: `dev` is a live NVML handle; `mhz` is a valid out-parameter.
        (unsafe { f(self.dev, NVML_CLOCK_SM, &mut mhz) } == NVML_SUCCESS).then_some(mhz)
    }

    /// The SM clock now, MHz.
    pub fn sm_clock(&self) -> Option<u32> {
        self.read_clock(self.clock)
    }

    /// The SM clock's maximum, MHz.
    pub fn max_sm_clock(&self) -> Option<u32> {
        self.read_clock(self.max_clock)
    }

    pub fn driver_version(&self) -> Option<String> {
        self.driver.clone()
    }

    /// Clock, power and clock-event reasons now.
    pub fn reading(&self) -> Reading {
        let power_w = self.power.and_then(|f| {
            let mut mw = 0u32;
            // SAFETY: live handle, valid out-parameter.
            (unsafe { f(self.dev, &mut mw) } == NVML_SUCCESS).then(|| f64::from(mw) / 1e3)
        });
        let reasons = self.reasons.and_then(|f| {
            let mut bits = 0u64;
            // SAFETY: live handle, valid out-parameter.
            (unsafe { f(self.dev, &mut bits) } == NVML_SUCCESS).then_some(bits)
        });
        Reading {
            sm_mhz: self.sm_clock(),
            power_w,
            reasons,
        }
    }
}

/// The clock-event reasons that hold a busy GPU's clock down (nvml.h's
/// `nvmlClocksEventReason*`), by name. Idle and the application/display clock settings are left
/// out: readings are taken between timed samples, and those say nothing about the load.
pub fn limiting_reasons(bits: u64) -> Vec<&'static str> {
    const NAMES: [(u64, &str); 6] = [
        (0x4, "sw_power_cap"),
        (0x8, "hw_slowdown"),
        (0x10, "sync_boost"),
        (0x20, "sw_thermal_slowdown"),
        (0x40, "hw_thermal_slowdown"),
        (0x80, "hw_power_brake_slowdown"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|&(_, name)| name)
        .collect()
}

/// What the readings taken while a contender was timed say: the median and lowest SM clock,
/// the median power and every limiting reason seen. `None` without any clock reading.
pub fn summarize_readings(readings: &[Reading]) -> Option<ClockReadings> {
    let clocks: Vec<f64> = readings
        .iter()
        .filter_map(|r| r.sm_mhz.map(f64::from))
        .collect();
    let sm_mhz_min = readings.iter().filter_map(|r| r.sm_mhz).min();
    let mut limited_by: Vec<String> = readings
        .iter()
        .filter_map(|r| r.reasons)
        .flat_map(limiting_reasons)
        .map(str::to_owned)
        .collect();
    limited_by.sort();
    limited_by.dedup();
    Some(ClockReadings {
        readings: clocks.len(),
        sm_mhz_median: median(&clocks)?,
        sm_mhz_min: sm_mhz_min?,
        power_w_median: median(
            &readings
                .iter()
                .filter_map(|r| r.power_w)
                .collect::<Vec<_>>(),
        ),
        limited_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_only_what_limits_a_busy_gpu() {
        assert_eq!(limiting_reasons(0x4), ["sw_power_cap"]);
        // GPU idle (0x1) and the applications clock setting (0x2) are not limits.
        assert!(limiting_reasons(0x1 | 0x2).is_empty());
        assert_eq!(
            limiting_reasons(0x4 | 0x40 | 0x1),
            ["sw_power_cap", "hw_thermal_slowdown"]
        );
    }

    #[test]
    fn readings_summarize_to_medians_the_lowest_clock_and_every_reason() {
        let r = |mhz, w, bits| Reading {
            sm_mhz: Some(mhz),
            power_w: Some(w),
            reasons: Some(bits),
        };
        let s = summarize_readings(&[
            r(1500, 690.0, 0x4),
            r(1350, 695.0, 0x4),
            r(1410, 680.0, 0x1),
            r(1980, 300.0, 0x0),
        ])
        .unwrap();
        assert_eq!(s.readings, 4);
        assert_eq!(s.sm_mhz_median, 1455.0);
        assert_eq!(s.sm_mhz_min, 1350);
        assert_eq!(s.power_w_median, Some(685.0));
        assert_eq!(s.limited_by, ["sw_power_cap"]);
        // No clock reading, no summary; power alone is optional.
        assert_eq!(summarize_readings(&[]), None);
        let no_power = summarize_readings(&[Reading {
            sm_mhz: Some(1000),
            ..Reading::default()
        }])
        .unwrap();
        assert_eq!(no_power.power_w_median, None);
        assert!(no_power.limited_by.is_empty());
    }
}
