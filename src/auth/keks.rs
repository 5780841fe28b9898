//! Where the KEKs that open API secret keys come from.
//!
//! The authenticator asks only when an API-key request needs them, so a
//! function that serves HTTP Basic only never reads them. Production reads
//! them from Secrets Manager (`adapters::secrets_manager`) and caches them
//! with [`KekCache`]; tests and the local server hold fixed ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Sealer;
use crate::ports::BackendError;

pub type KekFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<Sealer>, BackendError>> + Send + 'a>>;

/// The KEKs, current and previous. `fresh`: a sealed secret named a KEK the
/// last answer did not hold, so re-read them if the source can.
pub trait KekSource: Send + Sync + std::fmt::Debug {
    fn sealer(&self, fresh: bool) -> KekFuture<'_>;
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
    fn sealer(&self, _fresh: bool) -> KekFuture<'_> {
        let sealer = self.0.clone();
        Box::pin(async move { Ok(sealer) })
    }
}

/// How long KEKs read from their store are used before they are read again:
/// a rotation reaches every warm environment within this time, or at once
/// for a secret sealed under the new KEK (see `MIN_FRESH_INTERVAL`).
pub const KEK_REFRESH: Duration = Duration::from_secs(600);
/// Re-reads asked for by an unknown key id, or retries after a failed
/// refresh, happen at most this often: a request cannot make us call the
/// store on every request.
pub const MIN_FRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Caches what a KEK store answered, for the environment's life, with a
/// bounded refresh. One read at a time: concurrent first requests wait for
/// the same read.
#[derive(Debug, Default)]
pub struct KekCache {
    state: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    sealer: Arc<Sealer>,
    /// When the next scheduled read is due.
    due: Instant,
    /// When the last read was attempted.
    read_at: Instant,
}

impl KekCache {
    /// The cached KEKs, or what `read` answers when they are due, missing,
    /// or `fresh` is asked for (at most every `MIN_FRESH_INTERVAL`). A
    /// failed refresh keeps the cached KEKs and is retried after
    /// `MIN_FRESH_INTERVAL`; with nothing cached it is the caller's error.
    pub async fn get<F>(&self, fresh: bool, read: F) -> Result<Arc<Sealer>, BackendError>
    where
        F: Future<Output = Result<Sealer, BackendError>>,
    {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(c) = state.as_ref() {
            let may_refresh = now.duration_since(c.read_at) >= MIN_FRESH_INTERVAL;
            if now < c.due && !(fresh && may_refresh) {
                return Ok(c.sealer.clone());
            }
        }
        match read.await {
            Ok(sealer) => {
                let sealer = Arc::new(sealer);
                *state = Some(Cached {
                    sealer: sealer.clone(),
                    due: now + KEK_REFRESH,
                    read_at: now,
                });
                Ok(sealer)
            }
            Err(e) => match state.as_mut() {
                Some(c) => {
                    tracing::warn!(error = %crate::ErrorChain(&e), "KEK refresh failed; keeping the cached KEKs");
                    c.due = c.due.max(now + MIN_FRESH_INTERVAL);
                    c.read_at = now;
                    Ok(c.sealer.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn read(
        reads: &AtomicUsize,
        key: u8,
        ok: bool,
    ) -> Result<Sealer, BackendError> {
        reads.fetch_add(1, Ordering::SeqCst);
        if ok {
            Ok(Sealer::new(&[key; 32]))
        } else {
            Err(BackendError::msg("store down"))
        }
    }

    #[tokio::test]
    async fn reads_once_then_on_schedule() {
        let cache = KekCache::default();
        let reads = AtomicUsize::new(0);
        let first = cache.get(false, read(&reads, 1, true)).await.unwrap();
        let again = cache.get(false, read(&reads, 2, true)).await.unwrap();
        assert_eq!(first.current_id(), again.current_id());
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        cache.state.lock().await.as_mut().unwrap().due = Instant::now();
        let later = cache.get(false, read(&reads, 2, true)).await.unwrap();
        assert_eq!(later.current_id(), Sealer::new(&[2; 32]).current_id());
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn fresh_reads_are_rate_limited() {
        let cache = KekCache::default();
        let reads = AtomicUsize::new(0);
        cache.get(false, read(&reads, 1, true)).await.unwrap();
        // Just read: an unknown key id does not make a second read yet.
        let same = cache.get(true, read(&reads, 2, true)).await.unwrap();
        assert_eq!(same.current_id(), Sealer::new(&[1; 32]).current_id());
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        {
            let mut state = cache.state.lock().await;
            let c = state.as_mut().unwrap();
            c.read_at -= MIN_FRESH_INTERVAL;
        }
        let fresh = cache.get(true, read(&reads, 2, true)).await.unwrap();
        assert_eq!(fresh.current_id(), Sealer::new(&[2; 32]).current_id());
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_cached_keks_and_a_failed_first_read_is_an_error() {
        let cache = KekCache::default();
        let reads = AtomicUsize::new(0);
        assert!(cache.get(false, read(&reads, 1, false)).await.is_err());
        cache.get(false, read(&reads, 1, true)).await.unwrap();
        cache.state.lock().await.as_mut().unwrap().due = Instant::now();
        let kept = cache.get(false, read(&reads, 2, false)).await.unwrap();
        assert_eq!(kept.current_id(), Sealer::new(&[1; 32]).current_id());
        // Not retried on the very next request.
        cache.get(false, read(&reads, 2, false)).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }
}
