//! Compiles the C programs of `tests/c/` (and `examples/c/`) with
//! `cc -std=c99 -Wall -Wextra -Werror` against the checked-in `include/sparseflow.h` and the
//! `libsparseflow` that cargo just built, runs them on the CPU backend, and asserts they pass.
//!
//! The CUDA variants (`-DSPARSEFLOW_TEST_CUDA`) are compiled too, so they cannot rot, but only
//! run on the GPU machine (`scripts/device/capi_check.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: [&str; 3] = ["pipeline", "errors", "threads"];

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
    let (root, lib, out) = (repo_root(), lib_dir(), out_dir());
    let src = root.join("tests/c").join(format!("{name}.c"));
    let exe = out.join(name);
    compile(&src, &exe, &[], &dynamic_link(&lib));
    let text = run(&exe, &lib, &["-1"]);
    assert!(text.contains(", 0 failed"), "no summary line in:\n{text}");
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
