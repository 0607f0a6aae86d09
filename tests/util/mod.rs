//! Helpers shared by the integration tests (what benches share too is in `lt-testkit`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lt::capture::container::{BlockReader, FileKind};
use lt::capture::trace::VERSION;

mod reports;
mod runs;
mod verify;

pub use lt_testkit::exporter::http_get;
pub use reports::{check_calibration, check_comparison, check_report_files, read_against_schema};
pub use runs::{outcomes, replay, runtime, stored};
pub use verify::independent_verify;

/// The report `lt analyze` builds of these results files (merged, with any profiles beside).
pub fn report_of(results: &[PathBuf]) -> lt::analyze::report::Report {
    let runs = lt::analyze::read_merged(results).expect("the results read back");
    let profiles = lt::profile::load_all_beside(&runs.files);
    lt::analyze::report::build(&runs, &lt::analyze::Ids::new(), &profiles)
}

pub fn lt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lt"))
}

/// Runs `lt synth` with `args` into `dir/name.ltc`; panics with stderr if it fails.
pub fn synth(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.ltc"));
    let out = lt()
        .arg("synth")
        .args(args)
        .arg("-o")
        .arg(&path)
        .output()
        .expect("run lt synth");
    assert!(
        out.status.success(),
        "lt synth failed: {}",
        text(&out.stderr)
    );
    path
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts the run failed the way lt promises for bad input: exit 2, one line on stderr
/// starting with `lt: `; returns that line.
pub fn one_line_error(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit 2, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("lt: "), "{err}");
    lines[0].to_owned()
}

/// Every decompressed byte of a capture's blocks, concatenated.
pub fn decompressed(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("open");
    let mut blocks =
        BlockReader::open(std::io::BufReader::new(file), FileKind::Trace, VERSION).expect("prefix");
    let mut all = Vec::new();
    while let Some(b) = blocks.next_block().expect("block") {
        all.extend_from_slice(&b.data);
    }
    all
}

/// Tests that measure timing (`lt ab` verdicts) need the machine to themselves; tests that
/// load it (relays, large traces) share it with each other but not with those.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// For a test that loads the machine: runs beside other such tests, never beside a `quiet` one.
pub fn busy() -> std::sync::RwLockReadGuard<'static, ()> {
    // A test that panicked while holding it leaves nothing to repair.
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

/// For a test whose assertions depend on timing: waits until no other heavy test runs.
pub fn quiet() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// The file in `dir` with extension `ext` (a report's `.json` or `.md`: their names carry
/// the date). Panics, naming the folder, when there is none.
pub fn file_with_extension(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

/// ~1,000 records over 20 clients; 10 s at 2x.
pub fn small_trace(dir: &Path) -> PathBuf {
    synth(
        dir,
        "t",
        &[
            "--seed",
            "7",
            "--duration",
            "20",
            "--rate",
            "40",
            "--clients",
            "20",
        ],
    )
}
