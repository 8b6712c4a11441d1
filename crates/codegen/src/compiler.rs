//! NVRTC (through cudarc's dynamically loaded bindings) and the on-disk cubin cache.
//!
//! Cache entries live in `$SPARSEFLOW_CACHE_DIR` (default `~/.cache/sparseflow`), named by
//! sha256(source, target, NVRTC version, options). An entry is `MAGIC ++ sha256(cubin) ++ cubin`,
//! written to a temporary file and renamed into place, so concurrent processes never see a
//! half-written entry; an entry whose digest does not match is recompiled and replaced.
//!
//! The digest is a **checksum, not an authentication**: it catches truncated or corrupted
//! entries, but anyone who can write the cache directory can plant a cubin with a matching
//! digest, and the runtime will load and run it. The directory is therefore created private
//! (mode 0700) and must not be shared with untrusted users; point `SPARSEFLOW_CACHE_DIR` at a
//! directory only you can write. Anything at an entry's path that is not a regular file of a
//! plausible size (a FIFO, a device, a directory, a huge file) is ignored and recompiled, never
//! opened, so a planted FIFO cannot hang the process.

use crate::error::CodegenError;
use crate::generate::GeneratedKernel;
use crate::spec::parse_target;
use cudarc::nvrtc::{result, sys};
use sha2::{Digest, Sha256};
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::time::Instant;

const MAGIC: &[u8; 8] = b"SFCUBIN1";

/// A compiled kernel: cubin bytes ready for `cuModuleLoadData`.
#[derive(Debug, Clone)]
pub struct CompiledKernel {
    pub name: String,
    pub cubin: Vec<u8>,
    pub from_cache: bool,
    pub compile_ms: f64,
    /// NVRTC / ptxas log (register counts; empty when served from the cache).
    pub log: String,
}

/// How a [`Compiler`] behaves.
#[derive(Debug, Clone)]
pub struct CompilerOptions {
    /// Cache directory; `None` = `$SPARSEFLOW_CACHE_DIR` or `~/.cache/sparseflow`.
    pub cache_dir: Option<PathBuf>,
    /// Fail with [`CodegenError::Spills`] when ptxas reports spills or local memory.
    pub deny_spills: bool,
    /// Read and write the disk cache.
    pub use_cache: bool,
}

impl Default for CompilerOptions {
    fn default() -> Self {
        CompilerOptions {
            cache_dir: None,
            deny_spills: false,
            use_cache: true,
        }
    }
}

/// NVRTC front end with a disk cache. Cheap to share (`Send + Sync`).
#[derive(Debug)]
pub struct Compiler {
    cache_dir: PathBuf,
    nvrtc_version: (i32, i32),
    options: CompilerOptions,
}

fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPARSEFLOW_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("sparseflow")
}

fn nvrtc_err(call: &'static str) -> impl Fn(result::NvrtcError) -> CodegenError {
    move |e| CodegenError::Nvrtc {
        call,
        status: format!("{:?}", e.0),
    }
}

