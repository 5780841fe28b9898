//! The reconciler's front door: a scheduled event (EventBridge Scheduler
//! or a schedule rule) runs one reconcile pass within the invocation's
//! deadline (`crate::reconcile`). The event's only fields read are
//! `shardGroup` and `shardGroups`, set by the template's schedules so that
//! each invocation takes one group of the index's shards; without them (or
//! with values that name no group) it takes every shard.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use super::{invocation_deadline, LambdaHandler, RawEvent};
use crate::cancel::Canceller;
use crate::domain::Timestamp;
use crate::metrics::{now_ms, Metrics};
use crate::ports::{CancelWrites, PendingStops, StopQueue};
use crate::reconcile::{reconcile_group, Plan, Resume, ShardGroup};
use crate::ErrorChain;

/// The reconciler function's handler.
#[derive(Debug)]
pub struct Reconciler<P, Q> {
    pub cancel: Canceller<P, Q>,
    /// How each run goes about its work.
    pub plan: Plan,
    /// Where this process's last run stopped in each shard.
    pub resume: Resume,
    pub metrics: Option<Metrics>,
}

impl<P: CancelWrites + PendingStops, Q: StopQueue> LambdaHandler for Reconciler<P, Q> {
    type Answer = Value;

    async fn call(&self, event: LambdaEvent<RawEvent>) -> Result<Value, Diagnostic> {
        let until = invocation_deadline(&event.context);
        let group = shard_group(&event.payload);
        // One metric line per page, written as soon as the page is done: a
        // run its deadline cuts short loses no count.
        let metrics = self.metrics.as_ref();
        let report = reconcile_group(
            &self.cancel,
            Timestamp::now,
            self.plan,
            group,
            until,
            &self.resume,
            |page| {
                if let Some(m) = metrics {
                    m.emit(m.reconcile_line(page, now_ms()).to_string());
                }
            },
        )
        .await
        .map_err(|e| Diagnostic {
            error_type: "UForge.BackendUnavailable".into(),
            error_message: format!("reading pending stops: {}", ErrorChain(&e)),
        })?;
        tracing::info!(
            found = report.found,
            resent = report.resent,
            busy = report.busy,
            failed = report.failed,
            undeliverable = report.undeliverable,
            unreadable = report.unreadable,
            cut_short = report.cut_short,
            "reconcile"
        );
        if report.failed > 0 {
            // Fail the invocation so the errors alarm sees it. Contention
            // (`busy`) is not a failure: another attempt holds the stop.
            return Err(Diagnostic {
                error_type: "UForge.StopsStillPending".into(),
                error_message: format!("{} stop(s) still pending", report.failed),
            });
        }
        serde_json::to_value(report).map_err(|e| Diagnostic {
            error_type: "UForge.Internal".into(),
            error_message: e.to_string(),
        })
    }
}

