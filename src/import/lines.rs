//! The input as numbered lines: plain or zstd-compressed (told apart by the magic bytes),
//! streamed, each line bounded in length so one huge line cannot take the memory.

use std::io::{self, BufRead, BufReader, Chain, Cursor, Read};

use super::error::Error;

/// The first bytes of every zstd frame (RFC 8878 §3.1.1).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The first bytes of a gzip member (RFC 1952): refused with a hint rather than read as
/// thousands of lines that are not JSON.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Longest line kept, in bytes; a longer one is a bad line ("line too long"), skipped
/// without being held. Relays' own event limits are far below it (nostr-rs-relay's
/// `max_event_bytes` example is 128 KiB, strfry's `maxEventSize` 64 KiB); the largest
/// bitvid test vector, a 400-item watch history, is 115 KiB. It also bounds what a batch of
/// lines can hold.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Read-ahead of the compressed and plain streams.
const BUFFER_BYTES: usize = 1 << 20;

/// One line of the input, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based, counting every line, blank ones included.
    pub number: u64,
    pub text: Vec<u8>,
    /// Longer than [`MAX_LINE_BYTES`]: `text` is empty.
    pub too_long: bool,
}

type Sniffed<R> = BufReader<Chain<Cursor<Vec<u8>>, R>>;

enum Source<R: Read> {
    Plain(Sniffed<R>),
    Zstd(BufReader<zstd::stream::read::Decoder<'static, Counted<Sniffed<R>>>>),
}

/// A `BufRead` that counts the bytes its reader consumed: where a zstd error is.
struct Counted<B> {
    inner: B,
    consumed: u64,
}

impl<B: BufRead> Read for Counted<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<B: BufRead> BufRead for Counted<B> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.consumed += amt as u64;
        self.inner.consume(amt);
    }
}

/// The non-blank lines of an input, in order.
pub struct Lines<R: Read> {
    source: Source<R>,
    /// How errors name the input: its path as given, or "standard input".
    label: String,
    /// Lines read so far, blank ones included.
    number: u64,
    blank: u64,
    compressed: bool,
}

impl<R: Read> Lines<R> {
    /// Reads the first bytes to tell a zstd stream from plain text.
    pub fn new(mut input: R, label: &str) -> Result<Self, Error> {
        let mut head = Vec::with_capacity(ZSTD_MAGIC.len());
        while head.len() < ZSTD_MAGIC.len() {
            let mut byte = [0u8; ZSTD_MAGIC.len()];
            let want = ZSTD_MAGIC.len() - head.len();
            match input.read(&mut byte[..want]) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&byte[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Read {
                        input: label.to_owned(),
                        line: 1,
                        err: e,
                    })
                }
            }
        }
        if head.starts_with(&GZIP_MAGIC) {
            return Err(Error::Gzip {
                input: label.to_owned(),
            });
        }
        let compressed = head == ZSTD_MAGIC;
        let sniffed = BufReader::with_capacity(BUFFER_BYTES, Cursor::new(head).chain(input));
        let source = if compressed {
            let counted = Counted {
                inner: sniffed,
                consumed: 0,
            };
            let decoder =
                zstd::stream::read::Decoder::with_buffer(counted).map_err(|e| Error::Zstd {
                    input: label.to_owned(),
                    byte: 0,
                    err: e,
                })?;
            Source::Zstd(BufReader::with_capacity(BUFFER_BYTES, decoder))
        } else {
            Source::Plain(sniffed)
        };
        Ok(Lines {
            source,
            label: label.to_owned(),
            number: 0,
            blank: 0,
            compressed,
        })
    }

    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Lines read so far, blank ones included.
    pub fn lines(&self) -> u64 {
        self.number
    }

    /// Blank lines (nothing but whitespace) read so far; they are skipped.
    pub fn blank(&self) -> u64 {
        self.blank
    }

    /// The next line that is not blank; `None` at the end of the input.
    pub fn next_line(&mut self) -> Result<Option<Line>, Error> {
        loop {
            let mut text = Vec::new();
            let read = match &mut self.source {
                Source::Plain(r) => read_bounded(r, &mut text, MAX_LINE_BYTES),
                Source::Zstd(r) => read_bounded(r, &mut text, MAX_LINE_BYTES),
            };
            let too_long = match read {
                Ok(None) => return Ok(None),
                Ok(Some(too_long)) => too_long,
                Err(e) => return Err(self.error(e)),
            };
            self.number += 1;
            if !too_long && text.iter().all(u8::is_ascii_whitespace) {
                self.blank += 1;
                continue;
            }
            return Ok(Some(Line {
                number: self.number,
                text,
                too_long,
            }));
        }
    }

    /// A read error, placed: the compressed byte for zstd input, the line for plain text.
    fn error(&self, err: io::Error) -> Error {
        match &self.source {
            Source::Zstd(r) => Error::Zstd {
                input: self.label.clone(),
                byte: r.get_ref().get_ref().consumed,
                err,
            },
            Source::Plain(_) => Error::Read {
                input: self.label.clone(),
                line: self.number + 1,
                err,
            },
        }
    }
}

