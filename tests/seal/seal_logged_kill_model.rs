//! The parent's side of the logged-seal kill loop (`seal_logged_kill.rs`): its model of each stream (the
//! acknowledged updates and upper, unsynced writes that may be lost), the child's `B ...` lines parsed into
//! the operation in flight, and the check of the reopened store against the model: every acknowledged
//! update once, each stream at its state before or after the operation in flight, the sealed batches
//! ordered and disjoint below the upper.

use crate::seal_logged_kill::STREAMS;
use ddpersist::Store;
use std::collections::BTreeMap;

/// The parent's model of one stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stream {
    pub(crate) exists: bool,
    updates: BTreeMap<(u64, u64), i64>,
    pub(crate) upper: u64,
    /// Unsynced writes not made durable yet by a later seal, durable write or sync: may be lost.
    maybe: BTreeMap<(u64, u64), i64>,
}

/// An operation the child began and did not acknowledge.
#[derive(Clone, Debug)]
pub(crate) enum InFlight {
    Write(String, Vec<(u64, u64)>),
    Unsynced(String, Vec<(u64, u64)>),
    Sync,
    Seal(String, u64),
    Append(String, u64, Vec<(u64, u64)>),
    Drop(String),
    Create(String),
}

fn parse_list(s: Option<&str>) -> Vec<(u64, u64)> {
    s.filter(|s| !s.is_empty())
        .map(|s| {
            s.split(',')
                .map(|kt| {
                    let (k, t) = kt.split_once(':').unwrap();
                    (k.parse().unwrap(), t.parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn parse(line: &str) -> Option<InFlight> {
    let mut w = line.split(' ');
    if w.next()? != "B" {
        return None;
    }
    let kind = w.next()?;
    let s = w.next()?.to_string();
    Some(match kind {
        "w" => InFlight::Write(s, parse_list(w.next())),
        "wu" => InFlight::Unsynced(s, parse_list(w.next())),
        "sync" => InFlight::Sync,
        "sl" | "seal" => InFlight::Seal(s, w.next()?.parse().ok()?),
        "ap" => {
            let u = w.next()?.parse().ok()?;
            InFlight::Append(s, u, parse_list(w.next()))
        }
        "drop" => InFlight::Drop(s),
        "create" => InFlight::Create(s),
        _ => return None,
    })
}

/// Makes every unsynced write durable (a seal, a durable write or a sync returned).
fn synced(model: &mut BTreeMap<String, Stream>) {
    for m in model.values_mut() {
        for (kt, d) in std::mem::take(&mut m.maybe) {
            *m.updates.entry(kt).or_insert(0) += d;
        }
    }
}

/// Applies an acknowledged operation to the model.
pub(crate) fn apply(model: &mut BTreeMap<String, Stream>, op: &InFlight) {
    if matches!(
        op,
        InFlight::Write(..) | InFlight::Seal(..) | InFlight::Append(..) | InFlight::Sync
    ) {
        synced(model);
    }
    match op {
        InFlight::Unsynced(s, ups) => {
            let m = model.get_mut(s).unwrap();
            for &(k, t) in ups {
                *m.maybe.entry((k, t)).or_insert(0) += 1;
            }
        }
        InFlight::Sync => {}
        InFlight::Write(s, ups) => {
            let m = model.get_mut(s).unwrap();
            for &(k, t) in ups {
                *m.updates.entry((k, t)).or_insert(0) += 1;
            }
        }
        InFlight::Seal(s, u) => model.get_mut(s).unwrap().upper = *u,
        InFlight::Append(s, u, ups) => {
            let m = model.get_mut(s).unwrap();
            m.upper = *u;
            for &(k, t) in ups {
                *m.updates.entry((k, t)).or_insert(0) += 1;
            }
        }
        InFlight::Drop(s) => {
            model.insert(s.clone(), Stream::default());
        }
        InFlight::Create(s) => {
            model.insert(
                s.clone(),
                Stream {
                    exists: true,
                    ..Stream::default()
                },
            );
        }
    }
}

/// What the store holds of stream `s`, if it exists.
fn actual(store: &Store, s: &str) -> Option<Stream> {
    if !store.has_stream(s) {
        return None;
    }
    let mut updates = BTreeMap::new();
    for (k, v, t, d) in store.snapshot(s).unwrap().decode::<u64, u64>().unwrap() {
        assert_eq!(k, v, "{s}: key {k} with val {v}");
        *updates.entry((k, t)).or_insert(0) += d;
    }
    updates.retain(|_, d| *d != 0);
    Some(Stream {
        exists: true,
        updates,
        upper: store.upper(s).unwrap(),
        maybe: BTreeMap::new(),
    })
}

/// Checks the reopened store against the model and the operation in flight; returns the model with the
/// in-flight operation resolved (applied if it took effect).
pub(crate) fn check(
    store: &Store,
    model: &BTreeMap<String, Stream>,
    inflight: Option<&InFlight>,
    what: &str,
) -> BTreeMap<String, Stream> {
    // Unsynced writes (and an unsynced write in flight) may have survived or not, each whole: those
    // that did become the model's; then the rest is compared exactly.
    let mut model = model.clone();
    let inflight = match inflight {
        Some(InFlight::Unsynced(s, ups)) => {
            let m = model.get_mut(s).unwrap();
            for &(k, t) in ups {
                *m.maybe.entry((k, t)).or_insert(0) += 1;
            }
            None
        }
        Some(InFlight::Sync) => None,
        other => other,
    };
    for s in STREAMS {
        let got = actual(store, s);
        let m = model.get_mut(s).unwrap();
        for (kt, d) in std::mem::take(&mut m.maybe) {
            if let Some(g) = got.as_ref().and_then(|g| g.updates.get(&kt)) {
                assert_eq!(*g, d, "{what}: unsynced update {kt:?} of {s}");
                *m.updates.entry(kt).or_insert(0) += d;
            }
        }
    }
    let model = &model;
    let mut after = model.clone();
    if let Some(op) = inflight {
        let mut applied = model.clone();
        apply(&mut applied, op);
        // Each stream must equal its state before or after the in-flight op (per stream, as an op
        // touches one stream only).
        for s in STREAMS {
            let got = actual(store, s);
            let before = &model[s];
            let with = &applied[s];
            let matches = |m: &Stream| match &got {
                None => !m.exists,
                Some(g) => m.exists && g.updates == m.updates && g.upper == m.upper,
            };
            // A write or append whose update landed but an append's seal... an append is atomic.
            if matches(with) {
                after.insert(s.to_string(), with.clone());
            } else {
                assert!(
                    matches(before),
                    "{what}: stream {s} is neither its state before the op in flight {op:?} nor after it\n\
                     got {got:?}\nbefore {before:?}\nafter {with:?}"
                );
            }
        }
    } else {
        for s in STREAMS {
            let got = actual(store, s);
            let m = &model[s];
            match &got {
                None => assert!(!m.exists, "{what}: stream {s} lost"),
                Some(g) => {
                    assert!(m.exists, "{what}: stream {s} exists, dropped");
                    assert_eq!(g.upper, m.upper, "{what}: upper of {s}");
                    assert_eq!(g.updates, m.updates, "{what}: updates of {s}");
                }
            }
        }
    }
    // The sealed batches are ordered and disjoint, below the upper (a seal with no update writes none).
    for s in STREAMS {
        if !store.has_stream(s) {
            continue;
        }
        let sealed = store.sealed(s).unwrap();
        let mut at = 0;
        for b in &sealed.batches {
            let d = b.description();
            assert!(
                d.lower >= at && d.upper > d.lower,
                "{what}: batches of {s} overlap at {at}: {d:?}"
            );
            at = d.upper;
        }
        assert!(
            at <= sealed.upper,
            "{what}: batches of {s} end at {at}, upper {}",
            sealed.upper
        );
    }
    after
}
