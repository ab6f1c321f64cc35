//! `report.html`: the job folder as one self-contained web page (inline CSS and SVG, no
//! scripts, fonts or other files fetched): a summary, a table of the tests with links to
//! their logs, and a plot per perf key of each test's values per iteration. Written at the
//! end of every job and by `autorun report DIR`, from [`JobResults`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use plotters::prelude::*;

use crate::results::{self, Detail, JobResults, Kind, Node};
use crate::table;

/// Order of the per-status counts: passing first, then by severity.
const STATUS_ORDER: [&str; 10] = [
    "GOOD", "WARN", "FAIL", "ERROR", "ABORT", "TEST_NA", "BUG", "ALERT", "RUNNING", "NOSTATUS",
];

/// Size of one perf plot, in pixels.
const PLOT_SIZE: (u32, u32) = (520, 260);

const CSS: &str = "
body{font-family:sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .5em}
h2{font-size:1.15em;margin:1.5em 0 .5em}
h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.reason{white-space:pre-wrap;max-width:50em}
table.summary th{width:8em}
.status{font-weight:bold;padding:.1em .4em;border-radius:3px;color:#fff;background:#777}
.st-good{background:#2e7d32}
.st-warn{background:#b8860b}
.st-fail{background:#c62828}
.st-error{background:#8e24aa}
.st-abort{background:#4e342e}
.st-test_na{background:#607d8b}
.st-running{background:#1565c0}
.st-nostatus{background:#9e9e9e}
.counts span{margin-right:.6em}
.group{font-style:italic}
.plots{display:flex;flex-wrap:wrap;gap:1em}
.plot{border:1px solid #ddd;padding:.3em}
.plot h4{margin:.2em 0;font-size:.9em;font-family:monospace}
";

/// Writes `<dir>/report.html` from the job folder `dir`, through a temp file and a
/// rename. The status log is read twice, a test at a time (see [`results::scan`]): once for
/// the summary at the top of the page, once for the rows and plots. Nothing is kept of a
/// test once its row and plots are written, so that the job process writing this at its
/// end does not grow with the number of tests.
pub fn write(dir: &Path) -> Result<(), String> {
    let mut counts = Counts::default();
    let job = results::scan(dir, Detail::Log, |n| counts.add(&n)).map_err(|e| e.to_string())?;
    let path = dir.join("report.html");
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let io = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let result = (|| -> Result<(), String> {
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut page = Page::new(std::io::BufWriter::new(file));
        page.head(&job, &counts).map_err(io)?;
        let mut failed = None;
        results::scan(dir, Detail::Iterations, |node| {
            if failed.is_none() {
                failed = page.node(dir, &node).err();
            }
        })
        .map_err(|e| e.to_string())?;
        if let Some(e) = failed {
            return Err(io(e));
        }
        let mut out = page.finish(&counts).map_err(io)?;
        out.flush().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The page for a loaded job.
pub fn render(r: &JobResults) -> String {
    let mut counts = Counts::default();
    for node in &r.nodes {
        counts.add(node);
    }
    let mut page = Page::new(Vec::new());
    let build = || -> std::io::Result<Vec<u8>> {
        page.head(r, &counts)?;
        for node in &r.nodes {
            page.node(&r.dir, node)?;
        }
        page.finish(&counts)
    };
    // Writing into memory cannot fail.
    let bytes = build().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// How many tests and groups, and the tests by status.
#[derive(Debug, Default)]
struct Counts {
    nodes: usize,
    by_status: Vec<(String, usize)>,
}

impl Counts {
    fn add(&mut self, node: &Node) {
        self.nodes += 1;
        if node.kind != Kind::Test {
            return;
        }
        match self.by_status.iter_mut().find(|(s, _)| *s == node.status) {
            Some((_, n)) => *n += 1,
            None => self.by_status.push((node.status.clone(), 1)),
        }
    }
}

/// The page as it is written: the head and summary, a row per node, then the plots,
/// which are written aside (in memory, or a temp file once they grow) until the table
/// is done.
struct Page<W: Write> {
    out: W,
    plots: tempfile::SpooledTempFile,
    any_plot: bool,
}

/// Plots kept in memory up to this size, then in a temp file.
const PLOTS_IN_MEMORY: usize = 1 << 20;

impl<W: Write> Page<W> {
    fn new(out: W) -> Page<W> {
        Page {
            out,
            plots: tempfile::spooled_tempfile(PLOTS_IN_MEMORY),
            any_plot: false,
        }
    }

    fn head(&mut self, r: &JobResults, counts: &Counts) -> std::io::Result<()> {
        let tag = r
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut out = String::with_capacity(8192);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>autorun job {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
             <h1>Job {}</h1>\n",
            esc(&tag),
            esc(&tag)
        );
        summary(&mut out, r, counts);
        out.push_str("<h2>Tests</h2>\n");
        if counts.nodes == 0 {
            out.push_str("<p>No tests ran.</p>\n");
        } else {
            out.push_str(
                "<table class=\"tests\">\n<tr><th>Test</th><th>Status</th><th>Duration</th>\
                 <th>Reason</th><th>Logs</th></tr>\n",
            );
        }
        self.out.write_all(out.as_bytes())
    }

    /// The node's row, and its plots aside.
    fn node(&mut self, dir: &Path, node: &Node) -> std::io::Result<()> {
        let pad = node.depth as f32 * 1.5;
        let (class, name) = match node.kind {
            Kind::Test => ("test", esc(&node.name)),
            Kind::Group => ("group", format!("{} (group)", esc(&node.name))),
        };
        let duration = node.duration().map(table::duration).unwrap_or("-".into());
        let mut row = String::with_capacity(512);
        let _ = writeln!(
            row,
            "<tr class=\"{class}\"><td style=\"padding-left:{:.1}em\">{name}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"reason\">{}</td><td>{}</td></tr>",
            0.6 + pad,
            badge(&node.status),
            esc(&duration),
            esc(&node.reason),
            links(dir, node),
        );
        self.out.write_all(row.as_bytes())?;
        if node.kind == Kind::Test {
            let mut plots = String::new();
            plots_of(&mut plots, node, !self.any_plot);
            if !plots.is_empty() {
                self.any_plot = true;
                self.plots.write_all(plots.as_bytes())?;
            }
        }
        Ok(())
    }

    /// The end of the table, the plots, the end of the page.
    fn finish(mut self, counts: &Counts) -> std::io::Result<W> {
        if counts.nodes > 0 {
            self.out.write_all(b"</table>\n")?;
        }
        self.plots.seek(SeekFrom::Start(0))?;
        std::io::copy(&mut self.plots, &mut self.out)?;
        self.out.write_all(b"</body>\n</html>\n")?;
        Ok(self.out)
    }
}

fn summary(out: &mut String, r: &JobResults, counts: &Counts) {
    let duration = r.duration().map(table::duration).unwrap_or("-".into());
    out.push_str("<table class=\"summary\">\n");
    row(
        out,
        "Tag",
        &esc(&r.dir.file_name().unwrap_or_default().to_string_lossy()),
    );
    let mut status = badge(&r.status);
    if !r.reason.is_empty() {
        let _ = write!(status, " {}", esc(&r.reason));
    }
    row(out, "Status", &status);
    row(out, "Started", &esc(&time(r.started)));
    row(out, "Duration", &esc(&duration));
    let mut by_status: Vec<(&str, usize)> = counts
        .by_status
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    by_status.sort_by_key(|(s, _)| rank(s));
    let total: usize = by_status.iter().map(|(_, n)| n).sum();
    let mut c = format!(
        "<span>{total} test{}</span>",
        if total == 1 { "" } else { "s" }
    );
    for (s, n) in by_status {
        let _ = write!(c, "<span>{n} {}</span>", badge(s));
    }
    row(out, "Tests", &format!("<span class=\"counts\">{c}</span>"));
    out.push_str("</table>\n");
}

fn row(out: &mut String, head: &str, html: &str) {
    let _ = writeln!(out, "<tr><th>{head}</th><td>{html}</td></tr>");
}

/// Links to a test's `status` and `debug/<tagged>.DEBUG`, relative to the job folder,
/// for those that exist.
fn links(dir: &Path, node: &Node) -> String {
    let Some(sub) = &node.subdir else {
        return String::new();
    };
    let tagged = sub.rsplit('/').next().unwrap_or(sub);
    let mut parts = Vec::new();
    for (rel, label) in [
        (format!("{sub}/status"), "status"),
        (format!("{sub}/debug/{tagged}.DEBUG"), "debug"),
    ] {
        if dir.join(&rel).is_file() {
            parts.push(format!("<a href=\"{}\">{label}</a>", esc(&url_path(&rel))));
        }
    }
    parts.join(" ")
}

/// A relative path as a URL path: each byte outside the unreserved set percent-encoded.
fn url_path(rel: &str) -> String {
    let mut s = String::with_capacity(rel.len());
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// A test's plots (after the section's heading when `first`); nothing for a test
/// without perf values.
fn plots_of(out: &mut String, node: &Node, first: bool) {
    let series = perf_series(node);
    if series.is_empty() {
        return;
    }
    if first {
        out.push_str("<h2>Performance</h2>\n");
    }
    let _ = writeln!(out, "<h3>{}</h3>\n<div class=\"plots\">", esc(&node.name));
    for (key, points) in &series {
        let _ = write!(
            out,
            "<div class=\"plot\"><h4>{}</h4>\n{}</div>\n",
            esc(key),
            plot(points)
        );
    }
    out.push_str("</div>\n");
}

/// Each perf key with its finite values as (n, value), n counting the key's values from
/// 1: a test that writes its attr and perf keyvals as separate records (which tko counts
/// as two iterations) still has its values at 1, 2, 3...
fn perf_series(node: &Node) -> BTreeMap<String, Vec<(i32, f64)>> {
    node.perf_samples()
        .into_iter()
        .map(|(k, v)| {
            let points = v.into_iter().zip(1..).map(|(v, i)| (i, v)).collect();
            (k, points)
        })
        .collect()
}

/// One inline `<svg>` of a key's value per iteration; a plot that cannot be drawn is a
/// short note instead.
fn plot(points: &[(i32, f64)]) -> String {
    let mut svg = String::new();
    match draw(&mut svg, points) {
        // The inline SVG of an HTML page needs no namespace; leaving it out keeps the
        // page free of any URL.
        Ok(()) => svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1),
        Err(e) => format!("<p>cannot draw the plot: {}</p>", esc(&e)),
    }
}

fn draw(svg: &mut String, points: &[(i32, f64)]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let x_max = points.iter().map(|p| p.0).max().unwrap_or(1);
    let (mut lo, mut hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let pad = if hi > lo {
        (hi - lo) * 0.1
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    lo -= pad;
    hi += pad;
    {
        let root = SVGBackend::with_string(svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0..x_max + 1, lo..hi)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .x_labels((x_max as usize + 2).min(12))
            .x_label_formatter(&|x| {
                if *x >= 1 && *x <= x_max {
                    x.to_string()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| table::num(*y))
            .draw()
            .map_err(|e| err(&e))?;
        let colour = RGBColor(21, 101, 192);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(())
}

fn rank(s: &str) -> usize {
    STATUS_ORDER
        .iter()
        .position(|o| *o == s)
        .unwrap_or(STATUS_ORDER.len())
}

/// A status as a coloured badge; its class is `st-<status in lower case>`.
fn badge(status: &str) -> String {
    let class: String = status
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("<span class=\"status st-{class}\">{}</span>", esc(status))
}

fn time(ts: Option<i64>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %z")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// Text as HTML: `&`, `<`, `>`, `"` and `'` as entities.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text() {
        assert_eq!(esc("<b>&\"x'"), "&lt;b&gt;&amp;&quot;x&#39;");
        assert_eq!(
            badge("TEST_NA"),
            "<span class=\"status st-test_na\">TEST_NA</span>"
        );
        assert_eq!(url_path("a b/debug/x.DEBUG"), "a%20b/debug/x.DEBUG");
    }

    #[test]
    fn plots_one_svg_without_urls() {
        let svg = plot(&[(1, 1.0), (2, 3.5), (3, 2.0)]);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(!svg.contains("http"), "{svg}");
        // One value, or equal values, still draws.
        assert!(plot(&[(1, 5.0)]).starts_with("<svg"));
    }
}
