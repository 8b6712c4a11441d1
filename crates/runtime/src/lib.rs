//! sparseflow-runtime (placeholder: being built)
