//! How values are shown: keys and vals (printable UTF-8 in quotes, anything else as hex), frontiers
//! (`closed` for the empty frontier), JSON documents (serde), and plain-text tables (comfy-table).

use crate::error::{ToolError, ToolResult};
use comfy_table::{CellAlignment, ColumnConstraint, Table, TableStyle, Width};
use ddpersist::{Description, FRONTIER_CLOSED};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, Write};

/// A key or val, classified for display.
#[derive(Clone, Debug)]
pub enum Bytes<'a> {
    /// Valid UTF-8 with no control characters.
    Utf8(&'a str),
    /// Anything else.
    Hex(&'a [u8]),
    /// A value decoded with the library's `String` codec (`--key-as string`, `--val-as string`).
    Str(String),
    /// A value decoded with the library's `u64` codec.
    U64(u64),
    /// A value decoded with the library's `i64` codec.
    I64(i64),
}

impl<'a> Bytes<'a> {
    /// Classifies `bytes`.
    pub fn of(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) if !s.chars().any(char::is_control) => Bytes::Utf8(s),
            _ => Bytes::Hex(bytes),
        }
    }

    /// For text output: `"quoted"` (Rust string escapes), `0x…`, or the decoded number.
    pub fn text(&self) -> String {
        match self {
            Bytes::Utf8(s) => format!("{s:?}"),
            Bytes::Str(s) => format!("{s:?}"),
            Bytes::Hex(b) => format!("0x{}", hex(b)),
            Bytes::U64(n) => n.to_string(),
            Bytes::I64(n) => n.to_string(),
        }
    }
}

/// In JSON: `{"utf8": "…"}`, `{"hex": "…"}`, or for a decoded value `{"string": "…"}`, `{"u64": n}`,
/// `{"i64": n}`.
impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self {
            Bytes::Utf8(text) => map.serialize_entry("utf8", text)?,
            Bytes::Hex(b) => map.serialize_entry("hex", &hex(b))?,
            Bytes::Str(text) => map.serialize_entry("string", text)?,
            Bytes::U64(n) => map.serialize_entry("u64", n)?,
            Bytes::I64(n) => map.serialize_entry("i64", n)?,
        }
        map.end()
    }
}

/// How `get` and `scan` read key arguments and show keys or vals (`--key-as`, `--val-as`): as raw bytes,
/// or as values of one of the library's codecs (`ddpersist::codec`, FORMAT.md §1), the encoding typed
/// streams and arrangements store: a `String` key `apple` is stored as `apple` then `00 01`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum As {
    /// The bytes themselves: UTF-8 text in quotes, anything else as hex.
    #[default]
    Raw,
    /// `String` (also `Vec<u8>` holding UTF-8).
    String,
    /// `u64` (also `usize`).
    U64,
    /// `i64` (also `isize`).
    I64,
}

impl As {
    /// The stored bytes of the value `text` spells; `Err` names what is wrong with it.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, String> {
        use ddpersist::codec::Codec;
        match self {
            As::Raw => Ok(text.as_bytes().to_vec()),
            As::String => Ok(text.to_string().to_bytes()),
            As::U64 => text
                .parse::<u64>()
                .map(|n| n.to_bytes())
                .map_err(|e| format!("not a u64: {e}")),
            As::I64 => text
                .parse::<i64>()
                .map(|n| n.to_bytes())
                .map_err(|e| format!("not an i64: {e}")),
        }
    }

    /// `bytes` for display: decoded when they are exactly one value of the codec, else as raw bytes
    /// ([`Bytes::of`]), so that nothing stored is hidden.
    pub fn show(self, bytes: &[u8]) -> Bytes<'_> {
        use ddpersist::codec::Codec;
        let decoded = match self {
            As::Raw => None,
            As::String => String::decode(bytes).ok().map(Bytes::Str),
            As::U64 => u64::decode(bytes).ok().map(Bytes::U64),
            As::I64 => i64::decode(bytes).ok().map(Bytes::I64),
        };
        decoded.unwrap_or_else(|| Bytes::of(bytes))
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

/// Bytes from hex digits (an optional `0x` prefix, even length); `None` when they are not hex.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if !digits.len().is_multiple_of(2) || !digits.is_ascii() {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// A frontier: in JSON a number, or the string `"closed"` for the empty frontier.
#[derive(Clone, Copy, Debug)]
pub struct Frontier(pub u64);

