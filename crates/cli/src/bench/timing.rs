//! The timing flags `sparseflow benchmark` and `sparseflow tune` share, checked once.

use anyhow::{bail, Result};

/// Longest --sample-ms / --warmup-ms accepted (one minute): `inf` or a huge value would make
/// one sample never end.
const MAX_MS: f64 = 60_000.0;

/// How each measurement is sampled (docs/PERFORMANCE.md, "Method").
#[derive(clap::Args, Debug, Clone)]
pub struct TimingArgs {
    /// Samples per measurement (median, p10, p90 over them; the method uses 10).
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Target duration of one sample, in ms (sets the launches per sample).
    #[arg(long, default_value_t = 2.0)]
    pub sample_ms: f64,
    /// Warm-up before the first sample, in ms.
    #[arg(long, default_value_t = 30.0)]
    pub warmup_ms: f64,
}

impl TimingArgs {
    /// A clear error for a value no measurement can use.
    pub fn check(&self) -> Result<()> {
        if self.samples == 0 {
            bail!("--samples must be at least 1 (the method uses 10)");
        }
        if !(self.sample_ms > 0.0 && self.sample_ms <= MAX_MS) {
            bail!(
                "--sample-ms must be > 0 and at most {MAX_MS} ms, got {}",
                self.sample_ms
            );
        }
        if !(self.warmup_ms >= 0.0 && self.warmup_ms <= MAX_MS) {
            bail!(
                "--warmup-ms must be between 0 and {MAX_MS} ms, got {}",
                self.warmup_ms
            );
        }
        Ok(())
    }
}
