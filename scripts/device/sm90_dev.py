#!/usr/bin/env python3
"""Development harness of the sm90 (Hopper wgmma.sp) kernel family, before and beside its Rust
integration (crates/runtime's correctness matrix is the acceptance test).

  build OUT_DIR [--configs C,...] [--no-hang-guard]   dev machine: NVRTC-compiles the template
        (crates/codegen/kernels/sm90_sparse_gemm.cu) for sm_90a, writes cubins, ptxas logs and
        kernels.json; fails on spills. The hang guard (a trap after ~2^28 barrier polls) costs
        registers: with it ptxas serializes 256x128 tiles that production (no guard) pipelines,
        so time with --no-hang-guard.
  run KERNEL_DIR OUT_JSON [--no-bench]         GPU machine: checks every kernel against a
        float64 reference on random 2:4 data (odd shapes, NaN-filled outputs), then times them
        against F.linear (cuBLAS) in CUDA graphs with weights rotated past L2.

  profile KERNEL_DIR NAME N K M               GPU machine: launches one kernel 3 times (for ncu).
  soak KERNEL_DIR N K M SECONDS OUT_JSON NAME...   GPU machine: cuBLAS and each kernel for SECONDS
        each under nvidia-smi sampling (SM clock, power, clock-event reasons): sustained clocks.

A config C is TILE_M x TILE_N x TILE_K x STAGES [x GROUP_N [x INFLIGHT [x DEV [x SPLIT_K [x ASYNC [x ASMEM [x CLUSTER]]]]]]],
e.g. 256x128x64x4 or 128x128x128x4x8x1x0x4x1; DEV 1 = SF_DEV_SKIP_LOADS, 2 = SF_DEV_SKIP_MMA (timing
experiments with wrong results; correctness skips them); ASYNC 1 = SF_ASYNC_MAINLOOP (the loop shape
ptxas keeps asynchronous; the name gets an "a1" suffix; with SPLIT_K 1 launched persistent, one CTA
per SM at most); ASMEM 1 = SF_A_SMEM (A from shared memory through a descriptor, the weight
row-major compressed; suffix "ss"); CLUSTER 2 or 4 = SF_CLUSTER_N (persistent only: X multicast
across the cluster, launched with cuLaunchKernelEx in as many clusters as the driver fits;
suffix "c2"/"c4"). `build` prints every ptxas "wgmma ...
serialized" warning (C7512/C7514/C7520) it finds. Epilogue variants are built for the
first config only. Env for `run`: SF_SHAPES=NxK,..., SF_MS=..., SF_BENCH_ONLY=substring.

Kernel ABI: (CUtensorMap x_map, CUtensorMap w_map, CUtensorMap e_map, T* bias, T* y,
float* workspace, int M, int N, int K); x_map: 2-D [M, K] 16-bit, box 64 x TILE_M, 128-byte
swizzle, zero fill; w_map / e_map: the fragment-layout values / metadata as 3-D boxes.
"""
import ctypes, json, math, os, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KDIR = HERE.parent.parent / "crates" / "codegen" / "kernels"
EPILOGUES = {"none": "acc", "bias": "acc + bias", "bias_silu": "sf_silu(acc + bias)", "gelu": "sf_gelu(acc)"}


