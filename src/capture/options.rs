//! The replay options a results header keeps ([`RunOptions`]): typed here, a map of strings
//! in the file, so results written before the type existed read back and write out as they
//! were. A new option is a field here, its key in [`RunOptions::to_map`] and
//! [`RunOptions::from_map`], and, when it changes the load, a row of [`LOAD_FLAGS`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// `--speed`: how fast the trace's offsets are played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Offsets divided by this factor (2.0 = twice as fast as recorded).
    Scaled(f64),
    /// Every record is due at once: as fast as the in-flight caps allow.
    Max,
}

impl FromStr for Speed {
    type Err = String;

    /// `2x`, `0.5x`, `200%`, `1`, `max`.
    fn from_str(s: &str) -> Result<Speed, String> {
        const HELP: &str = "expected a speed like 2x, 0.5x, 200% or max";
        let s = s.trim().to_ascii_lowercase();
        if s == "max" {
            return Ok(Speed::Max);
        }
        let (num, scale) = if let Some(n) = s.strip_suffix('x') {
            (n, 1.0)
        } else if let Some(n) = s.strip_suffix('%') {
            (n, 0.01)
        } else {
            (s.as_str(), 1.0)
        };
        match num.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 && v * scale <= 1e6 => Ok(Speed::Scaled(v * scale)),
            _ => Err(HELP.into()),
        }
    }
}

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Speed::Scaled(v) => write!(f, "{v}x"),
            Speed::Max => write!(f, "max"),
        }
    }
}

/// `--on-overload`: what a record due at the in-flight cap does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// At the in-flight cap, wait (the wait shows as schedule lag).
    Wait,
    /// At the in-flight cap, drop the record (outcome `dropped`).
    Drop,
}

impl FromStr for Overload {
    type Err = String;

    fn from_str(s: &str) -> Result<Overload, String> {
        match s.trim() {
            "wait" => Ok(Overload::Wait),
            "drop" => Ok(Overload::Drop),
            _ => Err("expected wait or drop".into()),
        }
    }
}

impl fmt::Display for Overload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overload::Wait => "wait",
            Overload::Drop => "drop",
        })
    }
}

/// The options one replay ran with. `None` is "not recorded": results of an older lt, or an
/// option left to its default that the header only names when set (`clients`, `threads`,
/// `duration_s`, `start_at`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    pub speed: Option<Speed>,
    pub clients: Option<u32>,
    /// `--threads` as asked; [`RunOptions::network_threads`] is what ran.
    pub threads: Option<usize>,
    pub connect_concurrency: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub per_conn_in_flight: Option<usize>,
    pub on_overload: Option<Overload>,
    pub timeout_ms: Option<u64>,
    pub duration_s: Option<f64>,
    pub reconcile: Option<bool>,
    /// Whether `--relay-pid` was given (and the process was there at the start).
    pub relay_pid_sampled: Option<bool>,
    /// `--delivery-rows`; written only when on, so other runs' headers stay as they were.
    pub delivery_rows: bool,
    /// `--start-at`, RFC 3339 UTC.
    pub start_at: Option<String>,
    /// The network threads the replay ran.
    pub network_threads: Option<usize>,
    /// Keys this lt does not know (a newer lt wrote them): kept, shown and written as read.
    pub other: BTreeMap<String, String>,
}

/// The options that change the load itself, in the order differences and reproducers name
/// them, each with the `lt replay` flag that sets it: runs that differ in one are not
/// repeats, and a reproducer gives all of them.
pub const LOAD_FLAGS: [(&str, &str); 7] = [
    ("speed", "--speed"),
    ("clients", "--clients"),
    ("max_in_flight", "--max-in-flight"),
    ("per_conn_in_flight", "--per-conn-in-flight"),
    ("on_overload", "--on-overload"),
    ("timeout_ms", "--timeout"),
    ("duration_s", "--duration"),
];

