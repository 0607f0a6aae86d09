//! The shards of one sharded replay each keep their own trust verdict: the merged run is
//! trustworthy only if every shard was. A shard whose lt fell behind can hide in the merged
//! figures (its late sends a small share of all of them), so each is judged on its own.

use super::measure;
use super::read::{Ids, Runs};
use super::trust;

/// For each shard of `runs` (kept by `read` as it read them) that was not trustworthy on
/// its own: which, and why.
pub fn untrusted(runs: &Runs) -> Vec<String> {
    let mut out = Vec::new();
    for one in &runs.parts {
        let (Some(part), Some(path)) = (one.header.part, one.files.first()) else {
            continue;
        };
        let t = trust::trust(&measure::measure(one, &Ids::new(), &[]));
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
    out
}
