//! The publish records, one port per caller: the cancel's writes
//! (`CancelWrites`), the reconciler's queue of pending stops
//! (`PendingStops`), the status route's read (`PublishReader`). The
//! DynamoDB and in-memory adapters implement all three; each caller is
//! written against the one it needs.

use std::future::Future;

use super::BackendError;
use crate::domain::{
    AttemptToken, CancelStamp, Claim, PublishKey, PublishRecord, Shard, Timestamp,
};

/// What a conditional cancel found, decided in one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelFound {
    /// The record was running and is now cancelled (the record after).
    Cancelled(PublishRecord),
    /// It was cancelled before: nothing was written (the record as stored).
    AlreadyCancelled(PublishRecord),
    /// It is published or failed: nothing was written (the record as stored).
    Finished(PublishRecord),
    /// No record under that whole key.
    NotFound,
}

/// The cancel's writes (the use case `cancel::Canceller`): the one
/// conditional write, and the claim protocol of its stop (docs/developing.md, "Stop delivery"). Every write here but
/// the cancel is conditioned on the stop still being pending, and those
/// that end a send attempt on the attempt still holding its claim: a late
/// or repeated write of an attempt that lost its claim changes nothing.
pub trait CancelWrites: Send + Sync {
    /// Atomically moves a running publish to `cancelled`, stamping it,
    /// marking its stop pending and claimed by `attempt`, and recording
    /// `attempt` as the transition's. When the record was cancelled
    /// already, `AlreadyCancelled` hands back the record as stored, whose
    /// `cancel_attempt` tells whether that was this attempt's own write.
    fn cancel(
        &self,
        key: &PublishKey,
        stamp: &CancelStamp,
        attempt: &AttemptToken,
    ) -> impl Future<Output = Result<CancelFound, BackendError>> + Send;

    /// Takes the right to send `key`'s pending stop (`claim`): the record
    /// as the claim left it (its stop is built from that, never from an
    /// older copy: the record may have been re-cancelled since) when the
    /// record is cancelled, its stop pending, and its claim either lapsed
    /// (taken before `stale_before`), absent, or `claim`'s own attempt's
    /// (an earlier try whose answer was lost). A pending item without
    /// `cancelledAt` gets `cancelled_at` in the same write, which brings it
    /// into the reconciler's index. `None` otherwise (sent, parked, absent,
    /// or held by another attempt), writing nothing.
    fn claim_stop(
        &self,
        key: &PublishKey,
        claim: &Claim,
        stale_before: Timestamp,
        cancelled_at: Timestamp,
    ) -> impl Future<Output = Result<Option<PublishRecord>, BackendError>> + Send;

    /// `attempt` failed and may be retried: gives its claim up (the stop
    /// stays pending), so the next repeat or reconciler run sends at once.
    /// `false`: it held no claim (nothing written).
    fn release_stop(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// `attempt` sent the stop: no longer pending. `false`: it held no
    /// claim (nothing written; its holder clears it).
    fn stop_sent(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// `attempt` found the queue refusing the stop for good (`reason`, at
    /// most `MAX_UNDELIVERABLE_REASON` characters): no longer pending, so
    /// no run retries it in a loop; an operator re-queues it. `false`: it
    /// held no claim (nothing written).
    fn stop_undeliverable(
        &self,
        key: &PublishKey,
        attempt: &AttemptToken,
        reason: &str,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;
}

/// The reconciler's queue of work: the stops still pending, oldest first
/// within each shard of the index (`domain::PendingShards`).
pub trait PendingStops: Send + Sync {
    /// The shards a reconciler reads to see every pending stop this
    /// adapter's writers mark: the legacy one, then `0..N`.
    fn shards(&self) -> Vec<Shard>;

    /// Cancelled publishes whose stop is still pending in `shard`,
    /// cancelled before `cutoff`, oldest first, at most `limit` from
    /// `after` on (for the reconciler, which pages through them all). A
    /// page continues after the record its cursor names, even when that
    /// record has left the index since. Items that cannot be read (or
    /// carry a pending mark on a publish that is not cancelled) are listed
    /// apart, never an error of the page.
    fn pending_stops(
        &self,
        shard: Shard,
        cutoff: Timestamp,
        after: Option<&Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<PendingPage, BackendError>> + Send;
}

/// The status route's read: one publish record by its whole key, as stored
/// now (strongly consistent).
pub trait PublishReader: Send + Sync {
    /// The record, or `None` when there is none under that key.
    fn read(
        &self,
        key: &PublishKey,
    ) -> impl Future<Output = Result<Option<PublishRecord>, BackendError>> + Send;
}

/// Why a pending mark on a record that is not a cancelled one with its
/// stamp is never sent: nothing safe can be said about such an item.
pub const NOT_CANCELLED: &str = "a pending stop on a publish that is not cancelled";

/// `stop_undeliverable`'s reasons are cut to this many characters.
pub const MAX_UNDELIVERABLE_REASON: usize = 512;

/// Where a page of `pending_stops` ended; opaque, each adapter its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

/// One page of pending stops.
#[derive(Debug, Default)]
pub struct PendingPage {
    pub records: Vec<PublishRecord>,
    /// Items of the page that could not be read, skipped.
    pub unreadable: Vec<Unreadable>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<Cursor>,
}

/// An item that could not be read as a publish record: its key as stored
/// (for the logs and `uforge-admin publish repair`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub item: String,
    pub reason: String,
}
