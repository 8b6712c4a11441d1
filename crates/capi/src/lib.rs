//! sparseflow-capi (placeholder: being built)
