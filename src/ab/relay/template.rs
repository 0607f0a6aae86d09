//! Config templates: read once per start, checked for placeholders, filled in and written
//! into the run directory per attempt.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::io_error;
use super::spec::{self, BuildSpec, Quoting, Values};
use super::StartError;

/// A config template, read once per [`start`] and filled in per attempt.
pub(super) struct Template {
    path: PathBuf,
    text: String,
    /// The written file keeps the template's extension, so relays that pick a parser by
    /// extension still do.
    file_name: String,
}

impl Template {
    pub(super) fn read(spec: &BuildSpec, path: &Path) -> Result<Template, StartError> {
        let config_err = |reason: String| StartError::Config {
            name: spec.name.clone(),
            path: path.to_path_buf(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|e| config_err(format!("cannot read: {e}")))?;
        let slots = spec::slots(&text);
        spec::check_known(&slots, spec::CONFIG_SLOTS).map_err(config_err)?;
        let has_port = |slots: &[spec::Slot<'_>]| slots.iter().any(|s| s.name == "port");
        if !has_port(&slots) && !has_port(&spec::slots(&spec.command)) {
            return Err(config_err(
                "neither it nor the command has {port}: lt picks a free port per run and \
                 the relay must listen on 127.0.0.1:{port}"
                    .to_string(),
            ));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("toml");
        Ok(Template {
            path: path.to_path_buf(),
            text,
            file_name: format!("config.{ext}"),
        })
    }

    /// Writes `run_dir/config.EXT` and returns its path.
    pub(super) fn write(
        &self,
        spec: &BuildSpec,
        run_dir: &Path,
        values: Values<'_>,
    ) -> Result<PathBuf, StartError> {
        let config_err = |reason: String| StartError::Config {
            name: spec.name.clone(),
            path: self.path.clone(),
            reason,
        };
        // Values go in raw (lt does not know the file's syntax), so a path that would need
        // escaping in a quoted string is refused rather than written broken.
        let uses_dir = spec::slots(&self.text).iter().any(|s| s.name == "dir");
        if uses_dir && values.dir.contains(['"', '\\', '\'', '\n', '\r']) {
            return Err(config_err(format!(
                "{{dir}} would be {:?}, which holds a quote, backslash or newline that \
                 cannot go into a config file unescaped; use a plainer run dir",
                values.dir
            )));
        }
        let text = spec::fill(&self.text, values, Quoting::Raw).map_err(config_err)?;
        let out = run_dir.join(&self.file_name);
        fs::write(&out, text).map_err(io_error(&spec.name, "write config", &out))?;
        Ok(out)
    }
}
