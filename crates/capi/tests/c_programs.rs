//! Compiles the C programs of `tests/c/` (and `examples/c/`) with
//! `cc -std=c99 -Wall -Wextra -Werror` against the checked-in `include/sparseflow.h` and the
//! `libsparseflow` that cargo just built, runs them on the CPU backend, and asserts they pass.
//!
//! The CUDA variants (`-DSPARSEFLOW_TEST_CUDA`) are compiled too, so they cannot rot, but only
//! run on the GPU machine (`scripts/device/capi_check.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: [&str; 5] = ["pipeline", "errors", "threads", "model", "device_layout"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The directory holding the `libsparseflow.so` / `.a` that this very test build produced:
/// cargo compiles the library once, with all its crate types (rlib, cdylib, staticlib), into
/// `<target>/<profile>/deps/`, next to the test executable. (`cargo build` additionally copies
/// them one level up; `cargo test` does not, so that copy may be stale.)
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("<target>/<profile>/deps").to_path_buf();
    for lib in ["libsparseflow.so", "libsparseflow.a"] {
        assert!(
            deps.join(lib).exists(),
            "{} is missing: crates/capi must keep crate-type cdylib + staticlib",
            deps.join(lib).display()
        );
    }
    deps
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi-c");
    std::fs::create_dir_all(&dir).expect("create the C build directory");
    dir
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_string())
}

/// `cc -std=c99 -Wall -Wextra -Werror [-pedantic] -I include SRC -o OUT LINK...`; panics with the
/// compiler's output on failure.
fn compile(src: &Path, out: &Path, extra: &[&str], link: &[String]) {
    let root = repo_root();
    let mut cmd = Command::new(cc());
    cmd.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O1",
    ])
    .arg("-I")
    .arg(root.join("include"))
    .args(extra)
    .arg(src)
    .arg("-o")
    .arg(out)
    .args(link);
    let output = cmd
        .output()
        .expect("run the C compiler (is `cc` installed?)");
    assert!(
        output.status.success(),
        "compiling {} failed:\n{:?}\n{}{}",
        src.display(),
        cmd,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn dynamic_link(lib: &Path) -> Vec<String> {
    vec![
        format!("-L{}", lib.display()),
        "-lsparseflow".into(),
        "-lpthread".into(),
        "-ldl".into(),
        "-lm".into(),
    ]
}

/// Runs a built program on the CPU backend, prints its output, asserts exit status 0.
fn run(exe: &Path, lib: &Path, args: &[&str]) -> String {
    let output = Command::new(exe)
        .args(args)
        .env("LD_LIBRARY_PATH", lib)
        // Sanitized builds: a refused allocation returns NULL as with the system allocator
        // (errors.c checks the library turns a 2 TB request into OUT_OF_MEMORY), instead of
        // ASan aborting on the size.
        .env("ASAN_OPTIONS", "allocator_may_return_null=1")
        .output()
        .expect("run the C program");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("--- {} {:?}\n{text}", exe.display(), args);
    assert!(
        output.status.success(),
        "{} exited with {}:\n{text}",
        exe.display(),
        output.status
    );
    text
}

fn build_and_run(name: &str) {
    build_and_run_with(name, &[]);
}

/// Flags of the sanitizer build: address (out-of-bounds, use-after-free) and undefined
/// behaviour, each finding fatal. The C side is instrumented; what it hands the library and
/// gets back (lengths, strings, out-parameters) is checked at every access.
const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

/// Builds `tests/c/<name>.c`, runs it on the CPU backend (`-1`, then `args`), checks its summary
/// line, runs it again built with AddressSanitizer + UBSan, and compiles its CUDA variant.
fn build_and_run_with(name: &str, args: &[&str]) {
    let (root, lib, out) = (repo_root(), lib_dir(), out_dir());
    let src = root.join("tests/c").join(format!("{name}.c"));
    let exe = out.join(name);
    compile(&src, &exe, &[], &dynamic_link(&lib));
    let args: Vec<&str> = std::iter::once("-1").chain(args.iter().copied()).collect();
    let text = run(&exe, &lib, &args);
    assert!(text.contains(", 0 failed"), "no summary line in:\n{text}");
    let asan = out.join(format!("{name}_asan"));
    compile(&src, &asan, SANITIZE, &dynamic_link(&lib));
    let text = run(&asan, &lib, &args);
    assert!(
        text.contains(", 0 failed"),
        "sanitized build: no summary line in:\n{text}"
    );
    // The GPU variant must keep compiling (it needs no CUDA headers: it dlopens libcuda).
    compile(
        &src,
        &out.join(format!("{name}_cuda")),
        &["-DSPARSEFLOW_TEST_CUDA"],
        &dynamic_link(&lib),
    );
}

#[test]
fn c_pipeline_matches_float64_reference() {
    build_and_run("pipeline");
}

#[test]
fn c_error_paths() {
    build_and_run("errors");
}

#[test]
fn c_sixteen_threads_share_a_context() {
    build_and_run("threads");
}

/// ABI 1.3: the host converter equals FORMAT.md's device layout byte for byte, and a CPU
/// context refuses to adopt device buffers with UNSUPPORTED (the GPU half runs on the device,
/// scripts/device/capi_check.sh).
#[test]
fn c_device_layout() {
    build_and_run("device_layout");
}

/// `random_buffer` of tests/c/common.h: multiples of 1/32 in [-2, 2] from the same LCG, exact
/// in f16 and bf16, so the C program regenerates the very weights this test saved.
fn c_random(len: usize, mut state: u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 129) as f32 / 32.0 - 2.0
        })
        .collect()
}