/// A load option in which two runs differ: its key and each side's value (`None`: unset).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub key: &'static str,
    pub first: Option<String>,
    pub other: Option<String>,
}

impl RunOptions {
    /// The options as the results header writes them.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        fn put<T: fmt::Display>(m: &mut BTreeMap<String, String>, key: &str, v: Option<T>) {
            if let Some(v) = v {
                m.insert(key.to_owned(), v.to_string());
            }
        }
        let mut m = self.other.clone();
        put(&mut m, "speed", self.speed);
        put(&mut m, "clients", self.clients);
        put(&mut m, "threads", self.threads);
        put(&mut m, "connect_concurrency", self.connect_concurrency);
        put(&mut m, "max_in_flight", self.max_in_flight);
        put(&mut m, "per_conn_in_flight", self.per_conn_in_flight);
        put(&mut m, "on_overload", self.on_overload);
        put(&mut m, "timeout_ms", self.timeout_ms);
        put(&mut m, "duration_s", self.duration_s);
        put(&mut m, "reconcile", self.reconcile);
        put(&mut m, "relay_pid_sampled", self.relay_pid_sampled);
        put(&mut m, "delivery_rows", self.delivery_rows.then_some(true));
        put(&mut m, "start_at", self.start_at.as_deref());
        put(&mut m, "network_threads", self.network_threads);
        m
    }

    /// The options of a results header; a known key whose value does not parse is an error
    /// that names it.
    pub fn from_map(map: BTreeMap<String, String>) -> Result<RunOptions, String> {
        let mut rest = map;
        fn take<T: FromStr>(
            rest: &mut BTreeMap<String, String>,
            key: &str,
        ) -> Result<Option<T>, String>
        where
            T::Err: fmt::Display,
        {
            match rest.remove(key) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|e| format!("replay option {key} = {v:?}: {e}")),
            }
        }
        let r = &mut rest;
        Ok(RunOptions {
            speed: take(r, "speed")?,
            clients: take(r, "clients")?,
            threads: take(r, "threads")?,
            connect_concurrency: take(r, "connect_concurrency")?,
            max_in_flight: take(r, "max_in_flight")?,
            per_conn_in_flight: take(r, "per_conn_in_flight")?,
            on_overload: take(r, "on_overload")?,
            timeout_ms: take(r, "timeout_ms")?,
            duration_s: take(r, "duration_s")?,
            reconcile: take(r, "reconcile")?,
            relay_pid_sampled: take(r, "relay_pid_sampled")?,
            delivery_rows: take(r, "delivery_rows")?.unwrap_or(false),
            start_at: take(r, "start_at")?,
            network_threads: take(r, "network_threads")?,
            other: rest,
        })
    }

    /// The load options ([`LOAD_FLAGS`]) as the header writes them, in that order, with
    /// their flags: `(key, flag, value)`, the unset ones left out.
    pub fn load_options(&self) -> Vec<(&'static str, &'static str, String)> {
        let map = self.to_map();
        LOAD_FLAGS
            .iter()
            .filter_map(|&(key, flag)| map.get(key).map(|v| (key, flag, v.clone())))
            .collect()
    }

    /// The load options as `lt replay` (and `lt ab`) flags: ` --speed 2x --timeout 3000ms …`.
    pub fn load_flags(&self) -> String {
        self.load_options()
            .into_iter()
            .map(|(key, flag, v)| match key {
                "timeout_ms" => format!(" {flag} {v}ms"),
                _ => format!(" {flag} {v}"),
            })
            .collect()
    }

    /// The load options in which `other` differs from these, in [`LOAD_FLAGS`] order.
    pub fn differences(&self, other: &RunOptions) -> Vec<Difference> {
        let (a, b) = (self.to_map(), other.to_map());
        LOAD_FLAGS
            .iter()
            .filter(|(key, _)| a.get(*key) != b.get(*key))
            .map(|&(key, _)| Difference {
                key,
                first: a.get(key).cloned(),
                other: b.get(key).cloned(),
            })
            .collect()
    }
}

