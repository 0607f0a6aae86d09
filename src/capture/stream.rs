//! Typed record streams over the block container: a header, records, a trailer.
//!
//! Header and trailer are MessagePack maps (named fields, so they stay readable as formats
//! grow); records are MessagePack arrays (compact, fixed field order).

use std::io::{self, Cursor, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::container::{Block, BlockReader, BlockWriter, FileKind, Tag};
use super::error::{Error, ErrorKind, Position, Result};

/// Uncompressed bytes gathered before a block is compressed and written. Large enough for
/// zstd to find the redundancy between records, small enough that little is lost when a
/// writer dies and that a reader holds little in memory.
pub const BLOCK_TARGET_BYTES: usize = 1 << 20;

/// zstd level. Measured on traces: level 2 is ~40% faster than 3 and a little smaller
/// (1 MiB blocks of JSON frames); level 1 is faster still but ~5% larger.
pub const ZSTD_LEVEL: i32 = 2;

pub struct Writer<W: Write> {
    blocks: BlockWriter<W>,
    buf: Vec<u8>,
    pending: u32,
    records: u64,
    block_target: usize,
}

fn encode_err(e: rmp_serde::encode::Error) -> io::Error {
    io::Error::other(format!("MessagePack encoding failed: {e}"))
}

impl<W: Write> Writer<W> {
    pub fn new<H: Serialize>(out: W, kind: FileKind, version: u16, header: &H) -> io::Result<Self> {
        Self::with_block_target(out, kind, version, header, BLOCK_TARGET_BYTES)
    }

    pub fn with_block_target<H: Serialize>(
        out: W,
        kind: FileKind,
        version: u16,
        header: &H,
        block_target: usize,
    ) -> io::Result<Self> {
        let mut blocks = BlockWriter::new(out, kind, version, ZSTD_LEVEL)?;
        let raw = rmp_serde::to_vec_named(header).map_err(encode_err)?;
        blocks.write_block(Tag::Header, 1, &raw)?;
        Ok(Writer {
            blocks,
            buf: Vec::with_capacity(block_target + (64 << 10)),
            pending: 0,
            records: 0,
            block_target,
        })
    }

    pub fn push<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        rmp_serde::encode::write(&mut self.buf, record).map_err(encode_err)?;
        self.pending += 1;
        self.records += 1;
        if self.buf.len() >= self.block_target {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Writes what is gathered as a block and flushes the output, so everything pushed so
    /// far is readable even if the process dies next.
    pub fn flush_block(&mut self) -> io::Result<()> {
        if self.pending > 0 {
            self.blocks
                .write_block(Tag::Records, self.pending, &self.buf)?;
            self.buf.clear();
            self.pending = 0;
        }
        self.blocks.flush()
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written to the output so far (gathered records not included).
    pub fn bytes(&self) -> u64 {
        self.blocks.bytes()
    }

    pub fn finish<T: Serialize>(mut self, trailer: &T) -> io::Result<(W, u64)> {
        self.flush_block()?;
        let raw = rmp_serde::to_vec_named(trailer).map_err(encode_err)?;
        self.blocks.write_block(Tag::Trailer, 1, &raw)?;
        let bytes = self.blocks.bytes();
        Ok((self.blocks.into_inner()?, bytes))
    }
}

/// The records block being read. Its decoder owns the block's data and lives as long as the
/// block, so the scratch buffer rmp-serde copies each string into is grown once per block,
/// not allocated and regrown for every record (a realloc and a copy per frame; for large
/// frames, fresh pages from the kernel).
struct OpenBlock {
    index: u64,
    offset: u64,
    de: rmp_serde::Deserializer<rmp_serde::decode::ReadReader<Cursor<Vec<u8>>>>,
}

impl OpenBlock {
    fn new(block: Block) -> OpenBlock {
        OpenBlock {
            index: block.index,
            offset: block.offset,
            de: rmp_serde::Deserializer::new(Cursor::new(block.data)),
        }
    }

    /// Bytes not decoded yet.
    fn left_over(&self) -> usize {
        let data = self.de.get_ref();
        data.get_ref()
            .len()
            .saturating_sub(data.position() as usize)
    }

    fn into_data(self) -> Vec<u8> {
        self.de.into_inner().into_inner()
    }
}

pub struct Reader<R: Read> {
    blocks: BlockReader<R>,
    block: Option<OpenBlock>,
    left: u32,
    record: u64,
    trailer: Option<Block>,
}

impl<R: Read> Reader<R> {
    /// Opens the stream and decodes its header.
    pub fn open<H: DeserializeOwned>(inp: R, kind: FileKind, supported: u16) -> Result<(Self, H)> {
        let mut blocks = BlockReader::open(inp, kind, supported)?;
        let head = blocks.next_block()?.ok_or_else(|| {
            Error::at(
                ErrorKind::Truncated {
                    what: "file ends right after its prefix, before the header block".into(),
                },
                Position {
                    byte: blocks.bytes(),
                    ..Default::default()
                },
            )
        })?;
        let pos = Position {
            byte: head.offset,
            block: Some(head.index),
            record: None,
        };
        if head.tag != Tag::Header || head.records != 1 {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: "first block is not a header block".into(),
                },
                pos,
            ));
        }
        let header = decode_single(&head, pos)?;
        Ok((
            Reader {
                blocks,
                block: None,
                left: 0,
                record: 0,
                trailer: None,
            },
            header,
        ))
    }

    pub fn version(&self) -> u16 {
        self.blocks.version()
    }

    /// The blocks after the header, for a caller that decodes them itself (`lt analyze`
    /// spreads them over several threads). Only before any record has been read.
    pub fn into_blocks(self) -> BlockReader<R> {
        self.blocks
    }

    /// Where the next record would be read.
    pub fn position(&self) -> Position {
        Position {
            byte: self
                .block
                .as_ref()
                .map_or(self.blocks.bytes(), |b| b.offset),
            block: self.block.as_ref().map(|b| b.index),
            record: Some(self.record),
        }
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.record
    }

    /// The next record, or `None` once the trailer block is reached.
    pub fn next_record<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        while self.left == 0 {
            if self.trailer.is_some() {
                return Ok(None);
            }
            if let Some(b) = &self.block {
                let left_over = b.left_over();
                if left_over != 0 {
                    return Err(Error::at(
                        ErrorKind::Corrupt {
                            what: format!(
                                "{left_over} bytes left over after the last record of block {}",
                                b.index
                            ),
                        },
                        self.position(),
                    ));
                }
            }
            let Some(block) = self.blocks.next_block()? else {
                return Err(Error::at(
                    ErrorKind::Truncated {
                        what: format!(
                            "no trailer: file ends at byte {} after {} complete records",
                            self.blocks.bytes(),
                            self.record
                        ),
                    },
                    Position {
                        byte: self.blocks.bytes(),
                        block: None,
                        record: Some(self.record),
                    },
                ));
            };
            match block.tag {
                Tag::Records => {
                    self.left = block.records;
                    if let Some(done) = self.block.replace(OpenBlock::new(block)) {
                        self.blocks.recycle(done.into_data());
                    }
                }
                Tag::Trailer => {
                    self.block = None;
                    self.trailer = Some(block);
                }
                Tag::Header => {
                    return Err(Error::at(
                        ErrorKind::Corrupt {
                            what: "a second header block".into(),
                        },
                        Position {
                            byte: block.offset,
                            block: Some(block.index),
                            record: Some(self.record),
                        },
                    ));
                }
            }
        }
        let pos = self.position();
        let Some(block) = &mut self.block else {
            return Ok(None);
        };
        let value =
            T::deserialize(&mut block.de).map_err(|e| Error::at(ErrorKind::Decode(e), pos))?;
        self.left -= 1;
        self.record += 1;
        Ok(Some(value))
    }

    /// Decodes the trailer once `next` has returned `None`, and checks nothing follows it.
    pub fn trailer<T: DeserializeOwned>(&mut self) -> Result<T> {
        let Some(block) = self.trailer.take() else {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: "trailer requested before all records were read".into(),
                },
                self.position(),
            ));
        };
        let pos = Position {
            byte: block.offset,
            block: Some(block.index),
            record: None,
        };
        if block.records != 1 {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: "trailer block must hold exactly one value".into(),
                },
                pos,
            ));
        }
        let value = decode_single(&block, pos)?;
        self.blocks.expect_eof()?;
        Ok(value)
    }
}

fn decode_single<T: DeserializeOwned>(block: &Block, pos: Position) -> Result<T> {
    let mut rest = &block.data[..];
    let value = T::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
        .map_err(|e| Error::at(ErrorKind::Decode(e), pos))?;
    if !rest.is_empty() {
        return Err(Error::at(
            ErrorKind::Corrupt {
                what: format!("{} stray bytes after the block's value", rest.len()),
            },
            pos,
        ));
    }
    Ok(value)
}
