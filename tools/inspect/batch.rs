//! `inspect batch FILE`: one batch file's footer summary (description, counts, size), its block index,
//! and every update `(key, val, time, diff)` in order, as text tables or as one JSON object.
//!
//! Updates are walked with [`UpdateCursor`], which checks each block as it enters it, so a damaged block
//! ends the output with an error naming the file and offset.

use crate::access::open_batch_path;
use crate::error::ToolResult;
use crate::read::Shown;
use crate::render::{
    count, frontier, interval, table, write_json_streamed, write_table, Bytes, DescriptionJson, PagedTable,
    StreamedSeq,
};
use ddpersist::batch::{BatchFile, UpdateCursor};
use ddpersist::UpdateRef;
use serde::Serialize;
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

/// Every update of `batch`, in order; an item is an error when a block fails its checks (and ends the
/// iteration).
fn updates(batch: &BatchFile) -> impl Iterator<Item = ddpersist::Result<UpdateRef<'_>>> {
    let mut cursor = Some(UpdateCursor::new(batch));
    std::iter::from_fn(move || {
        let current = match cursor.as_mut()? {
            Ok(c) => c,
            Err(_) => return cursor.take().and_then(|c| c.err()).map(Err),
        };
        let update = current.get()?;
        // The update borrows the file's mapped bytes, not the cursor.
        let update = (update.0, update.1, update.2, update.3);
        if let Err(e) = current.step() {
            cursor = Some(Err(e));
        }
        Some(Ok(update))
    })
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

fn write_blocks_text(batch: &BatchFile, out: &mut dyn Write) -> ToolResult<()> {
    writeln!(out, "blocks:")?;
    let mut t = table(&BLOCK_HEADER, &[0, 1, 2, 3, 4]);
    let rows = (0..batch.block_count()).map(|i| block_row(batch, i));
    t.add_rows(rows.collect::<ddpersist::Result<Vec<_>>>()?);
    Ok(write_table(out, "  ", &t)?)
}

/// Block `i`'s row of the blocks table. Errors: an index partition that fails its check.
fn block_row(batch: &BatchFile, i: usize) -> ddpersist::Result<Vec<String>> {
    let e = batch.index_entry(i)?;
    Ok(vec![
        i.to_string(),
        e.offset.to_string(),
        e.stored_len.to_string(),
        e.key_count.to_string(),
        e.update_count.to_string(),
        Bytes::of(batch.block_first_key(i)?).text(),
        Bytes::of(batch.block_last_key(i)?).text(),
    ])
}

/// The updates table: one pass to size the columns, one to print.
fn write_updates_text(batch: &BatchFile, out: &mut dyn Write) -> ToolResult<()> {
    writeln!(out, "updates:")?;
    let mut t = PagedTable::new(&UPDATE_HEADER, &[2, 3]);
    for u in updates(batch) {
        t.fit(&update_row(u?, Shown::default()));
    }
    for u in updates(batch) {
        t.push(out, "  ", update_row(u?, Shown::default()))?;
    }
    Ok(t.finish(out, "  ")?)
}

/// An update as table cells, keys and vals shown as `shown` says (also used by `scan`).
pub fn update_row((key, val, time, diff): UpdateRef<'_>, shown: Shown) -> Vec<String> {
    vec![
        shown.key.show(key).text(),
        shown.val.show(val).text(),
        time.to_string(),
        diff.to_string(),
    ]
}

/// A batch file as JSON.
#[derive(Serialize)]
struct BatchJson<'a, S> {
    file: &'a str,
    description: DescriptionJson,
    key_count: u64,
    val_count: u64,
    update_count: u64,
    block_count: u32,
    bytes: u64,
    block_target_bytes: u32,
    blocks: Vec<BlockJson<'a>>,
    updates: &'a S,
}

/// One block of the index.
#[derive(Serialize)]
struct BlockJson<'a> {
    offset: u64,
    bytes: u32,
    key_count: u32,
    update_count: u32,
    first_key: Bytes<'a>,
    last_key: Bytes<'a>,
}

/// An update as JSON.
#[derive(Serialize)]
pub struct UpdateJson<'a> {
    key: Bytes<'a>,
    val: Bytes<'a>,
    time: u64,
    diff: i64,
}

impl<'a> From<UpdateRef<'a>> for UpdateJson<'a> {
    fn from((key, val, time, diff): UpdateRef<'a>) -> Self {
        UpdateJson {
            key: Bytes::of(key),
            val: Bytes::of(val),
            time,
            diff,
        }
    }
}

fn write_json(batch: &BatchFile, out: &mut dyn Write) -> ToolResult<()> {
    let f = batch.footer();
    let blocks = (0..batch.block_count())
        .map(|i| {
            let e = batch.index_entry(i)?;
            Ok(BlockJson {
                offset: e.offset,
                bytes: e.stored_len,
                key_count: e.key_count,
                update_count: e.update_count,
                first_key: Bytes::of(batch.block_first_key(i)?),
                last_key: Bytes::of(batch.block_last_key(i)?),
            })
        })
        .collect::<ddpersist::Result<Vec<_>>>()?;
    let updates = StreamedSeq::new(updates(batch).map(|u| u.map(UpdateJson::from)));
    let doc = BatchJson {
        file: batch.name(),
        description: f.description.into(),
        key_count: f.key_count,
        val_count: f.val_count,
        update_count: f.update_count,
        block_count: f.block_count,
        bytes: batch.size_bytes(),
        block_target_bytes: f.block_target_bytes,
        blocks,
        updates: &updates,
    };
    write_json_streamed(out, &doc, &updates)
}
