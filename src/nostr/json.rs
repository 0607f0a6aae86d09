//! JSON string writing with the exact escaping NIP-01 prescribes for the id pre-image.
//!
//! NIP-01 escapes exactly seven characters (`\n \" \\ \r \t \b \f`) and writes every other
//! byte verbatim, including non-ASCII and `/`. `serde_json` (and JS `JSON.stringify`) also
//! escape the remaining C0 control characters as `\u00XX`; lt never generates those, so for
//! everything lt writes the two agree, and for events read from elsewhere the id is checked
//! with the NIP-01 rule.

/// For each byte, its escape under NIP-01, or 0 when it is written as is.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'\n' as usize] = b'n';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t
};

/// Appends `s` as a JSON string literal (with quotes), escaped per NIP-01.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.push_str(&s[start..i]);
        out.push('\\');
        out.push(esc as char);
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `bytes` as lowercase hex (up to 64 bytes: ids, keys, signatures).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    let mut buf = [0u8; 128];
    let n = bytes.len().min(64);
    let hex = &mut buf[..2 * n];
    // Lengths match by construction, and hex digits are ASCII.
    if hex::encode_to_slice(&bytes[..n], hex).is_ok() {
        out.push_str(std::str::from_utf8(hex).unwrap_or_default());
    }
}

/// Appends `[["a","b"],["c"]]`.
pub fn push_tags(out: &mut String, tags: &[Vec<String>]) {
    out.push('[');
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, v) in tag.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_str(out, v);
        }
        out.push(']');
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn escapes_exactly_the_nip01_seven() {
        assert_eq!(esc("a\nb"), r#""a\nb""#);
        assert_eq!(esc("q\"\\"), r#""q\"\\""#);
        assert_eq!(esc("\r\t\u{8}\u{c}"), r#""\r\t\b\f""#);
        // Everything else verbatim: slash, non-ASCII, other control characters.
        assert_eq!(esc("/é😀"), "\"/é😀\"");
        assert_eq!(esc("\u{1}"), "\"\u{1}\"");
    }

    #[test]
    fn hex_is_lowercase_and_complete() {
        let mut out = String::new();
        push_hex(&mut out, &[0xab; 64]);
        assert_eq!(out, "ab".repeat(64));
    }

    #[test]
    fn agrees_with_serde_json_when_no_other_control_chars() {
        let s = "Gear: 24mm / ND \"filter\"\n\ttabs\\ and ünïcode";
        assert_eq!(esc(s), serde_json::to_string(s).unwrap());
    }
}
