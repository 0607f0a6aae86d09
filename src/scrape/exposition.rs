//! The Prometheus text exposition format, read with the `prometheus-parse` crate and
//! flattened to one value per series: a histogram becomes its `_bucket{le=…}`, `_sum` and
//! `_count` series again, as the endpoint wrote them, so a series is always (name, labels)
//! and one number. Strict where the crate is lenient: a line that is neither a comment nor
//! a sample, or a sample whose value is not a number, makes the whole answer garbage (an
//! endpoint that answers an HTML error page with status 200 must not read as "no metrics").

use std::collections::BTreeSet;

use prometheus_parse::{LineInfo, Scrape, Value};

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
    check_lines(text)?;
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .map_err(|e| format!("reading the exposition: {e}"))?;
    let histograms: BTreeSet<String> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Histogram(_)))
        .map(|s| s.metric.clone())
        .collect();
    let summaries: BTreeSet<String> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Summary(_)))
        .map(|s| s.metric.clone())
        .collect();
    let mut out = Vec::with_capacity(scrape.samples.len());
    for s in &scrape.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let mut push = |name: String, labels: Vec<(String, String)>, kind, value| {
            out.push(Metric {
                name,
                labels,
                kind,
                value,
            })
        };
        match &s.value {
            Value::Counter(v) => push(s.metric.clone(), labels, Kind::Counter, *v),
            Value::Gauge(v) => push(s.metric.clone(), labels, Kind::Gauge, *v),
            Value::Untyped(v) => {
                let family = |suffix| s.metric.strip_suffix(suffix).map(str::to_owned);
                let kind = match family("_sum").or_else(|| family("_count")) {
                    Some(base) if histograms.contains(&base) => Kind::Histogram,
                    Some(base) if summaries.contains(&base) => Kind::Summary,
                    _ => Kind::Untyped,
                };
                push(s.metric.clone(), labels, kind, *v)
            }
            Value::Histogram(buckets) => {
                for b in buckets {
                    push(
                        format!("{}_bucket", s.metric),
                        with(&labels, "le", bound(b.less_than)),
                        Kind::Histogram,
                        b.count,
                    );
                }
            }
            Value::Summary(quantiles) => {
                for q in quantiles {
                    push(
                        s.metric.clone(),
                        with(&labels, "quantile", bound(q.quantile)),
                        Kind::Summary,
                        q.count,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Every line is a comment, a HELP or TYPE line, or a sample with a number: else the line
/// that is not, as the error.
fn check_lines(text: &str) -> Result<(), String> {
    for (i, line) in text.lines().enumerate() {
        let garbage = match LineInfo::parse(line) {
            LineInfo::Ignored => true,
            LineInfo::Sample { value, .. } => number(value).is_none(),
            _ => false,
        };
        // A comment that is not HELP or TYPE is a comment, not garbage.
        if garbage && !line.trim_start().starts_with('#') {
            let shown: String = line.chars().take(60).collect();
            return Err(format!(
                "not the Prometheus text format: line {}: {shown:?}",
                i + 1
            ));
        }
    }
    Ok(())
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

fn with(labels: &[(String, String)], name: &str, value: String) -> Vec<(String, String)> {
    let mut out = labels.to_vec();
    out.push((name.to_owned(), value));
    out.sort();
    out
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
    fn special_values_read() {
        assert_eq!(number("+Inf"), Some(f64::INFINITY));
        assert!(number("NaN").unwrap().is_nan());
        assert_eq!(number("1e3"), Some(1000.0));
        assert_eq!(number("x"), None);
    }
}