def wgmma_fn(tile_m, a_smem=False):
    """sf_wgmma_sp<SEL>(d, a, desc_b, meta, scale_d) for wgmma N = tile_m, A from registers; with
    a_smem, sf_wgmma_sp_ss<SEL>(d, desc_a, desc_b, meta, scale_d), A from shared memory
    (SF_A_SMEM: one more immediate, A's transpose)."""
    nacc = tile_m // 2
    dl = ", ".join(f"%{i}" for i in range(nacc))
    a0 = nacc
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(nacc))
    if a_smem:
        name, a_param, a_ops, a_ins, trans = "sf_wgmma_sp_ss", "unsigned long long desc_a", f"%{a0}", '"l"(desc_a)', "0, 0"
        n_a = 1
    else:
        name, a_param, trans = "sf_wgmma_sp", "const u32 (&a)[4]", "0"
        a_ops, a_ins, n_a = f"{{%{a0}, %{a0 + 1}, %{a0 + 2}, %{a0 + 3}}}", '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3])', 4
    b = a0 + n_a  # desc_b, then meta, SEL, scale_d
    return f"""
template <int SEL>
__device__ __forceinline__ void {name}(float (&d)[{nacc}], {a_param}, unsigned long long desc_b, u32 meta, int scale_d) {{
    asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{b + 3}, 0;\\n"
                 "wgmma.mma_async.sp.sync.aligned.m64n{tile_m}k32.f32." SF_MMA_TYPE "." SF_MMA_TYPE " "
                 "{{{dl}}}, {a_ops}, %{b}, %{b + 1}, %{b + 2}, p, 1, 1, {trans};\\n}}\\n"
                 : {outs}
                 : {a_ins}, "l"(desc_b), "r"(meta), "n"(SEL), "r"(scale_d));
}}
"""


