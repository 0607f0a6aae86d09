//! Target safety: decide whether lt may send load to a relay URL, and to which addresses.
//!
//! lt sends load only to loopback or to hosts the user named as dedicated test
//! infrastructure (`--allow-host`, `LT_ALLOW_HOSTS`). [`check`] parses the URL, resolves the
//! host once and returns a [`Target`] holding the addresses it checked. The replay connects to
//! those addresses and never resolves the name again: a DNS answer that changes between the
//! check and the connect (DNS rebinding, a short TTL) cannot move the load somewhere else.
//!
//! Anything else is a [`Refusal`], one line that says why and, where it helps, how to name a
//! dedicated host. There is deliberately no switch that turns the guard off, and no message
//! suggests one.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};

use ipnet::IpNet;
use url::{Host, Url};

/// The way out we offer for a host that is not loopback: name it, one host at a time.
const ALLOW_HINT: &str =
    "to load-test a dedicated test host, name it with --allow-host HOST (or LT_ALLOW_HOSTS)";

/// Public relays lt refuses even when the allow-list names them, with every subdomain. Their
/// operators did not agree to be load-tested; the first four are bitvid's default relays.
const PUBLIC_RELAYS: &[&str] = &[
    "relay.damus.io",
    "damus.io",
    "nos.lol",
    "relay.snort.social",
    "relay.primal.net",
    "primal.net",
    "nostr.wine",
    "nostr.land",
    "eden.nostr.land",
    "relay.nostr.band",
    "nostr.band",
    "purplepag.es",
    "relay.nostr.bg",
    "nostr.mom",
    "offchain.pub",
    "relay.current.fyi",
    "nostr-pub.wellorder.net",
    "nostr.bitcoiner.social",
    "relay.nostrplebs.com",
    "relay.orangepill.dev",
    "bitvid.network",
];

/// Any host name containing one of these is refused too, as bitvid's own load-test harness
/// did: these operators run many relay hosts under many names.
const PUBLIC_RELAY_WORDS: &[&str] = &["damus", "primal"];

/// Hosts the user named as dedicated test infrastructure: exact names, IPs and CIDR blocks.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    /// Lower case, without a trailing dot.
    names: Vec<String>,
    /// IP entries are stored as single-address blocks (/32, /128).
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Parses entries separated by commas or whitespace, as given by `--allow-host`
    /// (repeatable) or `LT_ALLOW_HOSTS`. Empty entries are ignored. The error names the bad
    /// entry and the accepted syntax.
    pub fn parse(items: &[String]) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        let entries = items
            .iter()
            .flat_map(|item| item.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|entry| !entry.is_empty());
        for entry in entries {
            list.add(entry).map_err(|why| {
                format!(
                    "bad allow-list entry `{entry}`: {why}; expected a host name \
                     (relay.test.internal), an IP address (10.0.0.5) or a CIDR block (10.0.0.0/24)"
                )
            })?;
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.nets.is_empty()
    }

    fn add(&mut self, entry: &str) -> Result<(), &'static str> {
        if entry.contains("://") {
            return Err("write the host alone, not a URL");
        }
        if entry.contains('/') {
            let net: IpNet = entry.parse().map_err(|_| {
                "not a CIDR block (the prefix is at most 32 for IPv4, 128 for IPv6)"
            })?;
            self.nets.push(net.trunc());
            return Ok(());
        }
        let bare = entry
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .unwrap_or(entry);
        // std accepts only canonical dotted decimal for IPv4, so `010.0.0.1` is no IP here; it
        // then fails the host-name rule below instead of silently meaning 8.0.0.1 or 10.0.0.1.
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.nets.push(IpNet::from(ip));
            return Ok(());
        }
        self.names.push(host_name(entry)?);
        Ok(())
    }

    fn allows_name(&self, host: &str) -> bool {
        let host = normalize_name(host);
        self.names.contains(&host)
    }

    /// An IPv4 address also matches an entry written in IPv4-mapped IPv6 form.
    fn allows_ip(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(_) => ip,
        };
        self.nets
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&mapped))
    }
}

