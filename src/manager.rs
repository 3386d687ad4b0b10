//! [`PersistManager`]: one process's registry of persisted streams, and the [`Token`]s it hands out.
//!
//! A manager wraps one [`Store`] (and is as cheap to clone, `Send + Sync`). Every stream a process persists
//! through it — a source, a table, an operator's state — is named by an `Id`; the manager hands out at most
//! one live [`Token`] per `(id, worker)` pair, and a token is consumed by the operator that persists the
//! stream ([`Persist::persist`](crate::operators::Persist::persist)), so two operators can never write the
//! same stream by mistake. Dropping the operator (its dataflow) returns the token.
//!
//! All writes go through the one store, which is the funnel: writers on different workers (threads)
//! share the WAL's group commit, so concurrent streams cost one fsync per round rather than one each. The
//! manager adds an optional rate limit on the bytes written ([`ManagerOptions::max_bytes_per_sec`]): a
//! token bucket holding one second's worth, paid before each write; a writer that overdraws it sleeps off
//! the debt (back-pressure on the writing worker, not an error).
//!
//! Invariant: `claims` holds exactly the `(id, worker)` pairs of live tokens.

use crate::error::{Error, Result};
use crate::store::Store;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a [`PersistManager`] treats the streams it hands tokens for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ManagerOptions {
    /// At most this many bytes (keys, vals and 24 bytes of framing per update) written per second, over
    /// all streams of the manager; `None` (the default) for no limit.
    pub max_bytes_per_sec: Option<u64>,
    /// Create new streams durable (unsealed updates survive a restart in the WAL; the input must not
    /// replay them). The default, `false`, fits replayable inputs: the input replays from
    /// [`PersistHandle::resume_at`](crate::operators::PersistHandle::resume_at) after a restart. A
    /// stream's durability is fixed when it is created: a token over streams created with the other one
    /// fails to build ([`Error::BadInput`]). It applies to every token of the manager: a `persist`
    /// downstream of another persisted operator (which replays on restart) takes its token from a manager
    /// that is not durable (a durable one is refused at build, or, holding recovered updates, stops with
    /// [`Error::BadInput`] in its handle when it receives an update below its upper).
    pub durable: bool,
}

/// A process's registry of persisted streams: see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct PersistManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    options: ManagerOptions,
    claims: Mutex<HashSet<(String, usize)>>,
    limiter: Option<RateLimiter>,
}

impl std::fmt::Debug for PersistManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistManager")
            .field("options", &self.inner.options)
            .field("tokens", &self.inner.claims.lock().len())
            .finish()
    }
}

impl PersistManager {
    /// A manager over `store` with default options.
    pub fn new(store: Store) -> Self {
        Self::with_options(store, ManagerOptions::default())
    }

    /// A manager over `store`.
    ///
    /// A rate limit of 0 bytes per second is treated as 1 (every write then waits for its bytes).
    pub fn with_options(store: Store, options: ManagerOptions) -> Self {
        let limiter = options.max_bytes_per_sec.map(RateLimiter::new);
        PersistManager {
            inner: Arc::new(Inner {
                store,
                options,
                claims: Mutex::new(HashSet::new()),
                limiter,
            }),
        }
    }

    /// Opens (or creates) the store in `dir` and manages it with default options.
    ///
    /// Errors: those of [`Store::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::new(Store::open(dir)?))
    }

    /// The store behind the manager.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The manager's options.
    pub fn options(&self) -> ManagerOptions {
        self.inner.options
    }

    /// The token for stream `id` on timely worker `worker` (the index of the worker that will build the
    /// persisting operator, `worker.index()`).
    ///
    /// Errors: [`Error::BadInput`] if a token for the same `id` and worker is live, or `id` is empty.
    pub fn token(&self, id: &str, worker: usize) -> Result<Token> {
        if id.is_empty() {
            return Err(Error::bad_input("a persisted stream needs a non-empty id"));
        }
        let claim = (id.to_string(), worker);
        if !self.inner.claims.lock().insert(claim) {
            return Err(Error::bad_input(format!(
                "stream {id:?} on worker {worker} already has a live token: one operator persists a stream"
            )));
        }
        Ok(Token {
            manager: self.clone(),
            id: id.to_string(),
            worker,
        })
    }

    /// Pays for `bytes` about to be written: sleeps while the rate limit is overdrawn. No-op without one.
    pub(crate) fn throttle(&self, bytes: usize) {
        if let Some(limiter) = &self.inner.limiter {
            limiter.pay(bytes as u64);
        }
    }
}

/// The right to persist one stream on one worker, from [`PersistManager::token`]; consumed by
/// [`Persist::persist`](crate::operators::Persist::persist). Dropping it (or the operator holding it)
/// returns it to the manager.
#[derive(Debug)]
pub struct Token {
    manager: PersistManager,
    id: String,
    worker: usize,
}

impl Token {
    /// The stream's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The worker the token is for.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The manager that handed the token out.
    pub fn manager(&self) -> &PersistManager {
        &self.manager
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let claim = (std::mem::take(&mut self.id), self.worker);
        self.manager.inner.claims.lock().remove(&claim);
    }
}

/// A token bucket over bytes: refills at `rate` per second up to one second's worth; a payment larger
/// than the balance leaves it negative, and the payer sleeps until it is back at zero.
struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        let rate = rate.max(1) as f64;
        RateLimiter {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes `bytes` from the bucket, then sleeps off any debt (outside the lock).
    fn pay(&self, bytes: u64) {
        let debt = {
            let mut state = self.state.lock();
            let now = Instant::now();
            let (balance, last) = &mut *state;
            *balance = (*balance + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate);
            *last = now;
            *balance -= bytes as f64;
            -*balance
        };
        if debt > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(debt / self.rate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_token_per_id_and_worker() {
        let manager = PersistManager::new(Store::in_memory().unwrap());
        let a0 = manager.token("a", 0).unwrap();
        assert!(matches!(manager.token("a", 0), Err(Error::BadInput { .. })));
        let a1 = manager.token("a", 1).unwrap();
        let b0 = manager.token("b", 0).unwrap();
        assert_eq!((a0.id(), a0.worker(), a1.worker(), b0.id()), ("a", 0, 1, "b"));
        drop(a0);
        assert!(
            manager.clone().token("a", 0).is_ok(),
            "a dropped token is returned"
        );
        assert!(matches!(manager.token("", 0), Err(Error::BadInput { .. })));
    }

    #[test]
    fn rate_limit_delays_writers_past_the_burst() {
        let limiter = RateLimiter::new(1_000_000);
        let start = Instant::now();
        // One second's worth is in the bucket; 1.2 s worth must wait about 0.2 s.
        limiter.pay(600_000);
        limiter.pay(600_000);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(150), "waited {waited:?}");
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    }
}
