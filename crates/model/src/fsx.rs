//! Reading files of a model directory safely: every name a model file gives (shard names in
//! the index, the manifest, config) is resolved inside the directory, and only regular files
//! are opened.
//!
//! * Names must be relative and made of plain components (no `/`-rooted path, no `..`, no `.`).
//! * A name whose canonical path leaves the directory (a symlink pointing elsewhere) is refused;
//!   a symlink that stays inside is followed. Hugging Face cache snapshots link to `../../blobs`,
//!   which is outside: copy such a model with `cp -rL` first.
//! * Files are opened non-blocking and must be regular files: a FIFO, socket or device is an
//!   error, never a hang. The final component is opened with `O_NOFOLLOW` so it cannot be
//!   swapped for a symlink between the check and the open.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{ModelError, Result};

/// JSON files of a model (config, manifest, index) larger than this are refused.
pub const JSON_LIMIT: u64 = 64 << 20;

/// A model directory, canonicalised once.
#[derive(Debug, Clone)]
pub struct Root {
    /// As the user gave it (for messages).
    shown: PathBuf,
    canon: PathBuf,
}

impl Root {
    pub fn new(dir: &Path) -> Result<Root> {
        let canon = dir.canonicalize().map_err(ModelError::io(dir))?;
        let meta = std::fs::metadata(&canon).map_err(ModelError::io(dir))?;
        if !meta.is_dir() {
            return Err(ModelError::Layout {
                path: dir.to_path_buf(),
                problem: "not a directory".into(),
            });
        }
        Ok(Root {
            shown: dir.to_path_buf(),
            canon,
        })
    }

    /// The directory as the user named it.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// The path shown in messages for `name`.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.shown.join(name)
    }

    /// Resolves `name` inside the directory, refusing names that leave it.
    pub fn resolve(&self, name: &str) -> Result<PathBuf> {
        let outside = |why| ModelError::OutsideRoot {
            path: self.shown.clone(),
            name: name.to_string(),
            why,
        };
        let rel = Path::new(name);
        if name.is_empty() {
            return Err(outside("empty name"));
        }
        for c in rel.components() {
            match c {
                Component::Normal(_) => {}
                Component::ParentDir => return Err(outside("`..` in the name")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(outside("an absolute path"))
                }
                Component::CurDir => return Err(outside("`.` in the name")),
            }
        }
        let joined = self.canon.join(rel);
        match joined.canonicalize() {
            Ok(real) if real.starts_with(&self.canon) => Ok(real),
            Ok(_) => Err(outside("a symlink leads out of the directory")),
            // Missing files are reported by the caller, which knows what the file was for.
            Err(_) => Ok(joined),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        self.resolve(name)
            .map(|p| std::fs::symlink_metadata(p).is_ok())
            .unwrap_or(false)
    }

    /// Opens a regular file inside the directory, without blocking on FIFOs or devices.
    pub fn open(&self, name: &str) -> Result<File> {
        let real = self.resolve(name)?;
        open_regular(&real, &self.shown(name))
    }

    /// Reads and parses a JSON file inside the directory (at most [`JSON_LIMIT`] bytes).
    pub fn read_json(&self, name: &str) -> Result<serde_json::Value> {
        let file = self.open(name)?;
        read_json_file(file, &self.shown(name))
    }
}

/// Opens `real` (shown as `shown`) if it is a regular file.
pub fn open_regular(real: &Path, shown: &Path) -> Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
        options.custom_flags(flags.bits() as i32);
    }
    let file = options.open(real).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            return ModelError::NotRegular {
                path: shown.to_path_buf(),
                kind: "a symlink",
            };
        }
        ModelError::Io {
            path: shown.to_path_buf(),
            source: e,
        }
    })?;
    let meta = file.metadata().map_err(ModelError::io(shown))?;
    if !meta.is_file() {
        return Err(ModelError::NotRegular {
            path: shown.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    Ok(file)
}

/// Parses a JSON file already opened, refusing files over [`JSON_LIMIT`].
pub fn read_json_file(file: File, shown: &Path) -> Result<serde_json::Value> {
    let size = file.metadata().map_err(ModelError::io(shown))?.len();
    if size > JSON_LIMIT {
        return Err(ModelError::TooLarge {
            path: shown.to_path_buf(),
            size,
            limit: JSON_LIMIT,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(JSON_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(ModelError::io(shown))?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::Json {
        path: shown.to_path_buf(),
        detail: e.to_string(),
    })
}

/// A human name for a non-regular file type.
pub fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "a special file"
    }
}

/// Flushes a directory's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ModelError::io(dir))
}
