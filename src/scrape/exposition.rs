//! The Prometheus text exposition format (version 0.0.4), read in one pass and flattened
//! to one value per series: a histogram is its `_bucket{le=…}`, `_sum` and `_count` series,
//! as the endpoint wrote them, so a series is always (name, labels) and one number; a
//! bucket's `le` and a summary's `quantile` are normalised (`1e-05` → `0.00001`), so one
//! series keeps one identity whatever float syntax the endpoint prints.
//!
//! Strict: a line that is neither a comment nor a sample, or a sample whose value is not a
//! number, makes the whole answer garbage (an endpoint that answers an HTML error page with
//! status 200 must not read as "no metrics").
//!
//! Hand-written on purpose: `prometheus-parse` runs regular expressions on every line, and
//! lt read each scrape with it twice (its parser, and its line classifier for this
//! strictness). Scraping node_exporter every second then cost 15% of lt's CPU per event at
//! 1,000 events/s (`cargo bench --bench replay`, step 7), against a 2% budget.

use std::collections::HashMap;

/// What a series' family is (the results file's type: series are stored as read).
pub use crate::capture::results::SeriesKind as Kind;

/// One series' value in one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    /// Sorted by name.
    pub labels: Vec<(String, String)>,
    pub kind: Kind,
    pub value: f64,
}

impl Metric {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an exposition; the error names the first line that is not the format.
pub fn parse(text: &str) -> Result<Vec<Metric>, String> {
    let mut types: HashMap<&str, Kind> = HashMap::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            // `# TYPE name kind`; HELP and any other comment say nothing to read.
            let mut words = comment.split_whitespace();
            if let (Some("TYPE"), Some(name), Some(kind)) =
                (words.next(), words.next(), words.next())
            {
                types.insert(name, kind_named(kind));
            }
            continue;
        }
        let Some((name, mut labels, value)) = sample(line) else {
            let shown: String = line.chars().take(60).collect();
            return Err(format!(
                "not the Prometheus text format: line {}: {shown:?}",
                i + 1
            ));
        };
        let kind = family_kind(&types, name);
        let bound_label = match kind {
            Kind::Histogram if name.ends_with("_bucket") => Some("le"),
            Kind::Summary => Some("quantile"),
            _ => None,
        };
        if let Some(l) = bound_label {
            for (_, v) in labels.iter_mut().filter(|(k, _)| k == l) {
                if let Some(b) = number(v) {
                    *v = bound(b);
                }
            }
        }
        labels.sort();
        out.push(Metric {
            name: name.to_owned(),
            labels,
            kind,
            value,
        });
    }
    Ok(out)
}

fn kind_named(word: &str) -> Kind {
    match word {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "histogram" => Kind::Histogram,
        "summary" => Kind::Summary,
        _ => Kind::Untyped,
    }
}

/// The kind of the family sample `name` belongs to: its own TYPE, or its base's for a
/// histogram's or summary's `_bucket`, `_sum`, `_count` and a counter's `_total`.
fn family_kind(types: &HashMap<&str, Kind>, name: &str) -> Kind {
    if let Some(k) = types.get(name) {
        return *k;
    }
    let of = |suffix: &str, fits: fn(Kind) -> bool| {
        name.strip_suffix(suffix)
            .and_then(|base| types.get(base).copied())
            .filter(|k| fits(*k))
    };
    of("_bucket", |k| k == Kind::Histogram)
        .or_else(|| of("_sum", |k| matches!(k, Kind::Histogram | Kind::Summary)))
        .or_else(|| of("_count", |k| matches!(k, Kind::Histogram | Kind::Summary)))
        .or_else(|| of("_total", |k| k == Kind::Counter))
        .unwrap_or(Kind::Untyped)
}

/// A series' labels, as read.
type Labels = Vec<(String, String)>;

/// `name{label="value",…} value [timestamp]`, or `None` when the line is not one.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    // At least one blank between the series and its value; a timestamp may follow.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut words = rest.split_ascii_whitespace();
    let value = number(words.next()?)?;
    match (words.next(), words.next()) {
        (None, _) => Some((name, labels, value)),
        (Some(ts), None) if ts.parse::<i64>().is_ok() => Some((name, labels, value)),
        _ => None,
    }
}

