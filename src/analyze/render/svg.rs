//! Dependency-free SVG line charts for the Markdown reports.
//!
//! One fixed layout, deterministic bytes (so a report diff shows only data changes), and no
//! input that can break the document: non-finite or absurdly large points are dropped, text is
//! escaped, and an empty chart says "no data" instead of drawing nonsense axes.

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 360.0;
const PLOT_LEFT: f64 = 70.0;
const PLOT_TOP: f64 = 40.0;
const PLOT_RIGHT: f64 = 640.0;
const PLOT_BOTTOM: f64 = 310.0;
const LEGEND_X: f64 = 655.0;
const LEGEND_ROW: f64 = 18.0;
/// Legend names longer than this would run off the canvas.
const LEGEND_CHARS: usize = 18;
const LEGEND_ROWS: usize = 14;

/// Okabe–Ito, reordered so the first colours are the most distinct on white; the yellow
/// is last because it is hard to see on a white background.
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// Beyond this the axis arithmetic (span, nice step × tick count) could overflow to
/// infinity; no latency or rate comes anywhere near it.
const MAX_ABS: f64 = 1e300;

/// One line on a chart. Points are drawn in the given order; a non-finite point breaks the
/// line, so a window without data shows as a gap rather than a straight bridge.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Linear,
    /// x values are percentiles in [0, 100), plotted at log10(1/(1-p/100)) as HdrHistogram's
    /// plotter does, so 90%, 99%, 99.9% … are evenly spaced. Points outside [0, 100) are dropped.
    PercentileLog,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_axis: XAxis,
    pub series: Vec<Series>,
}

/// Renders `chart` as a complete standalone SVG 1.1 document.
pub fn render(chart: &Chart) -> String {
    let lines: Vec<Vec<Vec<(f64, f64)>>> = chart
        .series
        .iter()
        .map(|s| segments(&s.points, chart.x_axis))
        .collect();
    let mut out = String::new();
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" \
         font-size=\"12\">\n"
    ));
    out.push_str(&format!(
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>\n"
    ));
    push_labels(&mut out, chart);
    match Axes::fit(&lines, chart.x_axis) {
        Some(axes) => {
            push_grid(&mut out, &axes);
            for (i, segs) in lines.iter().enumerate() {
                push_series(&mut out, &axes, segs, i);
            }
        }
        None => push_no_data(&mut out),
    }
    push_frame(&mut out);
    push_legend(&mut out, &chart.series);
    out.push_str("</svg>\n");
    out
}

/// Splits a series into runs of plottable points, x already mapped for the axis kind.
fn segments(points: &[(f64, f64)], x_axis: XAxis) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &(x, y) in points {
        match (axis_x(x, x_axis), plottable(y)) {
            (Some(x), Some(y)) => {
                if let Some(run) = runs.last_mut() {
                    run.push((x, y));
                }
            }
            _ => runs.push(Vec::new()),
        }
    }
    runs.retain(|run| !run.is_empty());
    runs
}

fn plottable(v: f64) -> Option<f64> {
    (v.is_finite() && v.abs() <= MAX_ABS).then_some(v)
}

fn axis_x(x: f64, x_axis: XAxis) -> Option<f64> {
    match x_axis {
        XAxis::Linear => plottable(x),
        XAxis::PercentileLog => percentile_x(x),
    }
}

/// Maps a percentile to the HdrHistogram plot position: 0% → 0, 90% → 1, 99% → 2, ….
fn percentile_x(p: f64) -> Option<f64> {
    if !(0.0..100.0).contains(&p) {
        return None;
    }
    let t = -(1.0 - p / 100.0).log10();
    // 1 - p/100 can round to a value whose log is -0.0 at p = 0.
    plottable(t.max(0.0))
}

