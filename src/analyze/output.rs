//! Where reports go, and writing them: the names of a report's files (JSON, Markdown, and the
//! charts and `.hgrm` files beside them) and the writing itself. Nothing is ever
//! overwritten: a taken name gets `-2`, `-3`, …

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The default folder for `lt analyze` reports.
pub const DEFAULT_DIR: &str = "reports/load-test";

/// The names of one report's files, all sharing one free suffix.
pub struct Names {
    pub json: PathBuf,
    pub markdown: PathBuf,
    /// Prefix for the files beside the report (`<prefix>-throughput.svg`, …).
    pub stem: String,
    pub dir: PathBuf,
}

/// Picks `<json_stem>-DATE[-N].json` and `<md_stem>-DATE[-N].md` in `dir`, the first N for
/// which neither they nor a file beside them exists.
pub fn names(dir: &Path, json_stem: &str, md_stem: &str) -> Names {
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut n = 1u32;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let json = dir.join(format!("{json_stem}-{date}{suffix}.json"));
        let markdown = dir.join(format!("{md_stem}-{date}{suffix}.md"));
        let stem = format!("{json_stem}-{date}{suffix}");
        if !json.exists() && !markdown.exists() && !has_beside(dir, &stem) {
            return Names {
                json,
                markdown,
                stem,
                dir: dir.to_owned(),
            };
        }
        n += 1;
    }
}

/// Whether a file beside a report named `stem` (`<stem>-throughput.svg`, …) is in `dir`: a
/// name whose report files went but whose charts stayed is still taken. `<stem>-2.json`,
/// the next report's name, is not beside it.
fn has_beside(dir: &Path, stem: &str) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let prefix = format!("{stem}-");
    entries.flatten().any(|e| {
        e.file_name().to_str().is_some_and(|name| {
            name.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
    })
}

/// Creates `path`, refusing to replace an existing file (another lt may have taken the name
/// between the check and now).
pub fn create_new(path: &Path) -> anyhow::Result<BufWriter<File>> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::new(f))
}

pub fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut w = create_new(path)?;
    w.write_all(text.as_bytes())
        .and_then(|_| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut w = create_new(path)?;
    serde_json::to_writer_pretty(&mut w, value)
        .map_err(std::io::Error::from)
        .and_then(|_| w.write_all(b"\n"))
        .and_then(|_| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

impl Names {
    /// The name of the file `<stem>-<what>` beside the report, relative to it.
    pub fn beside(&self, what: &str) -> String {
        format!("{}-{what}", self.stem)
    }
}

/// Writes `text` as the file `<stem>-<what>` beside the report; returns its name relative
/// to the report.
pub fn write_beside(names: &Names, what: &str, text: &str) -> anyhow::Result<String> {
    let file = names.beside(what);
    write_text(&names.dir.join(&file), text)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_taken_by_its_report_or_by_a_file_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = names(dir.path(), "report", "report");
        // A chart left without its report still holds the name.
        write_beside(&first, "percentiles.svg", "<svg/>").unwrap();
        let second = names(dir.path(), "report", "report");
        assert_eq!(second.stem, format!("{}-2", first.stem));
        // The next report's files are not beside the first: its name stays the one taken.
        write_text(&second.json, "{}").unwrap();
        std::fs::remove_file(dir.path().join(first.beside("percentiles.svg"))).unwrap();
        assert_eq!(names(dir.path(), "report", "report").stem, first.stem);
    }
}
