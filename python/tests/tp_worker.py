"""One rank of the tensor-parallel CPU tests (``test_parallel.py``): runs every scenario under a
gloo process group and writes ``rank<r>.json`` with, per scenario, the largest difference from
the single-process sparse model (or the error). Not a test module itself: the test spawns it."""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import timedelta
from typing import Any, Callable, Dict

import torch
import torch.distributed as dist
from torch.distributed.tensor import Shard
from torch import nn

import sparseflow as sf
from sparseflow.parallel import ColumnParallelSparseLinear, RowParallelSparseLinear

WORLD = 2
#: Inputs shared by all ranks (same seed), small enough for a 2-core CI machine.
TOKENS = 5


def _diff(a: torch.Tensor, b: torch.Tensor) -> Dict[str, float]:
    return {"max_abs": float((a.float() - b.float()).abs().max()), "scale": float(b.float().abs().max())}


def column_odd_n(rank: int, tmp: str) -> Dict[str, Any]:
    """N = 77 (39 + 38 rows), K = 200, bias + fused SiLU, from a SparseLinear and from dense."""
    torch.manual_seed(1)
    dense = nn.Linear(200, 77)
    full = sf.SparseLinear.from_dense(dense, activation="silu")
    x = torch.randn(3, TOKENS, 200)
    ref = full(x)
    a = ColumnParallelSparseLinear.from_sparse(full, gather_output=True)
    b = ColumnParallelSparseLinear.from_dense(dense, activation="silu")
    local = b(x)
    return {
        "from_sparse": _diff(a(x), ref),
        "from_dense_local": _diff(local, ref[..., b.start : b.stop]),
        "local_rows": [b.start, b.stop],
        "local_activation": b.local.activation,
    }


def _row(k: int) -> Dict[str, Any]:
    torch.manual_seed(2)
    dense = nn.Linear(k, 77)
    full = sf.SparseLinear.from_dense(dense, activation="relu")
    x = torch.randn(2, TOKENS, k)
    ref = full(x)
    a = RowParallelSparseLinear.from_sparse(full, input_is_parallel=False)
    b = RowParallelSparseLinear.from_dense(dense, activation="relu")
    return {
        "from_sparse": _diff(a(x), ref),
        "from_dense": _diff(b(x[..., b.start : b.stop]), ref),
        "local_cols": [b.start, b.stop],
        "local_epilogue": b.local.epilogue,
        "activation_after_all_reduce": b.activation,
    }


def row_k200(rank: int, tmp: str) -> Dict[str, Any]:
    """K = 200: shards of 104 and 96 columns (whole groups, not multiples of 64)."""
    return _row(200)


def row_k196(rank: int, tmp: str) -> Dict[str, Any]:
    """K = 196: the last shard (92 columns, 23 groups) ends in the padding nibble."""
    return _row(196)


def _llama(**sizes: int) -> nn.Module:
    from conftest import tiny_llama

    # intermediate 200 → down_proj shards of 104 and 96; head_dim 16 → o_proj shards of 32.
    return tiny_llama(intermediate_size=200, attention_bias=True, mlp_bias=True, **sizes)


def _ids() -> torch.Tensor:
    return torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(3))


def _reference() -> torch.Tensor:
    model, _ = sf.sparsify(_llama(), progress=False)
    with torch.no_grad():
        return model(_ids()).logits


def llama_sparsify(rank: int, tmp: str) -> Dict[str, Any]:
    """sf.sparsify(model, tp_group=...) on a 2-layer Llama vs the single-process sparse model,
    counting the all-reduces of one forward."""
    ref = _reference()
    model, report = sf.sparsify(_llama(), tp_group=dist.group.WORLD, progress=False)
    calls = []
    real = dist.all_reduce

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    dist.all_reduce = counting
    try:
        with torch.no_grad():
            out = model(_ids()).logits
    finally:
        dist.all_reduce = real
    rows = {r.name: r for r in report}
    mlp = "model.layers.0.mlp"
    try:
        sf.save(model, os.path.join(tmp, f"sharded-{rank}"))
        save_error = None
    except ValueError as e:
        save_error = str(e)
    return {
        "logits": _diff(out, ref),
        "all_reduces": len(calls),
        "layers": len(model.model.layers),
        "gate_fused": rows[f"{mlp}.gate_proj"].fused,
        "down_note": rows[f"{mlp}.down_proj"].note,
        "q_note": rows["model.layers.0.self_attn.q_proj"].note,
        "lm_head": rows["lm_head"].status,
        "statuses": sorted({r.status for r in report}),
        "down_local": list(model.model.layers[0].mlp.down_proj.local.values.shape),
        "save_error": save_error,
    }


def llama_fused(rank: int, tmp: str) -> Dict[str, Any]:
    """sf.sparsify(model, tp_group=..., fuse_projections=True): each rank fuses its own gate/up
    shards (with their biases) into one GEMM; the logits are the single-process model's."""
    ref = _reference()
    model, report = sf.sparsify(_llama(), tp_group=dist.group.WORLD, fuse_projections=True, progress=False)
    with torch.no_grad():
        out = model(_ids()).logits
    mlp = model.model.layers[0].mlp
    return {
        "logits": _diff(out, ref),
        "groups": [g.status for g in report.groups],
        "mlp": type(mlp).__name__,
        "local": [mlp.gate_up_proj.out_features, mlp.gate_up_proj.epilogue],
        "down": type(mlp.down_proj).__name__,
    }