/// A value range and its labelled ticks; `lo < hi` always holds.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// Ticks at 1/2/5 × 10^k, about five of them (three to ten), with the range widened to
    /// whole steps.
    fn linear(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            let pad = (lo.abs() * 0.1).max(0.5);
            (lo - pad, hi + pad)
        };
        let step = nice_step((hi - lo) / 5.0);
        // The epsilon keeps 0.30000000000000004 / 0.1 from adding an empty extra step.
        let first = (lo / step + 1e-9).floor() as i64;
        let last = ((hi / step - 1e-9).ceil() as i64).max(first + 1);
        let ticks: Vec<(f64, String)> = (first..=last)
            .map(|k| {
                let v = k as f64 * step;
                (v, format_tick(v))
            })
            .collect();
        Axis {
            lo: first as f64 * step,
            hi: last as f64 * step,
            ticks,
        }
    }

    /// Decade ticks on the percentile axis: "0%", "90%", "99%", "99.9%", ….
    fn percentile(t_max: f64) -> Axis {
        let decades = (t_max - 1e-9).ceil().max(1.0) as u32;
        // More than ~8 labels would collide; thin them instead.
        let every = decades.div_ceil(8);
        let ticks = (0..=decades)
            .step_by(every as usize)
            .map(|k| (f64::from(k), percentile_label(k)))
            .collect();
        Axis {
            lo: 0.0,
            hi: f64::from(decades),
            ticks,
        }
    }

    fn scale(&self, v: f64, from: f64, to: f64) -> f64 {
        from + (v - self.lo) / (self.hi - self.lo) * (to - from)
    }
}

fn percentile_label(decade: u32) -> String {
    match decade {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        k => format!("99.{}%", "9".repeat(k as usize - 2)),
    }
}

/// The one of 1, 2, 5 × 10^k nearest `raw` on a log scale. Nearest rather than "at least"
/// keeps the axis from overshooting: 0..119 gets steps of 20 ending at 120, not 50 ending
/// at 150 with a fifth of the plot empty.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    let distance = |n: f64| (n * magnitude / raw).ln().abs();
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .min_by(|a, b| distance(*a).total_cmp(&distance(*b)))
        .unwrap_or(1.0);
    nice * magnitude
}

/// Compact tick label: "0", "2.5", "1k", "20k", "1.5M", "0.002", "1e300".
fn format_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !v.is_finite() {
        return "0".to_string();
    }
    if !(1e-4..1e15).contains(&a) {
        return scientific(v);
    }
    let (div, suffix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|&(d, _)| a >= d)
        .unwrap_or((1.0, ""));
    format!("{}{suffix}", round_significant(v / div, 4))
}

/// Rounds to `digits` significant digits; the result prints via `Display` without float noise
/// because it is the double nearest a short decimal.
fn round_significant(v: f64, digits: i32) -> f64 {
    let shift = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    let r = (v * shift).round() / shift;
    if r.is_finite() {
        r
    } else {
        v
    }
}

fn scientific(v: f64) -> String {
    let s = format!("{v:.3e}");
    match s.split_once('e') {
        Some((mantissa, exp)) if mantissa.contains('.') => {
            let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
            format!("{mantissa}e{exp}")
        }
        _ => s,
    }
}

/// Both axes, fitted to every plottable point of every series.
struct Axes {
    x: Axis,
    y: Axis,
}

