//! The reconciler: stop messages are never lost.
//!
//! A cancel marks its stop pending in the same conditional write that
//! cancels the record, and clears the mark after the send succeeds. If the
//! function dies in between (timeout, crash, SQS down past the retries), the
//! mark stays; this job, run on a schedule, re-sends the stop for every mark
//! older than a grace period and clears it.
//!
//! Its rate grows with what it is given (docs/operating.md, "Capacity"):
//! every shard of the pending index is read at once, up to `in_flight`
//! records are claimed, sent and settled at once, sends go ten to a
//! `SendMessageBatch`, and each shard resumes where the previous run of
//! this process stopped, so a backlog longer than one run is worked
//! through in turn rather than from its oldest end every time. The claim
//! protocol is the cancel's own (`Canceller::claim`, `Canceller::settle`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt as _};

use crate::cancel::{new_attempt, CancelError, Canceller};
use crate::domain::{AttemptToken, PublishRecord, Shard, Timestamp};
use crate::ports::{
    BackendError, CancelWrites, Cursor, PendingStops, StopMessage, StopQueue, MAX_BATCH,
};

/// What one run (or one page of it) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Pending stops older than the grace period that this run read.
    pub found: usize,
    /// Re-sent (and cleared, unless the clearing write failed: then sent
    /// again after a lease, with the same id).
    pub resent: usize,
    /// Held by another attempt in flight (a cancel, a redelivery, an
    /// overlapping run): that one sends it, or the next run once its claim
    /// lapses. Not a failure.
    pub busy: usize,
    /// Still pending after this run (a send or a write failed, the queue
    /// is known to be down, or the deadline came first); retried next run.
    pub failed: usize,
    /// Refused by the queue for good: parked (`stopUndeliverable`), alarmed.
    pub undeliverable: usize,
    /// Items of the index that could not be read: skipped, logged with
    /// their key, alarmed (`uforge-admin publish repair` finds them).
    pub unreadable: usize,
    /// The run reached its deadline before the end of some shard; the
    /// next run of this process resumes each such shard where it stopped.
    pub cut_short: bool,
}

impl ReconcileReport {
    fn add(&mut self, page: &ReconcileReport) {
        self.found += page.found;
        self.resent += page.resent;
        self.busy += page.busy;
        self.failed += page.failed;
        self.undeliverable += page.undeliverable;
        self.unreadable += page.unreadable;
        self.cut_short |= page.cut_short;
    }
}

/// How a run goes about its work.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// A stop may stay pending this long before it is re-sent.
    pub grace: Duration,
    /// Records read per query of a shard (`RECONCILE_BATCH`).
    pub page: usize,
    /// Records claimed, sent or settled at once, over every shard
    /// (`RECONCILE_IN_FLIGHT`).
    pub in_flight: usize,
}

impl Plan {
    pub const DEFAULT_IN_FLIGHT: usize = 64;
}

/// Which shards one invocation reads when the schedule fans out (one
/// invocation per group, docs/operating.md, "Capacity"): the shards at
/// positions `index`, `index + count`, ... of the adapter's list (the
/// legacy shard first). Every shard is in exactly one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardGroup {
    index: u16,
    count: u16,
}

impl ShardGroup {
    /// Every shard.
    pub const ALL: ShardGroup = ShardGroup { index: 0, count: 1 };

    /// `None` unless `index < count`.
    pub fn new(index: u64, count: u64) -> Option<ShardGroup> {
        let (index, count) = (u16::try_from(index).ok()?, u16::try_from(count).ok()?);
        (index < count).then_some(ShardGroup { index, count })
    }

    fn picks(self, position: usize) -> bool {
        position % usize::from(self.count) == usize::from(self.index)
    }
}

/// Where each shard's reading stopped when a run was cut short, for the
/// next run of the same process (a warm Lambda environment). A new
/// process starts every shard from its oldest record.
#[derive(Debug, Default)]
pub struct Resume(Mutex<HashMap<Shard, Cursor>>);

impl Resume {
    fn take(&self, shard: Shard) -> Option<Cursor> {
        self.lock().remove(&shard)
    }

