//! Where `Compiler::new` looks for libnvrtc when the loader cannot find it: the places a
//! set-up leaves it (one test in its own process, because it sets environment variables).

use std::path::PathBuf;

use sparseflow_codegen::nvrtc_lib::candidate_dirs;

#[test]
fn explicit_dir_then_virtualenv_conda_and_dot_venv() {
    let root = std::env::temp_dir().join(format!("sf-nvrtc-{}", std::process::id()));
    let venv = root.join("venv");
    std::fs::create_dir_all(venv.join("lib/python3.12/site-packages")).unwrap();
    std::env::set_var("SPARSEFLOW_NVRTC_DIR", root.join("explicit"));
    std::env::set_var("VIRTUAL_ENV", &venv);
    std::env::remove_var("CONDA_PREFIX");
    let dirs = candidate_dirs();
    assert_eq!(
        dirs[0],
        root.join("explicit"),
        "the explicit directory comes first"
    );
    assert_eq!(
        dirs[1],
        venv.join("lib/python3.12/site-packages/nvidia/cu13/lib"),
        "{dirs:?}"
    );
    let cwd_venv: PathBuf = std::env::current_dir().unwrap().join(".venv");
    assert!(
        dirs.iter().skip(2).all(|d| d.starts_with(&cwd_venv)),
        "then ./.venv only: {dirs:?}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