impl serde::Serialize for RunOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for RunOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RunOptions, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        RunOptions::from_map(map).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn speeds_parse() {
        // (input, expected)
        let ok = [
            ("2x", Speed::Scaled(2.0)),     // twice as fast
            ("0.5x", Speed::Scaled(0.5)),   // half speed
            ("200%", Speed::Scaled(2.0)),   // percent form
            ("1", Speed::Scaled(1.0)),      // bare factor
            ("MAX", Speed::Max),            // case-insensitive
            (" 10x ", Speed::Scaled(10.0)), // whitespace
        ];
        for (s, want) in ok {
            assert_eq!(s.parse::<Speed>(), Ok(want), "{s}");
        }
        for bad in ["0x", "-2x", "x", "fast", "nanx", "infx", "2y", ""] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_as_lt_wrote_them_read_back_and_write_out_unchanged() {
        // Each a header's options as some lt version wrote them.
        let headers = [
            // today's replay, every option
            map(&[
                ("clients", "8"),
                ("connect_concurrency", "64"),
                ("delivery_rows", "true"),
                ("duration_s", "2.5"),
                ("max_in_flight", "10000"),
                ("network_threads", "2"),
                ("on_overload", "drop"),
                ("per_conn_in_flight", "100"),
                ("reconcile", "false"),
                ("relay_pid_sampled", "true"),
                ("speed", "0.5x"),
                ("start_at", "2026-12-01T00:00:00.000Z"),
                ("threads", "4"),
                ("timeout_ms", "3000"),
            ]),
            // an older replay: fewer keys, no delivery_rows
            map(&[("speed", "1x"), ("timeout_ms", "5000")]),
            // a newer lt's key this one does not know
            map(&[("speed", "max"), ("auth", "nip42")]),
            // nothing at all
            map(&[]),
        ];
        for h in headers {
            let o = RunOptions::from_map(h.clone()).expect("reads");
            assert_eq!(o.to_map(), h);
        }
    }

    #[test]
    fn a_known_key_that_does_not_parse_is_named() {
        let e = RunOptions::from_map(map(&[("speed", "fast")])).unwrap_err();
        assert!(
            e.starts_with("replay option speed = \"fast\": expected a speed"),
            "{e}"
        );
        let e = RunOptions::from_map(map(&[("timeout_ms", "-1")])).unwrap_err();
        assert!(e.starts_with("replay option timeout_ms = \"-1\""), "{e}");
    }

    #[test]
    fn differences_are_the_load_options_only() {
        let a = RunOptions::from_map(map(&[
            ("speed", "1x"),
            ("timeout_ms", "3000"),
            ("network_threads", "2"),
            ("relay_pid_sampled", "true"),
        ]))
        .expect("a");
        let b = RunOptions::from_map(map(&[
            ("speed", "4x"),
            ("clients", "3"),
            ("timeout_ms", "3000"),
            ("network_threads", "1"),
        ]))
        .expect("b");
        let got: Vec<_> = a
            .differences(&b)
            .into_iter()
            .map(|d| (d.key, d.first, d.other))
            .collect();
        assert_eq!(
            got,
            [
                ("speed", Some("1x".into()), Some("4x".into())),
                ("clients", None, Some("3".into())),
            ]
        );
        assert!(a.differences(&a).is_empty());
    }

    #[test]
    fn load_flags_are_what_lt_replay_takes() {
        let o = RunOptions::from_map(map(&[
            ("speed", "2x"),
            ("timeout_ms", "3000"),
            ("duration_s", "10"),
            ("on_overload", "wait"),
            ("network_threads", "2"),
        ]))
        .expect("reads");
        assert_eq!(
            o.load_flags(),
            " --speed 2x --on-overload wait --timeout 3000ms --duration 10"
        );
    }
}
