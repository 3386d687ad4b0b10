//! A small streaming JSON emitter (the crate has no serde): objects, arrays, strings with correct
//! escaping, integers and booleans, written straight to the output so large batches need no buffering.
//!
//! The writer tracks only where commas go; callers are trusted to nest begin/end calls properly and to
//! give every object member a key.

use std::io::{self, Write};

/// Writes one JSON document to `out`, compactly.
pub struct JsonWriter<'a> {
    out: &'a mut dyn Write,
    /// One entry per open container: whether nothing was written in it yet.
    first: Vec<bool>,
    /// Whether a key was just written, so the next value needs no separator.
    after_key: bool,
}

impl<'a> JsonWriter<'a> {
    /// A writer emitting to `out`.
    pub fn new(out: &'a mut dyn Write) -> Self {
        JsonWriter {
            out,
            first: Vec::new(),
            after_key: false,
        }
    }

    /// Opens an object (`{`).
    pub fn begin_object(&mut self) -> io::Result<()> {
        self.open(b"{")
    }

    /// Closes the innermost object (`}`).
    pub fn end_object(&mut self) -> io::Result<()> {
        self.close(b"}")
    }

    /// Opens an array (`[`).
    pub fn begin_array(&mut self) -> io::Result<()> {
        self.open(b"[")
    }

    /// Closes the innermost array (`]`).
    pub fn end_array(&mut self) -> io::Result<()> {
        self.close(b"]")
    }

    /// Writes an object member's key; the next call writes its value.
    pub fn key(&mut self, key: &str) -> io::Result<()> {
        self.separator()?;
        write_string(self.out, key)?;
        self.out.write_all(b":")?;
        self.after_key = true;
        Ok(())
    }

    /// Writes a string value.
    pub fn string(&mut self, s: &str) -> io::Result<()> {
        self.value_prefix()?;
        write_string(self.out, s)
    }

    /// Writes an unsigned integer value.
    pub fn u64(&mut self, v: u64) -> io::Result<()> {
        self.value_prefix()?;
        write!(self.out, "{v}")
    }

    /// Writes a signed integer value.
    pub fn i64(&mut self, v: i64) -> io::Result<()> {
        self.value_prefix()?;
        write!(self.out, "{v}")
    }

    /// Writes a boolean value.
    pub fn bool(&mut self, v: bool) -> io::Result<()> {
        self.value_prefix()?;
        self.out.write_all(if v { b"true" } else { b"false" })
    }

    /// Writes member `key` with a string value.
    pub fn field_str(&mut self, key: &str, v: &str) -> io::Result<()> {
        self.key(key)?;
        self.string(v)
    }

    /// Writes member `key` with an unsigned integer value.
    pub fn field_u64(&mut self, key: &str, v: u64) -> io::Result<()> {
        self.key(key)?;
        self.u64(v)
    }

    /// Writes member `key` with a boolean value.
    pub fn field_bool(&mut self, key: &str, v: bool) -> io::Result<()> {
        self.key(key)?;
        self.bool(v)
    }

    /// Ends the document with a newline.
    pub fn finish(self) -> io::Result<()> {
        debug_assert!(self.first.is_empty(), "unclosed JSON container");
        self.out.write_all(b"\n")
    }

    fn open(&mut self, bracket: &[u8]) -> io::Result<()> {
        self.value_prefix()?;
        self.out.write_all(bracket)?;
        self.first.push(true);
        Ok(())
    }

    fn close(&mut self, bracket: &[u8]) -> io::Result<()> {
        self.first.pop();
        self.out.write_all(bracket)
    }

    /// Before a value: nothing right after a key, otherwise a comma unless it is the first item.
    fn value_prefix(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.after_key) {
            return Ok(());
        }
        self.separator()
    }

    fn separator(&mut self) -> io::Result<()> {
        if let Some(first) = self.first.last_mut() {
            if !std::mem::replace(first, false) {
                self.out.write_all(b",")?;
            }
        }
        Ok(())
    }
}

/// Writes `s` as a JSON string literal: quotes, backslashes and control characters escaped.
pub fn write_string(out: &mut dyn Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        if let Some(escape) = escape(c) {
            out.write_all(&s.as_bytes()[plain_from..i])?;
            out.write_all(escape.as_bytes())?;
            plain_from = i + c.len_utf8();
        }
    }
    out.write_all(&s.as_bytes()[plain_from..])?;
    out.write_all(b"\"")
}

/// The escape sequence for `c`, if it needs one inside a JSON string.
fn escape(c: char) -> Option<String> {
    let short = match c {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        '\u{8}' => "\\b",
        '\u{c}' => "\\f",
        c if (c as u32) < 0x20 => return Some(format!("\\u{:04x}", c as u32)),
        _ => return None,
    };
    Some(short.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut JsonWriter<'_>) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        let mut w = JsonWriter::new(&mut buf);
        f(&mut w).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn strings_are_escaped() {
        let s = render(|w| w.string("a\"b\\c\nd\u{1}é\t"));
        assert_eq!(s, r#""a\"b\\c\nd\u0001é\t""#);
    }

    #[test]
    fn commas_go_between_members_and_items() {
        let s = render(|w| {
            w.begin_object()?;
            w.field_u64("a", 1)?;
            w.key("b")?;
            w.begin_array()?;
            w.i64(-2)?;
            w.bool(true)?;
            w.begin_object()?;
            w.end_object()?;
            w.end_array()?;
            w.field_str("c", "x")?;
            w.end_object()
        });
        assert_eq!(s, r#"{"a":1,"b":[-2,true,{}],"c":"x"}"#);
    }
}
