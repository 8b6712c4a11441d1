//! Writing a model directory safely.
//!
//! * Everything is written into a staging directory `.sft-XXXXXXXX` beside the destination
//!   (a short random name, so any valid destination name works), every file fsynced, then the
//!   directory fsynced, and only then renamed into place; the parent is fsynced after the
//!   rename. A reader never sees half a model at the destination.
//! * An existing destination is refused unless `force`; with `force` it is replaced only if it
//!   is a SparseFlow model directory (a `sparseflow.json` with `"format": "sparseflow"`), and
//!   on Linux atomically with `renameat2(RENAME_EXCHANGE)`: there is no moment with nothing at
//!   the path. The swapped-out old model is deleted afterwards. Elsewhere the old directory is
//!   moved aside first (a short window without a model; [`Committed::note`] says so).
//! * Each staging directory has a lock file `.sft-XXXXXXXX.lock` beside it, created first and
//!   held (`flock`) while the writer lives. A writer killed with `kill -9` releases the lock;
//!   the next writer into the same parent removes every staging directory whose lock is free.
//!   A directory without its lock file is never touched.
//! * Replacing the current working directory keeps the process inside the new model.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use crate::error::{ModelError, Result};
use crate::fsx::sync_dir;
use crate::manifest::{Manifest, MANIFEST};

const PREFIX: &str = ".sft-";
const LOCK_SUFFIX: &str = ".lock";

/// A model directory being written; dropped without [`Staging::commit`], it leaves nothing.
#[derive(Debug)]
pub struct Staging {
    dest: PathBuf,
    parent: PathBuf,
    tmp: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    force: bool,
    done: bool,
}

/// The result of [`Staging::commit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub path: PathBuf,
    /// Whether an older model was replaced.
    pub replaced: bool,
    /// Said when the platform could not replace atomically.
    pub note: Option<String>,
}

impl Staging {
    /// Checks the destination and creates the staging directory beside it. Cleans stale
    /// staging directories of earlier, killed writers first.
    pub fn begin(dest: &Path, force: bool) -> Result<Staging> {
        let (parent, dest) = resolve_dest(dest)?;
        check_existing(&dest, force)?;
        clean_stale(&parent);
        let (tmp, lock_path, lock) = create_staging(&parent)?;
        Ok(Staging {
            dest,
            parent,
            tmp,
            lock_path,
            _lock: lock,
            force,
            done: false,
        })
    }

    /// The staging directory to write files into.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// The final path (absolute).
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Moves the finished directory into place (see the module docs).
    pub fn commit(mut self) -> Result<Committed> {
        sync_dir(&self.tmp)?;
        let cwd_was_dest = std::env::current_dir()
            .map(|c| c == self.dest)
            .unwrap_or(false);
        let exists = std::fs::symlink_metadata(&self.dest).is_ok();
        let mut note = None;
        if exists {
            // Re-checked: the destination may have appeared or changed since `begin`.
            check_existing(&self.dest, self.force)?;
            note = exchange(&self.tmp, &self.dest)?;
        } else {
            rename_noreplace(&self.tmp, &self.dest)?;
        }
        sync_dir(&self.parent)?;
        self.done = true;
        // After an exchange the staging name holds the old model.
        let _ = std::fs::remove_dir_all(&self.tmp);
        let _ = std::fs::remove_file(&self.lock_path);
        if cwd_was_dest {
            let _ = std::env::set_current_dir(&self.dest);
        }
        Ok(Committed {
            path: self.dest.clone(),
            replaced: exists,
            note,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

/// `(parent, absolute destination)`; `.` and other existing paths are canonicalised.
fn resolve_dest(dest: &Path) -> Result<(PathBuf, PathBuf)> {
    let meta = std::fs::symlink_metadata(dest);
    if let Ok(m) = &meta {
        if m.file_type().is_symlink() {
            return Err(ModelError::NotOurs {
                path: dest.to_path_buf(),
                why: "it is a symlink".into(),
            });
        }
    }
    let full = if meta.is_ok() {
        dest.canonicalize().map_err(ModelError::io(dest))?
    } else {
        let name = match dest.components().next_back() {
            Some(Component::Normal(n)) => n.to_owned(),
            _ => {
                return Err(ModelError::Usage(format!(
                    "{}: not a usable output directory name",
                    dest.display()
                )))
            }
        };
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(ModelError::io(&parent))?;
        parent
            .canonicalize()
            .map_err(ModelError::io(&parent))?
            .join(name)
    };
    let parent = full
        .parent()
        .ok_or_else(|| ModelError::NotOurs {
            path: dest.to_path_buf(),
            why: "it is the filesystem root".into(),
        })?
        .to_path_buf();
    Ok((parent, full))
}

/// Refuses an existing destination without `force`, and with `force` one that is not ours.
fn check_existing(dest: &Path, force: bool) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(dest) else {
        return Ok(());
    };
    if !force {
        return Err(ModelError::Exists {
            path: dest.to_path_buf(),
        });
    }
    let not_ours = |why: String| ModelError::NotOurs {
        path: dest.to_path_buf(),
        why,
    };
    if meta.file_type().is_symlink() {
        return Err(not_ours("it is a symlink".into()));
    }
    if !meta.is_dir() {
        return Err(not_ours("it is not a directory".into()));
    }
    match Manifest::read_dir(dest) {
        Ok(_) | Err(ModelError::Version { .. }) => Ok(()),
        Err(e) => Err(not_ours(format!("no valid {MANIFEST}: {e}"))),
    }
}

fn create_staging(parent: &Path) -> Result<(PathBuf, PathBuf, File)> {
    for _ in 0..16 {
        let name = format!("{PREFIX}{:08x}", rand::random::<u32>());
        let lock_path = parent.join(format!("{name}{LOCK_SUFFIX}"));
        let lock = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ModelError::io(&lock_path)(e)),
        };
        lock_exclusive(&lock, &lock_path)?;
        let tmp = parent.join(&name);
        if let Err(e) = std::fs::create_dir(&tmp) {
            let _ = std::fs::remove_file(&lock_path);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                continue;
            }
            return Err(ModelError::io(&tmp)(e));
        }
        return Ok((tmp, lock_path, lock));
    }
    Err(ModelError::Usage(format!(
        "{}: could not create a staging directory",
        parent.display()
    )))
}

