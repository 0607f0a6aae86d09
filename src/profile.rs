//! Hot functions of the relay from a real profiler run: `perf record` attached to the relay's
//! pid while replay runs, summarised by `perf report` into a small JSON file kept beside the
//! results (`<results>.profile.json`), which `lt analyze` reads. Where perf is missing or not
//! permitted, nothing is written and reports say "not measured".

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Sampling frequency: odd, so it does not beat with periodic work in the relay.
const FREQUENCY_HZ: u32 = 499;
/// Functions kept: those above this share of samples.
const PERCENT_FLOOR: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Profile {
    /// How it was measured, e.g. `perf record -F 499 -p 1234`.
    pub tool: String,
    /// Samples taken in all.
    pub samples: u64,
    /// Most samples first.
    pub functions: Vec<HotFunction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HotFunction {
    pub symbol: String,
    /// The binary or library it is in (`[kernel.kallsyms]` for the kernel).
    pub dso: String,
    /// Share of samples, percent.
    pub percent: f64,
    pub samples: u64,
}

/// A `perf record` running against one process.
pub struct Profiler {
    child: Child,
    data: PathBuf,
    tool: String,
}

/// Where the profile of a results file is kept.
pub fn beside(results: &Path) -> PathBuf {
    let mut name = results.as_os_str().to_owned();
    name.push(".profile.json");
    PathBuf::from(name)
}

/// Starts sampling `pid`; `data` is perf's raw output (deleted once summarised).
pub fn start(pid: u32, data: &Path) -> Result<Profiler, String> {
    let child = Command::new("perf")
        .args(["record", "-q", "-F", &FREQUENCY_HZ.to_string(), "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run perf ({e}); install linux-perf to profile the relay"))?;
    let mut p = Profiler {
        child,
        data: data.to_owned(),
        tool: format!("perf record -F {FREQUENCY_HZ} -p {pid}"),
    };
    // perf exits at once when it may not attach (perf_event_paranoid, no such pid).
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = p.child.try_wait() {
        let mut err = String::new();
        if let Some(mut e) = p.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("perf record exited ({status}): {first}"));
    }
    Ok(p)
}

impl Profiler {
    /// Stops sampling, summarises the samples and writes them to `out`.
    pub fn finish(mut self, out: &Path) -> Result<Profile, String> {
        // SAFETY: kill(2) on the perf process we started; SIGINT makes it write its data.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        self.child
            .wait()
            .map_err(|e| format!("waiting for perf record: {e}"))?;
        let report = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-q", "-g", "none"])
            .args(["--sort", "dso,symbol", "--show-nr-samples", "-i"])
            .arg(&self.data)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("running perf report: {e}"))?;
        let _ = std::fs::remove_file(&self.data);
        if !report.status.success() {
            return Err(format!("perf report failed ({})", report.status));
        }
        let profile = parse_report(&String::from_utf8_lossy(&report.stdout), &self.tool);
        let json = serde_json::to_vec_pretty(&profile).map_err(|e| e.to_string())?;
        std::fs::write(out, json).map_err(|e| format!("writing {}: {e}", out.display()))?;
        Ok(profile)
    }
}

/// Symbols of cryptographic code as profilers name them (case-insensitive substrings):
/// signatures (secp256k1, schnorr, ECDSA, Ed25519), hashing (SHA-1, SHA-2, BLAKE, Keccak),
/// MACs and AES.
const CRYPTO_SYMBOLS: [&str; 15] = [
    "secp256k1",
    "schnorr",
    "ecdsa",
    "ecmult",
    "ed25519",
    "x25519",
    "sha256",
    "sha2::",
    "sha512",
    "sha1",
    "hmac",
    "blake",
    "keccak",
    "aes_",
    "aesni",
];

/// Whether `symbol` is cryptographic code.
pub fn is_crypto(symbol: &str) -> bool {
    let s = symbol.to_ascii_lowercase();
    CRYPTO_SYMBOLS.iter().any(|c| s.contains(c))
}

/// Parses `perf report --stdio -q --sort dso,symbol --show-nr-samples` lines:
/// `  12.34%   567  nostr-rs-relay  [.] symbol name   -  -`.
pub fn parse_report(text: &str, tool: &str) -> Profile {
    let mut functions = Vec::new();
    let mut samples = 0;
    for line in text.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let (Some(pct), Some(n), Some(dso)) = (tokens.first(), tokens.get(1), tokens.get(2)) else {
            continue;
        };
        let (Some(pct), Ok(n)) = (pct.strip_suffix('%'), n.parse::<u64>()) else {
            continue;
        };
        let Ok(percent) = pct.parse::<f64>() else {
            continue;
        };
        samples += n;
        // After the `[.]` / `[k]` marker comes the symbol; perf pads with `-` columns.
        let mut rest: Vec<&str> = tokens.iter().skip(4).copied().collect();
        while rest.last() == Some(&"-") {
            rest.pop();
        }
        if percent >= PERCENT_FLOOR {
            functions.push(HotFunction {
                symbol: rest.join(" "),
                dso: (*dso).to_owned(),
                percent,
                samples: n,
            });
        }
    }
    functions.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    Profile {
        tool: tool.to_owned(),
        samples,
        functions,
    }
}

/// The profile kept beside `results`, if there is one.
pub fn load_beside(results: &Path) -> Option<Profile> {
    let text = std::fs::read_to_string(beside(results)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The profiles kept beside any of `results` (none for runs that were not profiled).
pub fn load_all_beside(results: &[PathBuf]) -> Vec<Profile> {
    results.iter().filter_map(|r| load_beside(r)).collect()
}

/// Runs `f` (a replay into `results`) with `perf record` attached to `pid`, when given; the
/// profile goes beside the results. A profiler that cannot run costs a warning, not the run.
pub fn around<T>(
    pid: Option<u32>,
    results: &std::path::Path,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let Some(pid) = pid else { return f() };
    let mut data = results.as_os_str().to_owned();
    data.push(".perf.data");
    let profiler = match start(pid, std::path::Path::new(&data)) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("lt: not profiling: {e}");
            None
        }
    };
    let out = f();
    if let Some(p) = profiler {
        if let Err(e) = p.finish(&beside(results)) {
            eprintln!("lt: profile not kept: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_report_lines_become_functions() {
        let text = "    33.06%           198  [kernel.kallsyms]  [k] do_syscall_64                -      -  \n\
                    \n\
                    12.02%            72  libc.so.6          [.] __GI___libc_write            -      -\n\
                    0.20%              1  nostr-rs-relay     [.] <T as core::ops::Drop>::drop -  -\n\
                    # comment line\n";
        let p = parse_report(text, "perf record");
        assert_eq!(p.samples, 271);
        assert_eq!(p.functions.len(), 2);
        assert_eq!(p.functions[0].symbol, "do_syscall_64");
        assert_eq!(p.functions[0].dso, "[kernel.kallsyms]");
        assert_eq!(p.functions[1].symbol, "__GI___libc_write");
        assert_eq!(p.functions[1].percent, 12.02);
    }

    #[test]
    fn profiles_live_beside_their_results() {
        assert_eq!(
            beside(Path::new("runs/a.ltr")),
            PathBuf::from("runs/a.ltr.profile.json")
        );
    }
}
