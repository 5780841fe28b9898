//! Lambda events (API Gateway REST and HTTP APIs, ALB, function URLs) in,
//! Lambda HTTP responses out.

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::api::{Api, ApiRequest};
use crate::ports::{Publishes, StopQueue, Users};

pub async fn handle<U: Users, P: Publishes, Q: StopQueue>(
    api: &Api<U, P, Q>,
    event: Request,
) -> Response<Body> {
    let request_id = event
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(super::new_request_id);
    let path = path_without_stage(&event);
    let response = api
        .handle(ApiRequest {
            method: event.method(),
            path,
            query: event.uri().query().unwrap_or(""),
            headers: event.headers(),
            request_id: &request_id,
        })
        .await;
    response.map(|body| {
        if body.is_empty() {
            Body::Empty
        } else {
            // Our bodies are UTF-8 XML or JSON: send them as text so API
            // Gateway does not need binary media types.
            String::from_utf8(body).map_or_else(|e| Body::Binary(e.into_bytes()), Body::Text)
        }
    })
}

/// The request path as the client sent it, without an API Gateway stage
/// prefix (`/prod/api/...` → `/api/...`).
fn path_without_stage(event: &Request) -> &str {
    let raw = event.raw_http_path();
    let raw = if raw.is_empty() {
        event.uri().path()
    } else {
        raw
    };
    let stage = match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.stage.as_deref(),
        Some(RequestContext::ApiGatewayV2(c)) => c.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" => raw
            .strip_prefix('/')
            .and_then(|r| r.strip_prefix(stage))
            .filter(|r| r.starts_with('/'))
            .unwrap_or(raw),
        _ => raw,
    }
}
