//! lt's file formats: a block container (zstd-compressed MessagePack, streamed) and the typed
//! files on top of it. See `docs/capture-format.md`.

pub mod container;
pub mod error;
pub mod options;
pub mod results;
pub mod staged;
pub mod stream;
pub mod trace;

pub use error::{Error, ErrorKind, Position};
pub use trace::{
    Answer, Completion, Header, Op, Query, Record, Reply, Role, Source, TraceReader, TraceWriter,
    Trailer,
};
