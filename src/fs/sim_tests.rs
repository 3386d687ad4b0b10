//! Unit tests of [`super::SimFs`]: what each crash state keeps.

use super::*;

fn read(fs: &SimFs, p: &str) -> Option<Vec<u8>> {
    fs.read(Path::new(p)).ok()
}

#[test]
fn power_loss_keeps_what_was_synced_and_may_keep_more() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.record_crash_points(true);
    let f = fs.open(Path::new("/d/a"), OpenHow::CreateNew).unwrap(); // 1
    f.append(b"synced").unwrap(); // 2
    f.sync_data().unwrap(); // 3
    fs.sync_dir(Path::new("/d")).unwrap(); // 4
    f.append(b"+later").unwrap(); // 5
    let g = fs.open(Path::new("/d/b"), OpenHow::CreateNew).unwrap(); // 6
    g.append(b"new").unwrap(); // 7
    g.sync_data().unwrap(); // 8
    let points = fs.take_crash_points();
    assert_eq!(points.len(), 8);
    assert_eq!(fs.calls(), 9, "the directory's creation and 8 calls");
    // Before the file's sync: the entry may be gone, or there with nothing in it.
    let before = &points[1];
    assert_eq!(read(&before.state(CrashState::Synced), "/d/a"), None);
    assert_eq!(read(&before.state(CrashState::Prefix(1)), "/d/a"), Some(vec![]));
    assert_eq!(
        read(&before.state(CrashState::Prefix(2)), "/d/a"),
        Some(b"synced".to_vec())
    );
    // At the end: "a" as synced or with the later append; "b" synced but its entry is not.
    let end = &points[7];
    assert_eq!(end.pending(), 2, "the append to a, the link of b");
    let synced = end.state(CrashState::Synced);
    assert_eq!(read(&synced, "/d/a"), Some(b"synced".to_vec()));
    assert_eq!(read(&synced, "/d/b"), None);
    let all = end.state(CrashState::Prefix(2));
    assert_eq!(read(&all, "/d/a"), Some(b"synced+later".to_vec()));
    assert_eq!(read(&all, "/d/b"), Some(b"new".to_vec()));
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let s = end.state(CrashState::Pages(seed));
        seen.insert((read(&s, "/d/a"), read(&s, "/d/b")));
    }
    // Every page subset: a's length as synced or now (with zeros if its page was not written).
    assert!(seen
        .iter()
        .all(|(a, _)| a.as_deref().is_some_and(|a| a.starts_with(b"synced"))));
    assert!(seen
        .iter()
        .any(|(a, _)| a.as_deref() == Some(&b"synced+later"[..])));
    assert!(seen.iter().any(|(_, b)| b.is_none()) && seen.iter().any(|(_, b)| b.is_some()));
}

#[test]
fn a_rename_is_durable_only_with_its_directory() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).unwrap();
    let f = fs.open(Path::new("/d/M.tmp"), OpenHow::CreateTruncate).unwrap();
    f.append(b"v1").unwrap();
    f.sync_all().unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    fs.record_crash_points(true);
    fs.rename(Path::new("/d/M.tmp"), Path::new("/d/M")).unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    let points = fs.take_crash_points();
    let lost = points[0].state(CrashState::Synced);
    assert_eq!(lost.list(Path::new("/d")).unwrap(), vec!["M.tmp".to_string()]);
    let kept = points[0].state(CrashState::Prefix(1));
    assert_eq!(kept.list(Path::new("/d")).unwrap(), vec!["M".to_string()]);
    let done = points[1].state(CrashState::Synced);
    assert_eq!(read(&done, "/d/M"), Some(b"v1".to_vec()));
}
