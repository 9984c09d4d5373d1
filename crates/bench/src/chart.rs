//! The comparison's output: a markdown table with ratios to a baseline
//! system, and one PNG bar chart per metric (plotters, bitmap backend, text
//! through ab_glyph from a TrueType file given at run time, so no system
//! font lookup is needed).
//!
//! Input rows are `system,metric,value`; the metric column is the column
//! title as shown (`CPU s / 1M samples`), so the table needs no mapping.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Error;

/// One measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub system: String,
    pub metric: String,
    pub value: f64,
}

/// Parses `system,metric,value` lines; a first line whose value is not a
/// number is a header; blank lines and `#` comments are skipped.
pub fn parse_csv(text: &str) -> Result<Vec<Row>, Error> {
    let mut out = Vec::new();
    for (idx, (n, line)) in crate::content_lines(text).enumerate() {
        let parts: Vec<&str> = line.rsplitn(3, ',').collect();
        let [value, metric, system] = parts[..] else {
            return Err(Error::Invalid(format!("csv line {n}: want system,metric,value: {line}")));
        };
        match value.trim().parse::<f64>() {
            Ok(v) => out.push(Row { system: system.trim().into(), metric: metric.trim().into(), value: v }),
            Err(_) if idx == 0 => {}
            Err(_) => return Err(Error::Invalid(format!("csv line {n}: {value:?} is not a number"))),
        }
    }
    Ok(out)
}

fn unique<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in it {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The baseline's name among `systems`: an exact match, else the first that starts with it.
fn baseline_of<'a>(systems: &[&'a str], baseline: &str) -> Option<&'a str> {
    systems.iter().find(|s| **s == baseline).or_else(|| systems.iter().find(|s| s.starts_with(baseline))).copied()
}

fn lookup(rows: &[Row], system: &str, metric: &str) -> Option<f64> {
    rows.iter().find(|r| r.system == system && r.metric == metric).map(|r| r.value)
}

/// A value with about three significant digits.
pub fn fmt_value(v: f64) -> String {
    match v.abs() {
        x if x >= 1000.0 || x == 0.0 => format!("{v:.0}"),
        x if x >= 10.0 => format!("{v:.1}"),
        x if x >= 0.1 => format!("{v:.3}"),
        _ => format!("{v:.2e}"),
    }
}

/// `value / baseline`, when both exist and the baseline is not zero.
pub fn ratio(value: f64, baseline: Option<f64>) -> Option<f64> {
    baseline.filter(|b| *b != 0.0 && b.is_finite()).map(|b| value / b)
}

/// Metrics as rows, systems as columns, each cell `value (ratio x)`.
pub fn markdown(rows: &[Row], baseline: &str) -> String {
    let systems = unique(rows.iter().map(|r| r.system.as_str()));
    let metrics = unique(rows.iter().map(|r| r.metric.as_str()));
    let base = baseline_of(&systems, baseline);
    let mut out = format!("| metric | {} |\n|---|{}\n", systems.join(" | "), "---|".repeat(systems.len()));
    for m in &metrics {
        let base_v = base.and_then(|b| lookup(rows, b, m));
        let cells: Vec<String> = systems
            .iter()
            .map(|s| match lookup(rows, s, m) {
                None => "-".into(),
                Some(v) => match ratio(v, base_v) {
                    Some(r) => format!("{} ({r:.2}x)", fmt_value(v)),
                    None => fmt_value(v),
                },
            })
            .collect();
        out.push_str(&format!("| {m} | {} |\n", cells.join(" | ")));
    }
    if let Some(b) = base {
        out.push_str(&format!("\nRatios are to {b} in the same run (lower is better for costs and latencies).\n"));
    }
    out
}

/// A file name for a metric: lower case, runs of other characters as `-`.
pub fn slug(metric: &str) -> String {
    let mut out = String::new();
    for c in metric.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

fn register_font(path: &Path) -> Result<(), Error> {
    FONT.get_or_init(|| {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("font {}: {e} (install fonts-dejavu-core or pass --font FILE.ttf)", path.display()))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
            .map_err(|_| format!("font {}: not a TrueType font", path.display()))
    })
    .clone()
    .map_err(Error::Chart)
}

