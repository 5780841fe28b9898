//! Where the KEKs that open API secret keys come from.
//!
//! The authenticator asks only when an API-key request needs them, so a
//! function that serves HTTP Basic only never reads them. Production reads
//! them from Secrets Manager (`adapters::secrets_manager`) and caches them
//! with [`KekCache`]; tests and the local server hold fixed ones.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sealed::KeyId;
use super::Sealer;
use crate::ports::BackendError;

pub type KekFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<Sealer>, BackendError>> + Send + 'a>>;

/// The KEKs, current and previous. `wanted`: a stored secret is sealed under
/// this KEK, which the last answer did not hold (a rotation happened since):
/// re-read them if the source can.
pub trait KekSource: Send + Sync + std::fmt::Debug {
    fn sealer(&self, wanted: Option<KeyId>) -> KekFuture<'_>;
}

/// KEKs known at start (the local server, tests, `UFORGE_API_KEY_KEK`).
#[derive(Debug, Clone)]
pub struct FixedKeks(pub Arc<Sealer>);

impl FixedKeks {
    pub fn shared(sealer: Sealer) -> Arc<dyn KekSource> {
        Arc::new(FixedKeks(Arc::new(sealer)))
    }
}

impl KekSource for FixedKeks {
    fn sealer(&self, _wanted: Option<KeyId>) -> KekFuture<'_> {
        let sealer = self.0.clone();
        Box::pin(async move { Ok(sealer) })
    }
}

/// How long KEKs read from their store are used before they are read again.
/// A rotation needs no wait: a secret re-sealed under the new KEK names it,
/// and a KEK we do not hold is looked for at once (see [`KekCache::get`]).
pub const KEK_REFRESH: Duration = Duration::from_secs(600);
/// After a failed refresh, the cached KEKs serve this long before the next try.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// After a failed first read (nothing cached), API-key requests fail at
/// once for this long rather than each reading the store again: a store
/// that is down is not asked twice a request, and a blip costs seconds.
pub const RETRY_FIRST_READ_AFTER: Duration = Duration::from_secs(5);

/// Caches what a KEK store answered, for the environment's life, with a
/// bounded refresh. One read at a time: concurrent first requests wait for
/// the same read.
#[derive(Debug, Default)]
pub struct KekCache {
    state: tokio::sync::Mutex<Option<Cached>>,
    /// Until when a failed first read is remembered (nothing cached yet).
    first_read_failed: std::sync::Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct Cached {
    sealer: Arc<Sealer>,
    /// When the next scheduled read is due.
    due: Instant,
    /// KEKs looked for since the last read and not found: not looked for
    /// again before the next scheduled read, so a secret sealed under a
    /// retired KEK costs the store one read, not one per request.
    looked_for: HashSet<KeyId>,
}

impl KekCache {
    /// The cached KEKs; or what `read` answers when they are due, missing,
    /// or lack `wanted` (once per KEK per refresh period). A failed refresh
    /// keeps the cached KEKs for `RETRY_AFTER_FAILURE`; with nothing cached
    /// it is the caller's error.
    pub async fn get<F>(&self, wanted: Option<KeyId>, read: F) -> Result<Arc<Sealer>, BackendError>
    where
        F: Future<Output = Result<Sealer, BackendError>>,
    {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let missing =
            |c: &Cached| wanted.filter(|id| !c.sealer.holds(*id) && !c.looked_for.contains(id));
        if let Some(c) = state.as_ref() {
            if now < c.due && missing(c).is_none() {
                return Ok(c.sealer.clone());
            }
        }
        if state.is_none() && self.first_read_failed().is_some_and(|until| now < until) {
            return Err(BackendError::msg(
                "the KEK store failed moments ago; not read again yet",
            ));
        }
        match read.await {
            Ok(sealer) => {
                let sealer = Arc::new(sealer);
                let looked_for = wanted.filter(|id| !sealer.holds(*id)).into_iter().collect();
                *state = Some(Cached {
                    sealer: sealer.clone(),
                    due: now + KEK_REFRESH,
                    looked_for,
                });
                Ok(sealer)
            }
            Err(e) => match state.as_mut() {
                Some(c) => {
                    tracing::warn!(error = %crate::ErrorChain(&e), "KEK refresh failed; keeping the cached KEKs");
                    c.due = c.due.max(now + RETRY_AFTER_FAILURE);
                    c.looked_for.extend(wanted);
                    Ok(c.sealer.clone())
                }
                None => {
                    self.remember_first_read_failed(now + RETRY_FIRST_READ_AFTER);
                    Err(e)
                }
            },
        }
    }

    fn first_read_failed(&self) -> Option<Instant> {
        *self
            .first_read_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn remember_first_read_failed(&self, until: Instant) {
        *self
            .first_read_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(until);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn read(reads: &AtomicUsize, key: u8, ok: bool) -> Result<Sealer, BackendError> {
        reads.fetch_add(1, Ordering::SeqCst);
        if ok {
            Ok(Sealer::new(&[key; 32]))
        } else {
            Err(BackendError::msg("store down"))
        }
    }

    fn id(key: u8) -> KeyId {
        Sealer::new(&[key; 32]).current_id()
    }

    async fn age(cache: &KekCache) {
        cache.state.lock().await.as_mut().unwrap().due = Instant::now();
    }

    #[tokio::test]
    async fn reads_once_then_on_schedule() {
        let cache = KekCache::default();
        let reads = AtomicUsize::new(0);
        let first = cache.get(None, read(&reads, 1, true)).await.unwrap();
        let again = cache.get(None, read(&reads, 2, true)).await.unwrap();
        assert_eq!(first.current_id(), again.current_id());
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        age(&cache).await;
        let later = cache.get(None, read(&reads, 2, true)).await.unwrap();
        assert_eq!(later.current_id(), id(2));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_kek_not_held_is_looked_for_once_per_period() {
        let cache = KekCache::default();
        let reads = AtomicUsize::new(0);
        cache.get(None, read(&reads, 1, true)).await.unwrap();
        // Held: no read.
        cache.get(Some(id(1)), read(&reads, 2, true)).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Re-sealed under a new KEK moments after our read: read at once.
        let fresh = cache.get(Some(id(2)), read(&reads, 2, true)).await.unwrap();
        assert!(fresh.holds(id(2)));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A KEK the store does not have either (retired): one read, then
        // no more until the next scheduled refresh.
        cache.get(Some(id(9)), read(&reads, 2, true)).await.unwrap();
        cache.get(Some(id(9)), read(&reads, 2, true)).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        age(&cache).await;
        cache.get(Some(id(9)), read(&reads, 2, true)).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_cached_keks_and_a_failed_first_read_is_an_error() {
        let cache = KekCache::default();
        let reads = AtomicUsize::new(0);
        assert!(cache.get(None, read(&reads, 1, false)).await.is_err());
        // Remembered: the next requests fail without reading the store.
        for _ in 0..5 {
            assert!(cache.get(None, read(&reads, 1, true)).await.is_err());
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Once that time has passed, the store is read again.
        cache.remember_first_read_failed(Instant::now());
        cache.get(None, read(&reads, 1, true)).await.unwrap();
        age(&cache).await;
        let kept = cache.get(None, read(&reads, 2, false)).await.unwrap();
        assert_eq!(kept.current_id(), id(1));
        // Not retried on the very next request; a KEK we lack is still looked for.
        cache.get(None, read(&reads, 2, false)).await.unwrap();
        cache.get(Some(id(2)), read(&reads, 2, true)).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 4);
        cache.get(Some(id(2)), read(&reads, 2, true)).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }
}
