//! The shards of one sharded replay each keep their own trust verdict: the merged run is
//! trustworthy only if every shard was. A shard whose lt fell behind can hide in the merged
//! figures (its late sends a small share of all of them), so each is judged on its own.

use std::path::PathBuf;

use super::measure;
use super::read::{read_file, Completeness, Ids, Runs};
use super::trust;

/// For each shard of `runs` (when its files are shards) that was not trustworthy on its
/// own: which, and why. Reads each shard's file once more.
pub fn untrusted(runs: &Runs) -> anyhow::Result<Vec<String>> {
    if runs.tally.shards <= 1 {
        return Ok(Vec::new());
    }
    let completeness = if runs.partial.is_empty() {
        Completeness::Required
    } else {
        Completeness::AllowPartial
    };
    let mut out = Vec::new();
    for path in &runs.files {
        let (header, tally, partial) = read_file(path, completeness)?;
        let Some(part) = header.part else {
            continue;
        };
        let one = Runs {
            header,
            files: vec![PathBuf::from(path)],
            tally,
            merge_warnings: Vec::new(),
            partial: partial.into_iter().collect(),
        };
        let t = trust::trust(&measure::measure(&one, &Ids::new(), &[]));
        if !t.trustworthy {
            out.push(format!(
                "shard {}/{} ({}) was not trustworthy on its own: {}",
                part.index,
                part.count,
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into()
                ),
                t.reasons.join("; ")
            ));
        }
    }
    Ok(out)
}
