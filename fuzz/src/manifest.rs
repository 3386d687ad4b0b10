//! The `manifest` and `manifest_edit` targets' checks: a manifest or a manifest edit decoded from arbitrary
//! bytes keeps its invariants and survives a round trip; [`repair_manifest`] recomputes the checksum both
//! end with.

use crate::{assert_format_error, put_u64};
use ddpersist::encoding::checksum;
use ddpersist::version::{Manifest, ManifestEdit};
use std::collections::HashSet;

/// Recomputes the manifest's trailing checksum.
pub fn repair_manifest(b: &mut [u8]) {
    if b.len() >= 48 {
        let n = b.len() - 8;
        let sum = checksum(&b[..n]);
        put_u64(b, n, sum);
    }
}

/// `Manifest::decode` on arbitrary bytes; a decoded manifest keeps its documented invariants and
/// survives `encode` then `decode` unchanged.
pub fn check_manifest(data: &[u8]) {
    check_manifest_bytes(data);
    let mut fixed = data.to_vec();
    repair_manifest(&mut fixed);
    if fixed != data {
        check_manifest_bytes(&fixed);
    }
}

fn check_manifest_bytes(data: &[u8]) {
    let m = match Manifest::decode(data, "MANIFEST") {
        Ok(m) => m,
        Err(e) => return assert_format_error(&e, "Manifest::decode"),
    };
    let encoded = m.encode();
    assert_eq!(
        encoded.len(),
        data.len(),
        "re-encoded manifest has another length"
    );
    let again = Manifest::decode(&encoded, "MANIFEST").expect("a re-encoded manifest decodes");
    assert_eq!(again, m, "manifest round trip");
    assert_eq!(again.encode(), encoded, "manifest encoding is not stable");
    // The invariants decode promises to check.
    let (mut ids, mut nos, mut files) = (HashSet::new(), HashSet::new(), HashSet::new());
    for s in &m.streams {
        assert!(s.stream_no < m.next_stream_no, "stream number out of range");
        assert!(nos.insert(s.stream_no) && ids.insert(&s.id), "stream repeated");
        let mut prev_upper = 0;
        for b in &s.batches {
            assert!(
                prev_upper <= b.lower && b.lower <= b.upper && b.upper <= s.upper,
                "batch order"
            );
            assert!(
                b.file_no < m.next_file_no && files.insert(b.file_no),
                "file number"
            );
            prev_upper = b.upper;
        }
        // Spilled runs: unsealed, so at or beyond the upper; ordered by lower, possibly overlapping.
        let mut prev_lower = s.upper;
        for b in &s.spills {
            assert!(prev_lower <= b.lower && b.lower <= b.upper, "spill order");
            assert!(
                b.file_no < m.next_file_no && files.insert(b.file_no),
                "file number"
            );
            prev_lower = b.lower;
        }
        assert!(m.stream(&s.id).is_some());
    }
}

/// `ManifestEdit::decode` on arbitrary bytes (and with the checksum repaired); a decoded edit survives
/// `encode` then `decode` unchanged, and each changed stream keeps the manifest's per-stream invariants.
pub fn check_manifest_edit(data: &[u8]) {
    check_manifest_edit_bytes(data);
    let mut fixed = data.to_vec();
    repair_manifest(&mut fixed);
    if fixed != data {
        check_manifest_edit_bytes(&fixed);
    }
}

fn check_manifest_edit_bytes(data: &[u8]) {
    let edit = match ManifestEdit::decode(data, "MANIFEST-EDIT") {
        Ok(edit) => edit,
        Err(e) => return assert_format_error(&e, "ManifestEdit::decode"),
    };
    let encoded = edit.encode();
    assert_eq!(encoded, data, "a decoded edit re-encodes to its bytes");
    for s in &edit.changed {
        let mut prev_upper = 0;
        for b in &s.batches {
            assert!(
                prev_upper <= b.lower && b.lower <= b.upper && b.upper <= s.upper,
                "batch order"
            );
            assert!(b.file_no < edit.next_file_no, "file number");
            prev_upper = b.upper;
        }
    }
}
