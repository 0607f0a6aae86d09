//! A file written beside its destination and renamed into place once complete, so a failed,
//! refused or interrupted writer never leaves a half-written file under the final name.

use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::NamedTempFile;

/// What a staged file is written through.
pub type Staged = BufWriter<NamedTempFile>;

/// A temporary file `.{prefix}-….partial` in `path`'s directory (created if missing).
pub fn create(path: &Path, prefix: &str) -> anyhow::Result<Staged> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{prefix}-"))
        .suffix(".partial")
        // A capture is not a secret: the usual 0644, not the temporary file's 0600.
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, tmp))
}

/// Flushes `out` and renames it to `path`. Dropping a `Staged` instead deletes it.
pub fn persist(out: Staged, path: &Path) -> anyhow::Result<()> {
    let tmp = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming the finished file to {}", path.display()))?;
    Ok(())
}
