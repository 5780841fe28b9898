//! The HTTP layer: one handler from a plain HTTP request to a plain HTTP
//! response, shared by every front door (Lambda events, the local server).
//! Every route goes the same way (`Api::handle`): path table (`route`),
//! method, `Accept` (`negotiate`), the access gate (`crate::access`), its
//! endpoint (`endpoints`), then its answer (`render`) or its refusal
//! (`error`).

pub mod endpoints;
pub mod error;
pub mod negotiate;
pub mod render;
pub mod route;

use std::time::Instant;

use http::header::{
    HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::access::Gate;
use crate::auth::{AuthTrace, Credentials};
use crate::cancel::Canceller;
use crate::domain::Timestamp;
use crate::metrics::{Metrics, RequestFacts};
use crate::ports::{CancelWrites, PublishReader, StopQueue, Users};
use endpoints::Answer;
use error::{Refusal, Refused, RequestError, RETRY_AFTER_SECS};
use negotiate::Format;
use render::{LocalizedErrorMsg, Parameters, UforgeError};

/// What a front door hands to the handler. Borrowed: no copies of the
/// request are made on the way in.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    pub method: &'a Method,
    /// The path as received, still percent-encoded.
    pub path: &'a str,
    /// The raw query string, without `?` (empty when none).
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The Lambda request id, or one the local server made up.
    pub request_id: &'a str,
}

/// Error bodies echo at most this much of the request path.
const MAX_ECHOED_URI: usize = 256;

/// Every request answers within this, whatever its backends do: each SDK
/// call is bounded on its own (`config`), and this bounds their sum well
/// below the function timeout (15 s) and API Gateway's 29 s. A cancel cut
/// off after its write is finished by the reconciler.
pub const REQUEST_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP service: the access gate every route goes through, the
/// stores the routes work on, and what every request shares.
#[derive(Debug)]
pub struct Api<U, P, Q> {
    gate: Gate<U>,
    /// The cancel's delivery protocol; its publishes store is also what
    /// the reading routes read.
    cancel: Canceller<P, Q>,
    /// Normalised base path, e.g. `/api` (see `route::normalise_base`).
    base: String,
    budget: std::time::Duration,
    /// EMF metric lines, one per request (Lambda only).
    metrics: Option<Metrics>,
}

impl<U: Users, P: CancelWrites + PublishReader, Q: StopQueue> Api<U, P, Q> {
    pub fn new(gate: Gate<U>, cancel: Canceller<P, Q>, base: &str) -> Self {
        Api {
            gate,
            cancel,
            base: route::normalise_base(base),
            budget: REQUEST_BUDGET,
            metrics: None,
        }
    }

