//! sparseflow-ir (placeholder: being built)
