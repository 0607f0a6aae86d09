//! Checks every report test makes: the JSON against its committed schema, the Markdown
//! summary against the JSON.

use std::collections::BTreeMap;
use std::path::Path;

/// The rows of the Markdown table under `## Summary`: label → value.
fn markdown_summary(md: &str) -> BTreeMap<String, f64> {
    md.split("## Summary")
        .nth(1)
        .expect("a Summary section")
        .lines()
        .skip_while(|l| !l.starts_with("| Metric"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (
                cells[0].to_owned(),
                cells[1].parse::<f64>().expect("a number"),
            )
        })
        .collect()
}

/// The JSON file at `path`, which must validate against `schema` (a committed schema's
/// text); the errors are the panic's message.
pub fn read_against_schema(path: &Path, schema: &str) -> serde_json::Value {
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    value
}

/// Validates a report against the committed schema, and checks the Markdown summary shows
/// exactly the JSON's figures.
pub fn check_report_files(json: &Path, md: &Path) -> serde_json::Value {
    let value = read_against_schema(json, include_str!("../../docs/report.schema.json"));
    let shown = markdown_summary(&std::fs::read_to_string(md).unwrap());
    let summary = value["summary"].as_array().unwrap();
    assert_eq!(shown.len(), summary.len());
    for h in summary {
        let label = h["label"].as_str().unwrap();
        assert_eq!(shown[label], h["value"].as_f64().unwrap(), "{label}");
    }
    // The summary's figures are the report's own.
    let find = |id: &str| {
        summary
            .iter()
            .find(|h| h["id"] == id)
            .map(|h| h["value"].as_f64().unwrap())
    };
    assert_eq!(find("attempted"), value["totals"]["attempted"].as_f64());
    if let Some(p99) = find("response_p99") {
        assert_eq!(
            Some(p99),
            value["latency"]["overall"]["response_ms"]["p99"].as_f64()
        );
    }
    value
}

/// Validates a comparison against the committed schema.
pub fn check_comparison(value: &serde_json::Value) {
    check_against(include_str!("../../docs/compare.schema.json"), value);
}

/// Validates an `lt ab --aa` calibration against the committed schema.
pub fn check_calibration(value: &serde_json::Value) {
    check_against(include_str!("../../docs/calibration.schema.json"), value);
}

fn check_against(schema: &str, value: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