impl Serialize for Frontier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == FRONTIER_CLOSED {
            s.serialize_str("closed")
        } else {
            s.serialize_u64(self.0)
        }
    }
}

/// A frontier for text output: the number, or `closed`.
pub fn frontier(t: u64) -> String {
    if t == FRONTIER_CLOSED {
        "closed".to_string()
    } else {
        t.to_string()
    }
}

/// A batch description in JSON: `{"lower": …, "upper": …, "since": …}`.
#[derive(Serialize)]
pub struct DescriptionJson {
    /// Lower frontier.
    pub lower: Frontier,
    /// Upper frontier.
    pub upper: Frontier,
    /// Since frontier.
    pub since: Frontier,
}

impl From<Description> for DescriptionJson {
    fn from(d: Description) -> Self {
        DescriptionJson {
            lower: Frontier(d.lower),
            upper: Frontier(d.upper),
            since: Frontier(d.since),
        }
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

/// Writes `value` as one line of compact JSON.
pub fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> ToolResult<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// A JSON array written straight from an iterator of fallible items, so that large outputs need no
/// buffering. A failing item ends the document; [`StreamedSeq::take_error`] then returns that failure.
pub struct StreamedSeq<I> {
    items: RefCell<Option<I>>,
    error: RefCell<Option<ddpersist::Error>>,
}

impl<I> StreamedSeq<I> {
    /// An array of `items`' elements (serialized once).
    pub fn new(items: I) -> Self {
        StreamedSeq {
            items: RefCell::new(Some(items)),
            error: RefCell::new(None),
        }
    }

    /// The item error that cut the array short, if any.
    pub fn take_error(&self) -> Option<ddpersist::Error> {
        self.error.borrow_mut().take()
    }
}

impl<T: Serialize, I: Iterator<Item = ddpersist::Result<T>>> Serialize for StreamedSeq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items = self.items.borrow_mut().take();
        let mut seq = s.serialize_seq(None)?;
        for item in items.into_iter().flatten() {
            match item {
                Ok(v) => seq.serialize_element(&v)?,
                Err(e) => {
                    let shown = S::Error::custom(&e);
                    *self.error.borrow_mut() = Some(e);
                    return Err(shown);
                }
            }
        }
        seq.end()
    }
}

/// Writes `value` (which holds `seq`) as JSON; a failure of one of `seq`'s items is returned as itself.
pub fn write_json_streamed<T: Serialize, I>(
    out: &mut dyn Write,
    value: &T,
    seq: &StreamedSeq<I>,
) -> ToolResult<()> {
    let written = write_json(out, value);
    match seq.take_error() {
        Some(e) => Err(ToolError::Store(e)),
        None => written,
    }
}

/// Table style: a dashed line under the header, columns two spaces apart, nothing else.
const STYLE: TableStyle =
    TableStyle::new().header_separator(comfy_table::LineStyle::none().fill('-').junction(' '));

/// Cell padding (left, right): with the blank column junction, columns are two spaces apart.
const PADDING: (u16, u16) = (0, 1);

/// A table with `header`; the columns whose index is in `right` are right-aligned (numbers).
pub fn table(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.set_header(header.to_vec());
    style(&mut t, right);
    t
}

/// Applies the style, the padding and the alignment of the columns in `right` to `t`'s columns.
fn style(t: &mut Table, right: &[usize]) {
    t.load_style(STYLE);
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding(PADDING);
        if right.contains(&i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Writes `table` with every line indented by `indent`.
pub fn write_table(out: &mut dyn Write, indent: &str, table: &Table) -> io::Result<()> {
    for line in table.lines() {
        writeln!(out, "{indent}{}", line.trim_end())?;
    }
    Ok(())
}

/// Rows a [`PagedTable`] holds before it writes them.
const PAGE_ROWS: usize = 1024;

/// A table too long to hold in memory (every update of a batch or a stream): the caller sizes the
/// columns in a first pass over the rows ([`PagedTable::fit`]), then pushes them again in a second pass;
/// they are written a page at a time, aligned to the widths of the first pass.
pub struct PagedTable<'a> {
    header: &'a [&'a str],
    right: &'a [usize],
    widths: Vec<usize>,
    rows: Vec<Vec<String>>,
    pages: usize,
}

