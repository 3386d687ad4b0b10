//! From a review: a store written by a release before manifest version 4 (the `batch_v2` fixture's
//! snapshot is version 2) and then committed to by this one must never hold edit objects after a snapshot
//! an older release would read alone (it would see an older state and remove the batch files only the
//! edits name). Fixed: a writable open rewrites an older snapshot as version 4 first.

use crate::common;

use ddpersist::version::edit::parse_edit_name;
use ddpersist::version::{read_manifest, Manifest};
use ddpersist::{Options, Store, StreamOptions};

/// FORMAT.md §3: "always written as 4, so a release that would ignore the edits refuses the store".
/// A store written by the previous release (snapshot version 2/3) and opened by this one with no edits
/// is not rewritten at open; its first commits are edit objects after a version-2 snapshot. A previous
/// release opening it reads the snapshot alone (an older state) and removes the batch files only the
/// edits name as orphans.
#[test]
fn edits_never_follow_a_snapshot_an_older_release_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::copy_fixture("batch_v2", &tmp);
    let store = Store::open_with(
        &dir,
        Options {
            compaction_threads: 0,
            ..Options::default()
        },
    )
    .unwrap();
    store
        .create_stream("new", StreamOptions { durable: true })
        .unwrap();
    store.write("new", &[(1u64, 1u64, 0, 1i64)]).unwrap();
    store.seal("new", 1).unwrap();
    let live = store.manifest();
    drop(store);
    let edits: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| parse_edit_name(n).is_some())
        .collect();
    let snapshot = std::fs::read(dir.join("MANIFEST")).unwrap();
    let version = u32::from_le_bytes(snapshot[8..12].try_into().unwrap());
    // What a release reading only the snapshot (version <= 3) sees.
    let old_view = Manifest::decode(&snapshot, "MANIFEST").unwrap();
    let blob = ddpersist::blob::DirBlob::open(&dir).unwrap();
    assert_eq!(read_manifest(&blob).unwrap().unwrap().manifest, live);
    assert!(
        edits.is_empty() || version >= 4,
        "edits {edits:?} follow a version-{version} snapshot: a release before 4 opens it and sees \
         {} streams instead of {} (the sealed batch of \"new\" is an orphan to it)",
        old_view.streams.len(),
        live.streams.len()
    );
}