/// The group of shards an event asks for: `{"shardGroup": i,
/// "shardGroups": n}` with `i < n`, else every shard (a bad pair is
/// logged: reading too much costs reads, reading too little would leave
/// stops unsent).
fn shard_group(event: &RawEvent) -> ShardGroup {
    let Some(json) = event.json() else {
        return ShardGroup::ALL;
    };
    match (json.get("shardGroup"), json.get("shardGroups")) {
        (None, None) => ShardGroup::ALL,
        (index, count) => {
            let group = index
                .and_then(Value::as_u64)
                .zip(count.and_then(Value::as_u64))
                .and_then(|(i, n)| ShardGroup::new(i, n));
            group.unwrap_or_else(|| {
                tracing::warn!(?index, ?count, "no such shard group: reading every shard");
                ShardGroup::ALL
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> RawEvent {
        serde_json::from_str(text).unwrap()
    }

    /// Issue 33 (9): the reconciler function's invocation errors, outside
    /// the soak: a stop still pending is `UForge.StopsStillPending`, a
    /// shard that cannot be read `UForge.BackendUnavailable`; a run that
    /// left nothing pending answers its report.
    #[tokio::test]
    async fn its_invocation_errors_have_their_documented_types() {
        use crate::adapters::memory::{MemoryPublishes, ScriptedQueue};
        use crate::domain::fixtures::{alice_key, alice_stamp};
        use crate::domain::{PublishRecord, PublishState, Shard};
        use crate::ports::{BackendError, Cursor, PendingPage, PendingStops};

        struct Unreadable(MemoryPublishes);
        impl PendingStops for Unreadable {
            fn shards(&self) -> Vec<Shard> {
                self.0.shards()
            }
            async fn pending_stops(
                &self,
                _: Shard,
                _: Timestamp,
                _: Option<&Cursor>,
                _: usize,
            ) -> Result<PendingPage, BackendError> {
                Err(BackendError::msg("the index cannot be read"))
            }
        }
        impl crate::ports::CancelWrites for Unreadable {
            fn cancel(
                &self,
                k: &crate::domain::PublishKey,
                s: &crate::domain::CancelStamp,
                a: &crate::domain::AttemptToken,
            ) -> impl std::future::Future<Output = Result<crate::ports::CancelFound, BackendError>> + Send
            {
                self.0.cancel(k, s, a)
            }
            fn claim_stop(
                &self,
                k: &crate::domain::PublishKey,
                c: &crate::domain::Claim,
                s: Timestamp,
                at: Timestamp,
            ) -> impl std::future::Future<Output = Result<Option<PublishRecord>, BackendError>> + Send
            {
                self.0.claim_stop(k, c, s, at)
            }
            fn release_stop(
                &self,
                k: &crate::domain::PublishKey,
                a: &crate::domain::AttemptToken,
            ) -> impl std::future::Future<Output = Result<bool, BackendError>> + Send {
                self.0.release_stop(k, a)
            }
            fn stop_sent(
                &self,
                k: &crate::domain::PublishKey,
                a: &crate::domain::AttemptToken,
            ) -> impl std::future::Future<Output = Result<bool, BackendError>> + Send {
                self.0.stop_sent(k, a)
            }
            fn stop_undeliverable(
                &self,
                k: &crate::domain::PublishKey,
                a: &crate::domain::AttemptToken,
                why: &str,
            ) -> impl std::future::Future<Output = Result<bool, BackendError>> + Send {
                self.0.stop_undeliverable(k, a, why)
            }
        }

        fn invocation() -> LambdaEvent<RawEvent> {
            let mut context = lambda_runtime::Context::default();
            // What emulators send: the time left, 60 s.
            context.deadline = 60_000;
            LambdaEvent::new(event(r#"{"detail-type": "Scheduled Event"}"#), context)
        }
        let plan = Plan {
            grace: std::time::Duration::from_secs(0),
            page: 10,
            in_flight: 4,
        };
        let store = MemoryPublishes::default();
        store.put(PublishRecord::new(alice_key(3), PublishState::Publishing));
        let seed = Canceller {
            publishes: store.clone(),
            queue: ScriptedQueue::default(),
        };
        seed.queue.fail(true);
        assert!(seed
            .run(&alice_key(3), &alice_stamp("r", 100))
            .await
            .is_err());

        let failing = Reconciler {
            cancel: Canceller {
                publishes: store.clone(),
                queue: seed.queue.clone(),
            },
            plan,
            resume: Resume::default(),
            metrics: None,
        };
        let e = failing.call(invocation()).await.unwrap_err();
        assert_eq!(e.error_type, "UForge.StopsStillPending", "{e:?}");

        let blind = Reconciler {
            cancel: Canceller {
                publishes: Unreadable(store.clone()),
                queue: ScriptedQueue::default(),
            },
            plan,
            resume: Resume::default(),
            metrics: None,
        };
        let e = blind.call(invocation()).await.unwrap_err();
        assert_eq!(e.error_type, "UForge.BackendUnavailable", "{e:?}");

        seed.queue.fail(false);
        let report = failing.call(invocation()).await.unwrap();
        assert_eq!(report["resent"], 1, "{report}");
    }

    #[test]
    fn a_schedule_names_its_group_and_anything_else_reads_every_shard() {
        assert_eq!(
            shard_group(&event(r#"{"shardGroup": 2, "shardGroups": 4}"#)),
            ShardGroup::new(2, 4).unwrap()
        );
        for other in [
            r#"{}"#,
            r#"{"detail-type": "Scheduled Event"}"#,
            r#"{"shardGroup": 4, "shardGroups": 4}"#,
            r#"{"shardGroup": -1, "shardGroups": 4}"#,
            r#"{"shardGroup": "1", "shardGroups": 4}"#,
            r#"{"shardGroup": 1}"#,
            r#"{"shardGroups": 0}"#,
            r#"[]"#,
        ] {
            assert_eq!(shard_group(&event(other)), ShardGroup::ALL, "{other}");
        }
    }
}