/// One bar chart per metric in `dir` (`<slug>.png`), bars labelled with the
/// value and the ratio to the baseline. Returns the files written.
pub fn render_pngs(rows: &[Row], baseline: &str, dir: &Path, font: &Path) -> Result<Vec<PathBuf>, Error> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    register_font(font)?;
    std::fs::create_dir_all(dir)?;
    let systems = unique(rows.iter().map(|r| r.system.as_str()));
    let base = baseline_of(&systems, baseline);
    let mut written = Vec::new();
    let chart_err = |e: &dyn std::fmt::Display| Error::Chart(e.to_string());
    for metric in unique(rows.iter().map(|r| r.metric.as_str())) {
        let bars: Vec<(usize, &str, f64)> = systems
            .iter()
            .enumerate()
            .filter_map(|(i, s)| lookup(rows, s, metric).map(|v| (i, *s, v)))
            .filter(|(_, _, v)| v.is_finite())
            .collect();
        if bars.is_empty() {
            continue;
        }
        let base_v = base.and_then(|b| lookup(rows, b, metric));
        let top = bars.iter().map(|b| b.2).fold(0.0_f64, f64::max).max(f64::MIN_POSITIVE) * 1.25;
        let path = dir.join(format!("{}.png", slug(metric)));
        {
            let root = BitMapBackend::new(&path, (900, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| chart_err(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(metric, ("sans-serif", 24))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d((0..systems.len() - 1).into_segmented(), 0.0..top)
                .map_err(|e| chart_err(&e))?;
            let names: Vec<String> = systems.iter().map(|s| s.to_string()).collect();
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(systems.len())
                .x_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .y_label_formatter(&|v| fmt_value(*v))
                .label_style(("sans-serif", 15))
                .draw()
                .map_err(|e| chart_err(&e))?;
            let palette = [RGBColor(66, 133, 244), RGBColor(219, 68, 55), RGBColor(244, 180, 0), RGBColor(15, 157, 88)];
            chart
                .draw_series(bars.iter().map(|&(i, _, v)| {
                    let color = palette[i % palette.len()];
                    let mut bar = Rectangle::new(
                        [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), v)],
                        color.filled(),
                    );
                    bar.set_margin(0, 0, 12, 12);
                    bar
                }))
                .map_err(|e| chart_err(&e))?;
            chart
                .draw_series(bars.iter().map(|&(i, _, v)| {
                    let label = match ratio(v, base_v) {
                        Some(r) => format!("{} ({r:.2}x)", fmt_value(v)),
                        None => fmt_value(v),
                    };
                    let style =
                        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
                    Text::new(label, (SegmentValue::CenterOf(i), v + top * 0.02), style)
                }))
                .map_err(|e| chart_err(&e))?;
            root.present().map_err(|e| chart_err(&e))?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "system,metric,value\n\
        prometheus 2.42.0,CPU s / 1M samples,2.0\n\
        pharos up,CPU s / 1M samples,0.5\n\
        pharos up,bytes / sample on disk,0.4\n\
        prometheus 2.42.0,bytes / sample on disk,8\n\
        victoriametrics,CPU s / 1M samples,0.8\n";

    #[test]
    fn csv_with_header_and_commas_only_as_separators() {
        let rows = parse_csv(CSV).unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[1], Row { system: "pharos up".into(), metric: "CPU s / 1M samples".into(), value: 0.5 });
        assert!(parse_csv("a,b,c\nx,y,notanumber\n").is_err());
        assert!(parse_csv("just one field\n").is_err());
    }

    #[test]
    fn markdown_has_ratios_to_the_baseline_and_dashes_for_gaps() {
        let md = markdown(&parse_csv(CSV).unwrap(), "prometheus");
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| metric | prometheus 2.42.0 | pharos up | victoriametrics |");
        assert_eq!(lines[1], "|---|---|---|---|");
        assert_eq!(lines[2], "| CPU s / 1M samples | 2.000 (1.00x) | 0.500 (0.25x) | 0.800 (0.40x) |");
        assert_eq!(lines[3], "| bytes / sample on disk | 8.000 (1.00x) | 0.400 (0.05x) | - |");
        assert!(md.contains("Ratios are to prometheus 2.42.0"));
        let no_base = markdown(&parse_csv(CSV).unwrap(), "nothing");
        assert!(no_base.contains("| bytes / sample on disk | 8.000 | 0.400 | - |"), "{no_base}");
    }

    #[test]
    fn numbers_and_names() {
        assert_eq!(fmt_value(1234.5), "1234");
        assert_eq!(fmt_value(12.34), "12.3");
        assert_eq!(fmt_value(0.4567), "0.457");
        assert_eq!(fmt_value(0.0012), "1.20e-3");
        assert_eq!(ratio(1.0, Some(0.0)), None);
        assert_eq!(ratio(1.0, Some(4.0)), Some(0.25));
        assert_eq!(slug("CPU s / 1M samples"), "cpu-s-1m-samples");
        assert_eq!(slug("query p99 (ms), heavy"), "query-p99-ms-heavy");
    }

    #[test]
    fn pngs_are_written_when_a_font_is_available() {
        let font = Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
        let dir = tempfile::tempdir().unwrap();
        let rows = parse_csv(CSV).unwrap();
        if !font.exists() {
            assert!(render_pngs(&rows, "prometheus", dir.path(), font).is_err());
            return;
        }
        let files = render_pngs(&rows, "prometheus", dir.path(), font).unwrap();
        assert_eq!(files.len(), 2);
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{}", f.display());
        }
    }
}
