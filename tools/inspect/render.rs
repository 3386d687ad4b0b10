//! How values are shown: keys and vals (printable UTF-8 in quotes, anything else as hex), frontiers
//! (`closed` for the empty frontier), and plain-text tables with aligned columns.

use crate::json::JsonWriter;
use ddpersist::{Description, FRONTIER_CLOSED};
use std::fmt::Write as _;
use std::io::{self, Write};

/// Widest a table column is padded to; longer cells just overflow.
const MAX_COLUMN_WIDTH: usize = 40;

/// A key or val, classified for display.
pub enum Bytes<'a> {
    /// Valid UTF-8 with no control characters.
    Utf8(&'a str),
    /// Anything else.
    Hex(&'a [u8]),
}

impl<'a> Bytes<'a> {
    /// Classifies `bytes`.
    pub fn of(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) if !s.chars().any(char::is_control) => Bytes::Utf8(s),
            _ => Bytes::Hex(bytes),
        }
    }

    /// For text output: `"quoted"` or `0x…`.
    pub fn text(&self) -> String {
        match self {
            Bytes::Utf8(s) => format!("{s:?}"),
            Bytes::Hex(b) => format!("0x{}", hex(b)),
        }
    }

    /// For JSON output: `{"utf8": "…"}` or `{"hex": "…"}`.
    pub fn json(&self, w: &mut JsonWriter<'_>) -> io::Result<()> {
        w.begin_object()?;
        match self {
            Bytes::Utf8(s) => w.field_str("utf8", s)?,
            Bytes::Hex(b) => w.field_str("hex", &hex(b))?,
        }
        w.end_object()
    }
}

/// Lowercase hex digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A frontier for text output: the number, or `closed`.
pub fn frontier(t: u64) -> String {
    if t == FRONTIER_CLOSED {
        "closed".to_string()
    } else {
        t.to_string()
    }
}

/// Writes member `key` with a frontier: a number, or the string `"closed"`.
pub fn json_frontier(w: &mut JsonWriter<'_>, key: &str, t: u64) -> io::Result<()> {
    w.key(key)?;
    if t == FRONTIER_CLOSED {
        w.string("closed")
    } else {
        w.u64(t)
    }
}

/// `n` and `noun`, plural unless `n` is 1: `1 block`, `3 blocks`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A description's interval for text output: `[lower, upper)`.
pub fn interval(d: &Description) -> String {
    format!("[{}, {})", frontier(d.lower), frontier(d.upper))
}

/// Writes member `"description"`: `{"lower": …, "upper": …, "since": …}`.
pub fn json_description(w: &mut JsonWriter<'_>, d: &Description) -> io::Result<()> {
    w.key("description")?;
    w.begin_object()?;
    json_frontier(w, "lower", d.lower)?;
    json_frontier(w, "upper", d.upper)?;
    json_frontier(w, "since", d.since)?;
    w.end_object()
}

/// Column widths of a text table, grown cell by cell.
#[derive(Clone, Debug, Default)]
pub struct Widths(Vec<usize>);

impl Widths {
    /// Widths that fit `header`.
    pub fn of_header(header: &[&str]) -> Self {
        let mut w = Widths::default();
        w.fit(
            header
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .as_slice(),
        );
        w
    }

    /// Widens the columns to fit `row` (up to [`MAX_COLUMN_WIDTH`]).
    pub fn fit(&mut self, row: &[String]) {
        if self.0.len() < row.len() {
            self.0.resize(row.len(), 0);
        }
        for (w, cell) in self.0.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count().min(MAX_COLUMN_WIDTH));
        }
    }

    /// Writes `row` indented by `indent`, each cell padded to its column (the last one unpadded).
    pub fn write_row(&self, out: &mut dyn Write, indent: &str, row: &[String]) -> io::Result<()> {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = self.0.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        writeln!(out, "{}", line.trim_end())
    }
}

/// A header row as owned cells.
pub fn header_row(header: &[&str]) -> Vec<String> {
    header.iter().map(|h| h.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_utf8_is_quoted_and_the_rest_is_hex() {
        assert_eq!(Bytes::of(b"apple").text(), "\"apple\"");
        assert_eq!(Bytes::of("é \"q\"".as_bytes()).text(), "\"é \\\"q\\\"\"");
        assert_eq!(Bytes::of(b"").text(), "\"\"");
        assert_eq!(Bytes::of(b"a\x00\x01").text(), "0x610001");
        assert_eq!(Bytes::of(b"\xff").text(), "0xff");
        assert_eq!(Bytes::of(b"tab\there").text(), "0x7461620968657265");
    }

    #[test]
    fn closed_frontier_is_named() {
        assert_eq!(frontier(5), "5");
        assert_eq!(frontier(u64::MAX), "closed");
    }

    #[test]
    fn rows_are_aligned() {
        let mut w = Widths::of_header(&["A", "BB"]);
        w.fit(&["xyz".to_string(), "1".to_string()]);
        let mut out = Vec::new();
        w.write_row(&mut out, "  ", &header_row(&["A", "BB"])).unwrap();
        w.write_row(&mut out, "  ", &["xyz".to_string(), "1".to_string()])
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "  A    BB\n  xyz  1\n");
    }
}