    fn keep(&self, shard: Shard, cursor: Option<Cursor>) {
        if let Some(cursor) = cursor {
            self.lock().insert(shard, cursor);
        }
    }

    /// How many shards a run left unfinished.
    pub fn pending_shards(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Shard, Cursor>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Re-sends the stops of cancels made before `now - grace` that are still
/// pending, in every shard of the index at once, oldest first within a
/// shard (from where the previous run stopped, per `resume`), to each
/// shard's end or until `until`. No record can stop the others: an
/// unreadable item is skipped, an undeliverable stop is parked, a failing
/// one stays pending, and the rest are tried all the same; while the queue
/// is known to be down nothing more is claimed. Every record is its own
/// attempt, claimed at `clock()` when it is taken; no call runs past
/// `until` (a record cut off there is handed back: its claim lapses
/// within a lease). `progress` is told each page's counts as soon as the
/// page is done, so that a run ended by its deadline loses none. A shard
/// whose query fails is left for the next run; the first such error is
/// returned once every shard is done.
pub async fn reconcile<P: CancelWrites + PendingStops, Q: StopQueue>(
    cancel: &Canceller<P, Q>,
    clock: impl Fn() -> Timestamp + Sync,
    plan: Plan,
    until: Instant,
    resume: &Resume,
    progress: impl FnMut(&ReconcileReport) + Send,
) -> Result<ReconcileReport, BackendError> {
    reconcile_group(
        cancel,
        clock,
        plan,
        ShardGroup::ALL,
        until,
        resume,
        progress,
    )
    .await
}

/// `reconcile`, on the shards of `group` only.
pub async fn reconcile_group<P: CancelWrites + PendingStops, Q: StopQueue>(
    cancel: &Canceller<P, Q>,
    clock: impl Fn() -> Timestamp + Sync,
    plan: Plan,
    group: ShardGroup,
    until: Instant,
    resume: &Resume,
    progress: impl FnMut(&ReconcileReport) + Send,
) -> Result<ReconcileReport, BackendError> {
    let grace = i64::try_from(plan.grace.as_secs()).unwrap_or(i64::MAX);
    let cutoff = Timestamp(clock().0.saturating_sub(grace));
    let in_flight = plan.in_flight.max(1);
    let run = Run {
        cancel,
        clock: &clock,
        cutoff,
        page: plan.page.max(1),
        until,
        resume,
        permits: tokio::sync::Semaphore::new(in_flight),
        chunk_size: MAX_BATCH.min(in_flight),
        progress: Mutex::new((progress, ReconcileReport::default())),
    };
    let shards: Vec<Shard> = cancel
        .publishes
        .shards()
        .into_iter()
        .enumerate()
        .filter(|(position, _)| group.picks(*position))
        .map(|(_, shard)| shard)
        .collect();
    let errors: Vec<BackendError> = stream::iter(shards)
        .map(|shard| run.shard(shard))
        .buffer_unordered(in_flight)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    let (mut progress, report) = run.progress.into_inner().unwrap_or_else(|p| p.into_inner());
    if report == ReconcileReport::default() {
        // Pages with nothing in them are not reported one by one; a run
        // that met only those still says so, once.
        progress(&report);
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// One run's shared state.
struct Run<'a, P, Q, C, F> {
    cancel: &'a Canceller<P, Q>,
    clock: &'a C,
    cutoff: Timestamp,
    page: usize,
    until: Instant,
    resume: &'a Resume,
    /// One permit per record in flight, over every shard.
    permits: tokio::sync::Semaphore,
    /// Records per batch send: ten, or fewer when fewer may be in flight.
    chunk_size: usize,
    /// The caller's `progress`, and the run's total so far.
    progress: Mutex<(F, ReconcileReport)>,
}

/// A record claimed by this run, with its attempt and its stop.
struct Claimed {
    record: PublishRecord,
    attempt: AttemptToken,
    stop: StopMessage,
}

impl<P, Q, C, F> Run<'_, P, Q, C, F>
where
    P: CancelWrites + PendingStops,
    Q: StopQueue,
    C: Fn() -> Timestamp + Sync,
    F: FnMut(&ReconcileReport) + Send,
{
    fn report(&self, page: &ReconcileReport) {
        if *page == ReconcileReport::default() {
            return;
        }
        let mut guard = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let (progress, total) = &mut *guard;
        progress(page);
        total.add(page);
    }

    /// Pages through `shard` from where the last run stopped to its end
    /// or the deadline.
    async fn shard(&self, shard: Shard) -> Result<(), BackendError> {
        let mut cursor = self.resume.take(shard);
        loop {
            let read = if Instant::now() >= self.until {
                None
            } else {
                let query = self.cancel.publishes.pending_stops(
                    shard,
                    self.cutoff,
                    cursor.as_ref(),
                    self.page,
                );
                tokio::time::timeout_at(self.until.into(), query).await.ok()
            };
            let Some(read) = read else {
                self.resume.keep(shard, cursor);
                self.report(&ReconcileReport {
                    cut_short: true,
                    ..ReconcileReport::default()
                });
                return Ok(());
            };
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    // Read again from here next run.
                    self.resume.keep(shard, cursor);
                    tracing::warn!(%shard, error = %crate::ErrorChain(&e), "could not read a shard of pending stops");
                    return Err(e);
                }
            };
            let mut done = ReconcileReport::default();
            for bad in &batch.unreadable {
                tracing::error!(item = %bad.item, reason = %bad.reason, "unreadable publish item skipped");
            }
            done.unreadable += batch.unreadable.len();
            done.found += batch.records.len();
            let chunks: Vec<Vec<PublishRecord>> = batch
                .records
                .chunks(self.chunk_size)
                .map(<[PublishRecord]>::to_vec)
                .collect();
            let counts: Vec<ReconcileReport> = stream::iter(chunks)
                .map(|chunk| self.chunk(chunk))
                .buffer_unordered(usize::MAX)
                .collect()
                .await;
            counts.iter().for_each(|c| done.add(c));
            self.report(&done);
            if done.cut_short {
                // This page's records that were cut off come first next run.
                self.resume.keep(shard, cursor);
                return Ok(());
            }
            match batch.next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Up to ten records of a page: claimed, sent in one batch, each
    /// entry's outcome settled on its own.
    async fn chunk(&self, records: Vec<PublishRecord>) -> ReconcileReport {
        let mut done = ReconcileReport::default();
        let permits = u32::try_from(records.len()).unwrap_or(u32::MAX);
        let permit =
            tokio::time::timeout_at(self.until.into(), self.permits.acquire_many(permits)).await;
        let Ok(Ok(_permit)) = permit else {
            done.cut_short = true;
            done.failed += records.len();
            return done;
        };
        let claims = records.into_iter().map(|record| self.claim(record));
        let mut claimed = Vec::new();
        for outcome in futures_util::future::join_all(claims).await {
            match outcome {
                Ok(Some(c)) => claimed.push(c),
                Ok(None) => done.busy += 1,
                Err(count) => done.add(&count),
            }
        }
        if claimed.is_empty() {
            return done;
        }
        let stops: Vec<StopMessage> = claimed.iter().map(|c| c.stop.clone()).collect();
        let sent =
            tokio::time::timeout_at(self.until.into(), self.cancel.queue.send_batch(&stops)).await;
        let Ok(results) = sent else {
            tracing::warn!(
                count = claimed.len(),
                "the run's deadline came first; the stops are handed back"
            );
            done.cut_short = true;
            done.failed += claimed.len();
            return done;
        };
        let settles = claimed
            .into_iter()
            .zip(results)
            .map(|(c, sent)| self.settle(c, sent));
        for count in futures_util::future::join_all(settles).await {
            done.add(&count);
        }
        done
    }

    /// Claims one record for a new attempt: `Some` when this run holds it
    /// now, `None` when another attempt does, `Err` with its count when it
    /// stays pending for another reason.
    async fn claim(&self, mut record: PublishRecord) -> Result<Option<Claimed>, ReconcileReport> {
        let failed = |cut_short| ReconcileReport {
            failed: 1,
            cut_short,
            ..ReconcileReport::default()
        };
        if Instant::now() >= self.until {
            return Err(failed(true));
        }
        if !self.cancel.queue.available() {
            // Claiming now would only cost two writes and send nothing.
            return Err(failed(false));
        }
        let attempt = new_attempt();
        let claim = self.cancel.claim(&mut record, &attempt, (self.clock)());
        match tokio::time::timeout_at(self.until.into(), claim).await {
            Ok(Ok(true)) => match self.cancel.stop_of(&record, &attempt) {
                Ok(stop) => Ok(Some(Claimed {
                    record,
                    attempt,
                    stop,
                })),
                Err(e) => {
                    tracing::warn!(publish = %record.key, error = %crate::ErrorChain(&e), "stop still pending");
                    Err(failed(false))
                }
            },
            Ok(Ok(false)) => Ok(None),
            Ok(Err(e)) => {
                tracing::warn!(publish = %record.key, error = %crate::ErrorChain(&e), "stop still pending");
                Err(failed(false))
            }
            Err(_) => {
                tracing::warn!(publish = %record.key, "the run's deadline came first; the stop is handed back");
                Err(failed(true))
            }
        }
    }

    /// Records how one claimed record's send went.
    async fn settle(&self, mut c: Claimed, sent: Result<(), BackendError>) -> ReconcileReport {
        let mut done = ReconcileReport::default();
        let settle = self.cancel.settle(&mut c.record, &c.attempt, &c.stop, sent);
        match tokio::time::timeout_at(self.until.into(), settle).await {
            Ok(Ok(())) => done.resent += 1,
            Ok(Err(CancelError::StopUndeliverable(_))) => done.undeliverable += 1,
            Ok(Err(e)) => {
                tracing::warn!(publish = %c.record.key, error = %crate::ErrorChain(&e), "stop still pending");
                done.failed += 1;
            }
            Err(_) => {
                tracing::warn!(publish = %c.record.key, "the run's deadline came first; the stop is handed back");
                done.cut_short = true;
                done.failed += 1;
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryPublishes, ScriptedQueue};
    use crate::domain::{PublishRecord, PublishState};
    use crate::ports::{BackendError, StopMessage};

    use crate::domain::fixtures::{alice_key as key, alice_stamp as stamp};

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    /// One run at `now` with `plan`, a minute to go, from the oldest.
    async fn run<P: CancelWrites + PendingStops, Q: StopQueue>(
        c: &Canceller<P, Q>,
        now: i64,
        plan: Plan,
    ) -> ReconcileReport {
        reconcile(
            c,
            || Timestamp(now),
            plan,
            later(),
            &Resume::default(),
            |_| {},
        )
        .await
        .unwrap()
    }

    fn plan(page: usize) -> Plan {
        Plan {
            grace: Duration::from_secs(60),
            page,
            in_flight: Plan::DEFAULT_IN_FLIGHT,
        }
    }

    /// One shard (and the legacy one), so that pages come in one order.
    fn cancel_key() -> Canceller<MemoryPublishes, ScriptedQueue> {
        Canceller {
            publishes: MemoryPublishes::with_shards(crate::domain::PendingShards::new(1).unwrap()),
            queue: ScriptedQueue::default(),
        }
    }

    /// A cancel whose stop was never sent (the process died after its
    /// write): pending, and its claim long expired.
    async fn crashed(
        c: &Canceller<MemoryPublishes, ScriptedQueue>,
        pitid: i64,
        at: i64,
    ) -> crate::domain::AttemptToken {
        c.publishes
            .put(PublishRecord::new(key(pitid), PublishState::Publishing));
        let attempt = new_attempt();
        c.publishes
            .cancel(&key(pitid), &stamp(&format!("r{pitid}"), at), &attempt)
            .await
            .unwrap();
        attempt
    }

    #[tokio::test]
    async fn resends_only_old_pending_stops() {
        let c = cancel_key();
        crashed(&c, 1, 100).await;
        crashed(&c, 2, 195).await;
        let third = crashed(&c, 3, 100).await;
        assert!(c.publishes.stop_sent(&key(3), &third).await.unwrap());

        let report = run(&c, 200, plan(10)).await;
        assert_eq!((report.found, report.resent, report.failed), (1, 1, 0));
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].pitid, sent[0].request_id.as_str()), (1, "r1"));
        assert!(!c.publishes.get(&key(1)).unwrap().stop_pending);
        assert!(c.publishes.get(&key(2)).unwrap().stop_pending);

        // A failing queue leaves the mark for the next run.
        c.queue.fail(true);
        let report = run(&c, 400, plan(10)).await;
        assert_eq!((report.found, report.resent, report.failed), (1, 0, 1));
        assert!(c.publishes.get(&key(2)).unwrap().stop_pending);
        // ... and gives its claim up, so the next run sends at once.
        c.queue.fail(false);
        let report = run(&c, 401, plan(10)).await;
        assert_eq!((report.found, report.resent), (1, 1));
    }

    #[tokio::test]
    async fn unsendable_stops_ahead_of_a_sendable_one_do_not_hide_it() {
        let c = cancel_key();
        // More unsendable records than one page, all older than the good one.
        for pitid in 1..=25 {
            crashed(&c, pitid, 100 + pitid).await;
        }
        crashed(&c, 99, 500).await;
        c.queue.refuse(|m| m.pitid != 99);
        let report = run(&c, 1_000, plan(10)).await;
        assert_eq!(report.found, 26);
        assert_eq!((report.resent, report.undeliverable), (1, 25));
        let sent = c.queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].pitid, 99);
        // Parked: not pending, never tried again.
        let again = run(&c, 2_000, plan(10)).await;
        assert_eq!(again, ReconcileReport::default());
        assert!(c
            .publishes
            .get(&key(1))
            .unwrap()
            .stop_undeliverable
            .is_some());
    }

