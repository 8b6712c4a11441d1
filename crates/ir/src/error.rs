//! Errors of the IR crate. Every error says where (line:col when it comes from
//! text) and what to do; verification returns *all* problems at once so a user
//! fixes a file in one round trip.

use std::fmt;

/// A position in IR text, 1-based like every editor shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One verifier finding: which op, where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `None` for IR built in memory (no source text).
    pub loc: Option<Loc>,
    /// The op name (`sparseflow.sparse_gemm`) or `func.func @name`.
    pub op: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.loc {
            write!(f, "{loc}: ")?;
        }
        write!(f, "'{}' op {}", self.op, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("{loc}: {message}")]
    Parse { loc: Loc, message: String },

    #[error("{}", join_diagnostics(.0))]
    Verify(Vec<Diagnostic>),

    #[error("pass '{pass}' produced invalid IR (this is a bug in the pass): {}", join_diagnostics(.diagnostics))]
    PassBrokeIr {
        pass: String,
        diagnostics: Vec<Diagnostic>,
    },

    #[error("unknown target '{name}'; known targets: {known}")]
    UnknownTarget { name: String, known: String },

    #[error("unknown pass '{name}'; known passes: {known} (see --list-passes)")]
    UnknownPass { name: String, known: String },

    #[error("pass '{pass}' needs a target GPU; pass --target=<{known}>")]
    MissingTarget { pass: String, known: String },

    #[error("{0}")]
    Build(String),

    #[error("{0}")]
    Plan(String),

    /// A tuning table that cannot be used (unreadable, malformed, another version).
    #[error("{0}")]
    Tuning(String),
}

impl IrError {
    /// All diagnostics carried by this error (empty for non-verifier errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            IrError::Verify(d) => d,
            IrError::PassBrokeIr { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}

fn join_diagnostics(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
