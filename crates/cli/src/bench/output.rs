//! Output files of a benchmark: checked before the (long) run, written atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary file `write_atomic` writes first: beside the destination, named after it and
/// this process, so it is never someone else's file.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let short: String = name.unwrap_or_default().chars().take(64).collect();
    parent(path).join(format!(".{short}.sparseflow-tmp-{}", std::process::id()))
}

/// Fails early, before any work, if `path` cannot be written: its folder is missing or not
/// writable, or the path is a directory or another non-regular file (a FIFO would hang).
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = parent(path);
    if !dir.is_dir() {
        bail!("the folder {} does not exist", dir.display());
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            bail!("exists and is not a regular file");
        }
    }
    let probe = temp_path(path);
    fs::File::create(&probe)
        .with_context(|| format!("cannot create files in {}", dir.display()))?;
    fs::remove_file(&probe).with_context(|| format!("removing {}", probe.display()))?;
    Ok(())
}

/// `MemAvailable` of /proc/meminfo in bytes (Linux), or `None` where it cannot be read.
pub fn available_host_memory() -> Option<usize> {
    sparseflow_core::alloc::meminfo_bytes("MemAvailable")
}

/// Writes `text` to a temporary file beside `path`, flushes it, then renames it over `path`:
/// a reader sees the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| -> Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // ours (named after this process); never the target
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("sf-output-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.json");
        write_atomic(&p, "one").unwrap();
        write_atomic(&p, "two").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        check_writable(&p).unwrap();
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left behind"
        );
        let err = check_writable(&dir).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = check_writable(&dir.join("missing/r.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
