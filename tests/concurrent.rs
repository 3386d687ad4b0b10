//! Writers on several threads, seals interleaved, one store.

mod common;

use common::Model;
use ddpersist::{Store, StreamOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[test]
fn concurrent_writers_and_sealer_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("shared", StreamOptions::default()).unwrap();
    // Writers write at times at or beyond `floor`; the sealer seals below it.
    let floor = Arc::new(AtomicU64::new(0));
    let threads = 4u64;
    let per_thread = 300u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, floor) = (store.clone(), floor.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..per_thread {
                    let key = (t * per_thread + i).to_be_bytes();
                    loop {
                        let time = floor.load(Ordering::SeqCst) + 2;
                        match store.write_bytes("shared", [(&key[..], &b"v"[..], time, 1)]) {
                            Ok(()) => {
                                mine.push((key.to_vec(), time));
                                break;
                            }
                            // The sealer overtook us between reading the floor and writing: retry.
                            Err(ddpersist::Error::BadInput { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let sealer = {
        let (store, floor) = (store.clone(), floor.clone());
        std::thread::spawn(move || {
            for upper in 1..=40u64 {
                floor.store(upper, Ordering::SeqCst);
                store.seal("shared", upper).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let mut model = Model::default();
    for h in handles {
        for (key, time) in h.join().unwrap() {
            model.write(&key, b"v", time, 1);
        }
    }
    sealer.join().unwrap();
    assert_eq!(
        store.snapshot("shared").unwrap().to_vec().unwrap(),
        model.expected()
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let got = store.snapshot("shared").unwrap().to_vec().unwrap();
    assert_eq!(got.len(), (threads * per_thread) as usize);
    assert_eq!(got, model.expected());
}