/// Validates an allow-list host name: the exact name a relay URL will carry.
fn host_name(entry: &str) -> Result<String, &'static str> {
    let name = normalize_name(entry);
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !name.bytes().all(allowed) {
        return Err("a host name has only letters, digits, '-', '_' and '.' \
                    (no port or path; write international names in xn-- form)");
    }
    if name.split('.').any(str::is_empty) {
        return Err("empty label in host name");
    }
    // A URL parser reads a host ending in a number as an IPv4 address, so such a name could
    // never match a URL host; refuse it rather than keep an entry that silently does nothing.
    let last = name.rsplit('.').next().unwrap_or_default();
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err("not an IP address in dotted decimal, nor a host name");
    }
    Ok(name)
}

/// Host names compare case-insensitively and without a trailing dot (`Relay.Test.` is
/// `relay.test`).
fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn is_public_relay(host: &str) -> bool {
    let host = normalize_name(host);
    let listed = PUBLIC_RELAYS.iter().any(|relay| {
        host == *relay
            || host
                .strip_suffix(relay)
                .is_some_and(|prefix| prefix.ends_with('.'))
    });
    listed || PUBLIC_RELAY_WORDS.iter().any(|word| host.contains(word))
}

/// A target that passed the guard. Connect only to `addrs`: they are what was checked. Its
/// fields are private: a `Target` exists only as [`check`] returned it, plus the TLS and
/// source addresses its caller sets (`target::check`, for `replay` and `record`).
#[derive(Debug, Clone)]
pub struct Target {
    url: Url,
    addrs: Vec<SocketAddr>,
    loopback: bool,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    sources: Vec<IpAddr>,
}

impl Target {
    /// The relay URL with userinfo and fragment removed, for the WebSocket handshake (Host
    /// header, TLS server name) and the request path.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Every address the host resolved to, each checked, with the URL's port. IPv4-mapped
    /// IPv6 addresses are given as the IPv4 address they were judged as.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every address is loopback.
    pub fn loopback(&self) -> bool {
        self.loopback
    }

    /// For `wss://`: the TLS client configuration (roots, `--ca-file`); `None` for `ws://`.
    pub fn tls(&self) -> Option<&std::sync::Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// Local addresses to connect from (`--source-addr`), connection `c` from
    /// `sources[c mod len]`; empty: the kernel chooses. More source addresses, more
    /// connections toward one relay address than one address's ephemeral ports allow.
    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }

    /// The TLS client configuration to speak `wss://` with (built by
    /// [`crate::tls::client_config`]).
    pub fn with_tls(mut self, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> Target {
        self.tls = tls;
        self
    }

    pub fn with_sources(mut self, sources: Vec<IpAddr>) -> Target {
        self.sources = sources;
        self
    }

    /// `host:port`, what reports may show: never userinfo, path or query, which can carry
    /// credentials or tokens.
    pub fn display_host(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }
}

/// Why lt will not send load to a relay URL. Each message is one line and never shows the
/// URL's userinfo, path or query.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the relay URL must start with ws:// or wss:// (for example ws://127.0.0.1:7777)")]
    NoScheme,
    #[error("the relay URL scheme is {scheme}://, but lt speaks only ws:// and wss://")]
    Scheme { scheme: String },
    #[error("the URL must start with http:// or https:// (for example http://127.0.0.1:9100/metrics), not {scheme}")]
    HttpScheme { scheme: String },
    /// WHATWG parsing drops tabs and line breaks anywhere in a URL; a URL that needs that
    /// repair does not say plainly where it points.
    #[error("the relay URL contains a control character or line break")]
    ControlCharacter,
    #[error("the relay URL does not parse: {reason}")]
    Invalid { reason: url::ParseError },
    #[error("the relay URL has no host (write ws://HOST:PORT/)")]
    NoHost,
    /// `0x7f.1`, `2130706433`, `0177.0.0.1`, `127.1`, `010.0.0.1`: tools disagree on what
    /// these mean (`010.0.0.1` is 8.0.0.1 to a URL parser and 10.0.0.1 to others), so the
    /// address we check might not be the one another tool in the pipeline connects to.
    #[error(
        "ambiguous IPv4 spelling {spelled}; write the address in dotted decimal ({canonical})"
    )]
    AmbiguousIpv4 {
        spelled: String,
        canonical: Ipv4Addr,
    },
    #[error("{host} is a public relay; lt never sends load to public relays")]
    PublicRelay { host: String },
    #[error("could not resolve {host}: {error}")]
    Resolve { host: String, error: io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    /// `0.0.0.0` and `::` name no host; connecting to them reaches whatever listens locally,
    /// which is not what the user meant to name.
    #[error("{} the unspecified address, not a host; a relay on this machine is 127.0.0.1 or [::1]", subject(.name, .addr))]
    Unspecified { name: Option<String>, addr: IpAddr },
    #[error("{} not loopback and not on the allow-list of dedicated test hosts; {hint}", subject(.name, .addr), hint = ALLOW_HINT)]
    NotAllowed { name: Option<String>, addr: IpAddr },
}

