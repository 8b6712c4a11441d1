//! The report of a conversion: one row per tensor (and per tied tensor), totals, the measured
//! peak anonymous memory. Serialised as the `--json` output; printed as a table by the CLI.

use serde::Serialize;

/// Schema tag of the JSON report; bumped when a field changes meaning or disappears.
pub const SCHEMA: &str = "sparseflow-convert/1";

/// What happened to one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Pruned to 2:4 by `--method` and compressed.
    Pruned,
    /// Already 2:4: compressed losslessly (error 0), never re-pruned.
    Already24,
    /// Imported from compressed-tensors `sparse-24-bitmask`, bit-exact.
    Imported,
    /// Almost 2:4 (a few violating groups): kept dense unless `--prune`.
    AlmostKeptDense,
    /// Not a candidate: stays dense (see the reason).
    Dense,
    /// Tied to another tensor, no data of its own.
    Tied,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pruned => "pruned",
            Status::Already24 => "already 2:4",
            Status::Imported => "imported",
            Status::AlmostKeptDense => "almost 2:4",
            Status::Dense => "dense",
            Status::Tied => "tied",
        }
    }

    pub fn sparse(self) -> bool {
        matches!(self, Status::Pruned | Status::Already24 | Status::Imported)
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub name: String,
    pub shape: Vec<usize>,
    /// Dtype written.
    pub dtype: String,
    pub status: Status,
    /// Why (for dense rows) or what was found (violating groups, import source).
    pub reason: String,
    /// Fraction of zeros after conversion (sparse rows).
    pub sparsity: Option<f64>,
    /// `‖W - Ws‖_F / ‖W‖_F` (sparse rows; exactly 0 for already-2:4 and imported layers).
    pub rel_error: Option<f64>,
    pub max_error: Option<f64>,
    /// `Σ|Ws| / Σ|W|`.
    pub kept_magnitude: Option<f64>,
    /// Groups of 4 with more than two non-zeros in the input (sparse candidates).
    pub violating_groups: Option<u64>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub seconds: f64,
}

/// Sums over all rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub tensors: usize,
    pub sparse_layers: usize,
    pub pruned: usize,
    pub already_24: usize,
    pub imported: usize,
    pub almost_kept_dense: usize,
    pub dense: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// `bytes_after / bytes_before`.
    pub ratio: f64,
    /// Bytes of the sparse layers before and after (0.5625x for fp16/bf16).
    pub sparse_bytes_before: u64,
    pub sparse_bytes_after: u64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub input: String,
    pub output: String,
    pub format: String,
    pub method: String,
    pub dtype: String,
    /// Input kind: `safetensors`, `hf-dir`, `compressed-tensors sparse-24-bitmask`.
    pub input_kind: String,
    pub rows: Vec<Row>,
    pub totals: Totals,
    /// Notes: config rewrites, copied files, platform caveats.
    pub notes: Vec<String>,
    /// Peak RssAnon of the process during the conversion (Linux, sampled every 2 ms).
    pub peak_rss_anon_bytes: Option<u64>,
    /// The largest input tensor, for the memory bound `2 x largest + 256 MB`.
    pub largest_tensor_bytes: u64,
    pub seconds: f64,
}

impl Totals {
    pub fn from_rows(rows: &[Row]) -> Totals {
        let mut t = Totals::default();
        for r in rows {
            t.tensors += usize::from(r.status != Status::Tied);
            match r.status {
                Status::Pruned => t.pruned += 1,
                Status::Already24 => t.already_24 += 1,
                Status::Imported => t.imported += 1,
                Status::AlmostKeptDense => t.almost_kept_dense += 1,
                Status::Dense | Status::Tied => t.dense += usize::from(r.status == Status::Dense),
            }
            if r.status.sparse() {
                t.sparse_layers += 1;
                t.sparse_bytes_before += r.bytes_before;
                t.sparse_bytes_after += r.bytes_after;
            }
            t.bytes_before += r.bytes_before;
            t.bytes_after += r.bytes_after;
        }
        t.ratio = if t.bytes_before == 0 {
            1.0
        } else {
            t.bytes_after as f64 / t.bytes_before as f64
        };
        t
    }
}
