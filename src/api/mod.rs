//! The HTTP layer: one handler from a plain HTTP request to a plain HTTP
//! response, shared by every front door (Lambda events, the local server).

pub mod error;
pub mod negotiate;
pub mod render;
pub mod route;

use std::time::Instant;

use http::header::{
    HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::auth::{AuthTrace, Credentials};
use crate::cancel::{CancelError, CancelRequest, Cancelled, UserCancel};
use crate::domain::Timestamp;
use crate::metrics::{Metrics, RequestFacts};
use crate::ports::{BackendError, CancelWrites, PublishReader, StopQueue, Users};
use error::{ApiError, RETRY_AFTER_SECS};
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

/// The endpoint.
#[derive(Debug)]
pub struct Api<U, P, Q> {
    cancel: UserCancel<U, P, Q>,
    /// Normalised base path, e.g. `/api` (see `route::normalise_base`).
    base: String,
    budget: std::time::Duration,
    /// EMF metric lines, one per request (Lambda only).
    metrics: Option<Metrics>,
}

impl<U: Users, P: CancelWrites + PublishReader, Q: StopQueue> Api<U, P, Q> {
    pub fn new(cancel: UserCancel<U, P, Q>, base: &str) -> Self {
        Api {
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

    pub fn use_case(&self) -> &UserCancel<U, P, Q> {
        &self.cancel
    }

    pub async fn handle(&self, req: ApiRequest<'_>) -> Response<Vec<u8>> {
        let started = Instant::now();
        let format = negotiate::choose(
            req.headers
                .get_all(ACCEPT)
                .iter()
                .map(HeaderValue::as_bytes),
        );
        let (result, auth) = self.dispatch(&req, format).await;
        let response = match &result {
            Ok(done) => success(done, format.unwrap_or(Format::Xml), &req),
            Err(e) => failure(e, format.unwrap_or(Format::Xml), &req),
        };
        let outcome = match &result {
            Ok(done) => crate::cancel::Outcome::of_done(done).as_str(),
            Err(e) => e.outcome(),
        };
        log_outcome(&req, &result, outcome, &auth, response.status(), started);
        self.record(RequestFacts {
            request_id: req.request_id,
            outcome,
            auth,
            stop_not_sent: matches!(result, Err(ApiError::Cancel(CancelError::StopNotSent(_)))),
            stop_undeliverable: matches!(
                result,
                Err(ApiError::Cancel(CancelError::StopUndeliverable(_)))
            ),
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        response
    }

    /// A request a front door could not read (see `ApiError::Malformed`): a
    /// 400 `uforgeError` in XML, logged and counted like every other
    /// answer. `method` and `path` are echoed as received, truncated.
    pub fn malformed(
        &self,
        reason: &'static str,
        method: &str,
        path: &str,
        request_id: &str,
    ) -> Response<Vec<u8>> {
        let started = Instant::now();
        let e = ApiError::Malformed(reason);
        let response = error_response(&e, Format::Xml, method, path);
        tracing::info!(
            request_id,
            method = truncate(method, 16),
            path = truncate(path, MAX_ECHOED_URI),
            result = %e,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "cancel"
        );
        self.record(RequestFacts {
            request_id,
            outcome: e.outcome(),
            auth: AuthTrace::default(),
            stop_not_sent: false,
            stop_undeliverable: false,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
        response
    }

    fn record(&self, facts: RequestFacts<'_>) {
        if let Some(m) = &self.metrics {
            m.emit(&m.request_line(&facts, crate::metrics::now_ms()));
        }
    }

    async fn dispatch(
        &self,
        req: &ApiRequest<'_>,
        format: Option<Format>,
    ) -> (Result<Cancelled, ApiError>, AuthTrace) {
        match self.route_and_run(req, format).await {
            Ok((result, auth)) => (result.map_err(ApiError::from), auth),
            Err(e) => (Err(e), AuthTrace::default()),
        }
    }

    /// Everything every route shares (the path table, the method,
    /// `Accept`), then the route's endpoint.
    async fn route_and_run(
        &self,
        req: &ApiRequest<'_>,
        format: Option<Format>,
    ) -> Result<(Result<Cancelled, CancelError>, AuthTrace), ApiError> {
        let matched = route::route(&self.base, req.path).ok_or(ApiError::NoRoute)?;
        if !matched.route.methods.contains(req.method) {
            return Err(ApiError::MethodNotAllowed(matched.route));
        }
        format.ok_or(ApiError::NotAcceptable)?;
        Ok(match matched.route.endpoint {
            route::Endpoint::UserCancel => self.cancel_publish(req, matched).await,
        })
    }

    /// `machineImagePublish_cancel`, the caller's credentials read from the
    /// request, within the request's time budget.
    async fn cancel_publish(
        &self,
        req: &ApiRequest<'_>,
        matched: route::Matched<'_>,
    ) -> (Result<Cancelled, CancelError>, AuthTrace) {
        let credentials = Credentials::from_request(
            req.headers
                .get_all(AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
            matched.relative,
            req.query,
        );
        let request = CancelRequest {
            key: matched.key,
            credentials,
            request_id: crate::domain::RequestId::from_external(req.request_id),
            at: Timestamp::now(),
        };
        match tokio::time::timeout(self.budget, self.cancel.run_traced(request)).await {
            Ok(done) => done,
            Err(_) => (
                Err(CancelError::Backend(BackendError::msg(
                    "request time budget exceeded",
                ))),
                AuthTrace::default(),
            ),
        }
    }
}

fn success(done: &Cancelled, format: Format, req: &ApiRequest<'_>) -> Response<Vec<u8>> {
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
        render::status(&done.record, format)
    };
    builder.body(body).unwrap_or_else(|_| fallback())
}

fn failure(e: &ApiError, format: Format, req: &ApiRequest<'_>) -> Response<Vec<u8>> {
    error_response(e, format, req.method.as_str(), req.path)
}

fn error_response(e: &ApiError, format: Format, method: &str, path: &str) -> Response<Vec<u8>> {
    let status = e.status();
    let (message_id, message, parameter) = e.public_message();
    let body = UforgeError {
        localized_error_msg: LocalizedErrorMsg {
            message,
            message_id,
            parameters: Parameters { parameter },
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
    match status {
        StatusCode::UNAUTHORIZED => {
            builder = builder.header(WWW_AUTHENTICATE, "Basic realm=\"UForge\"")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            if let ApiError::MethodNotAllowed(route) = e {
                builder = builder.header(ALLOW, route.allow());
            }
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            builder = builder.header("retry-after", RETRY_AFTER_SECS)
        }
        _ => {}
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

/// One line per request: what was asked, what happened, how the caller was
/// checked, how long it took. Never the query (it holds signatures) nor any
/// header.
fn log_outcome(
    req: &ApiRequest<'_>,
    result: &Result<Cancelled, ApiError>,
    outcome: &'static str,
    auth: &AuthTrace,
    status: StatusCode,
    started: Instant,
) {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let path = truncate(req.path, MAX_ECHOED_URI);
    let check = auth.check.as_str();
    let auth_failure = auth.denied.map(|d| d.as_str());
    match result {
        Ok(done) => tracing::info!(
            request_id = req.request_id,
            uid = %done.record.key.uid,
            aid = %done.record.key.aid,
            itid = %done.record.key.itid,
            pitid = %done.record.key.pitid,
            result = outcome,
            check,
            status = status.as_u16(),
            duration_ms,
            "cancel"
        ),
        Err(ApiError::Cancel(e)) if status.is_server_error() => tracing::error!(
            request_id = req.request_id,
            path,
            result = outcome,
            status = status.as_u16(),
            duration_ms,
            error = %crate::ErrorChain(e),
            "cancel"
        ),
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
            "cancel"
        ),
    }
}
