//! `sparseflow-convert` and `sparseflow-audit`: the binary under those names runs that
//! subcommand (argv[0] dispatch), so packagers can install the tools as links.

use std::process::Command;

#[test]
fn argv0_aliases_run_their_subcommand() {
    let dir = std::env::temp_dir().join(format!("sf-aliases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (alias, arg, expect) in [
        ("sparseflow-audit", "--model", "sparseflow-audit/1"),
        ("sparseflow-convert", "--help", "--format"),
    ] {
        let link = dir.join(alias);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_sparseflow"), &link).unwrap();
        let mut cmd = Command::new(&link);
        if arg == "--model" {
            cmd.args(["--model", "llama3-8b", "--gpu", "h100", "--json"]);
        } else {
            cmd.arg(arg);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{alias}: {out:?}");
        assert!(text.contains(expect), "{alias}: {text}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