/// "203.0.113.9 is" for an address literal, "h resolves to 203.0.113.9, which is" for a name.
fn subject(name: &Option<String>, addr: &IpAddr) -> String {
    match name {
        Some(name) => format!("{name} resolves to {addr}, which is"),
        None => format!("{addr} is"),
    }
}

/// Checks a relay URL and returns where to connect. `resolve` maps (host, port) to
/// addresses and is called at most once, and never for an IP-address host; production passes
/// [`system_resolver`], tests a fake.
pub fn check(
    url: &str,
    allow: &AllowList,
    resolve: &dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
) -> Result<Target, Refusal> {
    // The WHATWG parser trims the same characters from both ends.
    let written = url.trim_matches(|c: char| c <= ' ');
    if written.chars().any(char::is_control) {
        return Err(Refusal::ControlCharacter);
    }
    let Some((scheme, rest)) = written.split_once("://") else {
        return Err(Refusal::NoScheme);
    };
    let mut chars = scheme.chars();
    let scheme_syntax = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_syntax {
        return Err(Refusal::NoScheme);
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return Err(Refusal::Scheme { scheme });
    }
    let spelled = written_host(rest);
    if spelled.is_empty() {
        return Err(Refusal::NoHost);
    }
    let mut parsed = Url::parse(written).map_err(|reason| Refusal::Invalid { reason })?;
    // ws and wss always have a known default port (80, 443).
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if scheme == "wss" { 443 } else { 80 });

    let (name, candidates) = match parsed.host() {
        None => return Err(Refusal::NoHost),
        Some(Host::Ipv4(ip)) => {
            if spelled != ip.to_string() {
                return Err(Refusal::AmbiguousIpv4 {
                    spelled: spelled.to_string(),
                    canonical: ip,
                });
            }
            (None, vec![SocketAddr::new(IpAddr::V4(ip), port)])
        }
        Some(Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(Host::Domain(host)) => {
            let host = host.to_string();
            // Before resolving: a public relay is not even looked up.
            if is_public_relay(&host) {
                return Err(Refusal::PublicRelay { host });
            }
            let addrs = match resolve(&host, port) {
                Ok(addrs) => addrs,
                Err(error) => return Err(Refusal::Resolve { host, error }),
            };
            if addrs.is_empty() {
                return Err(Refusal::NoAddress { host });
            }
            (Some(host), addrs)
        }
    };

    let name_allowed = name.as_deref().is_some_and(|host| allow.allows_name(host));
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let addr = judged(candidate, port);
        let ip = addr.ip();
        if ip.is_unspecified() {
            return Err(Refusal::Unspecified { name, addr: ip });
        }
        if !(ip.is_loopback() || name_allowed || allow.allows_ip(ip)) {
            return Err(Refusal::NotAllowed { name, addr: ip });
        }
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    let loopback = addrs.iter().all(|addr| addr.ip().is_loopback());

    // Userinfo must never reach a report or a log; a fragment has no meaning in a WebSocket
    // URL (RFC 6455 §3). Both setters succeed on a URL with a host.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_fragment(None);
    Ok(Target {
        url: parsed,
        addrs,
        loopback,
        tls: None,
        sources: Vec::new(),
    })
}

/// Checks an `http://` or `https://` URL lt will only *read* from (a Prometheus endpoint,
/// `--scrape`) by the same rules as a relay URL: loopback or the allow-list, never a public
/// relay's host, no ambiguous spellings. The target keeps its http(s) scheme (and its query,
/// which may carry a key: never show [`Target::url`] whole, show [`Target::display_host`]).
pub fn check_http(
    url: &str,
    allow: &AllowList,
    resolve: &dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>,
) -> Result<Target, Refusal> {
    let written = url.trim_matches(|c: char| c <= ' ');
    let (scheme, rest) = written.split_once("://").unwrap_or(("", written));
    // http and https share ws and wss's default ports and parsing: checked as those.
    let as_ws = match scheme.to_ascii_lowercase().as_str() {
        "http" => "ws",
        "https" => "wss",
        "" => {
            return Err(Refusal::HttpScheme {
                scheme: "a URL without a scheme".into(),
            })
        }
        other => {
            return Err(Refusal::HttpScheme {
                scheme: format!("{}://", other.chars().take(16).collect::<String>()),
            })
        }
    };
    let mut target = check(&format!("{as_ws}://{rest}"), allow, resolve)?;
    // Between special schemes of the same defaults: cannot fail.
    let _ = target
        .url
        .set_scheme(if as_ws == "ws" { "http" } else { "https" });
    Ok(target)
}