impl Axes {
    fn fit(lines: &[Vec<Vec<(f64, f64)>>], x_axis: XAxis) -> Option<Axes> {
        let mut points = lines.iter().flatten().flatten();
        let &(x0, y0) = points.next()?;
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (x0, x0, y0, y0);
        for &(x, y) in points {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        let x = match x_axis {
            XAxis::Linear => Axis::linear(x_lo, x_hi),
            XAxis::PercentileLog => Axis::percentile(x_hi),
        };
        // Rates and latencies are read against zero; a floating baseline exaggerates change.
        let (y_lo, y_hi) = (y_lo.min(0.0), y_hi.max(0.0));
        // All zeros: show 0..1 rather than a centred range that invents negative values.
        let y_hi = if y_hi > y_lo { y_hi } else { 1.0 };
        let y = Axis::linear(y_lo, y_hi);
        Some(Axes { x, y })
    }

    fn px(&self, x: f64) -> f64 {
        self.x.scale(x, PLOT_LEFT, PLOT_RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        self.y.scale(y, PLOT_BOTTOM, PLOT_TOP)
    }
}

/// A coordinate rounded to 0.1 px: enough for any screen, and short, stable text.
fn coord(v: f64) -> String {
    let r = ((v * 10.0).round() / 10.0).clamp(-WIDTH, 2.0 * WIDTH);
    // Avoids "-0", which is valid but noisy in diffs.
    format!("{}", if r == 0.0 { 0.0 } else { r })
}

fn push_labels(out: &mut String, chart: &Chart) {
    let mid_x = coord((PLOT_LEFT + PLOT_RIGHT) / 2.0);
    let mid_y = coord((PLOT_TOP + PLOT_BOTTOM) / 2.0);
    out.push_str(&format!(
        "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        coord(WIDTH / 2.0),
        escape(&chart.title)
    ));
    out.push_str(&format!(
        "<text x=\"{mid_x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
        coord(HEIGHT - 12.0),
        escape(&chart.x_label)
    ));
    out.push_str(&format!(
        "<text x=\"16\" y=\"{mid_y}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {mid_y})\">{}</text>\n",
        escape(&chart.y_label)
    ));
}

fn push_grid(out: &mut String, axes: &Axes) {
    out.push_str("<g stroke=\"#dddddd\" stroke-width=\"1\">\n");
    for (v, _) in &axes.x.ticks {
        let x = coord(axes.px(*v));
        out.push_str(&format!(
            "<line x1=\"{x}\" y1=\"{PLOT_TOP}\" x2=\"{x}\" y2=\"{PLOT_BOTTOM}\"/>\n"
        ));
    }
    for (v, _) in &axes.y.ticks {
        let y = coord(axes.py(*v));
        out.push_str(&format!(
            "<line x1=\"{PLOT_LEFT}\" y1=\"{y}\" x2=\"{PLOT_RIGHT}\" y2=\"{y}\"/>\n"
        ));
    }
    out.push_str("</g>\n<g fill=\"#333333\">\n");
    for (v, label) in &axes.x.ticks {
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            coord(axes.px(*v)),
            coord(PLOT_BOTTOM + 16.0),
            escape(label)
        ));
    }
    for (v, label) in &axes.y.ticks {
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            coord(PLOT_LEFT - 6.0),
            coord(axes.py(*v) + 4.0),
            escape(label)
        ));
    }
    out.push_str("</g>\n");
}

/// Colour, and a dash pattern once the palette wraps so the ninth series is not a twin of
/// the first.
fn stroke(index: usize) -> String {
    let colour = PALETTE[index % PALETTE.len()];
    if index < PALETTE.len() {
        format!("stroke=\"{colour}\"")
    } else {
        format!("stroke=\"{colour}\" stroke-dasharray=\"6 3\"")
    }
}

fn push_series(out: &mut String, axes: &Axes, segments: &[Vec<(f64, f64)>], index: usize) {
    let stroke = stroke(index);
    for seg in segments {
        if let [(x, y)] = seg.as_slice() {
            // A lone point has no line to draw; a dot keeps it visible.
            out.push_str(&format!(
                "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"none\" {stroke} stroke-width=\"2\"/>\n",
                coord(axes.px(*x)),
                coord(axes.py(*y))
            ));
            continue;
        }
        let points: Vec<String> = seg
            .iter()
            .map(|(x, y)| format!("{},{}", coord(axes.px(*x)), coord(axes.py(*y))))
            .collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" {stroke} stroke-width=\"2\" stroke-linejoin=\"round\" points=\"{}\"/>\n",
            points.join(" ")
        ));
    }
}

fn push_no_data(out: &mut String) {
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#777777\">no data</text>\n",
        coord((PLOT_LEFT + PLOT_RIGHT) / 2.0),
        coord((PLOT_TOP + PLOT_BOTTOM) / 2.0)
    ));
}

fn push_frame(out: &mut String) {
    out.push_str(&format!(
        "<rect x=\"{PLOT_LEFT}\" y=\"{PLOT_TOP}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333333\"/>\n",
        PLOT_RIGHT - PLOT_LEFT,
        PLOT_BOTTOM - PLOT_TOP
    ));
}

fn push_legend(out: &mut String, series: &[Series]) {
    for (i, s) in series.iter().take(LEGEND_ROWS).enumerate() {
        let y = PLOT_TOP + 8.0 + i as f64 * LEGEND_ROW;
        out.push_str(&format!(
            "<line x1=\"{LEGEND_X}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" {} stroke-width=\"2\"/>\n",
            LEGEND_X + 20.0,
            stroke(i)
        ));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">{}</text>\n",
            LEGEND_X + 26.0,
            y + 4.0,
            escape(&shorten(&s.name))
        ));
    }
    if series.len() > LEGEND_ROWS {
        let y = PLOT_TOP + 8.0 + LEGEND_ROWS as f64 * LEGEND_ROW;
        out.push_str(&format!(
            "<text x=\"{LEGEND_X}\" y=\"{}\">+{} more</text>\n",
            y + 4.0,
            series.len() - LEGEND_ROWS
        ));
    }
}

