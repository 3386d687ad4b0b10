//! Unit tests of [`super::Consolidated`]: exact sums, sort order, the partitioned sort against one sort
//! and a map, entries that hold their bytes beside ones in the arena, and the recycled buffers.

use super::*;

#[test]
fn consolidation_sums_exactly() {
    let max = i64::MAX;
    let ups: Vec<UpdateRef<'_>> = vec![(b"a", b"x", 1, max), (b"a", b"x", 1, max), (b"a", b"x", 1, -max)];
    let consolidated = Consolidated::from_updates(ups.into_iter()).unwrap();
    assert_eq!(
        consolidated.iter().collect::<Vec<_>>(),
        vec![(&b"a"[..], &b"x"[..], 1, max)]
    );
    let ups: Vec<UpdateRef<'_>> = vec![(b"a", b"x", 1, max), (b"b", b"x", 1, 1), (b"a", b"x", 1, 1)];
    match Consolidated::from_updates(ups.into_iter()) {
        Err(Error::DiffOverflow { key, time, .. }) => assert_eq!((&key[..], time), (&b"a"[..], 1)),
        other => panic!("{:?}", other.map(|r| r.len())),
    }
}

#[test]
fn consolidated_sorts_and_sums() {
    let ups: Vec<UpdateRef<'_>> = vec![
        (b"b", b"1", 1, 1),
        (b"a", b"2", 1, 3),
        (b"a", b"1", 2, 1),
        (b"a", b"2", 1, -3),
        (b"b", b"1", 1, 1),
        (b"a", b"1", 1, 1),
    ];
    let consolidated = Consolidated::from_updates(ups.into_iter()).unwrap();
    let got: Vec<_> = consolidated.iter().collect();
    assert_eq!(
        got,
        vec![
            (&b"a"[..], &b"1"[..], 1, 1),
            (b"a", b"1", 2, 1),
            (b"b", b"1", 1, 2)
        ]
    );
}

/// A seal-sized input (about four partitions) takes the partitioned sort by default, and gives what one
/// sort gives, and a map of sums: keys with a shared prefix, then 0 to 8 random bytes, repeated and
/// cancelling; vals of 100 bytes (kept in the arena) or of 0 to 8 (most held in their entries).
#[test]
fn a_large_input_is_partitioned_to_the_same_result() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let owned: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = (0..PARTITION_MIN_UPDATES + 1000)
        .map(|_| {
            let r = next();
            let mut key = b"user:".to_vec();
            key.extend_from_slice(&r.to_be_bytes()[..(r % 9) as usize]);
            let val_len = match r % 3 {
                0 => 100,
                _ => (r >> 20) as usize % 9,
            };
            (key, vec![(r >> 60) as u8; val_len], r >> 62, (r >> 40) as i64 % 3)
        })
        .collect();
    let refs = || owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
    let partitioned = Consolidated::from_updates(refs()).unwrap();
    let one_sort = Consolidated::build(refs(), None, usize::MAX, 0).unwrap();
    assert!(one_sort.len() > 1000);
    assert!(partitioned.iter().eq(one_sort.iter()));
    assert_eq!(partitioned.key_count(), one_sort.key_count());
    let mut sums = std::collections::BTreeMap::new();
    for (k, v, t, d) in refs() {
        *sums.entry((k, v, t)).or_insert(0i64) += d;
    }
    sums.retain(|_, d| *d != 0);
    assert!(partitioned
        .iter()
        .eq(sums.iter().map(|(&(k, v, t), &d)| (k, v, t, d))));
    let inline = partitioned.entries.iter().filter(|e| e.inline()).count();
    assert!(
        inline > 1000 && inline < partitioned.len() - 1000,
        "{inline} of {}",
        partitioned.len()
    );
}

proptest::proptest! {
    /// Against a map: keys with long shared prefixes (ties of the 8-byte sort prefix), proper prefixes
    /// of each other, repeated `(key, val, time)`s and diffs that cancel.
    /// Every key may start with the same `shared` bytes (the sort skips a prefix all keys share, and
    /// partitions by the bytes after it). Key bytes are 0..3 and 254..256 (the cells' ends).
    #[test]
    fn consolidation_equals_a_map_of_sums(
        ups in proptest::collection::vec(
            (proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 2, 254, 255]), 0..11), 0u8..3, 0u64..3, -2i64..3),
            0..200,
        ),
        shared in proptest::collection::vec(0u8..3, 0..11),
        scratch_cap in proptest::sample::select(vec![0usize, 64, 1 << 20]),
    ) {
        let owned: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = ups
            .into_iter()
            .map(|(k, v, t, d)| ([&shared[..], &k[..]].concat(), vec![v], t, d))
            .collect();
        let mut want = std::collections::BTreeMap::new();
        for (k, v, t, d) in &owned {
            *want.entry((k.clone(), v.clone(), *t)).or_insert(0i64) += d;
        }
        let want: Vec<_> = want.into_iter().filter(|(_, d)| *d != 0).map(|((k, v, t), d)| (k, v, t, d)).collect();
        let keys = want.iter().map(|(k, ..)| k).collect::<std::collections::BTreeSet<_>>().len();
        // One sort; a partition per cell of sort words; partitions of a few cells. In fresh buffers,
        // then in those the builds before gave back (kept up to `scratch_cap` bytes).
        let scratch = Scratch::new(scratch_cap);
        for (partition_min, partition_updates) in [(usize::MAX, 0), (0, 1), (0, 7)].repeat(2) {
            let refs = owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
            let consolidated = Consolidated::build(refs, Some(&scratch), partition_min, partition_updates).unwrap();
            let got: Vec<_> = consolidated
                .iter()
                .map(|(k, v, t, d)| (k.to_vec(), v.to_vec(), t, d))
                .collect();
            proptest::prop_assert_eq!(consolidated.key_count(), keys);
            proptest::prop_assert_eq!(&got, &want);
            consolidated.recycle(&scratch);
            proptest::prop_assert!(scratch.held_bytes() <= scratch_cap);
        }
    }
}