    #[tokio::test]
    async fn transient_failures_ahead_do_not_hide_the_rest_either() {
        let c = cancel_key();
        for pitid in 1..=25 {
            crashed(&c, pitid, 100 + pitid).await;
        }
        crashed(&c, 99, 500).await;
        // Every older stop is held by an attempt in flight.
        for pitid in 1..=25 {
            let claim = crate::domain::Claim::by(&new_attempt(), Timestamp(990));
            assert!(c
                .publishes
                .claim_stop(&key(pitid), &claim, Timestamp(990), Timestamp(990))
                .await
                .unwrap()
                .is_some());
        }
        let report = run(&c, 1_000, plan(10)).await;
        assert_eq!(
            (report.found, report.resent, report.busy, report.failed),
            (26, 1, 25, 0),
            "held by others is contention, not failure"
        );
        assert_eq!(c.queue.sent()[0].pitid, 99);
    }

    /// Issue 24 (2): every record is claimed at the time it is taken, not
    /// at the run's start, so a claim written late in a long run is not
    /// already stale for a user's repeat.
    #[tokio::test]
    async fn each_claim_is_stamped_when_it_is_taken() {
        use crate::ports::StopMessage;
        use std::sync::atomic::{AtomicI64, Ordering};
        use std::sync::Mutex;
        /// Sees, at each send, the claim the record holds in the store.
        struct Witness(MemoryPublishes, Mutex<Vec<(i64, Option<Timestamp>)>>);
        impl StopQueue for Witness {
            async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
                let claim = self.0.get(&key(stop.pitid)).and_then(|r| r.stop_claim);
                self.1
                    .lock()
                    .unwrap()
                    .push((stop.pitid, claim.map(|c| c.at)));
                Ok(())
            }
        }
        let store = MemoryPublishes::with_shards(crate::domain::PendingShards::new(1).unwrap());
        let c = Canceller {
            publishes: store.clone(),
            queue: Witness(store.clone(), Mutex::default()),
        };
        let seed = Canceller {
            publishes: store.clone(),
            queue: ScriptedQueue::default(),
        };
        for pitid in 1..=3 {
            crashed(&seed, pitid, 100).await;
        }
        // A slow run: 40 s pass between taking one record and the next.
        let clock = AtomicI64::new(1_000);
        let report = reconcile(
            &c,
            || Timestamp(clock.fetch_add(40, Ordering::SeqCst)),
            plan(10),
            later(),
            &Resume::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(report.resent, 3);
        let seen = c.queue.1.lock().unwrap().clone();
        let claimed: Vec<i64> = seen.iter().map(|(_, at)| at.unwrap().0).collect();
        assert_eq!(claimed, [1_040, 1_080, 1_120], "{seen:?}");
    }

