//! The reconciler's front door: a scheduled event (EventBridge Scheduler
//! or a schedule rule; its content is not read) runs one reconcile pass
//! within the invocation's deadline (`crate::reconcile`).

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use super::{invocation_deadline, LambdaHandler, RawEvent};
use crate::cancel::Canceller;
use crate::domain::Timestamp;
use crate::metrics::{now_ms, Metrics};
use crate::ports::{CancelWrites, PendingStops, StopQueue};
use crate::reconcile::{reconcile, Plan, Resume};
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
        // One metric line per page, written as soon as the page is done: a
        // run its deadline cuts short loses no count.
        let metrics = self.metrics.as_ref();
        let report = reconcile(
            &self.cancel,
            Timestamp::now,
            self.plan,
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