def stage_bytes(tm, tn, tk):
    x = (tk // 64) * tm * 128
    a = (tn // 16) * (tk // 32) * 512
    e = (tn // 16) * (tk // 64) * 128
    return (x + a + e + 1023) // 1024 * 1024


def smem_bytes(tm, tn, tk, st, asyn=0):
    """As crates/codegen/src/families/sm90.rs resources(): the ring, 1 KiB of alignment, the
    barriers and, for the asynchronous (a1) kernels, the per-warp epilogue staging buffers."""
    return st * stage_bytes(tm, tn, tk) + 1024 + 16 * st + (128 + (tn // 16) * 2048 if asyn else 0)


def source(name, dtype, epi, tm, tn, tk, st, grp, infl, dev="", split=1, asyn=0, guard=True, asmem=0, cluster=1):
    defs = [f"#define SF_KERNEL_NAME {name}", f"#define SF_DTYPE_{dtype.upper()} 1", f"#define TILE_M {tm}",
            f"#define TILE_N {tn}", f"#define TILE_K {tk}", f"#define STAGES {st}", f"#define SPLIT_K {split}", f"#define SF_GROUP_N {grp}", f"#define SF_WGMMA_INFLIGHT {infl}", f"#define SF_ASYNC_MAINLOOP {asyn}", f"#define SF_A_SMEM {asmem}", f"#define SF_CLUSTER_N {cluster}",
            f"#define SF_USES_BIAS {1 if 'bias' in EPILOGUES[epi] else 0}",
            f"#define SF_EPILOGUE(acc, bias) ({EPILOGUES[epi]})"] + (["#define SF_HANG_GUARD 1"] if guard else [])
    defs += [f"#define {dev} 1"] if dev else []
    parts = ["\n".join(defs), (KDIR / "mma_sp.cuh").read_text(), (KDIR / "epilogue.cuh").read_text(),
             wgmma_fn(tm), wgmma_fn(tm, a_smem=True), (KDIR / "sm90_sparse_gemm.cu").read_text()]
    return "\n".join(p.replace("#pragma once", "") for p in parts)


def nvrtc():
    import glob
    libs = glob.glob(str(HERE.parent.parent / ".venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13"))
    return ctypes.CDLL(libs[0] if libs else "libnvrtc.so.13")


def compile_cubin(lib, src, name):
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), f"{name}.cu".encode(), 0, None, None) == 0
    opts = [b"--gpu-architecture=sm_90a", b"-std=c++17", b"--ptxas-options=-v"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    n = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetProgramLog(prog, log)
    if rc != 0:
        raise SystemExit(f"{name}: NVRTC failed\n{log.value.decode()}")
    if os.environ.get("SF_DUMP_PTX"):
        lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
        ptx = ctypes.create_string_buffer(n.value)
        lib.nvrtcGetPTX(prog, ptx)
        Path(os.environ["SF_DUMP_PTX"], f"{name}.ptx").write_bytes(ptx.value)
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(n))
    cub = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetCUBIN(prog, cub)
    return cub.raw, log.value.decode()


def build(out, configs, guard=True):
    lib = nvrtc()
    out.mkdir(parents=True, exist_ok=True)
    kernels = []
    for dtype in ("f16", "bf16"):
        for epi in EPILOGUES:
            for cfg in configs:
                (tm, tn, tk, st), grp = cfg[:4], (cfg[4] if len(cfg) > 4 else 8)
                infl = cfg[5] if len(cfg) > 5 else 1
                dev = {0: "", 1: "SF_DEV_SKIP_LOADS", 2: "SF_DEV_SKIP_MMA"}[cfg[6] if len(cfg) > 6 else 0]
                split = cfg[7] if len(cfg) > 7 else 1
                asyn = cfg[8] if len(cfg) > 8 else 0
                asmem = cfg[9] if len(cfg) > 9 else 0
                cluster = cfg[10] if len(cfg) > 10 else 1
                if epi != "none" and cfg != configs[0]:
                    continue
                name = (f"sf_sm90_{dtype}_{epi}_m{tm}n{tn}k{tk}s{st}g{grp}i{infl}sk{split}" + ("a1" if asyn else "")
                        + ("ss" if asmem else "") + (f"c{cluster}" if cluster > 1 else "")
                        + (f"_{dev.lower()[7:]}" if dev else ""))
                t0 = time.time()
                cub, log = compile_cubin(lib, source(name, dtype, epi, tm, tn, tk, st, grp, infl, dev, split, asyn, guard, asmem, cluster), name)
                (out / f"{name}.cubin").write_bytes(cub)
                (out / f"{name}.log").write_text(log)
                spill = [l for l in log.splitlines() if "spill" in l and not " 0 bytes spill stores, 0 bytes spill loads" in l]
                regs = [l.strip() for l in log.splitlines() if "registers" in l]
                serial = sorted({w for w in ("C7512", "C7514", "C7520") if w in log})
                print(f"{name}: {time.time() - t0:.1f}s {regs[-1] if regs else ''}"
                      + (f"  wgmma serialized ({', '.join(serial)})" if serial else ""), flush=True)
                if spill:
                    raise SystemExit(f"{name} spills:\n{log}")
                kernels.append(dict(name=name, dtype=dtype, epilogue=epi, tile_m=tm, tile_n=tn, tile_k=tk, stages=st,
                                    smem=smem_bytes(tm, tn, tk, st, asyn), threads=128 * (tn // 64 + 1), split=split,
                                    a_smem=asmem, persistent=bool(asyn and split == 1), cluster=cluster))
    (out / "kernels.json").write_text(json.dumps(kernels, indent=1))


# ---------------------------------------------------------------- GPU side
class Driver:
    def __init__(self):
        self.cu = ctypes.CDLL("libcuda.so.1")

    def ok(self, rc, what):
        if rc != 0:
            s = ctypes.c_char_p()
            self.cu.cuGetErrorString(rc, ctypes.byref(s))
            raise RuntimeError(f"{what}: {rc} {s.value}")

    def load(self, path, name, smem):
        mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
        data = Path(path).read_bytes()
        self.ok(self.cu.cuModuleLoadData(ctypes.byref(mod), data), "cuModuleLoadData")
        self.ok(self.cu.cuModuleGetFunction(ctypes.byref(fn), mod, name.encode()), "cuModuleGetFunction")
        self.ok(self.cu.cuFuncSetAttribute(fn, 8, smem), "cuFuncSetAttribute(max dynamic smem)")
        return fn

    def tmap_x(self, x, M, K, tile_m):
        m = (ctypes.c_uint64 * 16)()
        dims = (ctypes.c_uint64 * 2)(K, M)
        strides = (ctypes.c_uint64 * 1)(K * 2)
        box = (ctypes.c_uint32 * 2)(64, tile_m)
        es = (ctypes.c_uint32 * 2)(1, 1)
        # UINT16, rank 2, interleave none, swizzle 128B (3), L2 promotion 256B (3), zero fill (0)
        self.ok(self.cu.cuTensorMapEncodeTiled(m, 1, 2, ctypes.c_void_p(x.data_ptr()), dims, strides, box, es,
                                               0, 3, 3, 0), "cuTensorMapEncodeTiled")
        return m

    def tmap_a_rowmajor(self, t, N, kc, tile_n, tile_k):
        """Row-major compressed values [N][kc] (kc a multiple of 8), box (tile_k / 2, tile_n),
        swizzled across the box row: 128 bytes (3) for tile_k 128, 64 bytes (2) for 64."""
        m = (ctypes.c_uint64 * 16)()
        dims = (ctypes.c_uint64 * 2)(kc, N)
        strides = (ctypes.c_uint64 * 1)(kc * 2)
        box = (ctypes.c_uint32 * 2)(tile_k // 2, tile_n)
        es = (ctypes.c_uint32 * 2)(1, 1)
        self.ok(self.cu.cuTensorMapEncodeTiled(m, 1, 2, ctypes.c_void_p(t.data_ptr()), dims, strides, box, es,
                                               0, 3 if tile_k == 128 else 2, 3, 0), "cuTensorMapEncodeTiled A")
        return m

    def tmap_3d(self, t, d0, d1, d2, b1):
        """[d2][d1][d0] 16-bit elements, box (d0, b1, 8 row blocks), no swizzle."""
        m = (ctypes.c_uint64 * 16)()
        dims = (ctypes.c_uint64 * 3)(d0, d1, d2)
        strides = (ctypes.c_uint64 * 2)(d0 * 2, d0 * d1 * 2)
        box = (ctypes.c_uint32 * 3)(d0, b1, 8)
        es = (ctypes.c_uint32 * 3)(1, 1, 1)
        self.ok(self.cu.cuTensorMapEncodeTiled(m, 1, 3, ctypes.c_void_p(t.data_ptr()), dims, strides, box, es,
                                               0, 0, 3, 0), "cuTensorMapEncodeTiled 3d")
        return m

    def _config(self, grid, threads, smem, stream, cluster):
        """A CUlaunchConfig (cuda.h) with the cluster-dimension attribute (id 4)."""
        class Attr(ctypes.Structure):
            _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("dims", ctypes.c_uint * 3),
                        ("rest", ctypes.c_char * 52)]

        class Config(ctypes.Structure):
            _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("smem", ctypes.c_uint),
                        ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(Attr)), ("n_attrs", ctypes.c_uint)]
        attr = Attr(id=4, dims=(ctypes.c_uint * 3)(cluster, 1, 1))
        cfg = Config(grid=(ctypes.c_uint * 3)(grid[0], grid[1], 1), block=(ctypes.c_uint * 3)(threads, 1, 1),
                     smem=smem, stream=ctypes.c_void_p(stream), attrs=ctypes.pointer(attr), n_attrs=1)
        cfg._keep = attr  # the config points at it
        return cfg

    def max_active_clusters(self, fn, cluster, threads, smem, stream):
        """cuOccupancyMaxActiveClusters: how many clusters of `cluster` CTAs fit at once."""
        n = ctypes.c_int()
        cfg = self._config((cluster, 1), threads, smem, stream, cluster)
        self.ok(self.cu.cuOccupancyMaxActiveClusters(ctypes.byref(n), fn, ctypes.byref(cfg)),
                "cuOccupancyMaxActiveClusters")
        return n.value

    def launch(self, fn, grid, threads, smem, stream, args, cluster=1):
        ptrs = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) if not isinstance(a, ctypes.Array) else ctypes.cast(a, ctypes.c_void_p) for a in args])
        if cluster > 1:
            cfg = self._config(grid, threads, smem, stream, cluster)
            self.ok(self.cu.cuLaunchKernelEx(ctypes.byref(cfg), fn, ptrs, None), "cuLaunchKernelEx")
            return
        self.ok(self.cu.cuLaunchKernel(fn, grid[0], grid[1], 1, threads, 1, 1, smem, ctypes.c_void_p(stream), ptrs, None),
                "cuLaunchKernel")


