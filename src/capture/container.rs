//! The block container shared by trace and results files.
//!
//! ```text
//! file   := prefix block*
//! prefix := magic(8) = 89 'L' 'T' 'C' 0D 0A 1A 0A | kind(1) = 'T' | 'R' | version(u16 LE) | 0
//! block  := tag(1) = 'H' | 'D' | 'E' | records(u32 LE) | raw_len(u32 LE) | comp_len(u32 LE)
//!           | crc32(u32 LE, over the 13 bytes before it and the payload)
//!           | payload: one zstd frame of comp_len bytes holding `records` MessagePack
//!           values, raw_len bytes once decompressed
//! ```
//! Blocks are independent: a reader needs one block in memory at a time, a writer that dies
//! leaves every complete block readable, and a damaged byte is found in the block that holds
//! it. The CRC catches every single-bit error and burst up to 32 bits, including in the few
//! zstd header bits its own checksum does not cover; zstd's content checksum, the lengths
//! and the record count are checked as well.

use std::io::{self, Read, Write};

use zstd::zstd_safe::CParameter;

use super::error::{Error, ErrorKind, Position, Result};

pub const MAGIC: [u8; 8] = *b"\x89LTC\r\n\x1a\n";
pub const PREFIX_LEN: u64 = 12;
pub const BLOCK_HEADER_LEN: u64 = 17;
/// No block may claim more than this, so a damaged length cannot make a reader allocate
/// without bound.
pub const MAX_BLOCK_BYTES: u32 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Trace,
    Results,
}

impl FileKind {
    fn byte(self) -> u8 {
        match self {
            FileKind::Trace => b'T',
            FileKind::Results => b'R',
        }
    }

