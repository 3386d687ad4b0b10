//! A persisted arrangement across restarts: arranges `(fruit, price)` updates into a store, joins them with
//! an in-memory collection, counts prices per fruit and finds each fruit's highest price. Run it twice with the same DIR: the second run
//! serves the first run's updates from the batch files (without replaying them) and adds its own at later
//! times. (The colours are an ordinary in-memory collection: each run joins only its own.)
//!
//! `cargo run --example arrangement [DIR]` — without DIR it uses a fresh temporary directory (kept).

use ddpersist::operators::{ArrangeEncoded, ArrangePersisted, CountPersisted};
use ddpersist::trace::{BytesBuilder, BytesSpine, BytesUpdate};
use ddpersist::{Codec, Store};
use differential_dataflow::input::Input;
use timely::dataflow::operators::probe::Handle as ProbeHandle;

fn main() -> ddpersist::Result<()> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => tempfile::Builder::new()
            .prefix("ddpersist-arrangement-")
            .tempdir()
            .map_err(|e| ddpersist::Error::Io {
                context: "create temporary directory".into(),
                source: e,
            })?
            .keep(),
    };
    println!("store directory: {}", dir.display());
    let store = Store::open(&dir)?;
    let outcome = timely::execute_directly(move |worker| -> ddpersist::Result<u64> {
        let probe = ProbeHandle::new();
        let built = worker.dataflow::<u64, _, _>(|scope| -> ddpersist::Result<_> {
            let (prices_in, prices) = scope.new_collection::<(String, u64), i64>();
            let (colors_in, colors) = scope.new_collection::<(String, String), i64>();
            let (persisted, handle) = prices.arrange_persisted(&store, "prices")?;
            let decode = |k: &[u8]| String::decode(k).unwrap_or_default();
            persisted
                .clone()
                .join_core(colors.arrange_encoded(), move |k: &[u8], p: &[u8], c: &[u8]| {
                    Some((decode(k), u64::decode(p).unwrap_or_default(), decode(c)))
                })
                .inspect(|x| println!("  join  {x:?}"))
                .probe_with(&probe);
            // Counting reads each key's earlier count from the batch files (nothing arranged in memory).
            persisted
                .clone()
                .count()
                .map(move |(k, n)| (decode(&k), n))
                .inspect(|x| println!("  count {x:?}"))
                .probe_with(&probe);
            // Any reduction: vals are in their encoding's order, the order of the prices.
            persisted
                .reduce_abelian::<_, BytesBuilder, BytesSpine, _, _>(
                    "MaxPrice",
                    |_k, input: &[(&[u8], i64)], out: &mut Vec<(Vec<u8>, i64)>| {
                        if let Some((max, _)) = input.last() {
                            out.push((max.to_vec(), 1))
                        }
                    },
                    |vec: &mut Vec<BytesUpdate>, key: &[u8], upds: &mut Vec<(Vec<u8>, u64, i64)>| {
                        vec.clear();
                        vec.extend(upds.drain(..).map(|(v, t, r)| ((key.to_vec(), v), t, r)));
                    },
                )
                .as_collection(move |k: &[u8], v: &[u8]| (decode(k), u64::decode(v).unwrap_or_default()))
                .inspect(|x| println!("  max   {x:?}"))
                .probe_with(&probe);
            Ok((prices_in, colors_in, handle))
        });
        let (mut prices, mut colors, handle) = built?;
        // This run's updates go at and after the time the last run persisted up to.
        let start = handle.resume_at();
        println!("resuming at time {start}");
        prices.advance_to(start);
        colors.advance_to(start);
        for (i, fruit) in ["apple", "banana", "cherry"].iter().enumerate() {
            prices.update((fruit.to_string(), start + i as u64), 1);
            colors.update((fruit.to_string(), format!("color-{start}")), 1);
        }
        prices.advance_to(start + 1);
        colors.advance_to(start + 1);
        drop((prices, colors));
        worker.step_while(|| !probe.done());
        match handle.take_error() {
            Some(e) => Err(e),
            None => Ok(handle.sealed_upper()),
        }
    });
    println!("persisted up to time {}", outcome?);
    Ok(())
}
