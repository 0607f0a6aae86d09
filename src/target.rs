//! The one target stage of `replay` and `record`: what the user named (`--relay` or
//! `--upstream`, with [`TargetArgs`]) becomes a checked [`Target`]: the guard's verdict
//! first, before anything touches the network (dry run included), then TLS and the source
//! addresses. `ab` starts its relays on loopback and checks their URLs with the guard alone.

use anyhow::{anyhow, bail};

use crate::cli::TargetArgs;
use crate::guard::{self, AllowList, Target};

/// What a checked target is for, as errors name it.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// `lt replay --relay`: load is sent to it.
    Load,
    /// `lt record --upstream`: clients' traffic is forwarded to it.
    Upstream,
}

/// Checks `url` against the allow-list, then sets TLS for `wss://` (a `--ca-file` for a
/// `ws://` URL is refused: it would silently do nothing) and the source addresses.
pub fn check(args: &TargetArgs, url: &str, role: Role) -> anyhow::Result<Target> {
    let (refusing, noun, nouns) = match role {
        Role::Load => ("refusing to send load", "relay", "targets"),
        Role::Upstream => (
            "refusing to record against --upstream",
            "upstream",
            "upstreams",
        ),
    };
    let allow = AllowList::parse(&args.allow_hosts).map_err(|e| anyhow!(e))?;
    let target = guard::check(url, &allow, &guard::system_resolver)
        .map_err(|refusal| anyhow!("{refusing}: {refusal}"))?;
    let tls = if target.url().scheme() == "wss" {
        Some(crate::tls::client_config(&args.ca_files)?)
    } else if let Some(file) = args.ca_files.first() {
        bail!(
            "--ca-file {}: the {noun} is ws://, without TLS; --ca-file is for wss:// {nouns}",
            file.display()
        );
    } else {
        None
    };
    Ok(target
        .with_tls(tls)
        .with_sources(args.source_addrs.concat()))
}
