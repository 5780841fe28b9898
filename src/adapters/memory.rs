//! In-memory adapters: the local server's embedded default and the unit
//! tests' stores. Same semantics as the DynamoDB/SQS adapters, minus I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::{
    AttemptToken, CancelStamp, Claim, Login, PendingShards, PublishKey, PublishRecord,
    PublishState, Shard, Timestamp, User,
};
use crate::ports::{
    BackendError, CancelFound, CancelWrites, Cursor, PendingPage, PendingStops, PublishReader,
    StopMessage, StopQueue, Unreadable, Users, MAX_UNDELIVERABLE_REASON, NOT_CANCELLED,
};

/// A poisoned lock only means another request panicked mid-update; every
/// update here is a single assignment, so the data is still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Default)]
pub struct MemoryUsers {
    users: Arc<Mutex<HashMap<Login, User>>>,
}

impl MemoryUsers {
    pub fn put(&self, user: User) {
        lock(&self.users).insert(user.login.clone(), user);
    }
}

impl FromIterator<User> for MemoryUsers {
    fn from_iter<I: IntoIterator<Item = User>>(users: I) -> Self {
        let store = MemoryUsers::default();
        users.into_iter().for_each(|u| store.put(u));
        store
    }
}

impl Users for MemoryUsers {
    async fn get(&self, login: &Login) -> Result<Option<User>, BackendError> {
        Ok(lock(&self.users).get(login).cloned())
    }
}

#[derive(Debug, Clone, Default)]
pub struct MemoryPublishes {
    records: Arc<Mutex<BTreeMap<PublishKey, PublishRecord>>>,
    /// Which shard of the pending index each record's mark is in, as the
    /// DynamoDB adapter spreads them.
    shards: PendingShards,
}

impl MemoryPublishes {
    /// An empty store whose pending stops spread over `shards`.
    pub fn with_shards(shards: PendingShards) -> Self {
        MemoryPublishes {
            shards,
            ..MemoryPublishes::default()
        }
    }

    pub fn put(&self, record: PublishRecord) {
        lock(&self.records).insert(record.key.clone(), record);
    }

    pub fn get(&self, key: &PublishKey) -> Option<PublishRecord> {
        lock(&self.records).get(key).cloned()
    }

    /// Every record, in key order.
    pub fn all(&self) -> Vec<PublishRecord> {
        lock(&self.records).values().cloned().collect()
    }
}

impl FromIterator<PublishRecord> for MemoryPublishes {
    fn from_iter<I: IntoIterator<Item = PublishRecord>>(records: I) -> Self {
        let store = MemoryPublishes::default();
        records.into_iter().for_each(|r| store.put(r));
        store
    }
}

impl MemoryPublishes {
    /// Applies `end` to `key`'s record when its stop is pending and
    /// claimed by `attempt`; `false` otherwise.
    fn end_attempt(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
        end: impl FnOnce(&mut PublishRecord),
    ) -> bool {
        let mut records = lock(&self.records);
        let Some(r) = records.get_mut(key) else {
            return false;
        };
        let held = r.stop_claim.as_ref().is_some_and(|c| c.is_held_by(attempt));
        // As DynamoDB's condition: a pending stop on a cancelled record.
        if !(r.state == PublishState::Cancelled && r.stop_pending && held) {
            return false;
        }
        end(r);
        true
    }
}

