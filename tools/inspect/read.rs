//! `inspect get DIR STREAM KEY --as-of T` and `inspect scan DIR STREAM [--from K] [--to K] [--limit N]`:
//! what a reader of the store sees, through the library's own read path ([`Store::get_bytes`] and
//! [`Store::snapshot`]) on a read-only view of the directory ([`crate::view`]). Both include unsealed
//! updates: spilled runs, and WAL records of durable streams not yet sealed.
//!
//! [`Store::get_bytes`]: ddpersist::Store::get_bytes
//! [`Store::snapshot`]: ddpersist::Store::snapshot

use crate::batch::update_row;
use crate::error::ToolResult;
use crate::render::{
    count, frontier, table, write_json, write_json_streamed, write_table, As, Bytes, Frontier, PagedTable,
    StreamedSeq,
};
use crate::view::open_read_only;
use ddpersist::{Result, UpdateRef};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// How keys and vals are shown (`--key-as`, `--val-as`; [`As`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Shown {
    /// Keys.
    pub key: As,
    /// Vals.
    pub val: As,
}

/// Which keys `scan` prints.
#[derive(Clone, Debug, Default)]
pub struct KeyRange {
    /// First key (inclusive).
    pub from: Option<Vec<u8>>,
    /// Keys from this one on are not printed (exclusive).
    pub to: Option<Vec<u8>>,
    /// Print at most this many updates.
    pub limit: Option<u64>,
}

impl KeyRange {
    /// The updates of `updates` (sorted by key) in the range, up to the limit. Updates before `from` are
    /// read and skipped.
    fn select<'a>(
        &'a self,
        updates: impl Iterator<Item = Result<UpdateRef<'a>>> + 'a,
    ) -> impl Iterator<Item = Result<UpdateRef<'a>>> + 'a {
        let limit = self
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        updates
            .skip_while(move |u| matches!((u, &self.from), (Ok(u), Some(from)) if u.0 < from.as_slice()))
            .take_while(move |u| !matches!((u, &self.to), (Ok(u), Some(to)) if u.0 >= to.as_slice()))
            .take(limit)
    }
}

/// `get` as JSON.
#[derive(Serialize)]
struct GetJson<'a> {
    stream: &'a str,
    key: Bytes<'a>,
    as_of: u64,
    values: Vec<ValJson<'a>>,
}

/// One val and its multiplicity.
#[derive(Serialize)]
struct ValJson<'a> {
    val: Bytes<'a>,
    diff: i64,
}

/// Prints the `(val, diff)` pairs of `key` in `stream` as of `as_of`.
pub fn get(
    dir: &Path,
    stream: &str,
    key: &[u8],
    as_of: u64,
    shown: Shown,
    json: bool,
    out: &mut dyn Write,
) -> ToolResult<()> {
    let view = open_read_only(dir)?;
    let vals = view.store.get_bytes(stream, key, as_of)?;
    if json {
        let values = vals
            .iter()
            .map(|(v, d)| ValJson {
                val: shown.val.show(v),
                diff: *d,
            })
            .collect();
        let doc = GetJson {
            stream,
            key: shown.key.show(key),
            as_of,
            values,
        };
        return write_json(out, &doc);
    }
    writeln!(
        out,
        "stream {stream:?}, key {} as of {as_of}: {}",
        shown.key.show(key).text(),
        count(vals.len() as u64, "value")
    )?;
    if !vals.is_empty() {
        let mut t = table(&["VAL", "DIFF"], &[1]);
        t.add_rows(
            vals.iter()
                .map(|(v, d)| vec![shown.val.show(v).text(), d.to_string()]),
        );
        write_table(out, "  ", &t)?;
    }
    Ok(())
}

/// `scan` as JSON.
#[derive(Serialize)]
struct ScanJson<'a, S> {
    stream: &'a str,
    /// The stream's sealed upper: updates at earlier times are sealed.
    upper: Frontier,
    from: Option<Bytes<'a>>,
    to: Option<Bytes<'a>>,
    limit: Option<u64>,
    updates: &'a S,
}

/// An update of a scan.
#[derive(Serialize)]
struct ScanUpdateJson<'a> {
    key: Bytes<'a>,
    val: Bytes<'a>,
    time: u64,
    diff: i64,
    /// Whether it is in a sealed batch (its time is below the upper).
    sealed: bool,
}

const SCAN_HEADER: [&str; 5] = ["KEY", "VAL", "TIME", "DIFF", "SEALED"];

/// Prints the updates of `stream`'s snapshot whose keys are in `range`, in key order.
pub fn scan(
    dir: &Path,
    stream: &str,
    range: &KeyRange,
    shown: Shown,
    json: bool,
    out: &mut dyn Write,
) -> ToolResult<()> {
    let view = open_read_only(dir)?;
    let snapshot = view.store.snapshot(stream)?;
    let upper = snapshot.upper();
    if json {
        let updates = StreamedSeq::new(range.select(snapshot.iter()?).map(|u| {
            u.map(|(key, val, time, diff)| ScanUpdateJson {
                key: shown.key.show(key),
                val: shown.val.show(val),
                time,
                diff,
                sealed: time < upper,
            })
        }));
        let doc = ScanJson {
            stream,
            upper: Frontier(upper),
            from: range.from.as_deref().map(|k| shown.key.show(k)),
            to: range.to.as_deref().map(|k| shown.key.show(k)),
            limit: range.limit,
            updates: &updates,
        };
        return write_json_streamed(out, &doc, &updates);
    }
    let row = |u: UpdateRef<'_>| {
        let mut cells = update_row(u, shown);
        cells.push(if u.2 < upper { "yes" } else { "no" }.to_string());
        cells
    };
    writeln!(
        out,
        "stream {stream:?}: updates in key order (sealed below {}; from {}, {} and the WAL)",
        frontier(upper),
        count(snapshot.batches().len() as u64, "batch file"),
        count(snapshot.spills().len() as u64, "spilled run")
    )?;
    // Two passes over the snapshot: one to size the columns, one to print.
    let mut t = PagedTable::new(&SCAN_HEADER, &[2, 3]);
    let mut shown = 0u64;
    for u in range.select(snapshot.iter()?) {
        t.fit(&row(u?));
        shown += 1;
    }
    for u in range.select(snapshot.iter()?) {
        t.push(out, "  ", row(u?))?;
    }
    t.finish(out, "  ")?;
    let limited = range.limit.is_some_and(|l| shown == l);
    let note = if limited { " (the limit)" } else { "" };
    writeln!(out, "{}{note}", count(shown, "update"))?;
    Ok(())
}