    /// Issue 24 (5): each page's counts are reported as soon as the page is
    /// done, and a run cut short by its deadline reports what it did.
    #[tokio::test]
    async fn pages_are_reported_as_they_are_done() {
        let c = cancel_key();
        for pitid in 1..=3 {
            crashed(&c, pitid, 100 + pitid).await;
        }
        c.queue.refuse(|m| m.pitid == 2);
        let mut pages = Vec::new();
        let report = reconcile(
            &c,
            || Timestamp(1_000),
            plan(1),
            later(),
            &Resume::default(),
            |page| pages.push(*page),
        )
        .await
        .unwrap();
        assert_eq!(pages.len(), 3, "{pages:?}");
        assert_eq!(
            pages.iter().map(|p| p.undeliverable).collect::<Vec<_>>(),
            [0, 1, 0]
        );
        assert_eq!(pages.iter().map(|p| p.found).sum::<usize>(), report.found);

        // Cut short before its first page: reported all the same.
        let mut cut = Vec::new();
        reconcile(
            &c,
            || Timestamp(2_000),
            plan(1),
            Instant::now(),
            &Resume::default(),
            |page| cut.push(*page),
        )
        .await
        .unwrap();
        // One line per shard the deadline cut, each saying so.
        assert!(
            !cut.is_empty() && cut.iter().all(|p| p.cut_short),
            "{cut:?}"
        );
    }

