//! `NAME=CMD` build specs and the `{port}`, `{dir}`, `{config}` placeholders in commands and
//! config templates. Pure text work: nothing here touches a file or a process.

use std::path::PathBuf;

/// Placeholders a command may use.
const COMMAND_SLOTS: &[&str] = &["port", "dir", "config"];
/// Placeholders a config template may use (`{config}` would name the file itself).
pub(super) const CONFIG_SLOTS: &[&str] = &["port", "dir"];
/// The spelling every parse error repeats, so the user sees the accepted syntax.
const SYNTAX: &str = "expected NAME=CMD, e.g. \
    'main=./nostr-rs-relay --config {config} --db {dir}'";

/// One relay build to compare: a name for reports and a command template that starts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// `[A-Za-z0-9._-]{1,40}`: it names files and report columns.
    pub name: String,
    /// Run by `/bin/sh -c` after the placeholders are filled in.
    pub command: String,
    /// A config file with `{port}` and `{dir}`, filled in per run and passed as `{config}`.
    pub config_template: Option<PathBuf>,
    /// The build listens with TLS (`wss://localhost:{port}/`), its certificate signed by
    /// this CA (PEM), trusted besides the system's roots.
    pub tls_ca: Option<PathBuf>,
}

impl BuildSpec {
    /// Parses `NAME=CMD` (as typed after `--a`/`--b`) with the optional `--a-config` file.
    /// Checks the text only; the config file is read when a run starts.
    pub fn parse(arg: &str, config: Option<PathBuf>) -> Result<BuildSpec, String> {
        let (name, command) = arg
            .split_once('=')
            .ok_or_else(|| format!("no '=' in build `{arg}`: {SYNTAX}"))?;
        check_name(name).map_err(|why| format!("bad build name `{name}`: {why}; {SYNTAX}"))?;
        let command = command.trim();
        check_command(command, config.is_some())
            .map_err(|why| format!("bad command for build `{name}`: {why}"))?;
        Ok(BuildSpec {
            name: name.to_string(),
            command: command.to_string(),
            config_template: config,
            tls_ca: None,
        })
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > 40 {
        return Err("a name has 1 to 40 characters");
    }
    if !name.bytes().all(allowed) {
        return Err("a name has only letters, digits, '.', '_' and '-'");
    }
    // `.` and `..` would be path components if the name is used as a folder.
    if name.bytes().all(|b| b == b'.') {
        return Err("a name is not only dots");
    }
    Ok(())
}

fn check_command(command: &str, has_config: bool) -> Result<(), String> {
    if command.is_empty() {
        return Err(format!("the command is empty; {SYNTAX}"));
    }
    let slots = slots(command);
    check_known(&slots, COMMAND_SLOTS)?;
    // With a config file the port may be set there instead; `start` checks the template.
    if !has_config && !slots.iter().any(|s| s.name == "port") {
        return Err(concat!(
            "the command has no {port} and there is no config file to carry it: ",
            "lt picks a free port per run and the relay must listen on 127.0.0.1:{port}"
        )
        .to_string());
    }
    let uses_config = slots.iter().any(|s| s.name == "config");
    if uses_config && !has_config {
        return Err("the command uses {config} but no config file was given \
                    (--a-config / --b-config)"
            .to_string());
    }
    if has_config && !uses_config {
        return Err("a config file was given but the command has no {config}, \
                    so the relay would never read it"
            .to_string());
    }
    // lt quotes paths itself; inside the user's quotes that quoting would become literal.
    for slot in slots.iter().filter(|s| s.name != "port") {
        if let Some(quote) = shell_quote_at(command, slot.start) {
            return Err(format!(
                "{{{}}} is inside {quote}…{quote}: write it bare, lt quotes the path itself",
                slot.name
            ));
        }
    }
    Ok(())
}

/// Refuses placeholders outside `known`, suggesting the nearest known one.
pub(super) fn check_known(slots: &[Slot<'_>], known: &[&str]) -> Result<(), String> {
    let Some(bad) = slots.iter().find(|s| !known.contains(&s.name)) else {
        return Ok(());
    };
    let list: Vec<String> = known.iter().map(|k| format!("{{{k}}}")).collect();
    let hint = known
        .iter()
        .filter(|k| strsim::levenshtein(k, bad.name) <= 2)
        .min_by_key(|k| strsim::levenshtein(k, bad.name))
        .map(|k| format!("; did you mean {{{k}}}?"))
        .unwrap_or_default();
    Err(format!(
        "unknown placeholder {{{}}} (known: {}){hint}",
        bad.name,
        list.join(", ")
    ))
}

/// A `{name}` in a template, by byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot<'a> {
    pub start: usize,
    pub end: usize,
    pub name: &'a str,
}

/// Every `{identifier}` in `text`, except `${identifier}`, which is the shell's own expansion.
/// Braces around anything else (`{}`, `{a,b}`, TOML inline tables) are left alone.
pub(super) fn slots(text: &str) -> Vec<Slot<'_>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = text[i..].find('{') {
        let start = i + offset;
        i = start + 1;
        if start > 0 && bytes[start - 1] == b'$' {
            continue;
        }
        let Some(len) = text[i..].find('}') else {
            break;
        };
        let name = &text[i..i + len];
        if is_identifier(name) {
            found.push(Slot {
                start,
                end: i + len + 1,
                name,
            });
            i += len + 1;
        }
    }
    found
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The quote (`'` or `"`) that is open at byte `pos` of a shell command, if any. Follows the
/// POSIX rules that matter here: backslash escapes outside single quotes, nothing inside.
fn shell_quote_at(command: &str, pos: usize) -> Option<char> {
    let mut open: Option<char> = None;
    let mut escaped = false;
    for (i, c) in command.char_indices() {
        if i >= pos {
            break;
        }
        match (open, c) {
            _ if escaped => escaped = false,
            (Some('\''), '\'') => open = None,
            (Some('\''), _) => {}
            (_, '\\') => escaped = true,
            (Some('"'), '"') => open = None,
            (None, '\'' | '"') => open = Some(c),
            _ => {}
        }
    }
    open
}

/// The values a run gives the placeholders.
#[derive(Debug, Clone, Copy)]
pub(super) struct Values<'a> {
    pub port: u16,
    pub dir: &'a str,
    pub config: Option<&'a str>,
}

