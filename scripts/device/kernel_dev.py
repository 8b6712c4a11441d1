#!/usr/bin/env python3
"""Device harness for crates/codegen kernels (kernel development; the Rust verify script is the
acceptance test). Loads the cubins written by `cargo run -p sparseflow-codegen --example
kernel_dev_dump -- .carry/kernels sm_90a`, re-implements the upload layout in numpy (vectorised;
must match crates/codegen/src/layout.rs), checks every kernel against a float64 reference on
random data with NaN-filled outputs, then times the decode kernels against torch.matmul
(cuBLAS) with weights rotated past the 50 MB L2, inside CUDA graphs.

Usage: python3 scripts/device/kernel_dev.py KERNEL_DIR OUT_JSON [--no-bench] [--bench-only]
       [--shapes NxK,...] [--ms 1,2,...] [--check-only NAME_SUBSTRING]
"""
import json, math, os, sys, time
import numpy as np
try:
    import torch
    import cupy as cp
except ImportError:  # --selftest runs without a GPU stack
    pass

CODES = np.array([0x4, 0x8, 0xC, 0x9, 0xD, 0xE], dtype=np.uint8)  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
IDX0 = CODES & 3
IDX1 = CODES >> 2


def upload(vals16, codes, n, k):
    """vals16: uint16 bits [n, k/2]; codes: u8 [n, k/4]. Returns (values bytes, meta bytes)."""
    np_, kp = -(-n // 128) * 128, -(-k // 64) * 64
    V = np.zeros((np_, kp // 2), dtype=np.uint16)
    V[:n, : k // 2] = vals16
    RB, KS, KP = np_ // 16, kp // 32, kp // 64
    A = V.reshape(RB, 2, 8, KS, 2, 4, 2).transpose(0, 3, 2, 5, 4, 1, 6)
    Q = np.full((np_, kp // 4), 4, dtype=np.uint32)
    Q[:n, : k // 4] = codes
    Q = Q.reshape(RB, 2, 8, KP, 4, 4).transpose(0, 3, 2, 4, 1, 5)  # rb kp g t hh i
    shifts = (16 * np.arange(2)[:, None] + 4 * np.arange(4)[None, :]).astype(np.uint32)
    W = (Q << shifts).sum(axis=(4, 5), dtype=np.uint64).astype(np.uint32)
    return np.ascontiguousarray(A).view(np.uint8).ravel(), np.ascontiguousarray(W).view(np.uint8).ravel()


def torch_activations():
    """`python/sparseflow/activations.py`: the torch meaning of every activation of the epilogue
    table, loaded by path (this script runs without the compiled sparseflow package)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../python/sparseflow/activations.py")
    spec = importlib.util.spec_from_file_location("sparseflow_activations", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TORCH


def epi_ref(kernel, acc, bias):
    """The kernel's epilogue in float64. `uses_bias` comes from the library's table (through
    kernels.json); the activation is the epilogue's name without `bias_`, the table's naming
    rule (crates/core/src/epilogue.rs checks it for every entry)."""
    name = kernel["epilogue"]
    if kernel["uses_bias"]:
        acc = acc + bias
        name = "none" if name == "bias" else name.removeprefix("bias_")
    if name == "none":
        return acc
    table = torch_activations()
    if name not in table:
        raise SystemExit(f"no torch reference for activation {name!r}: add it to python/sparseflow/activations.py")
    return table[name](acc)


def empty_workspace(nbytes):
    """A split-K workspace as the runtime hands it over: every word the empty sentinel (all bits
    set, SF_WS_EMPTY); None when the kernel needs none."""
    if not nbytes:
        return None
    return torch.full((nbytes // 4,), -1, device="cuda", dtype=torch.int32).view(torch.float32)


class Kernel:
    def __init__(self, kdir, meta):
        self.m = meta
        self.mod = cp.RawModule(path=os.path.join(kdir, meta["name"] + ".cubin"))
        self.fn = self.mod.get_function(meta["name"])
        if meta["smem"] > 48 * 1024:
            self.fn.max_dynamic_shared_size_bytes = meta["smem"]

    def grid(self, M, N):
        m = self.m
        if m["family"] == "sm80":
            return (-(-N // m["tile_n"]), -(-M // m["tile_m"]), 1)
        return (-(-N // m["tile_n"]), m["split_k"], -(-M // m["tile_m"]))

    def ws(self, M, N):
        m = self.m
        if m["family"] == "decode" and m["split_k"] > 1:
            tiles = -(-N // m["tile_n"]) * -(-M // m["tile_m"])
            return tiles * (m["split_k"] - 1) * m["tile_m"] * m["tile_n"] * 4
        return 0

    def launch(self, x, wv, wm, b, y, ws, M, N, K, stream):
        with stream:
            self.fn(self.grid(M, N), (self.m["threads"], 1, 1),
                    (x.data_ptr(), wv.data_ptr(), wm.data_ptr(), b.data_ptr() if b is not None else 0,
                     y.data_ptr(), ws.data_ptr() if ws is not None else 0,
                     np.int32(M), np.int32(N), np.int32(K)),
                    shared_mem=self.m["smem"])


def tdt(d):
    return torch.float16 if d == "f16" else torch.bfloat16


def make_weight(N, K, dtype, rng):
    """Random 2:4 weight rounded to dtype: (dense f64 [N,K] numpy, values bytes, meta bytes) on GPU."""
    g = K // 4
    choice = rng.integers(0, 6, size=(N, g))
    vals = (rng.standard_normal((N, g, 2)) / math.sqrt(K / 2)).astype(np.float32)
    vals[rng.random((N, g, 2)) < 0.05] = 0.0
    tv = torch.from_numpy(vals.reshape(N, K // 2)).to(tdt(dtype))
    bits = tv.view(torch.int16).numpy().view(np.uint16)
    vr = tv.float().numpy().astype(np.float64).reshape(N, g, 2)
    dense = np.zeros((N, g, 4))
    rows = np.arange(N)[:, None]
    cols = np.arange(g)[None, :]
    dense[rows, cols, IDX0[choice]] = vr[..., 0]
    dense[rows, cols, IDX1[choice]] = vr[..., 1]
    wv, wm = upload(bits, CODES[choice], N, K)
    return dense.reshape(N, K), torch.from_numpy(wv).cuda(), torch.from_numpy(wm).cuda()


def check(kern, M, N, K, rng, results, wcache):
    m = kern.m
    dt = tdt(m["dtype"])
    key = (N, K, m["dtype"])
    if key not in wcache:
        dense, wv, wm = make_weight(N, K, m["dtype"], rng)
        wcache[key] = (torch.from_numpy(dense).cuda(), wv, wm)
    wd, wv, wm = wcache[key]
    x = torch.randn(M, K, device="cuda").to(dt)
    x[:, -1] = 0.5  # a non-multiple-of-tile tail value
    b = torch.randn(N, device="cuda").to(dt) if m["uses_bias"] else None
    y = torch.full((M, N), float("nan"), device="cuda", dtype=dt)
    ws = empty_workspace(kern.ws(M, N))
    s = cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
    ok = True
    for rep in range(2):  # twice: the second launch checks the workspace was emptied
        y.fill_(float("nan"))
        kern.launch(x, wv, wm, b, y, ws, M, N, K, s)
        torch.cuda.synchronize()
        acc = x.double() @ wd.T
        ref = epi_ref(m, acc, b.double() if b is not None else 0.0)
        tol = (2e-3 if m["dtype"] == "f16" else 1.6e-2) * ref.abs() + (2e-3 if m["dtype"] == "f16" else 1.6e-2)
        err = (y.double() - ref).abs()
        bad = ~(err <= tol)
        nbad = int(bad.sum())
        if nbad:
            ok = False
            idx = bad.nonzero()[0].tolist()
            results["failures"].append(dict(kernel=m["name"], M=M, N=N, K=K, rep=rep, bad=nbad,
                                            first=idx, got=float(y[idx[0], idx[1]]), want=float(ref[idx[0], idx[1]]),
                                            max_err=float(torch.nan_to_num(err, nan=1e30).max())))
            break
    if ws is not None and not bool((ws.view(torch.int32) == -1).all()):
        ok = False
        results["failures"].append(dict(kernel=m["name"], M=M, N=N, K=K, workspace_not_emptied=True))
    results["pass" if ok else "fail"] += 1


def correctness(kdir, kernels, results):
    rng = np.random.default_rng(1)
    wcache = {}
    shapes_sm80 = [(1, 64, 64), (7, 100, 204), (33, 4100, 4104), (127, 256, 1000), (256, 384, 512), (1000, 1000, 516)]
    shapes_dec = [(1, 64, 64), (2, 100, 204), (7, 4100, 4104), (16, 1024, 4096), (3, 256, 1000), (9, 1000, 516), (16, 4096, 14336), (24, 200, 300)]
    only = sys.argv[sys.argv.index("--check-only") + 1] if "--check-only" in sys.argv else None
    for meta in kernels:
        if only is not None and only not in meta["name"]:
            continue
        kern = Kernel(kdir, meta)
        full = meta["epilogue"] == "none" and (meta["stages"] == 3 or meta["family"] == "decode") or meta["warps"] == 4 and meta["tile_m"] == 64
        shapes = shapes_sm80 if meta["family"] == "sm80" else shapes_dec
        if meta["family"] == "decode":
            shapes = [s for s in shapes if s[0] <= meta["tile_m"] or s[0] == 24]
        if not full:
            shapes = shapes[:3]
        for (M, N, K) in shapes:
            check(kern, M, N, K, rng, results, wcache)
    print("correctness:", results["pass"], "pass,", results["fail"], "fail", flush=True)


def timeit_plain(fn, stream, reps):
    with torch.cuda.stream(stream):
        fn(0)
        torch.cuda.synchronize()
        ts = []
        for _ in range(5):
            e0 = torch.cuda.Event(enable_timing=True); e1 = torch.cuda.Event(enable_timing=True)
            e0.record(stream)
            for i in range(reps):
                fn(i)
            e1.record(stream); e1.synchronize()
            ts.append(e0.elapsed_time(e1) * 1e3 / reps)
    return float(np.median(ts))


def bench(kdir, kernels, results, shapes, ms):
    """Times every decode f16 `none` kernel (all variants) per shape and M against cuBLAS; for
    the three fastest plain configs also times the same config with bias_silu (each variant)
    right after the plain one, so the fused-epilogue overhead is measured config by config."""
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    cands = [k for k in kernels if k["family"] == "decode" and k["epilogue"] == "none" and k["dtype"] == "f16"]
    stream = torch.cuda.Stream()
    out = []
    for (N, K) in shapes:
        sbytes = N * K // 2 * 2 + N * K // 8
        copies = max(2, math.ceil(150e6 / sbytes))
        dcopies = max(2, math.ceil(150e6 / (N * K * 2)))
        _, wv, wm = make_weight(N, K, "f16", rng)
        wvs = [wv.clone() for _ in range(copies)]
        wms = [wm.clone() for _ in range(copies)]
        wds = [torch.randn(N, K, device="cuda", dtype=torch.float16) for _ in range(dcopies)]
        bias = torch.randn(N, device="cuda", dtype=torch.float16)
        for M in ms:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            y = torch.empty(M, N, device="cuda", dtype=torch.float16)

            def timeit(fn, reps=20):
                with torch.cuda.stream(stream):
                    fn(0); fn(1)
                    torch.cuda.synchronize()
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g, stream=stream):
                        for i in range(reps):
                            fn(i)
                    g.replay(); torch.cuda.synchronize()
                    ts = []
                    for _ in range(7):
                        e0 = torch.cuda.Event(enable_timing=True); e1 = torch.cuda.Event(enable_timing=True)
                        e0.record(stream); g.replay(); e1.record(stream); e1.synchronize()
                        ts.append(e0.elapsed_time(e1) * 1e3 / reps)
                return float(np.median(ts))

            def time_kernel(meta, b):
                kern = Kernel(kdir, meta)
                ws = empty_workspace(kern.ws(M, N))
                s = cp.cuda.ExternalStream(stream.cuda_stream)
                return timeit(lambda i: kern.launch(x, wvs[i % copies], wms[i % copies], b, y, ws, M, N, K, s))

            t_cublas = timeit(lambda i: torch.matmul(x, wds[i % dcopies].T, out=y))
            rows = []
            for meta in cands:
                if meta["tile_m"] < M or (meta["tile_m"] == 16 and M <= 8):
                    continue
                rows.append((time_kernel(meta, None), meta["name"]))
            rows.sort()
            if not rows:
                print(f"skip {N}x{K} M={M}: no decode config covers M in one token tile", flush=True)
                continue
            cfg = lambda k: tuple(k[f] for f in ("tile_m", "tile_n", "stages", "split_k"))
            by_name = {k["name"]: k for k in kernels}
            # best / speedup / geomean describe the library's template; variants are reported
            # beside it (best_variant) and in `all`.
            library = [r for r in rows if by_name[r[1]].get("variant", "") == ""]
            best = library[0]
            variants_only = [r for r in rows if by_name[r[1]].get("variant", "") != ""]
            epi_cmp = []
            plain_top = [by_name[n] for _, n in library[:3]]
            for pk in plain_top:
                # Every kernel of this config (plain and bias_silu, each variant), timed back to
                # back and reported relative to the plain base kernel.
                same = [k for k in kernels if k["family"] == "decode" and k["dtype"] == "f16" and cfg(k) == cfg(pk)
                        and k["epilogue"] in ("none", "bias_silu")]
                rec = dict(kernel=pk["name"])
                for k in same:
                    tag = k["epilogue"] + ("_" + k["variant"] if k.get("variant") else "")
                    rec[tag + "_us"] = time_kernel(k, bias if k["uses_bias"] else None)
                rec["vs_plain"] = {k[:-3]: v / rec["none_us"] - 1 for k, v in rec.items() if k.endswith("_us")}
                epi_cmp.append(rec)
            rec = dict(epilogue_cmp=epi_cmp, N=N, K=K, M=M, cublas_us=t_cublas, best_us=best[0], best=best[1],
                       speedup=t_cublas / best[0], top8=rows[:8], all=rows,
                       best_variant=variants_only[0] if variants_only else None,
                       gbps=(sbytes + M * K * 2 + M * N * 2) / best[0] / 1e3)
            print(json.dumps({k: v for k, v in rec.items() if k != "all"}), flush=True)
            out.append(rec)
        del wvs, wms, wds
        torch.cuda.empty_cache()
    results["bench"] = out
    out2 = []
    sm80 = [k for k in kernels if k["family"] == "sm80" and k["epilogue"] == "none" and k["dtype"] == "f16"]
    for (N, K) in [(4096, 4096), (14336, 4096)] if sm80 else []:
        _, wv, wm = make_weight(N, K, "f16", rng)
        wd = torch.randn(N, K, device="cuda", dtype=torch.float16)
        for M in [32, 128, 1024, 4096]:
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            y = torch.empty(M, N, device="cuda", dtype=torch.float16)
            reps = 5 if M >= 1024 else 20
            tc = timeit_plain(lambda i: torch.matmul(x, wd.T, out=y), stream, reps)
            rows = []
            for meta in sm80:
                kern = Kernel(kdir, meta)
                s = cp.cuda.ExternalStream(stream.cuda_stream)
                rows.append((timeit_plain(lambda i: kern.launch(x, wv, wm, None, y, None, None, M, N, K, s), stream, reps), meta["name"]))
            rows.sort()
            rec = dict(N=N, K=K, M=M, cublas_us=tc, best_us=rows[0][0], best=rows[0][1], speedup=tc / rows[0][0],
                       tflops=2 * M * N * K / rows[0][0] / 1e6, top3=rows[:3])
            print("SM80", json.dumps(rec), flush=True)
            out2.append(rec)
    results["bench_sm80"] = out2
    sp = [r["speedup"] for r in out]
    results["geomean_speedup"] = float(np.exp(np.mean(np.log(sp))))
    print("geomean speedup", results["geomean_speedup"], "min", min(sp))


def selftest():
    """Digest of the fixed pattern of layout_tests.rs::layout_digest_matches_python_port."""
    import hashlib
    n, k = 40, 200
    vals = np.zeros((n, k // 2), dtype=np.float16)
    codes = np.zeros((n, k // 4), dtype=np.uint8)
    for row in range(n):
        for grp in range(k // 4):
            codes[row, grp] = CODES[(row * 7 + grp * 3) % 6]
            for j in range(2):
                vals[row, grp * 2 + j] = 1 + (row * 13 + grp * 5 + j) % 97
    wv, wm = upload(vals.view(np.uint16), codes, n, k)
    print(hashlib.sha256(wv.tobytes()).hexdigest()[:16], hashlib.sha256(wm.tobytes()).hexdigest()[:16])


def arg_list(flag, default, parse):
    """`--flag a,b,c` from argv (comma separated), parsed item by item."""
    v = sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default
    return [parse(item) for item in v.split(",")]


def main():
    if "--selftest" in sys.argv:
        return selftest()
    kdir, out_json = sys.argv[1], sys.argv[2]
    kernels = json.load(open(os.path.join(kdir, "kernels.json")))
    results = dict(device=torch.cuda.get_device_name(), pass_=0, failures=[])
    results["pass"] = 0; results["fail"] = 0
    t0 = time.time()
    try:
        if "--bench-only" not in sys.argv:
            correctness(kdir, kernels, results)
        results["correctness_s"] = time.time() - t0
        if "--no-bench" not in sys.argv:
            bench(kdir, kernels, results, arg_list("--shapes", "4096x4096,14336x4096,4096x14336,1024x4096",
                                                   lambda v: tuple(int(d) for d in v.split("x"))),
                  arg_list("--ms", "1,2,4,8,16", int))
    finally:
        results["failures"] = results["failures"][:50]
        json.dump(results, open(out_json, "w"), indent=1)
    for f in results["failures"][:15]:
        print("FAIL", f)


if __name__ == "__main__":
    main()
