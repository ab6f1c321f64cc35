//! Plain-text tables and number formatting for the terminal reports (`show`, `compare`).

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left.
    Right,
}

enum Row {
    Cells(Vec<String>),
    Line(String),
}

/// A table of columns separated by two spaces, with free lines between its rows.
pub struct Table {
    aligns: Vec<Align>,
    rows: Vec<Row>,
}

impl Table {
    /// An empty table whose columns line up as `aligns` says.
    pub fn new(aligns: &[Align]) -> Table {
        Table {
            aligns: aligns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of cells (missing cells are empty).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows
            .push(Row::Cells(cells.into_iter().map(Into::into).collect()));
    }

    /// Adds a line printed as it is, which does not widen the columns.
    pub fn line(&mut self, text: impl Into<String>) {
        self.rows.push(Row::Line(text.into()));
    }

    /// The table as text, one row a line, without trailing spaces.
    pub fn render(&self) -> String {
        let mut widths = vec![0; self.aligns.len()];
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (i, c) in cells.iter().enumerate() {
                    if i < widths.len() {
                        widths[i] = widths[i].max(width(c));
                    }
                }
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            match row {
                Row::Line(text) => out.push_str(text),
                Row::Cells(cells) => {
                    let mut line = String::new();
                    for (i, w) in widths.iter().enumerate() {
                        let cell = cells.get(i).map(String::as_str).unwrap_or("");
                        if i > 0 {
                            line.push_str("  ");
                        }
                        let pad = " ".repeat(w - width(cell));
                        match self.aligns[i] {
                            Align::Left => {
                                line.push_str(cell);
                                line.push_str(&pad);
                            }
                            Align::Right => {
                                line.push_str(&pad);
                                line.push_str(cell);
                            }
                        }
                    }
                    out.push_str(line.trim_end());
                }
            }
            out.push('\n');
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `text` cut to at most `max` characters, `...` marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut s: String = text.chars().take(keep).collect();
    s.push_str("...");
    s
}

/// A number with about six significant digits and no trailing zeros: `100`, `0.3`,
/// `1.58114`, `1234568`; very large or small magnitudes in exponent form (`1.5e-07`).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-4..15).contains(&mag) {
        let s = format!("{x:.5e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        return format!("{}e{exp}", trim_zeros(mant));
    }
    let decimals = (5 - mag).max(0) as usize;
    trim_zeros(&format!("{x:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A p-value: four decimals, or two significant digits in exponent form below 0.0001.
pub fn p_value(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.2e}")
    } else {
        format!("{p:.4}")
    }
}

/// Seconds as `42s`, `3m05s` or `2h03m05s`.
pub fn duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if secs < 0 {
        format!("{secs}s")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Writes a report to stdout; a closed pipe (`autorun show DIR | head`) is not an error.
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&[Align::Left, Align::Right, Align::Left]);
        t.row(["name", "n", "note"]);
        t.row(["a", "100", ""]);
        t.line("  free line that is longer than the columns");
        t.row(["longer", "5", "x"]);
        assert_eq!(
            t.render(),
            "name      n  note\na       100\n  free line that is longer than the columns\nlonger    5  x\n"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(num(100.0), "100");
        assert_eq!(num(0.30000000000000004), "0.3");
        assert_eq!(num(1.5811388300841898), "1.58114");
        assert_eq!(num(-2.5), "-2.5");
        assert_eq!(num(1234567.8), "1234568");
        assert_eq!(num(1.5e-7), "1.5e-7");
        assert_eq!(num(0.0), "0");
        assert_eq!(p_value(0.0330009899128387), "0.0330");
        assert_eq!(p_value(8.488181527628489e-6), "8.49e-6");
    }

    #[test]
    fn durations_and_truncation() {
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(7385), "2h03m05s");
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abc...");
    }
}