/// The labels after `{` up to and including `}`, and what follows.
fn label_set(mut s: &str) -> Option<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let key_end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
        let key = &s[..key_end];
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        s = s[key_end..]
            .trim_start()
            .strip_prefix('=')?
            .trim_start()
            .strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = s[close + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// A value as the format writes it: Go's float syntax, `NaN`, `+Inf`, `-Inf`.
pub fn number(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// A bucket bound or quantile as a label value (`+Inf`, `0.005`).
fn bound(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nostr-rs-relay 0.8.12's /metrics, abridged from a real answer.
    const RELAY: &str = "\
# HELP nostr_cmd_event_total EVENT commands
# TYPE nostr_cmd_event_total counter
nostr_cmd_event_total 1200
# HELP nostr_disconnects_total Client disconnects
# TYPE nostr_disconnects_total counter
nostr_disconnects_total{reason=\"normal\"} 3
nostr_disconnects_total{reason=\"error\"} 1
# HELP nostr_events_write_seconds Event writing response times
# TYPE nostr_events_write_seconds histogram
nostr_events_write_seconds_bucket{le=\"0.005\"} 900
nostr_events_write_seconds_bucket{le=\"0.01\"} 1100
nostr_events_write_seconds_bucket{le=\"+Inf\"} 1200
nostr_events_write_seconds_sum 4.5
nostr_events_write_seconds_count 1200
# HELP nostr_db_connections Active database connections
# TYPE nostr_db_connections gauge
nostr_db_connections 2
";

    fn find<'a>(m: &'a [Metric], name: &str, label: Option<(&str, &str)>) -> &'a Metric {
        m.iter()
            .find(|x| x.name == name && label.is_none_or(|(k, v)| x.label(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {label:?} not in {m:#?}"))
    }

    #[test]
    fn every_series_is_one_value_with_its_kind() {
        let m = parse(RELAY).unwrap();
        assert_eq!(m.len(), 9, "{m:#?}");
        let c = find(&m, "nostr_cmd_event_total", None);
        assert_eq!((c.kind, c.value), (Kind::Counter, 1200.0));
        assert_eq!(
            find(&m, "nostr_disconnects_total", Some(("reason", "error"))).value,
            1.0
        );
        let b = find(
            &m,
            "nostr_events_write_seconds_bucket",
            Some(("le", "0.01")),
        );
        assert_eq!((b.kind, b.value), (Kind::Histogram, 1100.0));
        let inf = find(
            &m,
            "nostr_events_write_seconds_bucket",
            Some(("le", "+Inf")),
        );
        assert_eq!(inf.value, 1200.0);
        let sum = find(&m, "nostr_events_write_seconds_sum", None);
        assert_eq!((sum.kind, sum.value), (Kind::Histogram, 4.5));
        assert_eq!(find(&m, "nostr_db_connections", None).kind, Kind::Gauge);
    }

    #[test]
    fn labels_of_a_histogram_keep_their_series_apart() {
        let text = "\
# TYPE q histogram
q_bucket{kind=\"a\",le=\"1\"} 1
q_bucket{kind=\"a\",le=\"+Inf\"} 2
q_bucket{kind=\"b\",le=\"1\"} 5
q_bucket{kind=\"b\",le=\"+Inf\"} 7
";
        let m = parse(text).unwrap();
        let b = m
            .iter()
            .find(|x| x.label("kind") == Some("b") && x.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(b.value, 7.0);
        assert_eq!(
            b.labels,
            vec![("kind".into(), "b".into()), ("le".into(), "+Inf".into())]
        );
    }

    #[test]
    fn garbage_is_an_error_that_names_its_line() {
        let e = parse("# TYPE x counter\nx 1\n<html><body>502 Bad Gateway</body></html>\n")
            .unwrap_err();
        assert!(e.contains("line 3") && e.contains("<html>"), "{e}");
        let e = parse("x one\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        // An empty answer is no metrics, not garbage; so is a plain comment.
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("# just a comment\n").unwrap(), vec![]);
    }

    #[test]
    fn escapes_timestamps_blanks_and_float_syntax_read() {
        let text = "\
# HELP x a help line with \\ and \"quotes\"
# TYPE x_total counter
x_total{path=\"a\\\\b\",msg=\"say \\\"hi\\\"\\nbye\",} 3 1700000000000
# TYPE h histogram
h_bucket{le=\"1e-05\"} 1
h_bucket{ le = \"+Inf\" }\t2
h_count 2
# TYPE o counter
o_total 5
untyped_thing -1.5e3
";
        let m = parse(text).unwrap();
        let x = find(&m, "x_total", None);
        assert_eq!((x.kind, x.value), (Kind::Counter, 3.0));
        assert_eq!(x.label("path"), Some("a\\b"));
        assert_eq!(x.label("msg"), Some("say \"hi\"\nbye"));
        assert_eq!(find(&m, "h_bucket", Some(("le", "0.00001"))).value, 1.0);
        assert_eq!(find(&m, "h_bucket", Some(("le", "+Inf"))).value, 2.0);
        assert_eq!(find(&m, "h_count", None).kind, Kind::Histogram);
        // OpenMetrics names a counter's family without `_total`.
        assert_eq!(find(&m, "o_total", None).kind, Kind::Counter);
        let u = find(&m, "untyped_thing", None);
        assert_eq!((u.kind, u.value), (Kind::Untyped, -1500.0));
        for bad in [
            "x{a=\"1\" 2\n",
            "x{a=1} 2\n",
            "x 1 2 3\n",
            "x 1 soon\n",
            "{a=\"1\"} 2\n",
            "x{a=\"unterminated} 2\n",
            "x2\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} read");
        }
    }

    #[test]
    fn special_values_read() {
        assert_eq!(number("+Inf"), Some(f64::INFINITY));
        assert!(number("NaN").unwrap().is_nan());
        assert_eq!(number("1e3"), Some(1000.0));
        assert_eq!(number("x"), None);
    }
}