class Sm90Kernel:
    def __init__(self, drv, kdir, m):
        self.drv, self.m = drv, m
        self.fn = drv.load(kdir / f"{m['name']}.cubin", m["name"], m["smem"])
        self.ws = None

    def launch(self, x, wv, wm, b, y, M, N, K):
        import torch
        m = self.m
        c = m.get("cluster", 1)
        stream = torch.cuda.current_stream().cuda_stream
        # With clusters each CTA loads (and multicasts) 1/c of the X tile.
        tmap = self.drv.tmap_x(x, M, K, m["tile_m"] // c)
        split = m.get("split", 1)
        tiles = -(-N // m["tile_n"]) * -(-M // m["tile_m"])
        grid = (tiles * split, 1)
        if m.get("persistent"):  # as the runtime launches them: at most one CTA per SM
            if c > 1:  # whole clusters, as many as the driver fits at once
                if getattr(self, "clusters", None) is None:
                    self.clusters = self.drv.max_active_clusters(self.fn, c, m["threads"], m["smem"], stream)
                cluster_tiles = -(-N // (m["tile_n"] * c)) * -(-M // m["tile_m"])
                grid = (min(cluster_tiles, self.clusters) * c, 1)
            else:
                grid = (min(tiles, torch.cuda.get_device_properties(0).multi_processor_count), 1)
        ws_words = tiles * (split - 1) * m["tile_m"] * m["tile_n"]
        if ws_words and (self.ws is None or self.ws.numel() < ws_words):
            # Every word the empty sentinel (all bits set), as the runtime hands it over.
            self.ws = torch.full((ws_words,), -1, device="cuda", dtype=torch.int32)
        np_, kp = -(-N // 128) * 128, -(-K // 64) * 64
        assert m["tile_n"] == 128, "the 3-D weight box is 8 row blocks"
        if m.get("a_smem"):
            rm = wv[1]  # (fragment values, row-major compressed values)
            wmap = self.drv.tmap_a_rowmajor(rm, N, rm.shape[1], m["tile_n"], m["tile_k"])
        else:
            wv = wv[0] if isinstance(wv, tuple) else wv
            wmap = self.drv.tmap_3d(wv, 256, kp // 32, np_ // 16, m["tile_k"] // 32)
        emap = self.drv.tmap_3d(wm, 64, kp // 64, np_ // 16, m["tile_k"] // 64)
        args = [tmap, wmap, emap,
                ctypes.c_uint64(b.data_ptr() if b is not None else 0), ctypes.c_uint64(y.data_ptr()),
                ctypes.c_uint64(self.ws.data_ptr() if ws_words else 0),
                ctypes.c_int32(M), ctypes.c_int32(N), ctypes.c_int32(K)]
        self.drv.launch(self.fn, grid, m["threads"], m["smem"], stream, args, cluster=c)


def _layout():
    """`python/sparseflow/layout.py`, the one torch definition of the device layout, loaded by
    path: it needs only torch, so the harness runs without the wheel installed."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "sparseflow_layout", HERE.parent.parent / "python" / "sparseflow" / "layout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rotation_copies(N, K):
    """2:4 weight copies whose rotation spans 2x the H200's 60 MB L2 (every launch reads from HBM)."""
    return max(1, math.ceil(2 * 60e6 / (N * K * 2 * 0.5625)))


def torch_weight(N, K, dt, gen, device="cuda"):
    """Random 2:4 weight: (dense pruned [N,K], device-layout values bytes, meta bytes)."""
    import torch
    w = torch.randn(N, K, device=device, generator=gen) / math.sqrt(K / 2)
    g = w.view(N, K // 4, 4)
    idx = g.abs().topk(2, dim=-1).indices.sort(dim=-1).values
    vals = g.gather(-1, idx).to(dt)
    dense = torch.zeros_like(g).scatter_(-1, idx, vals.float()).view(N, K).to(dt)
    # Canonical metadata (docs/FORMAT.md): one code idx0 | idx1 << 2 per group, two per byte.
    codes = (idx[..., 0] | (idx[..., 1] << 2)).to(torch.uint8)
    if codes.shape[1] % 2:
        codes = torch.cat((codes, torch.full_like(codes[:, :1], 4)), dim=1)
    meta = codes[:, 0::2] | (codes[:, 1::2] << 4)
    rowmajor = vals.reshape(N, K // 2)
    values, meta = _layout().to_fragment(rowmajor, meta)
    # SF_A_SMEM kernels read the values row-major, rows padded with zeros to 16 bytes (TMA).
    pad = -(K // 2) % 8
    rowmajor = torch.nn.functional.pad(rowmajor, (0, pad)).contiguous()
    return dense, (values.view(torch.uint8), rowmajor), meta


def run(kdir, out_json, bench=True):
    import torch, torch.nn.functional as F
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    drv = Driver()
    kernels = json.loads((kdir / "kernels.json").read_text())
    res = {"gpu": torch.cuda.get_device_name(), "pass": 0, "fail": 0, "failures": [], "bench": []}
    gen = torch.Generator(device="cuda").manual_seed(1)
    shapes = [(8, 128, 128), (37, 256, 192), (100, 384, 4160), (300, 200, 136), (129, 1000, 1000), (256, 4096, 4096),
              (1, 128, 64), (513, 640, 512)]
    for m in kernels:
        try:
            kern = Sm90Kernel(drv, kdir, m)
        except RuntimeError as e:
            res["failures"].append(dict(kernel=m["name"], load=str(e)))
            res["fail"] += 1
            continue
        dt = torch.float16 if m["dtype"] == "f16" else torch.bfloat16
        if "_skip_" in m["name"]:
            continue
        for (M, N, K) in (shapes if m["epilogue"] == "none" else shapes[:4]):
            dense, wv, wm = torch_weight(N, K, dt, gen)
            x = torch.randn(M, K, device="cuda", generator=gen).to(dt)
            b = torch.randn(N, device="cuda", generator=gen).to(dt) if "bias" in EPILOGUES[m["epilogue"]] else None
            y = torch.full((M, N), float("nan"), device="cuda", dtype=dt)
            try:
                kern.launch(x, wv, wm, b, y, M, N, K)
                torch.cuda.synchronize()
            except Exception as e:  # a trap poisons the context: record and stop
                res["failures"].append(dict(kernel=m["name"], M=M, N=N, K=K, launch=str(e)))
                res["fail"] += 1
                Path(out_json).write_text(json.dumps(res, indent=1))
                raise
            if kern.ws is not None and not bool((kern.ws == -1).all()):
                res["failures"].append(dict(kernel=m["name"], M=M, N=N, K=K, workspace_not_emptied=True))
                res["fail"] += 1
                continue
            acc = x.double() @ dense.double().T
            if b is not None:
                acc = acc + b.double()
            ref = {"gelu": F.gelu, "bias_silu": F.silu}.get(m["epilogue"], lambda v: v)(acc)
            r = 2e-3 if m["dtype"] == "f16" else 1.6e-2
            err = (y.double() - ref).abs()
            bad = ~(err <= r * ref.abs() + r)
            nbad = int(bad.sum())
            if nbad:
                idx = bad.nonzero()[0].tolist()
                res["failures"].append(dict(kernel=m["name"], M=M, N=N, K=K, bad=nbad, of=M * N, first=idx,
                                            got=float(y[idx[0], idx[1]]), want=float(ref[idx[0], idx[1]]),
                                            max_err=float(torch.nan_to_num(err, nan=1e30).max())))
                res["fail"] += 1
            else:
                res["pass"] += 1
        print(m["name"], "pass", res["pass"], "fail", res["fail"], flush=True)
    Path(out_json).write_text(json.dumps(res, indent=1))
    if not bench:
        return
    if os.environ.get("SF_BENCH_ONLY"):
        kernels = [k for k in kernels if os.environ["SF_BENCH_ONLY"] in k["name"]]
    for (N, K) in [(int(v.split("x")[0]), int(v.split("x")[1])) for v in os.environ.get("SF_SHAPES", "4096x4096,14336x4096,4096x14336,28672x8192").split(",")]:
        for dtname, dt in (("f16", torch.float16),):
            ncopies = rotation_copies(N, K)
            ws = [torch_weight(N, K, dt, gen) for _ in range(ncopies)]
            for M in [int(v) for v in os.environ.get("SF_MS", "32,128,512,2048,8192").split(",")]:
                x = torch.randn(M, K, device="cuda", generator=gen).to(dt)
                y = torch.empty(M, N, device="cuda", dtype=dt)
                row = dict(N=N, K=K, M=M, dtype=dtname)

                def graph_time(step, n_inner):
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for i in range(3):
                            step(i)
                    torch.cuda.current_stream().wait_stream(s)
                    torch.cuda.synchronize()
                    gph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(gph):
                        for i in range(n_inner):
                            step(i)
                    gph.replay()
                    torch.cuda.synchronize()
                    ts = []
                    for _ in range(5):
                        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        e0.record()
                        gph.replay()
                        e1.record()
                        torch.cuda.synchronize()
                        ts.append(e0.elapsed_time(e1) * 1000 / n_inner)
                    return sorted(ts)[2]

                n_inner = max(ncopies, min(200, int(2e5 / max(1, M * N * K * 2 / 600e6))))
                dense_t = graph_time(lambda i: torch.mm(x, ws[i % ncopies][0].T, out=y), n_inner)
                row["dense_us"] = dense_t
                for m in kernels:
                    if m["epilogue"] != "none" or m["dtype"] != dtname:
                        continue
                    kern = Sm90Kernel(drv, kdir, m)
                    try:
                        t = graph_time(lambda i: kern.launch(x, ws[i % ncopies][1], ws[i % ncopies][2], None, y, M, N, K), n_inner)
                    except Exception as e:
                        row[m["name"]] = str(e)
                        continue
                    row[m["name"]] = t
                best = min((v, k) for k, v in row.items() if k.startswith("sf_") and "_skip_" not in k and isinstance(v, float))
                row["best"] = best[1]
                row["speedup"] = dense_t / best[0]
                row["dense_tflops"] = 2 * M * N * K / dense_t / 1e6
                row["sparse_tflops_dense_equiv"] = 2 * M * N * K / best[0] / 1e6
                print(json.dumps(row), flush=True)
                res["bench"].append(row)
                Path(out_json).write_text(json.dumps(res, indent=1))


def profile(kdir, name, N, K, M, reps=3):
    """Launches one kernel `reps` times (for ncu / compute-sanitizer)."""
    import torch
    torch.zeros(1, device="cuda")
    drv = Driver()
    m = next(k for k in json.loads((kdir / "kernels.json").read_text()) if k["name"] == name)
    kern = Sm90Kernel(drv, kdir, m)
    dt = torch.float16 if m["dtype"] == "f16" else torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(1)
    _, wv, wm = torch_weight(N, K, dt, gen)
    x = torch.randn(M, K, device="cuda", generator=gen).to(dt)
    y = torch.empty(M, N, device="cuda", dtype=dt)
    for _ in range(reps):
        kern.launch(x, wv, wm, None, y, M, N, K)
    torch.cuda.synchronize()


def soak(kdir, N, K, M, seconds, names, out_json):
    """Runs cuBLAS (torch.mm) and each named kernel back to back for `seconds` each (graph replays,
    weights rotated past L2) while nvidia-smi samples the SM clock, power and the clock-event
    reasons every 50 ms: whether sustained tensor work runs at the clock a single launch sees, and
    what holds the clock down."""
    import subprocess, statistics, torch
    torch.zeros(1, device="cuda")
    drv = Driver()
    kernels = {k["name"]: k for k in json.loads((kdir / "kernels.json").read_text())}
    gen = torch.Generator(device="cuda").manual_seed(1)
    ncopies = rotation_copies(N, K)
    ws = [torch_weight(N, K, torch.float16, gen) for _ in range(ncopies)]
    x = torch.randn(M, K, device="cuda", generator=gen).half()
    y = torch.empty(M, N, device="cuda", dtype=torch.float16)
    steps = {"cublas": lambda i: torch.mm(x, ws[i % ncopies][0].T, out=y)}
    for name in names:
        kern = Sm90Kernel(drv, kdir, kernels[name])
        steps[name] = (lambda kern: lambda i: kern.launch(x, ws[i % ncopies][1], ws[i % ncopies][2], None, y, M, N, K))(kern)
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,clocks.sm,power.draw,power.limit,temperature.gpu,"
                            "clocks_event_reasons.active", "--format=csv,noheader,nounits", "-lms", "50"],
                           stdout=subprocess.PIPE, text=True)
    phases = []
    for who, step in steps.items():
        g = torch.cuda.CUDAGraph()
        for i in range(3):
            step(i)
        torch.cuda.synchronize()
        with torch.cuda.graph(g):
            for i in range(ncopies):
                step(i)
        t0, n = time.time(), 0
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        while time.time() - t0 < seconds:
            for _ in range(4):
                g.replay()
            n += 4 * ncopies
            torch.cuda.synchronize()
        e1.record()
        torch.cuda.synchronize()
        phases.append(dict(who=who, start=t0, end=time.time(), us=e0.elapsed_time(e1) * 1000 / n))
        time.sleep(1.0)  # a gap between phases in the samples
    smi.terminate()
    samples = []
    for line in smi.communicate()[0].splitlines():
        f = [v.strip() for v in line.split(",")]
        try:
            ts = time.mktime(time.strptime(f[0].split(".")[0], "%Y/%m/%d %H:%M:%S")) + float("0." + f[0].split(".")[1])
            samples.append(dict(t=ts, sm_mhz=float(f[1]), watts=float(f[2]), limit=float(f[3]), temp=float(f[4]), reasons=f[5]))
        except (ValueError, IndexError):
            continue
    for p in phases:  # the steady part: skip each phase's first half second
        mine = [s for s in samples if p["start"] + 0.5 <= s["t"] <= p["end"]]
        if mine:
            p.update(samples=len(mine), sm_mhz=statistics.median(s["sm_mhz"] for s in mine),
                     watts=statistics.median(s["watts"] for s in mine), power_limit=mine[0]["limit"],
                     temp=max(s["temp"] for s in mine),
                     reasons=sorted({s["reasons"] for s in mine}))
        p["dense_equiv_tflops"] = 2 * M * N * K / p["us"] / 1e6
        print(json.dumps(p), flush=True)
    Path(out_json).write_text(json.dumps(dict(N=N, K=K, M=M, phases=phases, samples=samples), indent=1))


def main():
    if len(sys.argv) >= 7 and sys.argv[1] == "profile":
        return profile(Path(sys.argv[2]), sys.argv[3], *(int(v) for v in sys.argv[4:7]))
    if len(sys.argv) >= 9 and sys.argv[1] == "soak":
        # soak KERNEL_DIR N K M SECONDS OUT_JSON NAME...
        return soak(Path(sys.argv[2]), *(int(v) for v in sys.argv[3:6]), float(sys.argv[6]), sys.argv[8:], sys.argv[7])
    if len(sys.argv) >= 3 and sys.argv[1] == "build":
        cfg = "128x128x128x4,64x128x128x4,256x128x64x4,128x128x64x6"
        if "--configs" in sys.argv:
            cfg = sys.argv[sys.argv.index("--configs") + 1]
        configs = [tuple(int(v) for v in c.split("x")) for c in cfg.split(",")]
        build(Path(sys.argv[2]), configs, guard="--no-hang-guard" not in sys.argv)
    elif len(sys.argv) >= 4 and sys.argv[1] == "run":
        run(Path(sys.argv[2]), sys.argv[3], bench="--no-bench" not in sys.argv)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