/// One sparse layer of the test model: `(name, n, k, epilogue, weight seed, bias seed)`.
type LayerSpec = (&'static str, usize, usize, &'static str, u64, Option<u64>);

/// The models tests/c/model.c reads, written here with sparseflow-model (the C program writes
/// nothing): GOOD (two magnitude-pruned layers, f16 and bf16 with a bias, plus a dense tensor),
/// OUTSIDE (an index naming a shard outside its directory) and CORRUPT (truncated weights).
fn write_models(dir: &Path) -> [PathBuf; 3] {
    use half::{bf16, f16};
    use sparseflow_core::{prune_magnitude, DType, Element, Sparse24};
    use sparseflow_model::{save_model, Dtype, LayerEntry, Manifest, TensorData, WEIGHTS};

    fn parts<T: Element + bytemuck::Pod>(
        (_, n, k, _, seed, bias): &LayerSpec,
    ) -> (Vec<u8>, Vec<u8>, Option<Vec<u8>>) {
        let w: Vec<T> = c_random(n * k, *seed)
            .into_iter()
            .map(T::from_f32)
            .collect();
        let s = Sparse24::compress(&prune_magnitude(&w, *n, *k).unwrap(), *n, *k).unwrap();
        let b = bias.map(|seed| {
            let b: Vec<T> = c_random(*n, seed).into_iter().map(T::from_f32).collect();
            bytemuck::cast_slice(&b).to_vec()
        });
        (bytemuck::cast_slice(&s.values).to_vec(), s.meta, b)
    }

    let specs: [(LayerSpec, DType); 2] = [
        (
            ("model.layers.0.mlp.up_proj", 16, 40, "none", 11, None),
            DType::F16,
        ),
        (
            (
                "model.layers.0.mlp.down_proj",
                8,
                32,
                "bias_relu",
                21,
                Some(23),
            ),
            DType::BF16,
        ),
    ];
    let mut manifest = Manifest::new();
    let mut owned = Vec::new();
    for (spec, dtype) in &specs {
        let (name, n, k, epilogue, ..) = *spec;
        manifest.layers.insert(
            name.to_string(),
            LayerEntry {
                shape: [n, k],
                dtype: *dtype,
                method: "magnitude".into(),
                epilogue: epilogue.into(),
                diff: Default::default(),
                fused_activation: None,
            },
        );
        let (values, meta, bias) = match dtype {
            DType::BF16 => parts::<bf16>(spec),
            _ => parts::<f16>(spec),
        };
        let st = if *dtype == DType::BF16 {
            Dtype::BF16
        } else {
            Dtype::F16
        };
        owned.push((format!("{name}.values"), st, vec![n, k / 2], values));
        owned.push((
            format!("{name}.meta"),
            Dtype::U8,
            vec![n, k.div_ceil(8)],
            meta,
        ));
        if let Some(b) = bias {
            owned.push((format!("{name}.bias"), st, vec![n], b));
        }
    }
    let emb: Vec<f16> = c_random(32, 5).into_iter().map(f16::from_f32).collect();
    owned.push((
        "model.embed_tokens.weight".into(),
        Dtype::F16,
        vec![4, 8],
        bytemuck::cast_slice(&emb).to_vec(),
    ));
    let tensors: Vec<TensorData> = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| TensorData {
            name,
            dtype: *dtype,
            shape,
            bytes,
        })
        .collect();
    let good = dir.join("good");
    save_model(&good, true, &manifest, &tensors, &[]).expect("write the test model");

    let manifest_text = std::fs::read(good.join("sparseflow.json")).unwrap();
    let (outside, corrupt) = (dir.join("outside"), dir.join("corrupt"));
    for d in [&outside, &corrupt] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("sparseflow.json"), &manifest_text).unwrap();
    }
    let weight_map: serde_json::Map<String, serde_json::Value> = owned
        .iter()
        .map(|t| (t.0.clone(), "../good/model.safetensors".into()))
        .collect();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        outside.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let weights = std::fs::read(good.join(WEIGHTS)).unwrap();
    std::fs::write(corrupt.join(WEIGHTS), &weights[..weights.len() / 2]).unwrap();
    [good, outside, corrupt]
}

