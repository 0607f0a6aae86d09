//! Why an import stopped, and where: the input and its line, or the compressed byte.

use std::io;

use super::parse::Reason;

/// An import that stopped. `input` is how the input was named: its path as given, or
/// "standard input".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{input}: {err}")]
    Open { input: String, err: io::Error },
    #[error("{input}: line {line}: {err}")]
    Read {
        input: String,
        line: u64,
        err: io::Error,
    },
    /// A zstd stream that is corrupt or cut short; `byte` is how far into the compressed
    /// input the decoder had read.
    #[error("{input}: zstd input at compressed byte {byte}: {err}")]
    Zstd {
        input: String,
        byte: u64,
        err: io::Error,
    },
    #[error("{input}: gzip input is not read; decompress it, or compress it with zstd")]
    Gzip { input: String },
    /// A bad line with `--strict`.
    #[error("{input}:{line}: {reason}: {detail}")]
    BadLine {
        input: String,
        line: u64,
        reason: Reason,
        detail: String,
    },
    #[error("writing the trace: {0}")]
    Write(io::Error),
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Thread(&'static str),
}
