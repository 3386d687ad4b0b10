//! A persisted arrangement across restarts, through the typed API: arranges `(fruit, price)` updates into a
//! store with `arrange_by_key_persisted` (DD's `arrange_by_key`, persisted), joins them with an in-memory
//! collection, counts prices per fruit and finds each fruit's highest price — DD's operators with DD's
//! closures over `&String` and `&u64`. Run it twice with the same DIR: the second run serves the first
//! run's updates from the batch files (without replaying them) and adds its own at later times. (The
//! colours are an ordinary in-memory collection: each run joins only its own.)
//!
//! `cargo run --example arrangement [DIR]` — without DIR it uses a fresh temporary directory (kept).

use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
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
            let (prices_in, prices) = scope.new_collection::<(String, u64), isize>();
            let (colors_in, colors) = scope.new_collection::<(String, String), isize>();
            // Was: `prices.arrange_by_key()`.
            let persisted = prices.arrange_by_key_persisted(&store, "prices")?;
            persisted
                .clone()
                .join(colors)
                .inspect(|x| println!("  join  {x:?}"))
                .probe_with(&probe);
            // Counting reads each key's earlier count from the batch files (nothing arranged in memory).
            persisted
                .clone()
                .count_total()
                .inspect(|x| println!("  count {x:?}"))
                .probe_with(&probe);
            // Any reduction: vals arrive in order, so the last is the highest price.
            persisted
                .clone()
                .reduce(|_fruit, prices: &[(&u64, isize)], out: &mut Vec<(u64, isize)>| {
                    if let Some((max, _)) = prices.last() {
                        out.push((**max, 1));
                    }
                })
                .inspect(|x| println!("  max   {x:?}"))
                .probe_with(&probe);
            let handle = persisted.handle().cloned();
            Ok((prices_in, colors_in, handle))
        });
        let (mut prices, mut colors, handle) = built?;
        // `arrange_by_key_persisted` always returns its handle (only in-memory typed arrangements have none).
        let handle = handle.ok_or_else(|| ddpersist::Error::BadInput {
            detail: "no persist handle".into(),
        })?;
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
