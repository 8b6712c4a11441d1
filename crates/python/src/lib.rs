//! sparseflow-python (placeholder: being built)
