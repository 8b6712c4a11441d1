//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<ExitCode>`.

pub mod audit;
pub mod benchmark;
pub mod compile;
pub mod convert;
pub mod demo;
pub mod opt;
pub mod table;
pub mod tune;
