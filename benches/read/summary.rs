//! The summary table printed at the end: each figure's median, ours against its baseline, the ratio and
//! the goal.

use crate::common::{print_table, yes, Row};
use crate::restart::Restart;
use crate::timing::SEEN;
use crate::LOOKUPS;
use std::time::Duration;

fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

/// A row comparing `ours` to `base` (times; `at_most` = goal on ours / base, or `at_least` on base / ours).
fn row(figure: &str, ours: Option<Duration>, base: Option<Duration>, unit: (&str, f64), goal: Goal) -> Row {
    let (name, per) = unit;
    let fmt = |d: Option<Duration>| {
        d.map_or("-".into(), |d| {
            let x = d.as_secs_f64() / per;
            match name {
                "ns/lookup" | "ns/update" => format!("{x:.1} {name}"),
                _ => format!("{:.3} {name}", x),
            }
        })
    };
    let (ratio, goal_s, met) = match (ours, base) {
        (Some(o), Some(b)) => {
            let (o, b) = (o.as_secs_f64(), b.as_secs_f64());
            match goal {
                Goal::AtMost(g) => (format!("{:.2}x", o / b), format!("<= {g}x"), yes(o / b <= g)),
                Goal::AtLeast(g) => (
                    format!("{:.1}x faster", b / o),
                    format!(">= {g}x faster"),
                    yes(b / o >= g),
                ),
                Goal::None => (format!("{:.2}x", o / b), "-".into(), "-".into()),
                Goal::Faster => (format!("{:.1}x faster", b / o), "-".into(), "-".into()),
            }
        }
        _ => ("-".into(), "-".into(), "-".into()),
    };
    Row {
        figure: figure.into(),
        ours: fmt(ours),
        baseline: fmt(base),
        ratio,
        goal: goal_s,
        met,
    }
}

#[derive(Clone, Copy)]
enum Goal {
    /// ours / baseline at most this.
    AtMost(f64),
    /// baseline / ours at least this.
    AtLeast(f64),
    /// No goal: ours / baseline.
    None,
    /// No goal: baseline / ours.
    Faster,
}

pub(crate) fn summary(scan_n: Option<usize>, restart: Option<&Restart>) {
    let seen = SEEN.lock().unwrap();
    let m = |k: &str| seen.get(k).and_then(|v| median(v));
    let mut rows = Vec::new();
    if let Some(n) = scan_n {
        let per_update = ("ns/update", 1e-9 * n as f64);
        let per_lookup = ("ns/lookup", 1e-9 * LOOKUPS as f64);
        rows.push(row(
            &format!("full scan, {n} updates: persisted vs in-memory BytesBatch"),
            m("scan/persisted"),
            m("scan/inmem_bytes"),
            per_update,
            Goal::AtMost(1.1),
        ));
        rows.push(row(
            "full scan: persisted vs in-memory Vector layout (diagnostic)",
            m("scan/persisted"),
            m("scan/inmem_vec"),
            per_update,
            Goal::None,
        ));
        rows.push(row(
            "typed full scan (u64 key, 100-char String val, decoded): persisted vs DD OrdValSpine",
            m("typed_scan/persisted_typed"),
            m("typed_scan/inmem_ordvalspine"),
            per_update,
            Goal::AtMost(1.2),
        ));
        rows.push(row(
            "typed store, byte cursor (no decoding) vs DD OrdValSpine (diagnostic)",
            m("typed_scan/persisted_bytes"),
            m("typed_scan/inmem_ordvalspine"),
            per_update,
            Goal::None,
        ));
        rows.push(row(
            "full scan through cursor_list, both sides (diagnostic)",
            m("scan/persisted_cursor_list"),
            m("scan/inmem_bytes_cursor_list"),
            per_update,
            Goal::None,
        ));
        for what in ["hit", "miss"] {
            rows.push(row(
                &format!("seek_key {what}, fresh cursor per lookup"),
                m(&format!("lookup/seek_fresh_{what}/persisted")),
                m(&format!("lookup/seek_fresh_{what}/inmem_bytes")),
                per_lookup,
                Goal::AtMost(1.5),
            ));
            rows.push(row(
                &format!("Store::get_bytes {what} vs in-memory seek_key"),
                m(&format!("lookup/get_bytes_{what}/persisted")),
                m(&format!("lookup/seek_fresh_{what}/inmem_bytes")),
                per_lookup,
                Goal::AtMost(1.5),
            ));
            rows.push(row(
                &format!("seek_key {what}, sorted keys, one cursor (diagnostic)"),
                m(&format!("lookup/seek_sorted_{what}/persisted")),
                m(&format!("lookup/seek_sorted_{what}/inmem_bytes")),
                per_lookup,
                Goal::None,
            ));
        }
    }
    if let Some(r) = restart {
        let ms = ("ms", 1e-3);
        // The strictest baseline: the faster of the two in-memory rebuilds from a sorted Vec.
        let (bytes, vec) = (median(&r.rebuild_bytes), median(&r.rebuild_vec));
        let (rebuild, which) = match (bytes, vec) {
            (Some(b), Some(v)) if v < b => (Some(v), "Vector"),
            _ => (bytes, "BytesBuilder"),
        };
        let n = r.n;
        let figures = [
            ("open only (warm)", median(&r.open)),
            ("open + first get_bytes (warm)", median(&r.open_get)),
            ("open + trace ready + first seek (warm)", median(&r.open_trace)),
            ("open + first get_bytes (cold)", median(&r.cold_open_get)),
            (
                "open + trace ready + first seek (cold)",
                median(&r.cold_open_trace),
            ),
        ];
        for (what, d) in figures {
            let goal = if what.contains("only") {
                Goal::Faster
            } else {
                Goal::AtLeast(100.0)
            };
            rows.push(row(
                &format!("restart, {n} updates: {what} vs in-memory rebuild ({which})"),
                d,
                rebuild,
                ms,
                goal,
            ));
        }
        for (what, v) in [
            ("BytesBuilder from sorted Vec", &r.rebuild_bytes),
            ("Vector builder from sorted Vec", &r.rebuild_vec),
            ("BytesBatcher from unsorted Vec (sort + build)", &r.batcher),
        ] {
            rows.push(row(
                &format!("in-memory rebuild, {n} updates: {what}"),
                median(v),
                None,
                ms,
                Goal::None,
            ));
        }
        println!(
            "\nRestart store: {} updates, {} batch file(s), {:.1} MB on disk ({:.1} MB WAL); {} samples \
             per figure (median); cold = page cache dropped per file with dd iflag=nocache{}",
            r.n,
            r.batches,
            r.store_bytes as f64 / 1e6,
            r.wal_bytes as f64 / 1e6,
            r.rebuild_bytes.len(),
            if r.cold_ok { "" } else { " (unavailable here)" }
        );
    }
    if rows.is_empty() {
        return;
    }
    println!("\nSummary: median per iteration (warm-up included)\n");
    print_table("ours", "baseline", &rows);
}
