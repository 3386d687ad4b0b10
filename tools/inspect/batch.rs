//! `inspect batch FILE`: one batch file's footer summary (description, counts, size), its block index,
//! and every update `(key, val, time, diff)` in order, as text tables or as one JSON object.
//!
//! Updates are walked with [`UpdateCursor`], which checks each block as it enters it, so a damaged block
//! ends the output with an error naming the file and offset.

use crate::access::open_batch_path;
use crate::error::ToolResult;
use crate::json::JsonWriter;
use crate::render::{count, frontier, header_row, interval, json_description, Bytes, Widths};
use ddpersist::batch::{BatchFile, UpdateCursor};
use ddpersist::UpdateRef;
use std::io::{self, Write};
use std::path::Path;

const BLOCK_HEADER: [&str; 7] = [
    "BLOCK",
    "OFFSET",
    "BYTES",
    "KEYS",
    "UPDATES",
    "FIRST KEY",
    "LAST KEY",
];
const UPDATE_HEADER: [&str; 4] = ["KEY", "VAL", "TIME", "DIFF"];

/// Prints the batch file at `path`.
pub fn run(path: &Path, json: bool, out: &mut dyn Write) -> ToolResult<()> {
    let batch = open_batch_path(path)?;
    if json {
        write_json(&batch, out)
    } else {
        write_text(&batch, out)
    }
}

/// Calls `f` on every update of `batch`, in order.
fn for_each_update(batch: &BatchFile, mut f: impl FnMut(UpdateRef<'_>) -> ToolResult<()>) -> ToolResult<()> {
    let mut cursor = UpdateCursor::new(batch)?;
    while let Some(update) = cursor.get() {
        f(update)?;
        cursor.step()?;
    }
    Ok(())
}

fn write_text(batch: &BatchFile, out: &mut dyn Write) -> ToolResult<()> {
    write_summary_text(batch, out)?;
    write_blocks_text(batch, out)?;
    write_updates_text(batch, out)
}

fn write_summary_text(batch: &BatchFile, out: &mut dyn Write) -> io::Result<()> {
    let f = batch.footer();
    let d = &f.description;
    writeln!(out, "file {}", batch.name())?;
    writeln!(out, "description {} since {}", interval(d), frontier(d.since))?;
    writeln!(
        out,
        "{} keys, {} vals, {} updates in {}",
        f.key_count,
        f.val_count,
        f.update_count,
        count(u64::from(f.block_count), "block")
    )?;
    writeln!(
        out,
        "{} bytes, block target {} bytes",
        batch.size_bytes(),
        f.block_target_bytes
    )
}

fn write_blocks_text(batch: &BatchFile, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "blocks:")?;
    let rows: Vec<Vec<String>> = (0..batch.block_count()).map(|i| block_row(batch, i)).collect();
    let mut widths = Widths::of_header(&BLOCK_HEADER);
    rows.iter().for_each(|r| widths.fit(r));
    widths.write_row(out, "  ", &header_row(&BLOCK_HEADER))?;
    rows.iter().try_for_each(|r| widths.write_row(out, "  ", r))
}

fn block_row(batch: &BatchFile, i: usize) -> Vec<String> {
    let e = batch.index_entry(i);
    vec![
        i.to_string(),
        e.offset.to_string(),
        e.stored_len.to_string(),
        e.key_count.to_string(),
        e.update_count.to_string(),
        Bytes::of(batch.block_first_key(i)).text(),
        Bytes::of(batch.block_last_key(i)).text(),
    ]
}

/// The updates table: one pass to size the columns, one to print.
fn write_updates_text(batch: &BatchFile, out: &mut dyn Write) -> ToolResult<()> {
    writeln!(out, "updates:")?;
    let mut widths = Widths::of_header(&UPDATE_HEADER);
    for_each_update(batch, |u| {
        widths.fit(&update_row(u));
        Ok(())
    })?;
    widths.write_row(out, "  ", &header_row(&UPDATE_HEADER))?;
    for_each_update(batch, |u| Ok(widths.write_row(out, "  ", &update_row(u))?))
}

fn update_row((key, val, time, diff): UpdateRef<'_>) -> Vec<String> {
    vec![
        Bytes::of(key).text(),
        Bytes::of(val).text(),
        time.to_string(),
        diff.to_string(),
    ]
}

fn write_json(batch: &BatchFile, out: &mut dyn Write) -> ToolResult<()> {
    let mut w = JsonWriter::new(out);
    w.begin_object()?;
    write_summary_json(&mut w, batch)?;
    write_blocks_json(&mut w, batch)?;
    w.key("updates")?;
    w.begin_array()?;
    for_each_update(batch, |u| Ok(write_update_json(&mut w, u)?))?;
    w.end_array()?;
    w.end_object()?;
    Ok(w.finish()?)
}

fn write_summary_json(w: &mut JsonWriter<'_>, batch: &BatchFile) -> io::Result<()> {
    let f = batch.footer();
    w.field_str("file", batch.name())?;
    json_description(w, &f.description)?;
    w.field_u64("key_count", f.key_count)?;
    w.field_u64("val_count", f.val_count)?;
    w.field_u64("update_count", f.update_count)?;
    w.field_u64("block_count", u64::from(f.block_count))?;
    w.field_u64("bytes", batch.size_bytes())?;
    w.field_u64("block_target_bytes", u64::from(f.block_target_bytes))
}

fn write_blocks_json(w: &mut JsonWriter<'_>, batch: &BatchFile) -> io::Result<()> {
    w.key("blocks")?;
    w.begin_array()?;
    for i in 0..batch.block_count() {
        let e = batch.index_entry(i);
        w.begin_object()?;
        w.field_u64("offset", e.offset)?;
        w.field_u64("bytes", u64::from(e.stored_len))?;
        w.field_u64("key_count", u64::from(e.key_count))?;
        w.field_u64("update_count", u64::from(e.update_count))?;
        w.key("first_key")?;
        Bytes::of(batch.block_first_key(i)).json(w)?;
        w.key("last_key")?;
        Bytes::of(batch.block_last_key(i)).json(w)?;
        w.end_object()?;
    }
    w.end_array()
}

fn write_update_json(w: &mut JsonWriter<'_>, (key, val, time, diff): UpdateRef<'_>) -> io::Result<()> {
    w.begin_object()?;
    w.key("key")?;
    Bytes::of(key).json(w)?;
    w.key("val")?;
    Bytes::of(val).json(w)?;
    w.field_u64("time", time)?;
    w.key("diff")?;
    w.i64(diff)?;
    w.end_object()
}
