//! Errors of lt's file formats. Every error says where: the file, the byte offset, and when
//! known the block and the record index.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where in a file something went wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// Byte offset from the start of the file.
    pub byte: u64,
    /// Block index (0 is the header block), when inside a block.
    pub block: Option<u64>,
    /// Index of the record being read, when the error concerns one.
    pub record: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}", self.byte)?;
        if let Some(b) = self.block {
            write!(f, ", block {b}")?;
        }
        if let Some(r) = self.record {
            write!(f, ", record {r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("empty file (0 bytes), expected an lt {expected} file")]
    Empty { expected: &'static str },
    #[error("not an lt file (bad magic bytes)")]
    BadMagic,
    #[error("this is an lt {found} file, expected an lt {expected} file")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "format version {found} is newer than this lt reads (up to {supported}); use a newer lt"
    )]
    FutureVersion { found: u16, supported: u16 },
    #[error("truncated: {what}")]
    Truncated { what: String },
    #[error("corrupt: {what}")]
    Corrupt { what: String },
    #[error("record does not decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("trailer says {trailer} records, file holds {counted}")]
    CountMismatch { trailer: u64, counted: u64 },
    #[error("fingerprint mismatch: trailer says {trailer}, frames hash to {computed}")]
    FingerprintMismatch { trailer: String, computed: String },
}

/// A format error with its position and, once known, the file it came from.
#[derive(Debug)]
pub struct Error {
    kind: Box<ErrorKind>,
    pos: Option<Position>,
    path: Option<PathBuf>,
}

impl Error {
    pub fn new(kind: ErrorKind, pos: Option<Position>) -> Error {
        Error {
            kind: Box::new(kind),
            pos,
            path: None,
        }
    }

    pub fn at(kind: ErrorKind, pos: Position) -> Error {
        Error::new(kind, Some(pos))
    }

    pub fn with_path(mut self, path: &Path) -> Error {
        self.path = Some(path.to_owned());
        self
    }

    /// Names the file, when there is one (readers over bytes have none).
    pub fn in_file(self, path: Option<&Path>) -> Error {
        match path {
            Some(p) => self.with_path(p),
            None => self,
        }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub fn position(&self) -> Option<Position> {
        self.pos
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", self.kind)?;
        if let Some(pos) = &self.pos {
            write!(f, " (at {pos})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::new(ErrorKind::Io(e), None)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