/// Is `name` one of our staging names (`.sft-` + 8 hex digits)?
fn staging_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes staging directories of dead writers in `parent` (their lock is free).
pub fn clean_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(LOCK_SUFFIX))
            .filter(|s| staging_name(s))
        else {
            continue;
        };
        let lock_path = entry.path();
        let regular = std::fs::symlink_metadata(&lock_path).is_ok_and(|m| m.is_file());
        let Ok(lock) = File::open(&lock_path) else {
            continue;
        };
        if !regular || !try_lock(&lock) {
            continue; // a live writer (or not our file)
        }
        let dir = parent.join(stem);
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_file(&lock_path);
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    use rustix::fs::{flock, FlockOperation};
    flock(file, FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| ModelError::io(path)(e.into()))
}

#[cfg(unix)]
fn try_lock(file: &File) -> bool {
    use rustix::fs::{flock, FlockOperation};
    flock(file, FlockOperation::NonBlockingLockExclusive).is_ok()
}

#[cfg(not(unix))]
fn lock_exclusive(_: &File, _: &Path) -> Result<()> {
    Ok(())
}

/// Without `flock`, liveness cannot be told: stale directories are left alone.
#[cfg(not(unix))]
fn try_lock(_: &File) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn rename_with(from: &Path, to: &Path, flags: rustix::fs::RenameFlags) -> std::io::Result<()> {
    rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, flags).map_err(Into::into)
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == libc_einval() || code == libc_enosys()
    )
}

#[cfg(unix)]
fn libc_einval() -> i32 {
    rustix::io::Errno::INVAL.raw_os_error()
}

#[cfg(unix)]
fn libc_enosys() -> i32 {
    rustix::io::Errno::NOSYS.raw_os_error()
}

#[cfg(not(unix))]
fn libc_einval() -> i32 {
    -1
}

#[cfg(not(unix))]
fn libc_enosys() -> i32 {
    -1
}

/// Renames `from` to `to`, failing if `to` exists.
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    match rename_with(from, to, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ModelError::Exists {
                path: to.to_path_buf(),
            })
        }
        Err(e) if !unsupported(&e) => return Err(ModelError::io(to)(e)),
        Err(_) => {}
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(ModelError::Exists {
            path: to.to_path_buf(),
        });
    }
    std::fs::rename(from, to).map_err(ModelError::io(to))
}

/// Swaps `from` and `to` atomically where the platform can; returns a note where it cannot.
fn exchange(from: &Path, to: &Path) -> Result<Option<String>> {
    #[cfg(target_os = "linux")]
    match rename_with(from, to, rustix::fs::RenameFlags::EXCHANGE) {
        Ok(()) => return Ok(None),
        Err(e) if !unsupported(&e) => return Err(ModelError::io(to)(e)),
        Err(_) => {}
    }
    // Fallback: the old model moves into the staging name's place, then the new one in.
    let aside = from.with_extension("old");
    std::fs::rename(to, &aside).map_err(ModelError::io(to))?;
    std::fs::rename(from, to).map_err(ModelError::io(to))?;
    std::fs::rename(&aside, from).map_err(ModelError::io(from))?;
    Ok(Some(format!(
        "{}: this filesystem cannot exchange two directories atomically; the old model was moved aside first (a moment with no model at the path)",
        to.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        assert!(staging_name(".sft-0123abcd"));
        assert!(!staging_name(".sft-0123abc"));
        assert!(!staging_name(".sft-0123abcg"));
        assert!(!staging_name("model"));
    }
}