def llama_exclude(rank: int, tmp: str) -> Dict[str, Any]:
    """A planned layer left dense by exclude is sharded dense (its block stays consistent)."""
    exclude = ("lm_head", "o_proj")
    ref_model, _ = sf.sparsify(_llama(), exclude=exclude, progress=False)
    model, report = sf.sparsify(_llama(), tp_group=dist.group.WORLD, exclude=exclude, progress=False)
    with torch.no_grad():
        out = _diff(model(_ids()).logits, ref_model(_ids()).logits)
    o = model.model.layers[0].self_attn.o_proj
    row = report["model.layers.0.self_attn.o_proj"]
    return {"logits": out, "o_local": type(o.local).__name__, "o_status": row.status, "o_reason": row.reason}


def load_sparseflow(rank: int, tmp: str) -> Dict[str, Any]:
    """sf.save of the single-process sparse model, loaded per rank from its slices."""
    ref = _reference()
    path = os.path.join(tmp, "sparse")
    if rank == 0:
        model, _ = sf.sparsify(_llama(), progress=False)
        sf.save(model, path)
    dist.barrier()
    model = sf.parallel.load(path, _llama())
    with torch.no_grad():
        out = model(_ids()).logits
    return {"logits": _diff(out, ref), "act_fn": type(model.model.layers[0].mlp.act_fn).__name__}


def load_tp_dir(rank: int, tmp: str) -> Dict[str, Any]:
    """sf.save, sharded on disk (sf.parallel.shard = sparseflow convert --tp 2): each rank opens
    only its own file; the single-process sf.load refuses the sharded directory."""
    ref = _reference()
    path, sharded = os.path.join(tmp, "tp-src"), os.path.join(tmp, "tp-2")
    if rank == 0:
        model, _ = sf.sparsify(_llama(), progress=False)
        sf.save(model, path)
        sf.parallel.shard(path, sharded, WORLD)
    dist.barrier()
    model = sf.parallel.load(sharded, _llama())
    with torch.no_grad():
        out = {"logits": _diff(model(_ids()).logits, ref)}
    with open(os.path.join(sharded, "sparseflow.json")) as f:
        out["files"] = json.load(f)["tensor_parallel"]["files"]
    try:
        sf.load(sharded, _llama())
        out["single_process_error"] = None
    except ValueError as e:
        out["single_process_error"] = str(e)
    return out


def load_hf(rank: int, tmp: str) -> Dict[str, Any]:
    """A dense HF checkpoint (pruned per rank) and a dense-stored 2:4 one (checked per rank)."""
    ref = _reference()
    dense_path, pruned_path = os.path.join(tmp, "hf-dense"), os.path.join(tmp, "hf-24")
    if rank == 0:
        _llama().save_pretrained(dense_path)
        model, _ = sf.sparsify(_llama(), progress=False, fuse=False)
        for name, module in list(model.named_modules()):
            if isinstance(module, sf.SparseLinear):
                linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
                linear.weight.data, linear.bias.data = module.to_dense(), module.bias
                parent, _, attr = name.rpartition(".")
                setattr(model.get_submodule(parent), attr, linear)
        model.save_pretrained(pruned_path)
    dist.barrier()
    out = {}
    for key, path, method in (("dense", dense_path, "magnitude"), ("stored_24", pruned_path, "already-2:4")):
        model = sf.parallel.load(path, _llama(), method=method)
        with torch.no_grad():
            out[key] = _diff(model(_ids()).logits, ref)
    try:
        sf.parallel.load(dense_path, _llama(), method="already-2:4")
        out["not_24_error"] = None
    except ValueError as e:
        out["not_24_error"] = str(e)
    return out


def plan_styles(rank: int, tmp: str) -> Dict[str, Any]:
    """parallelize() with torch.distributed.tensor.parallel's ColwiseParallel / RowwiseParallel
    on an MLP (Linear, ReLU, Linear): the ReLU between them acts on the column shard."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    def mlp() -> nn.Module:
        torch.manual_seed(4)
        return nn.Sequential(nn.Linear(64, 200), nn.ReLU(), nn.Linear(200, 77))

    x = torch.randn(3, 64)
    ref, _ = sf.sparsify(mlp(), fuse=False, progress=False)
    model = sf.parallel.parallelize(mlp(), {"0": ColwiseParallel(), "2": RowwiseParallel()})
    try:
        sf.parallel.parallelize(mlp(), {"2": RowwiseParallel(output_layouts=Shard(0))})
        shard_output = None
    except ValueError as e:
        shard_output = str(e)
    return {"out": _diff(model(x), ref(x)), "types": [type(m).__name__ for m in model], "shard_output": shard_output}


SCENARIOS: Dict[str, Callable[[int, str], Dict[str, Any]]] = {
    f.__name__: f
    for f in (
        column_odd_n, row_k200, row_k196, plan_styles, llama_sparsify, llama_fused, llama_exclude,
        load_sparseflow, load_tp_dir, load_hf,
    )  # fmt: skip
}


def main(rank: int, tmp: str, tests_dir: str) -> None:
    sys.path.insert(0, tests_dir)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    results: Dict[str, Any] = {}
    try:
        for name, scenario in SCENARIOS.items():
            try:
                results[name] = scenario(rank, tmp)
            except Exception:  # recorded for the test to report; the next scenario still runs
                results[name] = {"error": traceback.format_exc()}
            dist.barrier()
    finally:
        with open(os.path.join(tmp, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    dist.barrier()  # nobody tears down its connections while another rank still uses them
    dist.destroy_process_group()
    # As python/benchmarks/tp.py: skip C++ static destructors, which aborted ~1 in 5 gloo runs
    # at exit (SIGABRT, "terminate called without an active exception") after the results.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