/// The address as judged: IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is the IPv4 address it
/// carries, because that is where a dual-stack socket sends it; the port is the URL's.
///
/// IPv4-*compatible* IPv6 (`::127.0.0.1`, deprecated) is left as IPv6: the kernel does not
/// route it to IPv4 loopback, so it is judged, and refused, as the IPv6 address it is.
fn judged(addr: SocketAddr, port: u16) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V4(*v4.ip()), port),
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
            // Keep the scope: a link-local address cannot be reached without it.
            None => SocketAddr::V6(SocketAddrV6::new(
                *v6.ip(),
                port,
                v6.flowinfo(),
                v6.scope_id(),
            )),
        },
    }
}

/// The host exactly as the user wrote it, given the text after `scheme://`: the authority
/// ends at the first `/`, `\`, `?` or `#` (as for the WHATWG parser, which treats `\` as `/`
/// in ws URLs), the host follows the last `@`, and ends at the port's `:` unless bracketed.
fn written_host(rest: &str) -> &str {
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    if host_port.starts_with('[') {
        host_port
            .find(']')
            .map_or(host_port, |close| &host_port[..=close])
    } else {
        host_port
            .find(':')
            .map_or(host_port, |colon| &host_port[..colon])
    }
}

/// Resolves with the system resolver, once, through [`std::net::ToSocketAddrs`].
pub fn system_resolver(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Never touches the network. Unknown names fail as a real resolver would.
    fn fake(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let ips: &[&str] = match host.strip_suffix('.').unwrap_or(host) {
            "localhost" => &["127.0.0.1", "::1"],
            "relay.test.internal" => &["10.0.0.5"],
            "v6.test.internal" => &["2001:db8::5"],
            "localhost.evil.example" => &["203.0.113.9"],
            "evil.example" => &["203.0.113.66"],
            "split.example" => &["127.0.0.1", "198.51.100.7"],
            "mapped.example" => &["::ffff:127.0.0.1"],
            "dup.example" => &["127.0.0.1", "127.0.0.1", "::ffff:127.0.0.1"],
            "zero.example" => &["0.0.0.0"],
            "empty.example" => &[],
            _ => return Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        };
        Ok(ips
            .iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
            .collect())
    }

    fn allow(entries: &[&str]) -> AllowList {
        let items: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        AllowList::parse(&items).unwrap()
    }

    #[rustfmt::skip]
    const REFUSED: &[(&str, &[&str], &str)] = &[
        // (url, allow-list, part of the reason)
        // Numeric IPv4 spellings the URL parser accepts but other tools read differently.
        ("ws://2130706433/", &[], "ambiguous IPv4 spelling 2130706433; write the address in dotted decimal (127.0.0.1)"), // decimal
        ("ws://0x7f.1/", &[], "ambiguous IPv4 spelling 0x7f.1; write the address in dotted decimal (127.0.0.1)"), // hex, short
        ("ws://0x7f.0x0.0x0.0x1:7777/", &[], "ambiguous IPv4 spelling 0x7f.0x0.0x0.0x1;"), // hex parts
        ("ws://0177.0.0.1/", &[], "ambiguous IPv4 spelling 0177.0.0.1;"), // octal
        ("ws://127.1/", &[], "ambiguous IPv4 spelling 127.1;"), // short form
        ("ws://010.0.0.1/", &["8.0.0.0/8", "10.0.0.0/8"], "ambiguous IPv4 spelling 010.0.0.1; write the address in dotted decimal (8.0.0.1)"), // refused even if both readings are allowed
        ("ws://127.0.0.1./", &[], "ambiguous IPv4 spelling 127.0.0.1.;"), // trailing dot the parser drops
        ("ws://１２７.０.０.１/", &[], "ambiguous IPv4 spelling １２７.０.０.１;"), // full-width digits, mapped by IDNA
        ("ws://%31%32%37.0.0.1/", &[], "ambiguous IPv4 spelling %31%32%37.0.0.1;"), // percent-encoded digits
        ("ws://user:pw@0x7f.1/", &[], "ambiguous IPv4 spelling 0x7f.1;"), // spelling found after the userinfo
        // Userinfo: judged by the real host after the last `@`.
        ("ws://127.0.0.1@evil.example/", &[], "evil.example resolves to 203.0.113.66, which is not loopback"),
        ("ws://localhost:7777@evil.example/", &[], "evil.example resolves to 203.0.113.66"),
        ("ws://a@127.0.0.1@evil.example/", &[], "evil.example resolves to 203.0.113.66"),
        ("ws://[::1]@evil.example/", &[], "evil.example resolves to 203.0.113.66"), // brackets in the userinfo
        // IPv4-mapped IPv6 is judged as its IPv4 address.
        ("ws://[::ffff:198.51.100.1]/", &[], "198.51.100.1 is not loopback"),
        ("ws://[::ffff:c633:6401]/", &[], "198.51.100.1 is not loopback"),
        // IPv4-compatible IPv6 is not routed to 127.0.0.1: judged as IPv6.
        ("ws://[::127.0.0.1]/", &[], "::7f00:1 is not loopback"),
        // Names that resolve off loopback, wholly or in part.
        ("ws://localhost.evil.example/", &[], "localhost.evil.example resolves to 203.0.113.9, which is not loopback and not on the allow-list"),
        ("ws://split.example/", &[], "split.example resolves to 198.51.100.7,"), // one loopback, one public
        ("ws://relay.test.internal:7777/", &[], "relay.test.internal resolves to 10.0.0.5,"), // private, not allowed
        ("ws://relay.test.internal/", &["10.0.0.6", "other.test.internal", "10.0.1.0/24", "relay.test"], "resolves to 10.0.0.5,"), // near misses
        ("ws://v6.test.internal/", &["2001:db8:1::/48"], "v6.test.internal resolves to 2001:db8::5,"),
        // Private and special ranges are not special.
        ("ws://10.0.0.5/", &[], "10.0.0.5 is not loopback"),
        ("ws://172.16.0.1/", &[], "172.16.0.1 is not loopback"),
        ("ws://192.168.1.10:7777/", &[], "192.168.1.10 is not loopback"),
        ("ws://100.64.0.1/", &[], "100.64.0.1 is not loopback"),
        ("ws://169.254.169.254/", &[], "169.254.169.254 is not loopback"), // link-local, cloud metadata
        ("ws://[fd00::1]/", &[], "fd00::1 is not loopback"), // unique local
        ("ws://[fe80::1]/", &[], "fe80::1 is not loopback"), // link-local
        ("wss://203.0.113.9/", &[], "203.0.113.9 is not loopback"),
        ("ws://user:secret@203.0.113.9/", &[], "203.0.113.9 is not loopback"),
        // Unspecified addresses name no host, even when allowed.
        ("ws://0.0.0.0:7777/", &["0.0.0.0/0"], "0.0.0.0 is the unspecified address"),
        ("ws://[::]/", &[], ":: is the unspecified address"),
        ("ws://[::ffff:0.0.0.0]/", &[], "0.0.0.0 is the unspecified address"),
        ("ws://zero.example/", &["zero.example"], "zero.example resolves to 0.0.0.0, which is the unspecified address"),
        // Schemes other than ws and wss, or none.
        ("http://127.0.0.1:7777/", &[], "scheme is http://"),
        ("https://localhost/", &[], "scheme is https://"),
        ("file:///etc/passwd", &[], "scheme is file://"),
        ("127.0.0.1:7777", &[], "must start with ws:// or wss://"),
        ("localhost:7777", &[], "must start with ws:// or wss://"), // a URL parser reads `localhost:` as a scheme
        ("//127.0.0.1:7777/", &[], "must start with ws:// or wss://"),
        ("ws:127.0.0.1", &[], "must start with ws:// or wss://"), // accepted by WHATWG, unclear to people
        ("user:pw@host://x", &[], "must start with ws:// or wss://"), // no userinfo in the message
        ("", &[], "must start with ws:// or wss://"),
        // No host, or a host hidden by the parser's slash repairs.
        ("ws://", &[], "has no host"),
        ("ws://:7777/", &[], "has no host"),
        ("ws://user:pw@/x", &[], "has no host"),
        ("ws:///127.0.0.1/", &[], "has no host"),
        ("ws://\\evil.example/", &[], "has no host"), // WHATWG would skip the backslash
        // Does not parse, or needs repairs to parse.
        ("ws://127.0.0.1:65536/", &[], "does not parse: invalid port number"),
        ("ws://1.2.3.4.5/", &[], "does not parse"),
        ("ws://[::1%25eth0]/", &[], "does not parse"),
        ("ws://evil\t.example/", &[], "control character"), // WHATWG drops the tab
        ("ws://127.0.0.1\n.evil.example/", &[], "control character"),
        // Public relays, even when named on the allow-list.
        ("wss://relay.damus.io", &["relay.damus.io"], "relay.damus.io is a public relay; lt never sends load to public relays"),
        ("wss://RELAY.DAMUS.IO./", &["relay.damus.io"], "relay.damus.io. is a public relay"), // case, trailing dot
        ("wss://nos.lol", &["nos.lol"], "nos.lol is a public relay"),
        ("wss://relay.primal.net/", &["relay.primal.net"], "relay.primal.net is a public relay"),
        ("wss://relay.snort.social/", &[], "relay.snort.social is a public relay"),
        ("wss://eu.nostr.wine/", &["eu.nostr.wine"], "eu.nostr.wine is a public relay"), // subdomain
        ("wss://my-damus-mirror.example/", &["my-damus-mirror.example"], "is a public relay"), // bitvid's word rule
        ("wss://user:pw@nostr.land:443/", &[], "nostr.land is a public relay"),
        // Resolution failures.
        ("ws://missing.example/", &[], "could not resolve missing.example: no such host"),
        ("ws://empty.example/", &["empty.example"], "empty.example resolves to no address"),
    ];

    #[test]
    fn hostile_urls_are_refused_with_a_reason() {
        for (url, entries, reason) in REFUSED {
            let refusal = match check(url, &allow(entries), &fake) {
                Ok(target) => panic!("{url:?} was accepted: {target:?}"),
                Err(refusal) => refusal.to_string(),
            };
            assert!(
                refusal.contains(reason),
                "{url:?}: {refusal:?} lacks {reason:?}"
            );
            assert!(
                !refusal.contains('\n'),
                "{url:?}: {refusal:?} is not one line"
            );
            for secret in ["user", "pw@", "secret"] {
                assert!(
                    !refusal.contains(secret),
                    "{url:?}: {refusal:?} shows userinfo"
                );
            }
            assert!(!refusal.contains("disable"), "{url:?}: {refusal:?}");
        }
    }

    #[test]
    fn refusals_of_other_hosts_say_how_to_allow_one() {
        for url in [
            "ws://203.0.113.9/",
            "ws://localhost.evil.example/",
            "ws://[2001:db8::1]/",
        ] {
            let refusal = check(url, &AllowList::default(), &fake).unwrap_err();
            assert!(
                matches!(refusal, Refusal::NotAllowed { .. }),
                "{url}: {refusal:?}"
            );
            assert!(refusal.to_string().ends_with(
                "to load-test a dedicated test host, name it with --allow-host HOST (or LT_ALLOW_HOSTS)"
            ));
        }
    }

    /// (url, allow-list, addresses to connect to, loopback, display_host)
    type Accepted = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        bool,
        &'static str,
    );

    #[rustfmt::skip]
    const ACCEPTED: &[Accepted] = &[
        ("ws://127.0.0.1:7777/", &[], &["127.0.0.1:7777"], true, "127.0.0.1:7777"),
        ("ws://127.8.9.10/", &[], &["127.8.9.10:80"], true, "127.8.9.10:80"), // all of 127/8
        ("wss://127.0.0.1/", &[], &["127.0.0.1:443"], true, "127.0.0.1:443"), // wss default port
        ("WS://127.0.0.1:7777", &[], &["127.0.0.1:7777"], true, "127.0.0.1:7777"), // scheme case
        ("  ws://127.0.0.1:7777/ \n", &[], &["127.0.0.1:7777"], true, "127.0.0.1:7777"), // trimmed
        ("ws://[::1]:7777", &[], &["[::1]:7777"], true, "[::1]:7777"),
        ("ws://[0:0:0:0:0:0:0:1]:7777", &[], &["[::1]:7777"], true, "[::1]:7777"), // IPv6 has one meaning
        ("ws://[::ffff:127.0.0.1]:7777/", &[], &["127.0.0.1:7777"], true, "[::ffff:7f00:1]:7777"), // mapped loopback
        ("ws://[::FFFF:7F00:1]:7777/", &[], &["127.0.0.1:7777"], true, "[::ffff:7f00:1]:7777"),
        ("ws://localhost:7777/", &[], &["127.0.0.1:7777", "[::1]:7777"], true, "localhost:7777"),
        ("ws://localhost/", &[], &["127.0.0.1:80", "[::1]:80"], true, "localhost:80"),
        ("wss://localhost/", &[], &["127.0.0.1:443", "[::1]:443"], true, "localhost:443"),
        ("ws://LocalHost:7777/", &[], &["127.0.0.1:7777", "[::1]:7777"], true, "localhost:7777"), // host case
        ("ws://localhost.:7777/", &[], &["127.0.0.1:7777", "[::1]:7777"], true, "localhost.:7777"), // trailing dot
        ("ws://mapped.example/", &[], &["127.0.0.1:80"], true, "mapped.example:80"), // resolves to mapped loopback
        ("ws://dup.example:7777/", &[], &["127.0.0.1:7777"], true, "dup.example:7777"), // duplicates folded
        ("ws://localhost.evil.example/", &["localhost.evil.example"], &["203.0.113.9:80"], false, "localhost.evil.example:80"),
        // A dedicated test host, allowed by name, IP or CIDR.
        ("ws://relay.test.internal:7777/", &["relay.test.internal"], &["10.0.0.5:7777"], false, "relay.test.internal:7777"),
        ("ws://relay.test.internal:7777/", &["RELAY.Test.Internal."], &["10.0.0.5:7777"], false, "relay.test.internal:7777"),
        ("ws://Relay.Test.Internal.:7777/", &["relay.test.internal"], &["10.0.0.5:7777"], false, "relay.test.internal.:7777"),
        ("ws://relay.test.internal:7777/", &["10.0.0.5"], &["10.0.0.5:7777"], false, "relay.test.internal:7777"),
        ("ws://relay.test.internal:7777/", &["10.0.0.0/24"], &["10.0.0.5:7777"], false, "relay.test.internal:7777"),
        ("ws://relay.test.internal:7777/", &["10.0.0.6, 10.0.0.5"], &["10.0.0.5:7777"], false, "relay.test.internal:7777"),
        ("ws://relay.test.internal:7777/", &["::ffff:10.0.0.5"], &["10.0.0.5:7777"], false, "relay.test.internal:7777"), // entry in mapped form
        ("ws://split.example/", &["198.51.100.7"], &["127.0.0.1:80", "198.51.100.7:80"], false, "split.example:80"),
        ("ws://10.0.0.5:7777/", &["10.0.0.0/24"], &["10.0.0.5:7777"], false, "10.0.0.5:7777"),
        ("ws://[::ffff:10.0.0.5]/", &["10.0.0.5"], &["10.0.0.5:80"], false, "[::ffff:a00:5]:80"), // mapped, judged as IPv4
        ("ws://v6.test.internal/", &["2001:db8::/32"], &["[2001:db8::5]:80"], false, "v6.test.internal:80"),
        ("wss://[2001:db8::5]:8443/", &["[2001:db8::5]"], &["[2001:db8::5]:8443"], false, "[2001:db8::5]:8443"),
        // Userinfo, path, query and fragment never reach display_host.
        ("ws://alice:secret@localhost:7777/path?token=abc#frag", &[], &["127.0.0.1:7777", "[::1]:7777"], true, "localhost:7777"),
    ];

    #[test]
    fn loopback_and_allowed_hosts_are_accepted() {
        for (url, entries, addrs, loopback, display) in ACCEPTED {
            let target = check(url, &allow(entries), &fake)
                .unwrap_or_else(|refusal| panic!("{url:?} was refused: {refusal}"));
            let want: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
            assert_eq!(target.addrs, want, "{url:?}");
            assert_eq!(target.loopback, *loopback, "{url:?}");
            assert_eq!(target.display_host(), *display, "{url:?}");
        }
    }

    #[test]
    fn target_url_keeps_path_and_query_but_drops_userinfo() {
        let url = "ws://alice:secret@localhost:7777/path?token=abc#frag";
        let target = check(url, &AllowList::default(), &fake).unwrap();
        assert_eq!(target.url.as_str(), "ws://localhost:7777/path?token=abc");
        let debug = format!("{target:?}");
        assert!(
            !debug.contains("alice") && !debug.contains("secret"),
            "{debug}"
        );
    }

    #[test]
    fn resolver_is_called_once_for_names_and_never_for_addresses() {
        let calls = Cell::new(0);
        let counting = |host: &str, port: u16| {
            calls.set(calls.get() + 1);
            fake(host, port)
        };
        let none = AllowList::default();
        for url in [
            "ws://127.0.0.1/",
            "ws://[::1]/",
            "ws://[::ffff:127.0.0.1]/",
            "ws://203.0.113.9/",
        ] {
            let _ = check(url, &none, &counting);
        }
        assert_eq!(calls.get(), 0);
        // A public relay is refused before any lookup.
        let _ = check(
            "wss://relay.damus.io/",
            &allow(&["relay.damus.io"]),
            &counting,
        );
        assert_eq!(calls.get(), 0);
        check("ws://localhost:7777/", &none, &counting).unwrap();
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn resolved_addresses_get_the_url_port() {
        let other_port = |host: &str, _port: u16| fake(host, 9);
        let target = check("ws://localhost:7777/", &AllowList::default(), &other_port).unwrap();
        assert!(
            target.addrs.iter().all(|a| a.port() == 7777),
            "{:?}",
            target.addrs
        );
    }

    #[test]
    fn public_relay_rule_covers_subdomains_and_words_only() {
        assert!(is_public_relay("damus.io"));
        assert!(is_public_relay("x.relay.damus.io."));
        assert!(is_public_relay("Nostr.Band"));
        assert!(is_public_relay("primal.example"));
        assert!(!is_public_relay("notnos.lol"));
        assert!(!is_public_relay("nos.lol.test.internal"));
        assert!(!is_public_relay("relay.test.internal"));
    }

    #[test]
    fn allow_list_ignores_empty_entries() {
        let items = [",, ,".to_string(), " \t".to_string()];
        assert!(AllowList::parse(&items).unwrap().is_empty());
        assert!(AllowList::parse(&[]).unwrap().is_empty());
        let list = allow(&["relay.test.internal,,10.0.0.5 ", " 10.1.0.0/16\tother.test"]);
        assert!(!list.is_empty());
        assert_eq!(list.names, ["relay.test.internal", "other.test"]);
        assert_eq!(list.nets.len(), 2);
    }

    #[test]
    fn allow_list_errors_name_the_entry_and_the_syntax() {
        #[rustfmt::skip]
        let bad = [
            ("10.0.0.0/33", "not a CIDR block"),                 // prefix too long
            ("10.0.0.0/abc", "not a CIDR block"),
            ("relay.test.internal/24", "not a CIDR block"),
            ("ws://relay.test.internal", "not a URL"),
            ("relay.test.internal:7777", "only letters, digits"), // no ports
            ("010.0.0.1", "not an IP address in dotted decimal"),  // ambiguous spelling
            ("127.1", "not an IP address in dotted decimal"),
            ("0x7f.1", "not an IP address in dotted decimal"),
            ("relay..test", "empty label"),
            ("réseau.test", "xn-- form"),
        ];
        for (entry, why) in bad {
            let err = AllowList::parse(&[format!("ok.test, {entry}")]).unwrap_err();
            assert!(err.contains(&format!("`{entry}`")), "{err}");
            assert!(err.contains(why), "{entry}: {err}");
            assert!(err.contains("10.0.0.0/24"), "{err}");
        }
    }

    #[test]
    fn written_host_finds_the_host_as_typed() {
        for (rest, host) in [
            ("h:1/p", "h"),
            ("u:p@h:1", "h"),
            ("a@b@h?x@y", "h"),
            ("[::1]:7777/", "[::1]"),
            ("u@[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]"),
            ("h#@evil", "h"),
            ("\\evil", ""),
            ("", ""),
        ] {
            assert_eq!(written_host(rest), host, "{rest:?}");
        }
    }

    #[test]
    fn system_resolver_passes_address_literals_through() {
        // An address literal needs no lookup: std parses it before asking the resolver.
        let addrs = system_resolver("127.0.0.1", 7777).unwrap();
        assert_eq!(addrs, ["127.0.0.1:7777".parse::<SocketAddr>().unwrap()]);
    }
}
