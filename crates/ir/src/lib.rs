//! # sparseflow-ir
//!
//! SparseFlow's MLIR-style IR (syntax, ops and passes in docs/IR.md).
//!
//! * data: [`Module`] / [`Function`] with arena entities ([`Value`], [`Inst`]),
//!   [`Type`], [`Attrs`], built only through [`FunctionBuilder`];
//! * text: [`parse_module`] / [`print_module`] (round-trip exactly);
//! * [`verify_module`]: all errors with op and line:col;
//! * [`PassManager`] and the passes in [`passes`]; targets in [`targets`], the
//!   kernel configuration contract with codegen in [`kernel_space`];
//! * [`plan_layer`]: the runtime's one call per layer shape.

pub mod attrs;
pub mod builder;
pub mod cost_model;
mod cursor;
mod decode_cost;
pub mod error;
pub mod function;
pub mod kernel_space;
pub mod ops;
pub mod parse;
mod parse_type;
pub mod pass;
pub mod passes;
pub mod plan;
pub mod print;
pub mod select;
pub mod targets;
pub mod types;
pub mod verify;
mod verify_gemm;

pub use attrs::{Attr, Attrs};
pub use builder::FunctionBuilder;
pub use cost_model::TileChoice;
pub use error::{Diagnostic, IrError, Loc};
pub use function::{Function, Inst, InstData, Module, Value, ValueData, ValueDef};
pub use kernel_space::{FamilySpace, GemmShape, TileConfig};
pub use ops::Opcode;
pub use parse::{parse_module, parse_module_bytes};
pub use pass::{PassContext, PassManager};
pub use plan::{plan_layer, LayerPlan};
pub use print::{print_function, print_module};
pub use select::{m_bucket, select_for_m};
pub use targets::{target, Target, TARGETS};
pub use types::{check_dim, Dim, Type, MAX_DIM};
pub use verify::{verify_module, VerifyOptions};
