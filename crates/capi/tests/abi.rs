//! The ABI guard. `abi/v<MAJOR>.<MINOR>.txt` records the C ABI of that version: every function
//! signature (types only), enum value, constant and typedef of `include/sparseflow.h`. This
//! test fails when
//!
//! * the header's ABI differs from the record of the version it declares (change the ABI ⇒
//!   bump the version: MINOR when only appending functions / enum values / constants, MAJOR
//!   for anything else; then record the new list with
//!   `SPARSEFLOW_RECORD_ABI=1 cargo test -p sparseflow-capi --test abi`; records are never
//!   overwritten);
//! * a minor version drops or changes anything an earlier minor of the same major recorded;
//! * `libsparseflow.so` exports a symbol the header does not declare, or lacks one it does;
//! * an exported Rust function body does not go through `ffi_boundary!`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn header() -> String {
    std::fs::read_to_string(crate_dir().join("../../include/sparseflow.h")).expect("header")
}

/// Removes `/* */` and `//` comments.
fn strip_comments(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// "const void *x" -> "const void*"; "void" stays "void".
fn param_type(param: &str) -> String {
    let p = param.trim();
    if p == "void" {
        return p.to_string();
    }
    let name_start = p
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    assert!(name_start > 0, "parameter without a type: {p:?}");
    p[..name_start].trim().replace(" *", "*")
}

/// The ABI of a header as sorted canonical lines, plus its (major, minor).
fn describe(header: &str) -> (BTreeSet<String>, (u32, u32)) {
    let code = strip_comments(header);
    let mut items = BTreeSet::new();
    let (mut major, mut minor) = (None, None);
    let mut current_enum = String::new();
    // Declarations may span lines: split on ';' and on enum bodies.
    for line in code.lines().map(str::trim) {
        if let Some(def) = line.strip_prefix("#define ") {
            let mut parts = def.split_whitespace();
            let (name, value) = (parts.next().unwrap(), parts.next());
            match (name, value) {
                ("SPARSEFLOW_ABI_VERSION_MAJOR", Some(v)) => major = v.parse().ok(),
                ("SPARSEFLOW_ABI_VERSION_MINOR", Some(v)) => minor = v.parse().ok(),
                (_, Some(v)) => {
                    items.insert(format!("define {name} {v}"));
                }
                (_, None) => {} // the include guard
            }
        } else if let Some(name) = line.strip_prefix("enum ") {
            if !line.ends_with(';') {
                current_enum = name.trim_end_matches('{').trim().to_string();
            }
        } else if line.starts_with("SPARSEFLOW_") && line.contains(" = ") {
            let item = line.trim_end_matches(',');
            items.insert(format!("enum {current_enum} {item}"));
        } else if line.starts_with("typedef ") {
            items.insert(line.trim_end_matches(';').to_string());
        }
    }
    let declarations: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for decl in declarations.split(';') {
        let decl = decl.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(open) = decl.find("sparseflow_") else {
            continue;
        };
        let Some(paren) = decl[open..].find('(').map(|i| i + open) else {
            continue;
        };
        let ret_start = decl[..open].rfind(['}', '{', ')']).map_or(0, |i| i + 1);
        let ret = decl[ret_start..open].trim().replace(" *", "*");
        let name = &decl[open..paren];
        let params = decl[paren + 1..decl.rfind(')').expect("closing paren")]
            .split(',')
            .map(param_type)
            .collect::<Vec<_>>()
            .join(", ");
        items.insert(format!("fn {ret} {name}({params})"));
    }
    (
        items,
        (
            major.expect("SPARSEFLOW_ABI_VERSION_MAJOR"),
            minor.expect("SPARSEFLOW_ABI_VERSION_MINOR"),
        ),
    )
}

fn record_path(major: u32, minor: u32) -> PathBuf {
    crate_dir().join(format!("abi/v{major}.{minor}.txt"))
}

fn read_record(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn render(major: u32, minor: u32, items: &BTreeSet<String>) -> String {
    let mut s = format!(
        "# SparseFlow C ABI {major}.{minor}: recorded from include/sparseflow.h by \
         crates/capi/tests/abi.rs.\n# Never edit or overwrite: change the ABI => bump \
         SPARSEFLOW_ABI_VERSION_* and record a new file.\n"
    );
    for item in items {
        s.push_str(item);
        s.push('\n');
    }
    s
}

#[test]
fn abi_matches_the_recorded_list() {
    let (items, (major, minor)) = describe(&header());
    assert_eq!(
        sparseflow::sparseflow_abi_version(),
        (major << 16) | minor,
        "the header's version macros and sparseflow_abi_version() disagree"
    );
    let path = record_path(major, minor);
    if !path.exists() {
        if std::env::var_os("SPARSEFLOW_RECORD_ABI").is_some() {
            std::fs::write(&path, render(major, minor, &items)).expect("write the ABI record");
            println!("recorded {}", path.display());
        } else {
            panic!(
                "no ABI record for version {major}.{minor} ({}). If this is a new version, \
                 record it: SPARSEFLOW_RECORD_ABI=1 cargo test -p sparseflow-capi --test abi",
                path.display()
            );
        }
    }
    let recorded = read_record(&path);
    let added: Vec<_> = items.difference(&recorded).collect();
    let removed: Vec<_> = recorded.difference(&items).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the C ABI differs from the record of version {major}.{minor} ({}):\n  added: \
         {added:#?}\n  removed or changed: {removed:#?}\nA released ABI never changes. Bump \
         SPARSEFLOW_ABI_VERSION_MINOR (crates/capi/src/info.rs) if you only added things, \
         SPARSEFLOW_ABI_VERSION_MAJOR (and reset MINOR) otherwise; regenerate the header \
         (cargo run -p sparseflow-capi --example gen_header) and record the new version \
         (SPARSEFLOW_RECORD_ABI=1 cargo test -p sparseflow-capi --test abi).",
        path.display()
    );
}

#[test]
fn minor_versions_only_append() {
    let (items, (major, minor)) = describe(&header());
    for older in 0..minor {
        let path = record_path(major, older);
        if !path.exists() {
            continue;
        }
        let missing: Vec<_> = read_record(&path).difference(&items).cloned().collect();
        assert!(
            missing.is_empty(),
            "ABI {major}.{minor} drops or changes items of {major}.{older}: {missing:#?}; that \
             needs a major version bump"
        );
    }
}

/// Exported dynamic symbols of the built library: exactly the header's functions.
#[test]
fn shared_library_exports_exactly_the_header_functions() {
    let exe = std::env::current_exe().unwrap();
    // Built by this same `cargo test`, with every crate type, next to the test executable.
    let so = exe.parent().unwrap().join("libsparseflow.so");
    assert!(so.exists(), "{} not built", so.display());
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("run nm (binutils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && !f[2].starts_with('_') && f[2] != "rust_eh_personality")
                .then(|| f[2].split('@').next().unwrap().to_string())
        })
        .collect();
    let (items, _) = describe(&header());
    let declared: BTreeSet<String> = items
        .iter()
        .filter_map(|i| i.strip_prefix("fn "))
        .map(|f| {
            let name_end = f.find('(').unwrap();
            f[..name_end].rsplit(' ').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        exported, declared,
        "libsparseflow.so must export exactly the functions declared in include/sparseflow.h"
    );
}

/// Every `extern "C" fn` body starts with `ffi_boundary!` / `ffi_boundary_value!`.
#[test]
fn every_exported_body_goes_through_the_boundary() {
    let mut checked = 0;
    for entry in std::fs::read_dir(crate_dir().join("src")).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        let mut rest = src.as_str();
        while let Some(at) = rest.find("extern \"C\" fn ") {
            rest = &rest[at..];
            let name: String = rest["extern \"C\" fn ".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let body = &rest[rest.find(" {\n").expect("fn body") + 3..];
            assert!(
                body.trim_start().starts_with("ffi_boundary"),
                "{}: `{name}` must start its body with ffi_boundary!/ffi_boundary_value!",
                path.display()
            );
            checked += 1;
            rest = body;
        }
    }
    assert_eq!(
        checked,
        describe(&header())
            .0
            .iter()
            .filter(|i| i.starts_with("fn "))
            .count()
    );
}

#[test]
fn describe_normalises_signatures() {
    let h = "#define SPARSEFLOW_ABI_VERSION_MAJOR 2\n#define SPARSEFLOW_ABI_VERSION_MINOR 3\n\
             enum SparseFlowX\n {\n  // doc\n  SPARSEFLOW_X_A = 0,\n};\n\
             /* c */ SparseFlowStatus sparseflow_f(SparseFlowKernel k,\n const void *x, int64_t m);\n\
             #endif\nconst char *sparseflow_g(void);\n";
    let (items, v) = describe(h);
    assert_eq!(v, (2, 3));
    let items: Vec<_> = items.into_iter().collect();
    assert_eq!(
        items,
        [
            "enum SparseFlowX SPARSEFLOW_X_A = 0",
            "fn SparseFlowStatus sparseflow_f(SparseFlowKernel, const void*, int64_t)",
            "fn const char* sparseflow_g(void)",
        ]
    );
}
