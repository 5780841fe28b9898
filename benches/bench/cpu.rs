//! Handler CPU per request, in process, and the cost of one metric line.

use super::*;

/// Handler CPU per request, in-memory adapters.
pub(super) async fn handler_cpu() -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, n, cached, signed) in [
        ("cache-hit Basic", 20_000, true, false),
        ("Argon2 Basic (no cache)", 40, false, false),
        ("API-key signed URL", 20_000, true, true),
    ] {
        let api = memory_api(cached);
        let req = if signed {
            Req::delete(cancel_path("alice", 1, 2, 3)).signed("PUBKEY123", "SECRETKEY456")
        } else {
            Req::delete(cancel_path("alice", 1, 2, 3)).basic("alice", "alice-password")
        };
        assert_eq!(common::call(&api, &req).await.status(), 200);
        let t = Instant::now();
        for _ in 0..n {
            let _ = common::call(&api, &req).await;
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        rows.push(Row(
            format!("handler CPU, {label}"),
            format!("{us:.1} µs/request"),
            format!("{:.0} requests/s on one core", 1e6 / us),
        ));
    }
    rows
}

/// One EMF metric line per request.
pub(super) fn metric_line_cost() -> Vec<Row> {
    let mut rows = Vec::new();
    {
        use publish_cancel::auth::{AuthTrace, Check, Denied, Scheme};
        use publish_cancel::metrics::{Metrics, RequestFacts};
        let m = Metrics::new("bench-CancelFunction-0123456789AB");
        let auth = AuthTrace {
            scheme: Scheme::Basic,
            check: Check::Argon2,
            denied: Some(Denied::WrongPassword),
        };
        let n = 50_000;
        let t = Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            let line = m.request_line(
                &RequestFacts {
                    request_id: "00000000-0000-4000-8000-000000000001",
                    route: "cancel",
                    outcome: publish_cancel::outcome::Outcome::Unauthenticated,
                    auth,
                    latency_ms: 12.5,
                },
                1_795_718_847_000,
            );
            bytes += line.len();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        rows.push(Row(
            "EMF metric line per request (build + serialise)".into(),
            format!("{us:.1} µs/request"),
            format!("{} bytes of log per request", bytes / n),
        ));
    }
    rows
}
