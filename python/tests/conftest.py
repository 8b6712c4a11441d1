"""Shared helpers for the sparseflow test suite (CPU torch in CI; CUDA on the GPU machine)."""

from __future__ import annotations

import pytest
import torch

import sparseflow as sf

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(
    not CUDA, reason="CUDA not available: GPU tests run on the GPU machine (scripts/device/python_check.sh)"
)


def exact_24_weight(n: int, k: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """A random weight that is already 2:4 (two non-zeros in every group of 4 along K)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    keep = torch.rand(n, k // 4, 4, generator=g).argsort(dim=-1)[..., :2]
    mask = torch.zeros(n, k // 4, 4).scatter(2, keep, 1.0).reshape(n, k)
    return (w * mask).to(dtype)


def magnitude_prune(w: torch.Tensor) -> torch.Tensor:
    """Reference 2:4 magnitude pruning in torch (ties to the lower index, as core does)."""
    n, k = w.shape
    groups = w.reshape(n, k // 4, 4)
    # Stable descending sort by |w| keeps lower indices first on ties.
    order = torch.sort(groups.abs().float(), dim=-1, descending=True, stable=True).indices[..., :2]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter(2, order, True)
    return (groups * mask).reshape(n, k)


def tiny_llama(dtype: torch.dtype = torch.float32, **sizes: int) -> torch.nn.Module:
    """A 2-layer Llama (hidden 64, 4 heads sharing 2 KV heads) with random weights, eval mode;
    ``sizes`` override LlamaConfig fields (e.g. ``hidden_size``)."""
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")
    config = transformers.LlamaConfig(
        **{
            "vocab_size": 128,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 64,
            **sizes,
        }
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to(dtype).eval()


@pytest.fixture(autouse=True)
def _fresh_cache():
    yield
    sf.clear_cache()