/// How filled-in values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quoting {
    /// Paths shell-quoted, for `/bin/sh -c`.
    Shell,
    /// Values as they are, for config files (whose syntax lt does not know).
    Raw,
}

/// `template` with every placeholder replaced; the caller has checked the names.
pub(super) fn fill(template: &str, values: Values<'_>, quoting: Quoting) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut copied = 0;
    for slot in slots(template) {
        out.push_str(&template[copied..slot.start]);
        let value = match slot.name {
            // Digits need no quoting, and so `"{port}"` stays valid.
            "port" => values.port.to_string(),
            "dir" => quote(values.dir, quoting),
            "config" => match values.config {
                Some(path) => quote(path, quoting),
                None => return Err("{config} used but no config file was given".to_string()),
            },
            other => return Err(format!("unknown placeholder {{{other}}}")),
        };
        out.push_str(&value);
        copied = slot.end;
    }
    out.push_str(&template[copied..]);
    Ok(out)
}

fn quote(value: &str, quoting: Quoting) -> String {
    match quoting {
        Quoting::Shell => shell_quote(value),
        Quoting::Raw => value.to_string(),
    }
}

/// One shell word holding exactly `s`: single quotes, each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arg: &str) -> Result<BuildSpec, String> {
        BuildSpec::parse(arg, None)
    }

    #[test]
    fn parse_accepts_good_specs() {
        let spec = parse("main=RUST_LOG=info ./relay --port {port} --db {dir}").unwrap();
        assert_eq!(spec.name, "main");
        // Only the first '=' separates the name: the command keeps its own assignments.
        assert_eq!(
            spec.command,
            "RUST_LOG=info ./relay --port {port} --db {dir}"
        );
        // With a config file, {port} may live in the config alone (checked at start).
        let spec = BuildSpec::parse("r=./relay -c {config} ", Some(PathBuf::from("r.toml")));
        assert_eq!(spec.unwrap().command, "./relay -c {config}");
        let spec = BuildSpec::parse(
            "v0.8.12_rc-1= ./relay -c {config} # {port}",
            Some(PathBuf::from("r.toml")),
        )
        .unwrap();
        assert_eq!(spec.name, "v0.8.12_rc-1");
        assert_eq!(spec.command, "./relay -c {config} # {port}");
        assert_eq!(spec.config_template, Some(PathBuf::from("r.toml")));
        // Shell expansions and other braces are not placeholders.
        assert!(parse("a=echo ${HOME} {} {a,b} && relay {port}").is_ok());
    }

    #[test]
    fn parse_refuses_bad_names() {
        for (arg, why) in [
            ("=relay {port}", "1 to 40"),
            ("has space=relay {port}", "only letters"),
            ("a/b=relay {port}", "only letters"),
            ("..=relay {port}", "only dots"),
            (&format!("{}=relay {{port}}", "x".repeat(41)), "1 to 40"),
            ("relay {port}", "no '='"),
        ] {
            let err = parse(arg).unwrap_err();
            assert!(err.contains(why), "{arg}: {err}");
        }
        assert!(parse(&format!("{}=r {{port}}", "x".repeat(40))).is_ok());
    }

    #[test]
    fn parse_requires_port_and_a_command() {
        assert!(parse("a=./relay --db {dir}")
            .unwrap_err()
            .contains("no {port}"));
        assert!(parse("a=  ").unwrap_err().contains("empty"));
        // `${port}` is the shell's variable, not lt's placeholder.
        assert!(parse("a=./relay ${port}")
            .unwrap_err()
            .contains("no {port}"));
        let err = BuildSpec::parse("a=./relay ${port}", Some("c.toml".into())).unwrap_err();
        assert!(err.contains("has no {config}"), "{err}");
    }

    #[test]
    fn parse_refuses_unknown_placeholders_with_a_hint() {
        let err = parse("a=./relay --port {prot}").unwrap_err();
        assert!(err.contains("unknown placeholder {prot}"), "{err}");
        assert!(err.contains("did you mean {port}?"), "{err}");
        let err = parse("a=./relay {port} {datadir}").unwrap_err();
        assert!(
            err.contains("{datadir}") && !err.contains("did you mean"),
            "{err}"
        );
    }

    #[test]
    fn parse_ties_config_placeholder_to_config_file() {
        let err = parse("a=./relay -c {config} {port}").unwrap_err();
        assert!(err.contains("no config file was given"), "{err}");
        let err = BuildSpec::parse("a=./relay {port}", Some("c.toml".into())).unwrap_err();
        assert!(err.contains("has no {config}"), "{err}");
    }

    #[test]
    fn parse_refuses_quoted_path_placeholders() {
        let err = parse("a=./relay --db \"{dir}/x\" {port}").unwrap_err();
        assert!(err.contains("{dir} is inside \""), "{err}");
        let err = parse("a=./relay --db '{dir}' {port}").unwrap_err();
        assert!(err.contains("{dir} is inside '"), "{err}");
        // A quoted port is fine (digits), and an escaped quote opens nothing.
        assert!(parse("a=./relay --port \"{port}\" \\' --db {dir}").is_ok());
        assert!(parse("a=echo 'it''s' {dir} {port}").is_ok());
    }

    #[test]
    fn quoting_keeps_spaces_and_single_quotes() {
        let dir = "/tmp/it's a dir";
        let values = Values {
            port: 7000,
            dir,
            config: Some("/c d/config.toml"),
        };
        let cmd = fill(
            "printf '%s\\n' {dir} {config} {port}",
            values,
            Quoting::Shell,
        )
        .unwrap();
        assert_eq!(
            cmd,
            r"printf '%s\n' '/tmp/it'\''s a dir' '/c d/config.toml' 7000"
        );
        // What the shell makes of it is the original text, one word each.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .unwrap();
        let words = String::from_utf8(out.stdout).unwrap();
        assert_eq!(words, "/tmp/it's a dir\n/c d/config.toml\n7000\n");
    }

    #[test]
    fn raw_fill_leaves_config_syntax_alone() {
        let values = Values {
            port: 9,
            dir: "/d",
            config: None,
        };
        let text = "port = {port}\npath = \"{dir}/x\"\nt = { a = 1 }\nenv = \"${HOME}\"\n";
        let out = fill(text, values, Quoting::Raw).unwrap();
        assert_eq!(
            out,
            "port = 9\npath = \"/d/x\"\nt = { a = 1 }\nenv = \"${HOME}\"\n"
        );
        assert!(fill("{config}", values, Quoting::Raw).is_err());
    }
}