impl<'a> PagedTable<'a> {
    /// An empty table with `header`, the columns in `right` right-aligned.
    pub fn new(header: &'a [&'a str], right: &'a [usize]) -> Self {
        let widths = header.iter().map(|h| h.chars().count()).collect();
        PagedTable {
            header,
            right,
            widths,
            rows: Vec::new(),
            pages: 0,
        }
    }

    /// First pass: widens the columns to fit `row`.
    pub fn fit(&mut self, row: &[String]) {
        for (w, cell) in self.widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    /// Second pass: adds `row`, writing a full page.
    pub fn push(&mut self, out: &mut dyn Write, indent: &str, row: Vec<String>) -> io::Result<()> {
        self.rows.push(row);
        if self.rows.len() == PAGE_ROWS {
            self.flush(out, indent)?;
        }
        Ok(())
    }

    /// Writes the rows not yet written (and the header, if nothing was written yet).
    pub fn finish(mut self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        self.flush(out, indent)
    }

    fn flush(&mut self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        if self.pages > 0 && self.rows.is_empty() {
            return Ok(());
        }
        let mut t = Table::new();
        if self.pages == 0 {
            t.set_header(self.header.to_vec());
        }
        // Later pages: same columns, without the header.
        t.add_rows(self.rows.drain(..));
        // An absolute width counts the padding too.
        let pad = usize::from(PADDING.0 + PADDING.1);
        let fixed =
            |w: &usize| ColumnConstraint::Absolute(Width::Fixed(u16::try_from(w + pad).unwrap_or(u16::MAX)));
        t.set_constraints(self.widths.iter().map(fixed));
        style(&mut t, self.right);
        self.pages += 1;
        write_table(out, indent, &t)
    }
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
        let json = serde_json::to_string(&[Bytes::of(b"a\"b"), Bytes::of(b"\xff")]).unwrap();
        assert_eq!(json, r#"[{"utf8":"a\"b"},{"hex":"ff"}]"#);
    }

    #[test]
    fn hex_parses_back() {
        assert_eq!(parse_hex("ff006b"), Some(vec![0xff, 0, 0x6b]));
        assert_eq!(parse_hex("0x0A"), Some(vec![10]));
        assert_eq!(parse_hex(""), Some(vec![]));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex("éé"), None);
    }

    #[test]
    fn closed_frontier_is_named() {
        assert_eq!(frontier(5), "5");
        assert_eq!(frontier(u64::MAX), "closed");
        assert_eq!(
            serde_json::to_string(&[Frontier(5), Frontier(u64::MAX)]).unwrap(),
            r#"[5,"closed"]"#
        );
    }

    #[test]
    fn pages_align_like_one_table() {
        let rows: Vec<Vec<String>> = (0..PAGE_ROWS + 3)
            .map(|i| vec![format!("k{i}"), i.to_string()])
            .collect();
        let mut t = PagedTable::new(&["KEY", "N"], &[1]);
        rows.iter().for_each(|r| t.fit(r));
        let mut out = Vec::new();
        for r in rows {
            t.push(&mut out, "  ", r).unwrap();
        }
        t.finish(&mut out, "  ").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), PAGE_ROWS + 3 + 2, "{text}");
        assert!(lines[0].starts_with("  ") && lines[0].contains("KEY"), "{text}");
        assert!(lines[1].contains("---"), "{text}");
        // Every data row has the same width (numbers right-aligned under N).
        let width = lines[2].len();
        assert!(lines[2..].iter().all(|l| l.len() == width), "{text}");
    }

    #[test]
    fn codec_values_round_trip_and_the_rest_shows_raw() {
        for (codec, text) in [
            (As::String, "apple"),
            (As::U64, "18446744073709551615"),
            (As::I64, "-7"),
        ] {
            let bytes = codec.encode(text).unwrap();
            let shown = codec.show(&bytes).text();
            let want = if codec == As::String {
                format!("{text:?}")
            } else {
                text.to_string()
            };
            assert_eq!(shown, want, "{codec:?}");
        }
        assert_eq!(As::String.encode("a").unwrap(), b"a\x00\x01");
        assert_eq!(As::Raw.encode("a").unwrap(), b"a");
        // Not one value of the codec: shown as the raw bytes.
        assert_eq!(As::U64.show(b"abc").text(), "\"abc\"");
        assert_eq!(As::String.show(b"apple").text(), "\"apple\"");
        assert_eq!(As::I64.show(&[0u8; 9]).text(), format!("0x{}", "00".repeat(9)));
        assert!(As::U64.encode("-1").is_err() && As::I64.encode("x").is_err());
    }
}
