//! The X-Ray trace of the invocation being served, for what our code
//! carries on itself: the stop message (`AWSTraceHeader`, so the worker's
//! segment joins the trace). The SDK's calls carry it already: the
//! runtime sets `_X_AMZN_TRACE_ID` for each invocation and the SDK copies
//! it into their `X-Amzn-Trace-Id` header.

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static TRACE: Option<Arc<str>>;
}

/// `work`, run under `trace` (Lambda's `Lambda-Runtime-Trace-Id`).
pub fn scope<F: Future>(trace: Option<Arc<str>>, work: F) -> Scoped<F> {
    TRACE.scope(trace, work)
}

/// A future run under a trace (`scope`).
pub type Scoped<F> = tokio::task::futures::TaskLocalFuture<Option<Arc<str>>, F>;

/// The trace of the invocation this task serves, if any.
pub fn current() -> Option<Arc<str>> {
    TRACE.try_with(Clone::clone).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_trace_is_the_invocation_s_and_only_within_it() {
        assert_eq!(current(), None);
        let inside = scope(Some(Arc::from("Root=1-a-b;Sampled=1")), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("Root=1-a-b;Sampled=1"));
        assert_eq!(scope(None, async { current() }).await, None);
        assert_eq!(current(), None);
    }
}