    fn from_byte(b: u8) -> Option<FileKind> {
        match b {
            b'T' => Some(FileKind::Trace),
            b'R' => Some(FileKind::Results),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Trace => "trace",
            FileKind::Results => "results",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Header,
    Records,
    Trailer,
}

impl Tag {
    fn byte(self) -> u8 {
        match self {
            Tag::Header => b'H',
            Tag::Records => b'D',
            Tag::Trailer => b'E',
        }
    }

    fn from_byte(b: u8) -> Option<Tag> {
        match b {
            b'H' => Some(Tag::Header),
            b'D' => Some(Tag::Records),
            b'E' => Some(Tag::Trailer),
            _ => None,
        }
    }
}

/// Writes the prefix, then one compressed block per call.
pub struct BlockWriter<W: Write> {
    out: W,
    compressor: zstd::bulk::Compressor<'static>,
    compressed: Vec<u8>,
    bytes: u64,
}

impl<W: Write> BlockWriter<W> {
    pub fn new(mut out: W, kind: FileKind, version: u16, level: i32) -> io::Result<Self> {
        let mut prefix = [0u8; PREFIX_LEN as usize];
        prefix[..8].copy_from_slice(&MAGIC);
        prefix[8] = kind.byte();
        prefix[9..11].copy_from_slice(&version.to_le_bytes());
        out.write_all(&prefix)?;
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        compressor.set_parameter(CParameter::ChecksumFlag(true))?;
        Ok(BlockWriter {
            out,
            compressor,
            compressed: Vec::new(),
            bytes: PREFIX_LEN,
        })
    }

    pub fn write_block(&mut self, tag: Tag, records: u32, raw: &[u8]) -> io::Result<()> {
        let raw_len = u32::try_from(raw.len())
            .ok()
            .filter(|&n| n <= MAX_BLOCK_BYTES)
            .ok_or_else(|| io::Error::other("block larger than 64 MiB"))?;
        self.compressed.clear();
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(raw.len()));
        self.compressor
            .compress_to_buffer(raw, &mut self.compressed)?;
        let comp_len = self.compressed.len() as u32;
        let mut head = [0u8; BLOCK_HEADER_LEN as usize];
        head[0] = tag.byte();
        head[1..5].copy_from_slice(&records.to_le_bytes());
        head[5..9].copy_from_slice(&raw_len.to_le_bytes());
        head[9..13].copy_from_slice(&comp_len.to_le_bytes());
        let crc = block_crc(&head[..13], &self.compressed);
        head[13..17].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(&self.compressed)?;
        self.bytes += BLOCK_HEADER_LEN + u64::from(comp_len);
        Ok(())
    }

    /// Bytes written so far, prefix included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One decompressed block.
#[derive(Debug)]
pub struct Block {
    pub tag: Tag,
    /// Block index in the file (0 is the header block).
    pub index: u64,
    /// Byte offset of the block header in the file.
    pub offset: u64,
    pub records: u32,
    pub data: Vec<u8>,
}

/// Reads and checks the prefix, then hands out one verified block at a time.
pub struct BlockReader<R: Read> {
    inp: R,
    decompressor: zstd::bulk::Decompressor<'static>,
    compressed: Vec<u8>,
    /// A finished block's buffer, reused for the next block: a fresh megabyte per block
    /// would be fresh pages from the OS, zeroed by the kernel, every time.
    spare: Vec<u8>,
    bytes: u64,
    next_index: u64,
    version: u16,
}

impl<R: Read> BlockReader<R> {
    pub fn open(mut inp: R, expected: FileKind, supported: u16) -> Result<Self> {
        let mut prefix = [0u8; PREFIX_LEN as usize];
        let got = read_full(&mut inp, &mut prefix)?;
        let at = |byte: u64| Position {
            byte,
            ..Default::default()
        };
        if got == 0 {
            return Err(Error::new(
                ErrorKind::Empty {
                    expected: expected.name(),
                },
                None,
            ));
        }
        // Judge the magic on what is there, so a short foreign file is "not lt", not "truncated".
        let magic_len = got.min(MAGIC.len());
        if prefix[..magic_len] != MAGIC[..magic_len] {
            return Err(Error::at(ErrorKind::BadMagic, at(0)));
        }
        if got < prefix.len() {
            return Err(Error::at(
                ErrorKind::Truncated {
                    what: format!(
                        "file ends at byte {got}, inside the {PREFIX_LEN}-byte file prefix"
                    ),
                },
                at(got as u64),
            ));
        }
        let found = FileKind::from_byte(prefix[8]).ok_or_else(|| {
            Error::at(
                ErrorKind::Corrupt {
                    what: format!("unknown file kind byte 0x{:02x}", prefix[8]),
                },
                at(8),
            )
        })?;
        if found != expected {
            return Err(Error::at(
                ErrorKind::WrongKind {
                    expected: expected.name(),
                    found: found.name(),
                },
                at(8),
            ));
        }
        let version = u16::from_le_bytes([prefix[9], prefix[10]]);
        if version > supported {
            return Err(Error::at(
                ErrorKind::FutureVersion {
                    found: version,
                    supported,
                },
                at(9),
            ));
        }
        if version == 0 {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: "format version 0 in the file prefix".into(),
                },
                at(9),
            ));
        }
        if prefix[11] != 0 {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: "nonzero reserved byte in the file prefix".into(),
                },
                at(11),
            ));
        }
        Ok(BlockReader {
            inp,
            decompressor: zstd::bulk::Decompressor::new()?,
            compressed: Vec::new(),
            spare: Vec::new(),
            bytes: PREFIX_LEN,
            next_index: 0,
            version,
        })
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hands back the data of a block the caller is done with, for the next block to use.
    pub fn recycle(&mut self, data: Vec<u8>) {
        if data.capacity() > self.spare.capacity() {
            self.spare = data;
        }
    }

    /// The next block, or `None` at a clean end of file (between blocks).
    pub fn next_block(&mut self) -> Result<Option<Block>> {
        let offset = self.bytes;
        let index = self.next_index;
        let pos = Position {
            byte: offset,
            block: Some(index),
            record: None,
        };
        let mut head = [0u8; BLOCK_HEADER_LEN as usize];
        let got = read_full(&mut self.inp, &mut head)?;
        if got == 0 {
            return Ok(None);
        }
        if got < head.len() {
            return Err(Error::at(
                ErrorKind::Truncated {
                    what: format!(
                        "block {index} header starts at byte {offset}, file ends at byte {}",
                        offset + got as u64
                    ),
                },
                pos,
            ));
        }
        let tag = Tag::from_byte(head[0]).ok_or_else(|| {
            Error::at(
                ErrorKind::Corrupt {
                    what: format!("unknown block tag 0x{:02x}", head[0]),
                },
                pos,
            )
        })?;
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (records, raw_len, comp_len) = (word(1), word(5), word(9));
        if raw_len > MAX_BLOCK_BYTES || comp_len > MAX_BLOCK_BYTES + (1 << 20) {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: format!(
                        "block claims {raw_len} bytes ({comp_len} compressed), over the 64 MiB limit"
                    ),
                },
                pos,
            ));
        }
        self.compressed.resize(comp_len as usize, 0);
        let got_body = read_full(&mut self.inp, &mut self.compressed)?;
        if got_body < comp_len as usize {
            let end = offset + BLOCK_HEADER_LEN + got_body as u64;
            return Err(Error::at(
                ErrorKind::Truncated {
                    what: format!(
                        "block {index} needs {comp_len} compressed bytes, file ends at byte {end}"
                    ),
                },
                pos,
            ));
        }
        let crc = word(13);
        if block_crc(&head[..13], &self.compressed) != crc {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: format!("block {index} fails its CRC-32 check (damaged bytes)"),
                },
                pos,
            ));
        }
        let mut data = std::mem::take(&mut self.spare);
        data.clear();
        data.reserve(raw_len as usize);
        let n = self
            .decompressor
            .decompress_to_buffer(&self.compressed[..], &mut data)
            .map_err(|e| {
                Error::at(
                    ErrorKind::Corrupt {
                        what: format!("block {index} does not decompress: {e}"),
                    },
                    pos,
                )
            })?;
        if n != raw_len as usize {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: format!(
                        "block {index} decompresses to {n} bytes, its header says {raw_len}"
                    ),
                },
                pos,
            ));
        }
        self.bytes = offset + BLOCK_HEADER_LEN + u64::from(comp_len);
        self.next_index += 1;
        Ok(Some(Block {
            tag,
            index,
            offset,
            records,
            data,
        }))
    }

    /// Succeeds only at the end of the file.
    pub fn expect_eof(&mut self) -> Result<()> {
        let mut one = [0u8; 1];
        if read_full(&mut self.inp, &mut one)? != 0 {
            return Err(Error::at(
                ErrorKind::Corrupt {
                    what: "data after the trailer".into(),
                },
                Position {
                    byte: self.bytes,
                    ..Default::default()
                },
            ));
        }
        Ok(())
    }
}

fn block_crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full<R: Read>(inp: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match inp.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
