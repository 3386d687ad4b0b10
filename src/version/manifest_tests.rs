use super::*;

fn sample() -> Manifest {
    Manifest {
        store_id: 0x5EED,
        generation: 3,
        next_file_no: 10,
        next_stream_no: 2,
        streams: imbl::vector![
            Arc::new(StreamMeta {
                stream_no: 0,
                id: "a".into(),
                upper: 0,
                since: 0,
                durable: false,
                finished: true,
                batches: vec![],
                spills: vec![],
                spilled_lsn: 0,
                types: String::new(),
            }),
            Arc::new(StreamMeta {
                stream_no: 1,
                id: "b/é".into(),
                upper: 20,
                since: 5,
                durable: true,
                finished: false,
                batches: vec![
                    BatchMeta {
                        file_no: 3,
                        level: 0,
                        lower: 0,
                        upper: 10,
                        since: 0,
                        update_count: 7,
                        size_bytes: 900,
                        fingerprint: 0xdead_beef,
                    },
                    BatchMeta {
                        file_no: 9,
                        level: 0,
                        lower: 12,
                        upper: 20,
                        since: 0,
                        update_count: 1,
                        size_bytes: 300,
                        fingerprint: 0,
                    },
                ],
                spills: vec![BatchMeta {
                    file_no: 4,
                    level: 0,
                    lower: 25,
                    upper: 30,
                    since: 0,
                    update_count: 2,
                    size_bytes: 200,
                    fingerprint: 7,
                }],
                spilled_lsn: 77,
                types: "key (u32, String), val serde Price".into(),
            }),
        ],
        ..Manifest::default()
    }
}

/// Lookups by id go through the cache of numbers, and a cache left stale by a list changed directly
/// (or out of creation order) costs a linear search, never a wrong entry; equality ignores it.
#[test]
fn lookups_by_id_survive_a_stale_cache() {
    let mut m = Manifest::new(1, 1, 0, 4);
    for (no, id) in [(0, "a"), (1, "b"), (2, "c")] {
        let mut s = (*sample().streams[0]).clone();
        (s.stream_no, s.id) = (no, id.to_string());
        m.push_stream(Arc::new(s));
    }
    assert_eq!(m.stream("b").map(|s| s.stream_no), Some(1));
    m.stream_mut("c").unwrap().upper = 7;
    assert_eq!(m.stream("c").map(|s| s.upper), Some(7));
    // Changed directly: "a" gone, "b" moved to the end with another number.
    m.streams.remove(0);
    let mut b = (*m.streams.remove(0)).clone();
    b.stream_no = 3;
    m.streams.push_back(Arc::new(b));
    assert!(m.stream("a").is_none());
    assert_eq!(m.stream("b").map(|s| s.stream_no), Some(3));
    assert_eq!(m.stream("c").map(|s| s.upper), Some(7));
    let decoded = Manifest::decode(&m.encode(), "M").unwrap();
    assert_eq!(decoded, m);
    m.retain_streams(|s| s.id != "c");
    assert!(m.stream("c").is_none() && m.stream_mut("c").is_err());
}

#[test]
fn round_trip() {
    let m = sample();
    assert_eq!(Manifest::decode(&m.encode(), "M").unwrap(), m);
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = sample().encode();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        let err = Manifest::decode(&bad, "M").unwrap_err();
        assert!(err.is_corruption(), "byte {i}: {err}");
    }
    for cut in 0..bytes.len() {
        assert!(Manifest::decode(&bytes[..cut], "M").is_err());
    }
}

#[test]
fn newer_version_is_refused() {
    let mut bytes = sample().encode();
    assert_eq!(bytes[8], 4, "a manifest is written as version 4");
    bytes[8] = 5;
    let n = bytes.len() - 8;
    let sum = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum.to_le_bytes());
    assert!(matches!(
        Manifest::decode(&bytes, "M"),
        Err(Error::VersionTooNew { found: 5, .. })
    ));
}

/// The manifest of `m` (which must record no types) as version `version` wrote it: version 3's layout
/// with no types is versions 1 and 2's, whose `types_len` was a reserved zero.
fn as_version(m: &Manifest, version: u8) -> Vec<u8> {
    assert!(m.streams.iter().all(|s| s.types.is_empty()));
    let mut bytes = m.encode();
    bytes[8] = version;
    let n = bytes.len() - 8;
    let sum = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum.to_le_bytes());
    bytes
}

/// Versions 1 and 2 are read with no types; a nonzero reserved field there is not a length. Version
/// 3 is version 4's bytes.
#[test]
fn versions_before_3_are_read_without_types() {
    let mut m = sample();
    Arc::make_mut(&mut m.streams[1]).types.clear();
    assert_eq!(Manifest::decode(&as_version(&m, 2), "M").unwrap(), m);
    assert_eq!(Manifest::decode(&as_version(&m, 3), "M").unwrap(), m);
    let mut bytes = as_version(&m, 2);
    // The second stream's reserved field: after its header (4 + 4 + 3 + 8 + 8 + 4 + 4 bytes), two
    // batches of 56 and its spill count.
    let first = 40 + 4 + 4 + 1 + 8 + 8 + 4 + 4 + 4 + 4 + 8;
    let at = first + 4 + 4 + "b/é".len() + 8 + 8 + 4 + 4 + 2 * 56 + 4;
    assert_eq!(&bytes[at..at + 4], &[0, 0, 0, 0]);
    bytes[at] = 9;
    let n = bytes.len() - 8;
    let sum = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(Manifest::decode(&bytes, "M").unwrap(), m);
}

/// Types over the limit, or not UTF-8, are corruption.
#[test]
fn bad_types_are_corruption() {
    let mut m = sample();
    Arc::make_mut(&mut m.streams[1]).types = "x".repeat(MAX_TYPES_BYTES);
    assert_eq!(Manifest::decode(&m.encode(), "M").unwrap(), m);
    let mut bytes = m.encode();
    let at = bytes.len() - 8 - MAX_TYPES_BYTES;
    bytes[at] = 0xff;
    let n = bytes.len() - 8;
    let sum = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum.to_le_bytes());
    assert!(Manifest::decode(&bytes, "M").unwrap_err().is_corruption());
}

/// Version 1 manifests are read, but the flag version 2 added is unknown there.
#[test]
fn version_1_is_read_without_the_finished_flag() {
    let mut m = sample();
    Arc::make_mut(&mut m.streams[1]).types.clear();
    Arc::make_mut(&mut m.streams[0]).finished = false;
    let mut bytes = m.encode();
    bytes[8] = 1;
    let n = bytes.len() - 8;
    let sum = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(Manifest::decode(&bytes, "M").unwrap(), m);
    Arc::make_mut(&mut m.streams[0]).finished = true;
    let mut bytes = m.encode();
    bytes[8] = 1;
    let sum = checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum.to_le_bytes());
    assert!(Manifest::decode(&bytes, "M").unwrap_err().is_corruption());
}

#[test]
fn overlapping_batches_are_corruption() {
    let mut m = sample();
    Arc::make_mut(&mut m.streams[1]).batches[1].lower = 9;
    assert!(Manifest::decode(&m.encode(), "M").unwrap_err().is_corruption());
}