/// Cuts on characters, not bytes, so a multi-byte name cannot split a code point.
fn shorten(name: &str) -> String {
    if name.chars().count() <= LEGEND_CHARS {
        return name.to_string();
    }
    let mut s: String = name.chars().take(LEGEND_CHARS - 1).collect();
    s.push('…');
    s
}

/// Escapes XML text and attribute values. Control characters other than tab and newline are
/// dropped because XML 1.0 forbids them even as character references.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small well-formedness check: balanced tags, one root `svg` with the SVG namespace,
    /// only known entities, no raw `<` in text, and no NaN/inf anywhere.
    fn assert_well_formed(doc: &str) {
        assert!(!doc.contains("NaN"), "NaN in {doc}");
        assert!(!doc.contains("inf"), "inf in {doc}");
        assert!(
            doc.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "root: {doc}"
        );
        let mut stack: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open]);
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "'<' inside tag {tag}");
            check_text(tag);
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
            } else {
                let name = tag.split([' ', '/', '\n']).next().unwrap();
                assert!(!name.is_empty(), "empty tag name");
                if stack.is_empty() {
                    roots += 1;
                }
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        check_text(rest);
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert_eq!(roots, 1, "one root element");
    }

    fn check_text(text: &str) {
        let mut rest = text;
        while let Some(at) = rest.find('&') {
            rest = &rest[at..];
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| rest.starts_with(e));
            assert!(ok, "raw '&' at {rest}");
            rest = &rest[1..];
        }
    }

    fn chart(x_axis: XAxis, series: Vec<Series>) -> Chart {
        Chart {
            title: "Throughput".into(),
            x_label: "time (s)".into(),
            y_label: "events/s".into(),
            x_axis,
            series,
        }
    }

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    fn tick_values(axis: &Axis) -> Vec<f64> {
        axis.ticks.iter().map(|t| t.0).collect()
    }

    fn tick_labels(axis: &Axis) -> Vec<&str> {
        axis.ticks.iter().map(|t| t.1.as_str()).collect()
    }

    #[test]
    fn checker_rejects_broken_documents() {
        let bad = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><g></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\">a & b</svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><line x1=\"NaN\"/></svg>",
        ];
        for doc in bad {
            let caught = std::panic::catch_unwind(|| assert_well_formed(doc)).is_err();
            assert!(caught, "checker accepted {doc}");
        }
    }

    #[test]
    fn typical_chart_is_well_formed_with_lines_and_legend() {
        let c = chart(
            XAxis::Linear,
            vec![
                series("sent", &[(0.0, 100.0), (1.0, 120.0), (2.0, 90.0)]),
                series("ok", &[(0.0, 95.0), (1.0, 110.0), (2.0, 88.0)]),
            ],
        );
        let doc = render(&c);
        assert_well_formed(&doc);
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains(">sent</text>") && doc.contains(">ok</text>"));
        assert!(doc.contains(PALETTE[0]) && doc.contains(PALETTE[1]));
        assert!(doc.contains("fill=\"#ffffff\""));
        assert!(!doc.contains("no data"));
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let mut c = chart(
            XAxis::Linear,
            vec![series("a<b>&\"c\"", &[(0.0, 1.0), (1.0, 2.0)])],
        );
        c.title = "p99 & 'tail' <ms>".into();
        c.x_label = "x \"quoted\"".into();
        c.y_label = "y\u{1}bell".into();
        let doc = render(&c);
        assert_well_formed(&doc);
        assert!(
            doc.contains("p99 &amp; &apos;tail&apos; &lt;ms&gt;"),
            "{doc}"
        );
        assert!(doc.contains("a&lt;b&gt;&amp;&quot;c&quot;"), "{doc}");
        assert!(doc.contains("x &quot;quoted&quot;"), "{doc}");
        assert!(doc.contains(">ybell<"), "control char kept: {doc}");
    }

    #[test]
    fn nice_ticks_cover_the_data() {
        // (lo, hi) → expected tick values
        let table: &[(f64, f64, &[f64])] = &[
            (0.0, 7.3, &[0.0, 2.0, 4.0, 6.0, 8.0]),
            (0.0, 100.0, &[0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
            (0.0, 1.0, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
            (
                0.0,
                23_000.0,
                &[0.0, 5_000.0, 10_000.0, 15_000.0, 20_000.0, 25_000.0],
            ),
            (-3.0, 3.0, &[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]),
            (0.0, 119.0, &[0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0]),
            (10.0, 20.0, &[10.0, 12.0, 14.0, 16.0, 18.0, 20.0]),
        ];
        for &(lo, hi, expected) in table {
            let axis = Axis::linear(lo, hi);
            let got = tick_values(&axis);
            assert_eq!(got.len(), expected.len(), "{lo}..{hi}: {got:?}");
            for (g, e) in got.iter().zip(expected) {
                assert!((g - e).abs() < 1e-9, "{lo}..{hi}: {got:?}");
            }
            assert!(axis.lo <= lo && axis.hi >= hi);
        }
    }

    #[test]
    fn nice_step_is_nearest_1_2_5() {
        assert_eq!(nice_step(1.46), 2.0);
        assert_eq!(nice_step(3.0), 2.0);
        assert_eq!(nice_step(4.0), 5.0);
        assert_eq!(nice_step(8.0), 10.0);
        assert_eq!(nice_step(20.0), 20.0);
        assert_eq!(nice_step(23.8), 20.0);
        assert!((nice_step(0.013) - 0.01).abs() < 1e-12);
        assert!((nice_step(0.017) - 0.02).abs() < 1e-12);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
    }

    #[test]
    fn tick_labels_are_compact() {
        let table = [
            (0.0, "0"),
            (2.5, "2.5"),
            (0.1 + 0.2, "0.3"),
            (1_000.0, "1k"),
            (20_000.0, "20k"),
            (1_500_000.0, "1.5M"),
            (2e9, "2G"),
            (0.002, "0.002"),
            (-2_500.0, "-2.5k"),
            (1e300, "1e300"),
            (2.5e-7, "2.5e-7"),
        ];
        for (v, want) in table {
            assert_eq!(format_tick(v), want, "{v}");
        }
    }

    #[test]
    fn percentile_axis_maps_nines_to_decades() {
        assert_eq!(percentile_x(0.0), Some(0.0));
        let at = |p: f64| percentile_x(p).unwrap();
        assert!((at(90.0) - 1.0).abs() < 1e-9);
        assert!((at(99.0) - 2.0).abs() < 1e-9);
        assert!((at(99.9) - 3.0).abs() < 1e-9);
        assert!((at(50.0) - 2f64.log10()).abs() < 1e-9);
        for outside in [100.0, 120.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(percentile_x(outside), None, "{outside}");
        }
        let axis = Axis::percentile(3.2);
        assert_eq!(tick_labels(&axis), ["0%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(axis.hi, 4.0);
    }

    #[test]
    fn percentile_axis_thins_labels_for_many_nines() {
        let axis = Axis::percentile(15.5);
        assert!(axis.ticks.len() <= 9, "{:?}", tick_labels(&axis));
        assert_eq!(axis.ticks.first().map(|t| t.1.as_str()), Some("0%"));
    }

    #[test]
    fn percentile_chart_places_99_at_two_decades() {
        let c = chart(
            XAxis::PercentileLog,
            vec![series(
                "response",
                &[(0.0, 1.0), (90.0, 2.0), (99.0, 5.0), (100.0, 9.0)],
            )],
        );
        let doc = render(&c);
        assert_well_formed(&doc);
        // Axis spans 0..2 decades over 70..640 px: 99% lands on the right edge.
        assert!(doc.contains("640,"), "{doc}");
        assert!(doc.contains(">99%<") && doc.contains(">90%<"));
        // The 100% point is dropped, so y tops out at the 99% value.
        assert!(doc.contains(">5<"), "{doc}");
        assert!(!doc.contains(">10<"), "{doc}");
    }

    #[test]
    fn y_axis_starts_at_zero_for_positive_data() {
        let c = chart(
            XAxis::Linear,
            vec![series("p50", &[(0.0, 50.0), (1.0, 100.0)])],
        );
        let y = Axes::fit(&[segments(&c.series[0].points, c.x_axis)], c.x_axis)
            .unwrap()
            .y;
        assert_eq!(y.ticks.first().map(|t| t.0), Some(0.0));
        assert_well_formed(&render(&c));
    }

    #[test]
    fn coordinates_have_at_most_one_decimal() {
        let c = chart(
            XAxis::Linear,
            vec![series(
                "s",
                &[(0.0, 1.0 / 3.0), (0.7, 2.0 / 3.0), (1.9, 0.1 + 0.2)],
            )],
        );
        let doc = render(&c);
        let points = doc
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for number in points.split([' ', ',']) {
            let decimals = number.split_once('.').map_or(0, |(_, f)| f.len());
            assert!(decimals <= 1, "{number} in {points}");
        }
    }

    #[test]
    fn empty_inputs_say_no_data() {
        let cases = [
            chart(XAxis::Linear, vec![]),
            chart(XAxis::Linear, vec![series("empty", &[])]),
            chart(
                XAxis::PercentileLog,
                vec![series("all 100%", &[(100.0, 3.0)])],
            ),
            chart(
                XAxis::Linear,
                vec![series("junk", &[(f64::NAN, 1.0), (1.0, f64::INFINITY)])],
            ),
        ];
        for c in &cases {
            let doc = render(c);
            assert_well_formed(&doc);
            assert!(doc.contains(">no data<"), "{doc}");
            assert!(!doc.contains("<polyline"));
        }
    }

    #[test]
    fn single_point_is_a_dot() {
        let doc = render(&chart(XAxis::Linear, vec![series("one", &[(5.0, 5.0)])]));
        assert_well_formed(&doc);
        assert_eq!(doc.matches("<circle").count(), 1);
        assert!(!doc.contains("no data"));
    }

    #[test]
    fn flat_and_zero_series_still_have_an_axis() {
        for y in [0.0, 7.0, -7.0] {
            let doc = render(&chart(
                XAxis::Linear,
                vec![series("flat", &[(0.0, y), (1.0, y), (2.0, y)])],
            ));
            assert_well_formed(&doc);
            assert_eq!(doc.matches("<polyline").count(), 1, "y={y}");
            assert_eq!(
                doc.contains(">-"),
                y < 0.0,
                "negative ticks for y={y}: {doc}"
            );
        }
    }

    #[test]
    fn non_finite_points_break_the_line() {
        let doc = render(&chart(
            XAxis::Linear,
            vec![series(
                "gappy",
                &[
                    (0.0, 1.0),
                    (1.0, 2.0),
                    (2.0, f64::NAN),
                    (3.0, 2.0),
                    (4.0, 1.0),
                ],
            )],
        ));
        assert_well_formed(&doc);
        assert_eq!(doc.matches("<polyline").count(), 2);
    }

    #[test]
    fn huge_values_are_plotted_or_dropped_never_inf() {
        let doc = render(&chart(
            XAxis::Linear,
            vec![
                series("big", &[(0.0, 1e12), (1e12, 3e14)]),
                series("absurd", &[(0.0, f64::MAX), (1.0, -f64::MAX), (2.0, 1e300)]),
            ],
        ));
        assert_well_formed(&doc);
        assert!(doc.contains(">1e300<"), "{doc}");
    }

    #[test]
    fn many_series_wrap_palette_and_legend() {
        let many: Vec<Series> = (0..20)
            .map(|i| {
                series(
                    &format!("series number {i} with a long name"),
                    &[(0.0, 1.0), (1.0, 2.0)],
                )
            })
            .collect();
        let doc = render(&chart(XAxis::Linear, many));
        assert_well_formed(&doc);
        assert!(doc.contains("stroke-dasharray"));
        assert!(doc.contains(">+6 more<"));
        assert!(doc.contains("series number 0 w…"), "{doc}");
    }

    #[test]
    fn output_is_deterministic() {
        let c = chart(
            XAxis::Linear,
            vec![
                series("a", &[(0.0, 1.0), (1.0, 2.5)]),
                series("b", &[(0.0, 3.0)]),
            ],
        );
        assert_eq!(render(&c), render(&c.clone()));
    }
}