/// Reads one line into `buf` (without the newline). `Ok(None)` at the end of the input,
/// `Ok(Some(true))` for a line longer than `max` (skipped to its end, `buf` left empty).
fn read_bounded<B: BufRead>(r: &mut B, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<bool>> {
    buf.clear();
    let n = r.by_ref().take(max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(false));
    }
    if buf.len() <= max {
        // The last line, without a newline.
        return Ok(Some(false));
    }
    buf.clear();
    r.skip_until(b'\n')?;
    Ok(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Result<(Vec<Line>, u64, u64), Error> {
        let mut lines = Lines::new(bytes, "test")?;
        let mut out = Vec::new();
        while let Some(l) = lines.next_line()? {
            out.push(l);
        }
        Ok((out, lines.lines(), lines.blank()))
    }

    fn texts(lines: &[Line]) -> Vec<(u64, &str)> {
        lines
            .iter()
            .map(|l| (l.number, std::str::from_utf8(&l.text).unwrap()))
            .collect()
    }

    #[test]
    fn numbers_every_line_and_skips_blank_ones() {
        let (lines, total, blank) = all(b"a\n\n  \t\nb\r\nc").unwrap();
        assert_eq!(texts(&lines), [(1, "a"), (4, "b\r"), (5, "c")]);
        assert_eq!((total, blank), (5, 2));
        let (lines, total, _) = all(b"").unwrap();
        assert!(lines.is_empty());
        assert_eq!(total, 0);
        // Fewer bytes than the magic number.
        let (lines, _, _) = all(b"x").unwrap();
        assert_eq!(texts(&lines), [(1, "x")]);
    }

    #[test]
    fn a_line_over_the_limit_is_flagged_and_skipped_whole() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\nafter\n");
        let (lines, total, _) = all(&input).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].too_long && lines[1].text.is_empty());
        assert_eq!(
            (lines[2].number, lines[2].text.as_slice()),
            (3, &b"after"[..])
        );
        assert_eq!(total, 3);

        // Exactly at the limit is kept.
        let mut input = vec![b'y'; MAX_LINE_BYTES];
        input.push(b'\n');
        let (lines, _, _) = all(&input).unwrap();
        assert!(!lines[0].too_long);
        assert_eq!(lines[0].text.len(), MAX_LINE_BYTES);
    }

    #[test]
    fn zstd_input_reads_as_the_plain_text_also_in_several_frames() {
        let plain = b"{\"a\":1}\n\n{\"b\":2}\n".repeat(1000);
        let mut packed = zstd::encode_all(&plain[..plain.len() / 2], 3).unwrap();
        packed.extend(zstd::encode_all(&plain[plain.len() / 2..], 3).unwrap());
        assert_eq!(packed[..4], ZSTD_MAGIC);
        let reader = Lines::new(&packed[..], "test").unwrap();
        assert!(reader.is_compressed());
        assert_eq!(all(&packed).unwrap(), all(&plain).unwrap());
    }

    #[test]
    fn a_cut_zstd_stream_is_an_error_with_a_byte_offset() {
        let plain = b"{\"a\":1}\n".repeat(10_000);
        let packed = zstd::encode_all(&plain[..], 3).unwrap();
        let cut = &packed[..packed.len() - 5];
        let err = all(cut).unwrap_err().to_string();
        assert!(
            err.starts_with("test: zstd input at compressed byte "),
            "{err}"
        );
        assert!(err.contains("incomplete frame"), "{err}");

        // Bytes after the last frame that are not another frame.
        let mut trailing = packed.clone();
        trailing.extend_from_slice(b"not zstd");
        let err = all(&trailing).unwrap_err().to_string();
        assert!(err.contains("compressed byte"), "{err}");
    }

    #[test]
    fn gzip_is_refused_with_a_hint() {
        let err = all(&[0x1f, 0x8b, 8, 0, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("gzip"), "{err}");
    }
}