fn c_chars_to_string(v: &[c_char]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Compiler {
    pub fn new() -> Result<Self, CodegenError> {
        Self::with_options(CompilerOptions::default())
    }

    pub fn with_options(options: CompilerOptions) -> Result<Self, CodegenError> {
        // SAFETY: only tries to dlopen libnvrtc; no NVRTC function is called before it succeeds.
        let present = || unsafe { sys::is_culib_present() };
        // Not on the loader's path: try where a set-up leaves it (nvrtc_lib.rs), then again.
        if !present() && (crate::nvrtc_lib::preload().is_none() || !present()) {
            return Err(CodegenError::NvrtcMissing);
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the library is present; nvrtcVersion writes two ints.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(nvrtc_err("nvrtcVersion"))?;
        let cache_dir = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Ok(Compiler {
            cache_dir,
            nvrtc_version: (major, minor),
            options,
        })
    }

    pub fn nvrtc_version(&self) -> (i32, i32) {
        self.nvrtc_version
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn nvrtc_options(target: &str) -> Vec<String> {
        vec![
            format!("--gpu-architecture={target}"),
            "-std=c++17".into(),
            "--ptxas-options=-v".into(),
        ]
    }

    fn cache_path(&self, k: &GeneratedKernel, options: &[String]) -> PathBuf {
        let mut h = Sha256::new();
        h.update(k.source.as_bytes());
        h.update([0]);
        h.update(k.spec.target.as_bytes());
        h.update([0]);
        h.update(format!("nvrtc {}.{}", self.nvrtc_version.0, self.nvrtc_version.1).as_bytes());
        for o in options {
            h.update([0]);
            h.update(o.as_bytes());
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.cache_dir
            .join(format!("{}-{}-{hex}.cubin", k.name, k.spec.target))
    }

    /// Compiles `k` for its target, or returns the cached cubin.
    pub fn compile(&self, k: &GeneratedKernel) -> Result<CompiledKernel, CodegenError> {
        parse_target(&k.spec.target)?;
        let options = Self::nvrtc_options(&k.spec.target);
        let path = self.cache_path(k, &options);
        if self.options.use_cache {
            if let Some(cubin) = read_entry(&path) {
                return Ok(CompiledKernel {
                    name: k.name.clone(),
                    cubin,
                    from_cache: true,
                    compile_ms: 0.0,
                    log: String::new(),
                });
            }
        }
        let start = Instant::now();
        let (cubin, ptx, log) = nvrtc_compile(k, &options)?;
        let compile_ms = start.elapsed().as_secs_f64() * 1e3;
        if let Some(dir) = std::env::var_os("SPARSEFLOW_DUMP_DIR").filter(|d| !d.is_empty()) {
            dump(Path::new(&dir), k, &ptx, &cubin, &log);
        }
        if self.options.deny_spills {
            if let Some(info) = spill_report(&log) {
                return Err(CodegenError::Spills {
                    name: k.name.clone(),
                    target: k.spec.target.clone(),
                    info,
                });
            }
        }
        if self.options.use_cache {
            write_entry(&path, &cubin)?;
        }
        Ok(CompiledKernel {
            name: k.name.clone(),
            cubin,
            from_cache: false,
            compile_ms,
            log,
        })
    }
}

fn nvrtc_compile(
    k: &GeneratedKernel,
    options: &[String],
) -> Result<(Vec<u8>, String, String), CodegenError> {
    let src = CString::new(k.source.as_str())
        .map_err(|_| CodegenError::Unsupported("generated source contains a NUL byte".into()))?;
    let file = CString::new(format!("{}.cu", k.name)).expect("kernel names have no NUL");
    let prog =
        result::create_program(&src, Some(&file)).map_err(nvrtc_err("nvrtcCreateProgram"))?;
    // SAFETY: `prog` was just created and is destroyed exactly once below; `src`/`file` outlive it.
    unsafe {
        let compiled = result::compile_program(prog, options);
        let log = result::get_program_log(prog)
            .map(|l| c_chars_to_string(&l))
            .unwrap_or_default();
        let out = match compiled {
            Err(_) => Err(CodegenError::Compile {
                name: k.name.clone(),
                target: k.spec.target.clone(),
                excerpt: error_excerpt(&k.source, &log),
                log,
            }),
            Ok(()) => get_cubin(prog).map(|cubin| {
                let ptx = result::get_ptx(prog)
                    .map(|p| c_chars_to_string(&p))
                    .unwrap_or_default();
                (cubin, ptx, log)
            }),
        };
        let _ = result::destroy_program(prog);
        out
    }
}

/// # Safety
/// `prog` must be a successfully compiled, live NVRTC program.
unsafe fn get_cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, CodegenError> {
    let mut size = 0usize;
    sys::nvrtcGetCUBINSize(prog, &mut size)
        .result()
        .map_err(nvrtc_err("nvrtcGetCUBINSize"))?;
    let mut buf = vec![0u8; size];
    sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr().cast())
        .result()
        .map_err(nvrtc_err("nvrtcGetCUBIN"))?;
    Ok(buf)
}

/// The generated lines named by `file(LINE): error` messages, with 3 lines of context each.
pub fn error_excerpt(source: &str, log: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    let mut seen = Vec::new();
    for l in log.lines().filter(|l| l.contains("error")) {
        let Some(open) = l.find(".cu(") else { continue };
        let rest = &l[open + 4..];
        let Some(close) = rest.find(')') else {
            continue;
        };
        let Ok(line_no) = rest[..close].parse::<usize>() else {
            continue;
        };
        if seen.contains(&line_no) || seen.len() >= 5 {
            continue;
        }
        seen.push(line_no);
        let lo = line_no.saturating_sub(4);
        let hi = (line_no + 3).min(lines.len());
        for (i, text) in lines.iter().enumerate().take(hi).skip(lo) {
            let mark = if i + 1 == line_no { ">>" } else { "  " };
            out.push_str(&format!("{mark}{:5} | {text}\n", i + 1));
        }
        out.push_str("      ...\n");
    }
    if out.is_empty() {
        out.push_str(
            "(the log names no generated line; set SPARSEFLOW_DUMP_DIR to inspect the source)\n",
        );
    }
    out
}

/// `Some(lines)` when the ptxas log reports spill stores/loads or a stack frame (local memory).
pub fn spill_report(log: &str) -> Option<String> {
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let nonzero = |key: &str| {
                l.find(key).is_some_and(|at| {
                    let before = l[..at].trim_end();
                    before
                        .rsplit(|c: char| !c.is_ascii_digit())
                        .next()
                        .is_some_and(|d| !d.is_empty() && d != "0")
                })
            };
            nonzero("bytes spill stores")
                || nonzero("bytes spill loads")
                || nonzero("bytes stack frame")
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join("\n"))
}

/// Largest entry read back (a cubin of one kernel is far smaller).
const MAX_ENTRY_BYTES: u64 = 256 << 20;

fn read_entry(path: &Path) -> Option<Vec<u8>> {
    // lstat first: opening a FIFO would block, and a link could point anywhere.
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_ENTRY_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return None;
    }
    let cubin = &bytes[40..];
    (Sha256::digest(cubin).as_slice() == &bytes[8..40]).then(|| cubin.to_vec())
}

fn write_entry(path: &Path, cubin: &[u8]) -> Result<(), CodegenError> {
    let io = |source| CodegenError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().expect("cache paths have a parent");
    create_private_dir(dir).map_err(io)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{nanos}",
        path.file_name().and_then(|f| f.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    let mut data = Vec::with_capacity(cubin.len() + 40);
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&Sha256::digest(cubin));
    data.extend_from_slice(cubin);
    std::fs::write(&tmp, &data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Creates `dir` and any missing parents; new ones are private to the user (0700 on Unix),
/// since whoever can write the cache decides which code the GPU runs.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn dump(dir: &Path, k: &GeneratedKernel, ptx: &str, cubin: &[u8], log: &str) {
    let base = format!("{}-{}", k.name, k.spec.target);
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join(format!("{base}.cu")), &k.source);
    let _ = std::fs::write(dir.join(format!("{base}.ptx")), ptx);
    let _ = std::fs::write(dir.join(format!("{base}.cubin")), cubin);
    let _ = std::fs::write(dir.join(format!("{base}.log")), log);
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sf-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn entries_round_trip_and_corruption_is_a_miss() {
        let dir = scratch("rt");
        let p = dir.join("k.cubin");
        write_entry(&p, b"cubin bytes").unwrap();
        assert_eq!(read_entry(&p).as_deref(), Some(&b"cubin bytes"[..]));
        let mut raw = std::fs::read(&p).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        std::fs::write(&p, raw).unwrap();
        assert_eq!(read_entry(&p), None, "a digest mismatch is a miss");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "the cache directory is private");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_directory_at_an_entry_is_a_miss_not_a_hang() {
        let dir = scratch("fifo");
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("k.cubin");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let t0 = std::time::Instant::now();
            assert_eq!(read_entry(&fifo), None);
            assert!(t0.elapsed().as_secs() < 2);
            // The next compile replaces it with a real entry.
            write_entry(&fifo, b"x").unwrap();
            assert_eq!(read_entry(&fifo).as_deref(), Some(&b"x"[..]));
        }
        std::fs::create_dir_all(dir.join("d.cubin")).unwrap();
        assert_eq!(read_entry(&dir.join("d.cubin")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