#[test]
fn c_model_directories() {
    let dir = out_dir().join("models");
    std::fs::create_dir_all(&dir).unwrap();
    let paths = write_models(&dir);
    let args: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    build_and_run_with("model", &args);
}

#[test]
fn c_programs_list_is_complete() {
    let mut found: Vec<String> = std::fs::read_dir(repo_root().join("tests/c"))
        .expect("tests/c")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".c").map(str::to_string))
        .collect();
    found.sort();
    let mut expected: Vec<String> = PROGRAMS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected, "every tests/c/*.c needs a #[test] here");
}

/// The user-facing example builds both ways the docs show: against the shared library and
/// statically against libsparseflow.a.
#[test]
fn c_example_links_shared_and_static() {
    let (root, lib, out) = (repo_root(), lib_dir(), out_dir());
    let src = root.join("examples/c/example.c");
    let shared = out.join("example_shared");
    compile(&src, &shared, &[], &dynamic_link(&lib));
    let text = run(&shared, &lib, &[]);
    assert!(text.contains("y[0]"), "{text}");

    let static_exe = out.join("example_static");
    let link = vec![
        lib.join("libsparseflow.a").display().to_string(),
        "-lpthread".into(),
        "-ldl".into(),
        "-lm".into(),
    ];
    compile(&src, &static_exe, &[], &link);
    let text = run(&static_exe, Path::new("/nonexistent"), &[]);
    assert!(text.contains("y[0]"), "{text}");
}

/// The header also compiles as C++ (cbindgen's `cpp_compat`), when a C++ compiler is around.
#[test]
fn header_compiles_as_cxx() {
    let root = repo_root();
    let probe = out_dir().join("header_check.cpp");
    std::fs::write(
        &probe,
        "#include \"sparseflow.h\"\nint main() { return sparseflow_abi_version() == 0; }\n",
    )
    .unwrap();
    let Ok(output) = Command::new("c++")
        .args([
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(root.join("include"))
        .arg(&probe)
        .output()
    else {
        println!("no c++ compiler; skipped");
        return;
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
