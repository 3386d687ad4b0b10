use super::*;
use crate::blob::MemBlob;
use crate::version::manifest::BatchMeta;

fn stream(no: u32, id: &str, upper: u64, files: &[u64]) -> StreamMeta {
    StreamMeta {
        stream_no: no,
        id: id.into(),
        upper,
        since: 0,
        durable: true,
        finished: false,
        batches: files
            .iter()
            .enumerate()
            .map(|(i, &file_no)| BatchMeta {
                file_no,
                level: 0,
                lower: i as u64,
                upper: i as u64 + 1,
                since: 0,
                update_count: 1,
                size_bytes: 100,
                fingerprint: 7,
            })
            .collect(),
        spills: Vec::new(),
        spilled_lsn: 0,
        types: "key u64, val u64".into(),
    }
}

fn base() -> Manifest {
    let mut m = Manifest::new(0x5EED, 5, 10, 3);
    for s in [
        stream(0, "a", 1, &[1]),
        stream(1, "b", 2, &[2, 3]),
        stream(2, "c", 0, &[]),
    ] {
        m.push_stream(s.into());
    }
    m
}

/// `old` edited into a new generation: "a" sealed further, "b" removed, "d" created.
fn edited(old: &Manifest) -> Manifest {
    let mut new = old.clone();
    new.generation += 1;
    new.next_file_no = 12;
    new.next_stream_no = 4;
    new.streams[0] = stream(0, "a", 2, &[1, 11]).into();
    new.streams.remove(1);
    new.streams.push_back(stream(3, "d", 0, &[]).into());
    new
}

#[test]
fn an_edit_holds_what_changed_and_applies_to_the_next_manifest() {
    let old = base();
    let new = edited(&old);
    let edit = ManifestEdit::between(&old, &new);
    assert_eq!(edit.removed, vec!["b".to_string()]);
    let changed: Vec<&str> = edit.changed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(changed, ["a", "d"]);
    let decoded = ManifestEdit::decode(&edit.encode(), "E").unwrap();
    assert_eq!(decoded, edit);
    let mut applied = old.clone();
    decoded.apply(&mut applied, "E").unwrap();
    assert_eq!(applied, new);
    // Not the next generation, or another store's: corruption.
    assert!(decoded.apply(&mut applied, "E").unwrap_err().is_corruption());
    let mut other = old.clone();
    other.store_id = 1;
    assert!(decoded.apply(&mut other, "E").unwrap_err().is_corruption());
}

/// `between` finds an edit's changes by walking both stream lists in step; entries reordered (which no
/// edit does) fall back to matching by id, with the same result. Entries copied on write but left equal
/// are unchanged.
#[test]
fn between_walks_in_step_and_falls_back_to_ids() {
    let old = base();
    let new = edited(&old);
    assert!(ManifestEdit::walk(&old, &new).is_some());
    let mut same = old.clone();
    same.generation += 1;
    Arc::make_mut(&mut same.streams[1]).upper += 0;
    assert!(!Arc::ptr_eq(&same.streams[1], &old.streams[1]));
    let edit = ManifestEdit::between(&old, &same);
    assert!(edit.changed.is_empty() && edit.removed.is_empty());
    // "c" moved before "a" and changed: matched by id.
    let mut reordered = edited(&old);
    let c = reordered.streams.remove(1);
    Arc::make_mut(&mut reordered.streams[0]).since = 1;
    reordered.streams.push_front(Arc::new(StreamMeta {
        upper: 5,
        ..(*c).clone()
    }));
    assert!(ManifestEdit::walk(&old, &reordered).is_none());
    let edit = ManifestEdit::between(&old, &reordered);
    assert_eq!(edit.removed, vec!["b".to_string()]);
    let changed: Vec<&str> = edit.changed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(changed, ["c", "a", "d"]);
    let mut applied = old.clone();
    edit.apply(&mut applied, "E").unwrap();
    let ids = |m: &Manifest| -> Vec<(String, u64, u64)> {
        let mut ids: Vec<_> = m
            .streams
            .iter()
            .map(|s| (s.id.clone(), s.upper, s.since))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&applied), ids(&reordered));
}

#[test]
fn damaged_edits_are_corruption_and_newer_ones_too_new() {
    let old = base();
    let bytes = ManifestEdit::between(&old, &edited(&old)).encode();
    for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        assert!(
            ManifestEdit::decode(&bad, "E").unwrap_err().is_corruption(),
            "flip at {at}"
        );
    }
    for cut in [0, 10, bytes.len() - 1] {
        assert!(ManifestEdit::decode(&bytes[..cut], "E").is_err(), "cut at {cut}");
    }
    let mut newer = bytes.clone();
    newer[8] = 2;
    let n = newer.len() - 8;
    let sum = checksum(&newer[..n]);
    newer[n..].copy_from_slice(&sum.to_le_bytes());
    assert!(matches!(
        ManifestEdit::decode(&newer, "E"),
        Err(Error::VersionTooNew { found: 2, .. })
    ));
}

#[test]
fn the_manifest_is_the_snapshot_and_its_edits_in_order() {
    let blob = MemBlob::new();
    assert!(read_manifest(&blob).unwrap().is_none());
    let m0 = base();
    blob.set(MANIFEST_NAME, &m0.encode()).unwrap();
    let m1 = edited(&m0);
    let mut m2 = m1.clone();
    m2.generation += 1;
    Arc::make_mut(&mut m2.streams[1]).upper = 9;
    // A stale edit (at or below the snapshot's generation) is ignored and reported.
    blob.set(&edit_name(4), b"left over").unwrap();
    blob.set(&edit_name(6), &ManifestEdit::between(&m0, &m1).encode())
        .unwrap();
    blob.set(&edit_name(7), &ManifestEdit::between(&m1, &m2).encode())
        .unwrap();
    let read = read_manifest(&blob).unwrap().unwrap();
    assert_eq!(read.manifest, m2);
    assert_eq!(read.snapshot_generation, 5);
    assert_eq!(read.edits.iter().map(|e| e.0).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(read.stale, vec![edit_name(4)]);
    // A gap is damage.
    blob.delete(&edit_name(6)).unwrap();
    let err = read_manifest(&blob).unwrap_err();
    assert!(
        err.is_corruption() && err.to_string().contains(&edit_name(7)),
        "{err}"
    );
    // An edit naming a file twice across streams leaves an inconsistent manifest: corruption.
    let mut bad = m1.clone();
    Arc::make_mut(&mut bad.streams[1]).batches = stream(3, "d", 1, &[11]).batches;
    Arc::make_mut(&mut bad.streams[1]).upper = 1;
    blob.set(&edit_name(6), &ManifestEdit::between(&m0, &bad).encode())
        .unwrap();
    blob.delete(&edit_name(7)).unwrap();
    assert!(read_manifest(&blob).unwrap_err().is_corruption());
}

#[test]
fn edit_names_round_trip() {
    assert_eq!(parse_edit_name(&edit_name(0x1234)), Some(0x1234));
    assert_eq!(parse_edit_name("MANIFEST"), None);
    assert_eq!(parse_edit_name("MANIFEST-EDIT-12"), None);
    assert_eq!(parse_edit_name("MANIFEST-EDIT-zzzzzzzzzzzzzzzz"), None);
    // Only the names `edit_name` writes: lowercase, no sign.
    assert_eq!(parse_edit_name("MANIFEST-EDIT-000000000000000A"), None);
    assert_eq!(parse_edit_name("MANIFEST-EDIT-+00000000000000a"), None);
}
