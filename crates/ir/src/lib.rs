//! # sparseflow-ir
//!
//! SparseFlow's MLIR-style IR (syntax, ops and passes in docs/IR.md).
//!
//! * data: [`Module`] / [`Function`] with arena entities ([`Value`], [`Inst`]),
//!   [`Type`], [`Attrs`], built only through [`FunctionBuilder`];
//! * text: [`parse_module`] / [`print_module`] (round-trip exactly);
//! * [`verify_module`]: all errors with op and line:col;
//! * [`PassManager`] and the passes in [`passes`]; targets in [`targets`] (presets and
//!   [`Target::for_device`]);
//! * [`KernelConfig`] (family + tiles: what the IR attributes, plans, codegen and the
//!   runtime hold) and [`FamilyModel`], what selection knows of a kernel family. The families
//!   themselves and their registry are `sparseflow_codegen`'s; selection takes them as a
//!   [`Families`] slice;
//! * [`plan_layer`]: the one call from (layer, M, target, families, tuning tables) to a kernel
//!   config; [`tuning`]: the measured tables `select-tiles` consults before its cost model.

pub mod attrs;
pub mod builder;
pub mod cost_model;
mod cursor;
pub mod decode_cost;
pub mod error;
pub mod family;
pub mod function;
pub mod kernel_config;
pub mod ops;
pub mod parse;
mod parse_type;
pub mod pass;
pub mod passes;
pub mod plan;
pub mod print;
pub mod select;
pub mod targets;
pub mod tuning;
pub mod types;
pub mod verify;
mod verify_ctx;
mod verify_gemm;

pub use attrs::{Attr, Attrs};
pub use builder::FunctionBuilder;
pub use error::{Diagnostic, IrError, Loc};
pub use family::{Eligibility, Families, FamilyModel, Resources, TileChoice};
pub use function::{Function, Inst, InstData, Module, Value, ValueData, ValueDef};
pub use kernel_config::{ConfigSpace, GemmShape, KernelConfig, KernelConfigOf};
pub use ops::Opcode;
pub use parse::{parse_module, parse_module_bytes};
pub use pass::PassManager;
pub use passes::PassContext;
pub use plan::{plan_layer, LayerPlan, LayerProblem};
pub use print::{print_function, print_module};
pub use select::{m_bucket, select_for_m};
pub use targets::{target, DeviceFacts, Target, TARGETS};
pub use tuning::{PlanSource, Tuning, TuningKey, TuningTable};
pub use types::{check_dim, Dim, Type, MAX_DIM};
pub use verify::{verify_module, VerifyOptions};
