//! The one mapping from everything that can go wrong to an HTTP status and
//! a `uforgeError`. Messages are for API users: they never carry a source
//! error, a credential or an internal name.

use http::StatusCode;

use super::route::Route;
use crate::cancel::CancelError;

/// Everything the endpoint can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The front door could not read the request at all (an event whose
    /// method or a header is not valid HTTP): nothing was looked at.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("no such resource")]
    NoRoute,
    /// The path is a resource of the path table (`route`), the method is not one
    /// of those it answers.
    #[error("method not allowed")]
    MethodNotAllowed(&'static Route),
    #[error("no acceptable representation")]
    NotAcceptable,
    #[error(transparent)]
    Cancel(#[from] CancelError),
}

/// How long a client should wait before retrying a 503, in seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ApiError::Cancel(e) => match e {
                CancelError::Unauthenticated => StatusCode::UNAUTHORIZED,
                CancelError::MissingEntitlement | CancelError::NotOwner => StatusCode::FORBIDDEN,
                CancelError::NotFound => StatusCode::NOT_FOUND,
                CancelError::Finished(_) => StatusCode::CONFLICT,
                CancelError::Backend(_) | CancelError::StopNotSent(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                // Not the caller's doing, and no retry cures it: alarmed.
                CancelError::StopUndeliverable(_) | CancelError::Unreadable(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }

    /// The request's outcome as logs and metrics name it (a small, fixed set).
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "bad_request",
            ApiError::NoRoute => "no_route",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::NotAcceptable => "not_acceptable",
            ApiError::Cancel(e) => crate::cancel::Outcome::of_error(e).as_str(),
        }
    }

    /// (messageId, message, parameters) of the `uforgeError`.
    pub fn public_message(&self) -> (&'static str, String, Vec<String>) {
        match self {
            ApiError::Malformed(_) => (
                "error.badRequest",
                "The request is malformed".into(),
                vec![],
            ),
            ApiError::NoRoute => (
                "error.notFound",
                "The requested resource does not exist".into(),
                vec![],
            ),
            ApiError::MethodNotAllowed(route) => (
                "error.methodNotAllowed",
                format!("Method not allowed on this resource; use {}", route.allow()),
                vec![],
            ),
            ApiError::NotAcceptable => (
                "error.notAcceptable",
                "No acceptable representation; this resource produces application/xml or application/json".into(),
                vec![],
            ),
            ApiError::Cancel(e) => match e {
                CancelError::Unauthenticated => (
                    "error.unauthorized",
                    "Authentication is required: invalid or missing credentials".into(),
                    vec![],
                ),
                CancelError::MissingEntitlement => (
                    "error.forbidden.entitlement",
                    "Access denied: the image_publish entitlement is required".into(),
                    vec!["image_publish".into()],
                ),
                CancelError::NotOwner => (
                    "error.forbidden.user",
                    "Access denied: you may only cancel your own publishes".into(),
                    vec![],
                ),
                CancelError::NotFound => (
                    "publish.cancel.notFound",
                    "The publish of this machine image does not exist".into(),
                    vec![],
                ),
                CancelError::Finished(state) => (
                    "publish.cancel.finished",
                    format!("The publish cannot be cancelled: it is already {state}"),
                    vec![state.to_string()],
                ),
                CancelError::Backend(_) | CancelError::StopNotSent(_) => (
                    "error.unavailable",
                    "The service is temporarily unavailable; retry the request".into(),
                    vec![],
                ),
                CancelError::StopUndeliverable(_) => (
                    "publish.cancel.stopUndeliverable",
                    "The publish is cancelled, but its stop message could not be queued; the operators have been alerted".into(),
                    vec![],
                ),
                CancelError::Unreadable(_) => (
                    "error.internal",
                    "The publish record cannot be read; the operators have been alerted".into(),
                    vec![],
                ),
            },
        }
    }
}