    /// A queue whose batches can fail entry by entry, and which counts how
    /// many of its batches were in flight at once.
    #[derive(Default)]
    struct Batches {
        inner: crate::adapters::memory::MemoryQueue,
        /// Entries of these publishes fail transiently.
        failing: Vec<i64>,
        /// Entries of these publishes are refused for good, with or without
        /// their audit.
        refused: Vec<i64>,
        /// How long each batch takes.
        delay: Duration,
        batches: std::sync::Mutex<Vec<usize>>,
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    impl StopQueue for Batches {
        async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
            if self.refused.contains(&stop.pitid) {
                return Err(BackendError::msg("refused").permanent());
            }
            self.inner.send(stop).await
        }

        async fn send_batch<'a>(
            &'a self,
            stops: &'a [StopMessage],
        ) -> Vec<Result<(), BackendError>> {
            use std::sync::atomic::Ordering::SeqCst;
            let at_once = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(at_once, SeqCst);
            tokio::time::sleep(self.delay).await;
            self.now.fetch_sub(1, SeqCst);
            self.batches.lock().unwrap().push(stops.len());
            let mut results = Vec::new();
            for stop in stops {
                results.push(if self.failing.contains(&stop.pitid) {
                    Err(BackendError::msg("throttled"))
                } else if self.refused.contains(&stop.pitid) {
                    Err(BackendError::msg("InvalidMessageContents").permanent())
                } else {
                    self.inner.send(stop).await
                });
            }
            results
        }
    }

    fn batching(queue: Batches) -> Canceller<MemoryPublishes, Batches> {
        Canceller {
            publishes: MemoryPublishes::with_shards(crate::domain::PendingShards::new(4).unwrap()),
            queue,
        }
    }

    async fn crash_all(c: &Canceller<MemoryPublishes, Batches>, pitids: std::ops::Range<i64>) {
        let seed = Canceller {
            publishes: c.publishes.clone(),
            queue: ScriptedQueue::default(),
        };
        for pitid in pitids {
            crashed(&seed, pitid, 100 + pitid).await;
        }
    }

    /// Issue 32 (2): sends go ten to a batch, and a batch's failed entries
    /// are each handled as a lone send's would be: a transient failure
    /// stays pending with its claim given up, a refusal is sent again
    /// without its audit and then parked, and the rest are cleared.
    #[tokio::test]
    async fn a_batch_s_failed_entries_are_handled_one_by_one() {
        let c = batching(Batches {
            failing: vec![3, 17],
            refused: vec![5],
            ..Batches::default()
        });
        crash_all(&c, 1..41).await;
        let report = run(&c, 1_000, plan(100)).await;
        assert_eq!(
            (
                report.found,
                report.resent,
                report.failed,
                report.undeliverable
            ),
            (40, 37, 2, 1),
            "{report:?}"
        );
        let batches = c.queue.batches.lock().unwrap().clone();
        assert!(
            batches.iter().all(|n| (1..=MAX_BATCH).contains(n)),
            "{batches:?}"
        );
        assert!(
            batches.len() < 40 / 2,
            "sent in batches, not one by one: {batches:?}"
        );
        for pitid in 1..41 {
            let r = c.publishes.get(&key(pitid)).unwrap();
            match pitid {
                3 | 17 => assert!(r.stop_pending && r.stop_claim.is_none(), "{r:?}"),
                5 => assert!(!r.stop_pending && r.stop_undeliverable.is_some(), "{r:?}"),
                _ => assert!(!r.stop_pending, "{r:?}"),
            }
        }
        // Each stop went once: 37 in batches; the refused one's bare retry
        // was refused too.
        let mut sent: Vec<i64> = c.queue.inner.sent().iter().map(|m| m.pitid).collect();
        sent.sort();
        assert_eq!(sent.len(), 37);
        sent.dedup();
        assert_eq!(sent.len(), 37);
    }

    /// Issue 32 (2): many records are in flight at once, and never more
    /// than the plan allows.
    #[tokio::test]
    async fn records_are_worked_on_concurrently_within_the_bound() {
        let c = batching(Batches {
            delay: Duration::from_millis(20),
            ..Batches::default()
        });
        crash_all(&c, 1..201).await;
        let bounded = Plan {
            in_flight: 40,
            ..plan(50)
        };
        let report = run(&c, 1_000, bounded).await;
        assert_eq!(report.resent, 200, "{report:?}");
        let most = c.queue.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!(most >= 2, "batches overlapped: {most}");
        assert!(
            most <= 40 / MAX_BATCH,
            "no more than 40 records in flight: {most} batches"
        );

        // One at a time is still a plan (the bench's baseline).
        let one = batching(Batches::default());
        crash_all(&one, 1..21).await;
        let serial = Plan {
            in_flight: 1,
            ..plan(50)
        };
        let report = run(&one, 1_000, serial).await;
        assert_eq!(report.resent, 20);
        assert!(one.queue.batches.lock().unwrap().iter().all(|n| *n == 1));
    }

    /// Issue 32 (2): a backlog longer than one run is worked through in
    /// turn. The oldest records keep failing (slowly), so a run that began
    /// at the oldest every time would spend every run on them and never
    /// reach the newest; each run resumes where the last one stopped.
    #[tokio::test]
    async fn a_backlog_longer_than_a_run_reaches_the_newest() {
        /// Fifty pending stops in one shard; the oldest forty fail slowly.
        async fn backlog() -> Canceller<MemoryPublishes, Batches> {
            let c = Canceller {
                publishes: MemoryPublishes::with_shards(
                    crate::domain::PendingShards::new(1).unwrap(),
                ),
                queue: Batches {
                    failing: (1..=40).collect(),
                    delay: Duration::from_millis(40),
                    ..Batches::default()
                },
            };
            let seed = Canceller {
                publishes: c.publishes.clone(),
                queue: ScriptedQueue::default(),
            };
            for pitid in 1..=50 {
                crashed(&seed, pitid, 100 + pitid).await;
            }
            c
        }
        /// One run with time for about two pages of ten.
        async fn run(c: &Canceller<MemoryPublishes, Batches>, resume: &Resume) {
            let serial = Plan {
                in_flight: 10,
                ..plan(10)
            };
            let until = Instant::now() + Duration::from_millis(100);
            reconcile(c, || Timestamp(1_000), serial, until, resume, |_| {})
                .await
                .unwrap();
        }
        let c = backlog().await;
        let resume = Resume::default();
        let mut runs = 0;
        while c.publishes.get(&key(50)).unwrap().stop_pending {
            runs += 1;
            assert!(runs <= 8, "the newest was never reached");
            run(&c, &resume).await;
        }
        assert!(runs >= 2, "one run was enough: the test proves nothing");
        for pitid in 41..=50 {
            assert!(!c.publishes.get(&key(pitid)).unwrap().stop_pending);
        }
        // Without resuming, every run starts at the oldest: never reached.
        let fresh = backlog().await;
        for _ in 0..runs {
            run(&fresh, &Resume::default()).await;
        }
        assert!(fresh.publishes.get(&key(50)).unwrap().stop_pending);
    }

    /// Issue 32 (3): while the queue is known to be down, a run claims
    /// nothing (no writes for stops it could not send), and says so.
    #[tokio::test]
    async fn nothing_is_claimed_while_the_queue_is_down() {
        struct Down;
        impl StopQueue for Down {
            async fn send(&self, _: &StopMessage) -> Result<(), BackendError> {
                Err(BackendError::msg("down"))
            }
            fn available(&self) -> bool {
                false
            }
        }
        let c = Canceller {
            publishes: MemoryPublishes::default(),
            queue: Down,
        };
        let seed = Canceller {
            publishes: c.publishes.clone(),
            queue: ScriptedQueue::default(),
        };
        for pitid in 1..=30 {
            crashed(&seed, pitid, 100).await;
        }
        let before = c.publishes.all();
        let report = run(&c, 1_000, plan(100)).await;
        assert_eq!((report.found, report.failed, report.resent), (30, 30, 0));
        assert_eq!(c.publishes.all(), before, "no claim was written");
    }

    /// Every shard is in exactly one group, whatever the count.
    #[tokio::test]
    async fn groups_split_the_shards_between_them() {
        let c = Canceller {
            publishes: MemoryPublishes::with_shards(crate::domain::PendingShards::new(16).unwrap()),
            queue: ScriptedQueue::default(),
        };
        for pitid in 1..=64 {
            crashed(&c, pitid, 100).await;
        }
        assert!(ShardGroup::new(4, 4).is_none() && ShardGroup::new(0, 0).is_none());
        // Found, never sent: the queue fails, the marks stay for the next count.
        c.queue.fail(true);
        for count in [1u64, 3, 4, 17, 40] {
            let mut found = 0;
            for index in 0..count {
                let group = ShardGroup::new(index, count).unwrap();
                let report = reconcile_group(
                    &c,
                    || Timestamp(1_000),
                    plan(100),
                    group,
                    later(),
                    &Resume::default(),
                    |_| {},
                )
                .await
                .unwrap();
                found += report.found;
            }
            assert_eq!(found, 64, "{count} groups");
        }
    }

    /// A run's report is the sum of its pages', field by field.
    #[test]
    fn a_run_adds_up_its_pages() {
        let page = |n: usize, cut_short: bool| ReconcileReport {
            found: n,
            resent: 2 * n,
            busy: 3 * n,
            failed: 4 * n,
            undeliverable: 5 * n,
            unreadable: 6 * n,
            cut_short,
        };
        let mut run = ReconcileReport::default();
        run.add(&page(1, false));
        run.add(&page(2, true));
        run.add(&page(4, false));
        assert_eq!(run, page(7, true));
    }

    #[tokio::test]
    async fn a_run_stops_at_its_deadline() {
        let c = cancel_key();
        crashed(&c, 1, 100).await;
        let report = reconcile(
            &c,
            || Timestamp(1_000),
            plan(10),
            Instant::now(),
            &Resume::default(),
            |_| {},
        )
        .await
        .unwrap();
        assert!(report.cut_short);
        assert!(c.queue.sent().is_empty());
        assert!(c.publishes.get(&key(1)).unwrap().stop_pending);
    }
}
