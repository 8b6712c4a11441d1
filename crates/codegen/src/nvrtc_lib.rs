//! Finding libnvrtc where the project's own set-up put it.
//!
//! cudarc opens NVRTC by its soname (`libnvrtc.so.13`), so only the loader's path is searched.
//! `scripts/setup` (and `pip install nvidia-cuda-nvrtc`) put the library inside a Python
//! environment instead, which the loader does not know about: after a plain set-up,
//! `sparseflow compile` failed until the user set LD_LIBRARY_PATH by hand. Before giving up we
//! therefore open the library by full path from the places a set-up leaves it; once it is
//! loaded, the soname lookup cudarc makes finds that copy (glibc matches loaded objects by
//! soname), so nothing else changes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file name NVRTC 13 has inside a `nvidia-cuda-nvrtc` wheel and a CUDA toolkit.
const SONAME: &str = "libnvrtc.so.13";

/// Directories that may hold libnvrtc, most explicit first: `$SPARSEFLOW_NVRTC_DIR`, the
/// active virtualenv or conda environment, and `./.venv` (the project's set-up).
pub fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SPARSEFLOW_NVRTC_DIR") {
        dirs.push(PathBuf::from(d));
    }
    let envs = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .chain(std::env::current_dir().ok().map(|d| d.join(".venv")));
    for env in envs {
        dirs.extend(site_package_dirs(&env).map(|sp| sp.join("nvidia/cu13/lib")));
    }
    dirs
}

/// `ENV/lib/python3.*/site-packages` for every Python version the environment has.
fn site_package_dirs(env: &Path) -> impl Iterator<Item = PathBuf> {
    let lib = env.join("lib");
    std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
}

/// `libnvrtc-builtins.so.13*` in `dir` (not the `.alt` variant NVRTC does not open by default).
fn builtins_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libnvrtc-builtins.so.13"))
        })
        .collect();
    found.sort();
    found
}

/// Loads libnvrtc from the first candidate directory that has it, once per process. Returns
/// the path loaded, or `None` when no candidate has it (the caller then reports NvrtcMissing).
pub fn preload() -> Option<&'static Path> {
    static LOADED: OnceLock<Option<PathBuf>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            candidate_dirs().into_iter().find_map(|dir| {
                let path = dir.join(SONAME);
                if !path.is_file() {
                    return None;
                }
                // NVRTC opens its builtins library by soname when it compiles; some builds
                // (the pip wheel of 13.0) carry no RUNPATH to find it beside themselves, so it
                // is loaded first, by full path, and that lookup then finds it loaded.
                for builtins in builtins_in(&dir) {
                    // SAFETY: as below; a failure here only means NVRTC will report it itself.
                    if let Ok(lib) = unsafe { libloading::Library::new(&builtins) } {
                        std::mem::forget(lib);
                    }
                }
                // SAFETY: loading NVRTC runs only its initialisers, as cudarc's own load would;
                // the handle is leaked on purpose so the library stays loaded for the process.
                let lib = unsafe { libloading::Library::new(&path) }.ok()?;
                std::mem::forget(lib);
                Some(path)
            })
        })
        .as_deref()
}
