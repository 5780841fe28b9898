//! In-memory adapters: the local server's embedded default and the unit
//! tests' stores. Same semantics as the DynamoDB/SQS adapters, minus I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::{CancelStamp, Login, PublishKey, PublishRecord, PublishState, Timestamp, User};
use crate::ports::{BackendError, CancelOutcome, Publishes, StopMessage, StopQueue, Users};

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

impl Users for MemoryUsers {
    async fn get(&self, login: &Login) -> Result<Option<User>, BackendError> {
        Ok(lock(&self.users).get(login).cloned())
    }
}

#[derive(Debug, Clone, Default)]
pub struct MemoryPublishes {
    records: Arc<Mutex<BTreeMap<PublishKey, PublishRecord>>>,
}

impl MemoryPublishes {
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

impl Publishes for MemoryPublishes {
    async fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
    ) -> Result<CancelOutcome, BackendError> {
        let mut records = lock(&self.records);
        let Some(current) = records.get_mut(key) else {
            return Ok(CancelOutcome::NotFound);
        };
        Ok(match current.cancelled(stamp) {
            Some(next) => {
                *current = next.clone();
                CancelOutcome::Cancelled(next)
            }
            None if current.state == PublishState::Cancelled => {
                CancelOutcome::AlreadyCancelled(current.clone())
            }
            None => CancelOutcome::Finished(current.clone()),
        })
    }

    async fn stop_sent(&self, key: &PublishKey) -> Result<(), BackendError> {
        if let Some(r) = lock(&self.records).get_mut(key) {
            r.stop_pending = false;
        }
        Ok(())
    }

    async fn pending_stops(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<PublishRecord>, BackendError> {
        Ok(lock(&self.records)
            .values()
            .filter(|r| r.stop_pending && r.cancel.as_ref().is_some_and(|c| c.at < cutoff))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Collects stop messages. `fail(true)` makes sends fail, for tests of the
/// 503 path.
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    sent: Arc<Mutex<Vec<StopMessage>>>,
    failing: Arc<AtomicBool>,
}

impl MemoryQueue {
    pub fn sent(&self) -> Vec<StopMessage> {
        lock(&self.sent).clone()
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl StopQueue for MemoryQueue {
    async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(BackendError::msg("memory queue set to fail"));
        }
        lock(&self.sent).push(stop.clone());
        Ok(())
    }
}
