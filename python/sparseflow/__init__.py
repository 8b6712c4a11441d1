"""SparseFlow: 2:4 structured sparsity for PyTorch on NVIDIA sparse tensor cores.

```python
import sparseflow as sf

sparse, diff = sf.SparseLinear.from_dense(linear, return_diff=True)   # one layer
model, report = sf.sparsify(model)                                     # a whole model
print(report)                                                          # one row per nn.Linear
sf.save(model, "out/"); model = sf.load("out/", fresh_model)
```

CUDA tensors run SparseFlow's kernels on torch's current stream through the custom op
``torch.ops.sparseflow.sparse_linear`` (``torch.compile`` and CUDA graphs work); CPU tensors
run the Rust reference. See docs/PYTHON.md.
"""

from . import _C, parallel
from .fusion import FusedGatedMLP, fuse_projections
from .io import FORMAT_VERSION, load, load_state_dict, save
from .linear import METHODS, SparseLinear, prepare
from .prune import (
    Calibration,
    find_permutation,
    permute_attention_values,
    permute_gated_mlp,
    permute_in_features,
    permute_out_features,
)
from .ops import ACTIVATIONS, EPILOGUES, clear_cache, compress, decompress
from .sparsify import LayerReport, SparsifyReport, activation_kind, sparsify

__version__: str = _C.__version__

__all__ = [
    "ACTIVATIONS",
    "Calibration",
    "EPILOGUES",
    "FORMAT_VERSION",
    "FusedGatedMLP",
    "METHODS",
    "LayerReport",
    "SparseLinear",
    "SparsifyReport",
    "activation_kind",
    "clear_cache",
    "compress",
    "decompress",
    "find_permutation",
    "fuse_projections",
    "permute_attention_values",
    "permute_gated_mlp",
    "permute_in_features",
    "permute_out_features",
    "load",
    "load_state_dict",
    "parallel",
    "prepare",
    "save",
    "sparsify",
]