impl CancelWrites for MemoryPublishes {
    async fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
        attempt: &AttemptToken,
    ) -> Result<CancelFound, BackendError> {
        let mut records = lock(&self.records);
        let Some(current) = records.get_mut(key) else {
            return Ok(CancelFound::NotFound);
        };
        Ok(match current.cancelled(stamp, attempt) {
            Some(next) => {
                *current = next.clone();
                CancelFound::Cancelled(next)
            }
            None if current.state == PublishState::Cancelled => {
                CancelFound::AlreadyCancelled(current.clone())
            }
            None => CancelFound::Finished(current.clone()),
        })
    }

    async fn claim_stop(
        &self,
        key: &PublishKey,
        claim: &Claim,
        stale_before: Timestamp,
        cancelled_at: Timestamp,
    ) -> Result<Option<PublishRecord>, BackendError> {
        let mut records = lock(&self.records);
        let Some(r) = records.get_mut(key) else {
            return Ok(None);
        };
        let free = r
            .stop_claim
            .as_ref()
            .is_none_or(|held| held.yields_to(claim, stale_before));
        // `cancelled_at` is for items outside DynamoDB's index; a record
        // here always holds its stamp's time.
        let _ = cancelled_at;
        if r.state == PublishState::Cancelled && r.stop_pending && free {
            r.stop_claim = Some(claim.clone());
            return Ok(Some(r.clone()));
        }
        Ok(None)
    }

    async fn release_stop(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> Result<bool, BackendError> {
        Ok(self.end_attempt(key, attempt, |r| r.stop_claim = None))
    }

    async fn stop_sent(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> Result<bool, BackendError> {
        Ok(self.end_attempt(key, attempt, |r| {
            r.stop_pending = false;
            r.stop_claim = None;
        }))
    }

    async fn stop_undeliverable(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
        reason: &str,
    ) -> Result<bool, BackendError> {
        Ok(self.end_attempt(key, attempt, |r| {
            r.stop_pending = false;
            r.stop_claim = None;
            r.stop_undeliverable = Some(reason.chars().take(MAX_UNDELIVERABLE_REASON).collect());
        }))
    }
}

impl PendingStops for MemoryPublishes {
    fn shards(&self) -> Vec<Shard> {
        self.shards.all().collect()
    }

    async fn pending_stops(
        &self,
        shard: Shard,
        cutoff: Timestamp,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<PendingPage, BackendError> {
        // Oldest first, as the DynamoDB index sorts them; the cursor names
        // the last record returned, and the next page starts after it
        // whether or not it is still pending (as DynamoDB's
        // `ExclusiveStartKey` does).
        let mut unreadable = Vec::new();
        let mut pending: Vec<((Timestamp, String), PublishRecord)> = Vec::new();
        let records = lock(&self.records);
        let in_shard = records
            .values()
            .filter(|r| r.stop_pending && self.shards.of(&r.key) == shard);
        for r in in_shard {
            match (&r.cancel, r.state) {
                (Some(stamp), PublishState::Cancelled) if stamp.at < cutoff => {
                    pending.push(((stamp.at, r.key.to_string()), r.clone()))
                }
                (Some(_), PublishState::Cancelled) => {}
                _ => unreadable.push(Unreadable {
                    item: r.key.to_string(),
                    reason: NOT_CANCELLED.to_owned(),
                }),
            }
        }
        drop(records);
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        let start = match after.and_then(memory_cursor) {
            None => 0,
            Some(position) => pending.partition_point(|(p, _)| *p <= position),
        };
        let page: Vec<_> = pending.iter().skip(start).take(limit).collect();
        let next = (start + page.len() < pending.len())
            .then(|| {
                page.last()
                    .map(|((at, key), _)| Cursor(format!("{}\t{key}", at.0)))
            })
            .flatten();
        Ok(PendingPage {
            records: page.into_iter().map(|(_, r)| r.clone()).collect(),
            // Listed with the first page only, as a scan would meet them once.
            unreadable: if after.is_none() {
                unreadable
            } else {
                Vec::new()
            },
            next,
        })
    }
}

/// A memory cursor's position: the (time, key) of the last record of a page.
fn memory_cursor(cursor: &Cursor) -> Option<(Timestamp, String)> {
    let (at, key) = cursor.0.split_once('\t')?;
    Some((Timestamp(at.parse().ok()?), key.to_owned()))
}

impl PublishReader for MemoryPublishes {
    async fn read(&self, key: &PublishKey) -> Result<Option<PublishRecord>, BackendError> {
        Ok(self.get(key))
    }
}

/// Collects stop messages: the local server's queue (what it "sent" is
/// what a worker would have been told).
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    sent: Arc<Mutex<Vec<StopMessage>>>,
}

impl MemoryQueue {
    pub fn sent(&self) -> Vec<StopMessage> {
        lock(&self.sent).clone()
    }
}

impl StopQueue for MemoryQueue {
    async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
        lock(&self.sent).push(stop.clone());
        Ok(())
    }
}

/// A `MemoryQueue` whose sends fail or are refused as a unit test says:
/// `fail(true)` makes sends fail (the 503 path); `refuse` makes it refuse
/// some messages for good, as SQS does a message whose contents it does
/// not accept. Unit tests only: never in a binary.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct ScriptedQueue {
    pub inner: MemoryQueue,
    failing: Arc<std::sync::atomic::AtomicBool>,
    refused: Arc<Mutex<Option<RefuseRule>>>,
}

/// Which messages a `ScriptedQueue` refuses for good.
#[cfg(test)]
type RefuseRule = fn(&StopMessage) -> bool;

#[cfg(test)]
impl ScriptedQueue {
    pub fn sent(&self) -> Vec<StopMessage> {
        self.inner.sent()
    }

    pub fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on, messages for which `rule` says `true` are refused with
    /// a permanent error.
    pub fn refuse(&self, rule: fn(&StopMessage) -> bool) {
        *lock(&self.refused) = Some(rule);
    }
}

#[cfg(test)]
impl StopQueue for ScriptedQueue {
    async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BackendError::msg("memory queue set to fail"));
        }
        if lock(&self.refused).is_some_and(|rule| rule(stop)) {
            return Err(BackendError::msg("memory queue refuses this message").permanent());
        }
        self.inner.send(stop).await
    }
}