    /// Also writes one EMF metric line per request.
    pub fn with_metrics(mut self, metrics: Option<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Replaces `REQUEST_BUDGET` (tests of the time budget use a short one).
    pub fn with_budget(mut self, budget: std::time::Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Answers one request: the route, its method, the representation,
    /// the access gate, then the route's endpoint; logged and counted
    /// under the route's name.
    pub async fn handle(&self, req: ApiRequest<'_>) -> Response<Vec<u8>> {
        let started = Instant::now();
        let format = negotiate::choose(
            req.headers
                .get_all(ACCEPT)
                .iter()
                .map(HeaderValue::as_bytes),
        );
        let matched = route::route(&self.base, req.path);
        let route_name = matched.as_ref().map_or(NO_ROUTE, |m| m.route.name);
        let (result, auth) = self.answer(&req, matched, format).await;
        let format = format.unwrap_or(Format::Xml);
        let response = match &result {
            Ok(answer) => success(answer, format, &req),
            Err(e) => error_response(e.as_ref(), format, req.method.as_str(), req.path),
        };
        let outcome = match &result {
            Ok(answer) => answer.outcome,
            Err(e) => e.outcome(),
        };
        let facts = RequestFacts {
            request_id: req.request_id,
            route: route_name,
            outcome,
            auth,
            latency_ms: crate::metrics::millis_since(started),
        };
        log_outcome(&req, &result, &facts, response.status());
        self.record(&facts);
        response
    }

    /// A request a front door could not read (`RequestError::Malformed`):
    /// a 400 `uforgeError` in XML, logged and counted like every other
    /// answer. `method` and `path` are echoed as received, truncated.
    pub fn malformed(
        &self,
        reason: &'static str,
        method: &str,
        path: &str,
        request_id: &str,
    ) -> Response<Vec<u8>> {
        let started = Instant::now();
        let e = RequestError::Malformed(reason);
        let response = error_response(&e, Format::Xml, method, path);
        let facts = RequestFacts {
            request_id,
            route: NO_ROUTE,
            outcome: e.outcome(),
            auth: AuthTrace::default(),
            latency_ms: crate::metrics::millis_since(started),
        };
        tracing::info!(
            request_id,
            route = facts.route,
            method = truncate(method, 16),
            path = truncate(path, MAX_ECHOED_URI),
            result = %e,
            status = response.status().as_u16(),
            duration_ms = facts.latency_ms,
            "{}",
            facts.route
        );
        self.record(&facts);
        response
    }

    fn record(&self, facts: &RequestFacts<'_>) {
        if let Some(m) = &self.metrics {
            m.emit(m.request_line(facts, crate::metrics::now_ms()));
        }
    }

    /// Everything every route shares (the path table, the method,
    /// `Accept`, the gate), then the route's endpoint, all within the
    /// request's time budget. The trace says how the caller was checked.
    async fn answer(
        &self,
        req: &ApiRequest<'_>,
        matched: Option<route::Matched<'_>>,
        format: Option<Format>,
    ) -> (Result<Answer, Refused>, AuthTrace) {
        let untraced = |e: RequestError| (Err(e.into()), AuthTrace::default());
        let Some(matched) = matched else {
            return untraced(RequestError::NoRoute);
        };
        let route = matched.route;
        if !route.methods.contains(req.method) {
            return untraced(RequestError::MethodNotAllowed(route));
        }
        if format.is_none() {
            return untraced(RequestError::NotAcceptable);
        }
        let credentials = Credentials::from_request(
            req.headers
                .get_all(AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
            matched.relative,
            req.query,
        );
        let work = async {
            let (admitted, trace) = self
                .gate
                .admit(credentials, matched.key, route.entitlement)
                .await;
            let result = match admitted {
                Ok(admitted) => endpoints::run(self, route.endpoint, admitted, req).await,
                Err(e) => Err(e.into()),
            };
            (result, trace)
        };
        match tokio::time::timeout(self.budget, work).await {
            Ok(done) => done,
            Err(_) => untraced(RequestError::OverBudget),
        }
    }
}

/// The route name of requests that match none.
const NO_ROUTE: &str = "none";

fn success(answer: &Answer, format: Format, req: &ApiRequest<'_>) -> Response<Vec<u8>> {
    let minimal = negotiate::wants_minimal(
        req.headers
            .get_all("prefer")
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let mut builder = Response::builder().header(CACHE_CONTROL, "no-store");
    let body = if minimal {
        builder = builder
            .status(StatusCode::NO_CONTENT)
            .header("preference-applied", "return=minimal");
        Vec::new()
    } else {
        builder = builder
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, format.content_type());
        render::status(&answer.record, format)
    };
    builder.body(body).unwrap_or_else(|_| fallback())
}

fn error_response(e: &dyn Refusal, format: Format, method: &str, path: &str) -> Response<Vec<u8>> {
    let public = e.public();
    let status = public.status;
    let body = UforgeError {
        localized_error_msg: LocalizedErrorMsg {
            message: public.message,
            message_id: public.message_id,
            parameters: Parameters {
                parameter: public.parameters,
            },
        },
        request_method: truncate(method, 16).to_owned(),
        request_uri: truncate(path, MAX_ECHOED_URI).to_owned(),
        status_code: status.as_u16(),
        timestamp: Timestamp::now(),
    }
    .render(format);
    let mut builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, format.content_type())
        .header(CACHE_CONTROL, "no-store");
    if status == StatusCode::UNAUTHORIZED {
        builder = builder.header(WWW_AUTHENTICATE, "Basic realm=\"UForge\"");
    }
    if let Some(route) = e.allow() {
        builder = builder.header(ALLOW, route.allow());
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        builder = builder.header("retry-after", RETRY_AFTER_SECS);
    }
    builder.body(body).unwrap_or_else(|_| fallback())
}

/// Unreachable in practice (every header above is a valid constant), but a
/// response is owed even then.
fn fallback() -> Response<Vec<u8>> {
    let mut r = Response::new(Vec::new());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One line per request, its message the route's name: what was asked,
/// what happened, how the caller was checked, how long it took. Never the
/// query (it holds signatures) nor any header.
fn log_outcome(
    req: &ApiRequest<'_>,
    result: &Result<Answer, Refused>,
    facts: &RequestFacts<'_>,
    status: StatusCode,
) {
    let path = truncate(req.path, MAX_ECHOED_URI);
    let check = facts.auth.check.as_str();
    let auth_failure = facts.auth.denied.map(|d| d.as_str());
    let (route, outcome, duration_ms) = (facts.route, facts.outcome.as_str(), facts.latency_ms);
    match result {
        // Every field a plain value and the message a `&str` (the route's
        // name): on every request, `%` fields and a formatted message cost
        // the formatting machinery each.
        Ok(answer) => tracing::info!(
            message = route,
            request_id = req.request_id,
            uid = answer.record.key.uid.as_str(),
            aid = answer.record.key.aid.get(),
            itid = answer.record.key.itid.get(),
            pitid = answer.record.key.pitid.get(),
            result = outcome,
            check,
            status = status.as_u16(),
            duration_ms,
        ),
        Err(e) if status.is_server_error() => {
            let error: &(dyn std::error::Error + 'static) = e.as_ref();
            tracing::error!(
                request_id = req.request_id,
                path,
                result = outcome,
                status = status.as_u16(),
                duration_ms,
                error = %crate::ErrorChain(error),
                "{route}"
            )
        }
        Err(e) => tracing::info!(
            request_id = req.request_id,
            method = truncate(req.method.as_str(), 16),
            path,
            result = outcome,
            reason = %e,
            check,
            auth_failure,
            status = status.as_u16(),
            duration_ms,
            "{route}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
    use crate::auth::{Authenticator, Sealer};
    use crate::domain::{AttemptToken, CancelStamp, Claim, PublishKey, PublishRecord};
    use crate::ports::{BackendError, CancelFound};
    use crate::seed::{Seed, BUNDLED};

    /// Counts every call on the publishes, to prove none was made.
    #[derive(Default)]
    struct Counting {
        inner: MemoryPublishes,
        calls: Arc<AtomicUsize>,
    }

    impl Counting {
        fn count(&self) {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl CancelWrites for Counting {
        async fn cancel(
            &self,
            key: &PublishKey,
            stamp: &CancelStamp,
            attempt: &AttemptToken,
        ) -> Result<CancelFound, BackendError> {
            self.count();
            self.inner.cancel(key, stamp, attempt).await
        }
        async fn claim_stop(
            &self,
            key: &PublishKey,
            claim: &Claim,
            stale: Timestamp,
            at: Timestamp,
        ) -> Result<Option<crate::domain::PublishRecord>, BackendError> {
            self.count();
            self.inner.claim_stop(key, claim, stale, at).await
        }
        async fn release_stop(
            &self,
            key: &PublishKey,
            attempt: &AttemptToken,
        ) -> Result<bool, BackendError> {
            self.count();
            self.inner.release_stop(key, attempt).await
        }
        async fn stop_sent(
            &self,
            key: &PublishKey,
            attempt: &AttemptToken,
        ) -> Result<bool, BackendError> {
            self.count();
            self.inner.stop_sent(key, attempt).await
        }
        async fn stop_undeliverable(
            &self,
            key: &PublishKey,
            attempt: &AttemptToken,
            why: &str,
        ) -> Result<bool, BackendError> {
            self.count();
            self.inner.stop_undeliverable(key, attempt, why).await
        }
    }

    impl PublishReader for Counting {
        async fn read(&self, key: &PublishKey) -> Result<Option<PublishRecord>, BackendError> {
            self.count();
            self.inner.read(key).await
        }
    }

    fn basic(login: &str, password: &str) -> HeaderMap {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        headers
    }

    /// Every refusal of every route, before the endpoint: not one call on
    /// the publishes, not one stop.
    #[tokio::test]
    async fn nothing_of_a_publish_is_looked_at_before_the_gate_admits() {
        let seed = Seed::parse(BUNDLED).unwrap();
        let users: MemoryUsers = seed
            .users(&Sealer::new(&[3; 32]))
            .unwrap()
            .into_iter()
            .collect();
        let calls = Arc::new(AtomicUsize::new(0));
        let publishes = Counting {
            inner: seed.publishes().unwrap().into_iter().collect(),
            calls: calls.clone(),
        };
        let queue = MemoryQueue::default();
        let api = Api::new(
            Gate {
                users,
                auth: Authenticator::new(None),
            },
            Canceller {
                publishes,
                queue: queue.clone(),
            },
            "/api",
        );
        let path = |uid: &str, pitid: i64| {
            format!("/api/users/{uid}/appliances/1/images/2/pimages/{pitid}/cancel")
        };
        let status = |uid: &str, pitid: i64| path(uid, pitid).replace("/cancel", "/status");
        let cases = [
            (Method::GET, status("alice", 3), basic("alice", "bad"), 401),
            (
                Method::GET,
                status("carol", 7),
                basic("carol", "carol-password"),
                403,
            ),
            (
                Method::GET,
                status("alice", 3),
                basic("bob", "bob-password"),
                403,
            ),
            (
                Method::DELETE,
                status("alice", 3),
                basic("alice", "alice-password"),
                405,
            ),
            (Method::DELETE, path("alice", 3), basic("alice", "bad"), 401),
            (Method::DELETE, path("alice", 3), HeaderMap::new(), 401),
            (
                Method::DELETE,
                path("carol", 7),
                basic("carol", "carol-password"),
                403,
            ),
            (
                Method::DELETE,
                path("alice", 3),
                basic("bob", "bob-password"),
                403,
            ),
            (
                Method::DELETE,
                path("alice", 999),
                basic("bob", "bob-password"),
                403,
            ),
            (
                Method::GET,
                path("alice", 3),
                basic("alice", "alice-password"),
                405,
            ),
            (
                Method::DELETE,
                "/api/users/alice".into(),
                basic("alice", "alice-password"),
                404,
            ),
        ];
        for (method, path, headers, want) in cases {
            let resp = api
                .handle(ApiRequest {
                    method: &method,
                    path: &path,
                    query: "",
                    headers: &headers,
                    request_id: "r",
                })
                .await;
            assert_eq!(resp.status().as_u16(), want, "{method} {path}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "no publish was looked at");
        assert!(queue.sent().is_empty());
    }

    /// What hammr polls: the status before a cancel, the cancel, the
    /// status after; an absent publish is a 404 of its own.
    #[tokio::test]
    async fn the_status_route_reads_what_the_cancel_wrote() {
        let seed = Seed::parse(BUNDLED).unwrap();
        let api = Api::new(
            Gate {
                users: seed
                    .users(&Sealer::new(&[3; 32]))
                    .unwrap()
                    .into_iter()
                    .collect::<MemoryUsers>(),
                auth: Authenticator::new(None),
            },
            Canceller {
                publishes: seed
                    .publishes()
                    .unwrap()
                    .into_iter()
                    .collect::<MemoryPublishes>(),
                queue: MemoryQueue::default(),
            },
            "/api",
        );
        let alice = basic("alice", "alice-password");
        let call = |method: Method, what: &'static str, pitid: i64, accept: &'static str| {
            let mut headers = alice.clone();
            headers.insert(ACCEPT, HeaderValue::from_static(accept));
            let api = &api;
            async move {
                let path = format!("/api/users/alice/appliances/1/images/2/pimages/{pitid}/{what}");
                let resp = api
                    .handle(ApiRequest {
                        method: &method,
                        path: &path,
                        query: "",
                        headers: &headers,
                        request_id: "r",
                    })
                    .await;
                let body = String::from_utf8(resp.body().clone()).unwrap();
                (resp.status().as_u16(), body)
            }
        };
        let (status, before) = call(Method::GET, "status", 3, "application/json").await;
        assert_eq!(status, 200, "{before}");
        let before: serde_json::Value = serde_json::from_str(&before).unwrap();
        assert_eq!(before["cancelled"], false);
        assert_eq!(
            before["uri"],
            "users/alice/appliances/1/images/2/pimages/3/status"
        );
        assert_eq!(
            call(Method::DELETE, "cancel", 3, "application/xml").await.0,
            200
        );
        let (status, after) = call(Method::GET, "status", 3, "application/xml").await;
        assert_eq!(status, 200);
        assert!(after.contains("<cancelled>true</cancelled>"), "{after}");
        let (status, missing) = call(Method::GET, "status", 99, "application/xml").await;
        assert_eq!(status, 404);
        assert!(missing.contains("publish.status.notFound"), "{missing}");
    }

    /// What a front door could not read is a 400 `uforgeError` in XML that
    /// echoes the method and path it got.
    #[test]
    fn a_malformed_request_is_a_400_uforge_error() {
        let api = Api::new(
            Gate {
                users: MemoryUsers::default(),
                auth: Authenticator::new(None),
            },
            Canceller {
                publishes: MemoryPublishes::default(),
                queue: MemoryQueue::default(),
            },
            "/api",
        );
        let r = api.malformed("header value", "DELETE", "/api/users/alice/x", "r");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = String::from_utf8(r.body().clone()).unwrap();
        assert!(body.contains("<statusCode>400</statusCode>"), "{body}");
        assert!(
            body.contains("<requestUri>/api/users/alice/x</requestUri>"),
            "{body}"
        );
        assert!(
            body.contains("<requestMethod>DELETE</requestMethod>"),
            "{body}"
        );
    }

    /// The challenge goes with a 401 only; `Retry-After` with a 503 only.
    #[test]
    fn each_status_carries_its_own_headers() {
        use crate::access::AccessError;
        let cases: [(AccessError, StatusCode); 3] = [
            (AccessError::Unauthenticated, StatusCode::UNAUTHORIZED),
            (AccessError::NotOwner, StatusCode::FORBIDDEN),
            (
                AccessError::Backend(BackendError::msg("down")),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (error, status) in cases {
            let r = error_response(&error, Format::Xml, "DELETE", "/x");
            assert_eq!(r.status(), status);
            let has = |h: &str| r.headers().contains_key(h);
            assert_eq!(has("www-authenticate"), status == StatusCode::UNAUTHORIZED);
            assert_eq!(
                has("retry-after"),
                status == StatusCode::SERVICE_UNAVAILABLE
            );
            assert!(!has("allow"));
            // No parameters, no empty parameter list, in either format.
            for format in [Format::Xml, Format::Json] {
                let body = error_response(&error, format, "DELETE", "/x").into_body();
                let body = String::from_utf8(body).unwrap();
                assert!(!body.contains("parameter"), "{body}");
            }
        }
        // A 405 says which methods the resource answers.
        let route = route::cancel_route();
        let r = error_response(
            &RequestError::MethodNotAllowed(route),
            Format::Xml,
            "GET",
            "/x",
        );
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], route.allow());
    }

    /// Echoed texts are cut on a character boundary, never past the limit.
    #[test]
    fn truncation_stays_within_the_limit_on_a_boundary() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("ééé", 4), "éé");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc");
    }
}
