//! sparseflow-codegen (placeholder: being built)
