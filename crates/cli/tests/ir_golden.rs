//! Golden IR tests: runs every `tests/ir/*.mlir` like LLVM lit + FileCheck.
//!
//! * `// RUN: sparseflow opt %s --pass-pipeline=... | sparseflow opt -` — `%s` is
//!   the file, `|` pipes stdout into the next command's stdin.
//! * `// CHECK: text`, `// CHECK-NEXT: text` (the very next line),
//!   `// CHECK-NOT: text` (absent between the surrounding matches),
//!   `// CHECK-LABEL: text` (same as CHECK). Matching is substring matching
//!   with runs of whitespace collapsed.
//! * `// expected-error {{msg}}` (error on this line), `expected-error@+N` /
//!   `@-N` (N lines below/above), `expected-error@unknown` (no location): the
//!   run must fail, each expected message must be reported at its line, and
//!   no unexpected located error may appear.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MIN_CASES: usize = 25;

#[test]
fn ir_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mlir"))
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_CASES,
        "only {} golden files in {}",
        files.len(),
        dir.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run_file(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} golden test(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let runs: Vec<&str> = text.lines().filter_map(|l| directive(l, "RUN:")).collect();
    if runs.is_empty() {
        return Err("no `// RUN:` line".into());
    }
    let expected = expected_errors(&text)?;
    for run in runs {
        let out = run_pipeline(run, path)?;
        if expected.is_empty() {
            if !out.ok {
                return Err(format!("`{run}` failed:\n{}", out.stderr));
            }
            file_check(&text, &out.stdout)
                .map_err(|e| format!("`{run}`: {e}\n--- output ---\n{}", out.stdout))?;
        } else {
            check_errors(&expected, &out)
                .map_err(|e| format!("`{run}`: {e}\n--- stderr ---\n{}", out.stderr))?;
        }
    }
    Ok(())
}

/// The text after `// NAME` on a line, if the line carries that directive.
fn directive<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix("//")?.trim_start();
    rest.strip_prefix(name).map(str::trim)
}

fn run_pipeline(run: &str, path: &Path) -> Result<Outcome, String> {
    let bin = env!("CARGO_BIN_EXE_sparseflow");
    let mut input: Option<String> = None;
    let mut last = Outcome {
        ok: true,
        stdout: String::new(),
        stderr: String::new(),
    };
    for stage in run.split('|') {
        let mut words = stage.split_whitespace();
        if words.next() != Some("sparseflow") {
            return Err(format!(
                "RUN stages must start with `sparseflow`: `{stage}`"
            ));
        }
        let args: Vec<String> = words
            .map(|w| w.replace("%s", &path.to_string_lossy()))
            .collect();
        let mut child = Command::new(bin)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning {bin}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.take().unwrap_or_default().as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        last = Outcome {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if !last.ok {
            break;
        }
        input = Some(last.stdout.clone());
    }
    Ok(last)
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

enum Check {
    Plain(String),
    Next(String),
    Not(String),
}

fn file_check(text: &str, output: &str) -> Result<(), String> {
    let checks: Vec<Check> = text
        .lines()
        .filter_map(|l| {
            if let Some(p) = directive(l, "CHECK-NEXT:") {
                Some(Check::Next(normalize(p)))
            } else if let Some(p) = directive(l, "CHECK-NOT:") {
                Some(Check::Not(normalize(p)))
            } else if let Some(p) = directive(l, "CHECK-LABEL:") {
                Some(Check::Plain(normalize(p)))
            } else {
                directive(l, "CHECK:").map(|p| Check::Plain(normalize(p)))
            }
        })
        .collect();
    if checks.is_empty() {
        return Err("no CHECK lines and no expected-error: nothing is tested".into());
    }
    let lines: Vec<String> = output.lines().map(normalize).collect();
    let mut pos = 0usize;
    let mut last: Option<usize> = None;
    let mut nots: Vec<&str> = Vec::new();
    let check_nots = |nots: &mut Vec<&str>, range: &[String]| -> Result<(), String> {
        for n in nots.drain(..) {
            if let Some(l) = range.iter().find(|l| l.contains(n)) {
                return Err(format!("CHECK-NOT: `{n}` found in `{l}`"));
            }
        }
        Ok(())
    };
    for check in &checks {
        match check {
            Check::Not(p) => nots.push(p),
            Check::Plain(p) => {
                let i = (pos..lines.len())
                    .find(|&i| lines[i].contains(p.as_str()))
                    .ok_or_else(|| format!("CHECK: `{p}` not found after line {pos}"))?;
                check_nots(&mut nots, &lines[pos..i])?;
                pos = i + 1;
                last = Some(i);
            }
            Check::Next(p) => {
                let i = last
                    .map(|l| l + 1)
                    .ok_or("CHECK-NEXT with no previous match")?;
                match lines.get(i) {
                    Some(l) if l.contains(p.as_str()) => {}
                    other => {
                        return Err(format!(
                            "CHECK-NEXT: `{p}` expected on the next line, found `{}`",
                            other.map_or("<end>", |s| s)
                        ))
                    }
                }
                check_nots(&mut nots, &lines[pos.min(i)..i])?;
                pos = i + 1;
                last = Some(i);
            }
        }
    }
    check_nots(&mut nots, &lines[pos.min(lines.len())..])
}

/// `(line or None for @unknown, message)` for each `expected-error`.
fn expected_errors(text: &str) -> Result<Vec<(Option<usize>, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(at) = line.find("// expected-error") else {
            continue;
        };
        let rest = &line[at + "// expected-error".len()..];
        let (open, close) = (rest.find("{{"), rest.rfind("}}"));
        let (Some(open), Some(close)) = (open, close) else {
            return Err(format!(
                "line {}: expected-error needs {{{{message}}}}",
                i + 1
            ));
        };
        let spec = rest[..open].trim();
        let msg = rest[open + 2..close].to_string();
        let target = match spec.strip_prefix('@') {
            None => Some(i + 1),
            Some("unknown") => None,
            Some(off) => {
                let n: i64 = off
                    .parse()
                    .map_err(|_| format!("line {}: bad offset `{off}`", i + 1))?;
                Some((i as i64 + 1 + n) as usize)
            }
        };
        out.push((target, msg));
    }
    Ok(out)
}

fn check_errors(expected: &[(Option<usize>, String)], out: &Outcome) -> Result<(), String> {
    if out.ok {
        return Err("expected a failure but the command succeeded".into());
    }
    let located: Vec<(usize, &str)> = out
        .stderr
        .lines()
        .filter_map(|l| Some((error_line(l)?, l)))
        .collect();
    for (line, msg) in expected {
        let found = match line {
            Some(n) => located
                .iter()
                .any(|(l, text)| l == n && text.contains(msg.as_str())),
            None => out.stderr.contains(msg.as_str()),
        };
        if !found {
            return Err(format!(
                "expected error at line {line:?} not reported: {msg}"
            ));
        }
    }
    for (l, text) in &located {
        if !expected
            .iter()
            .any(|(line, msg)| *line == Some(*l) && text.contains(msg.as_str()))
        {
            return Err(format!("unexpected error: {text}"));
        }
    }
    Ok(())
}

/// The line number of a `file:LINE:COL: ...` diagnostic.
fn error_line(line: &str) -> Option<usize> {
    let mut parts = line.split(':');
    parts.next()?;
    let l = parts.next()?.trim().parse().ok()?;
    parts.next()?.trim().parse::<usize>().ok()?;
    Some(l)
}
