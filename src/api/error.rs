//! What a client is told of a refused request (`Refusal`): said once per
//! error type, here for the pipeline's, the gate's and the cancel's, beside
//! its route's endpoint for an error of one route's own. Messages are for
//! API users: they never carry a source error, a credential or an internal
//! name.

use http::StatusCode;

use super::route::Route;
use crate::access::AccessError;
use crate::cancel::CancelError;
use crate::outcome::Outcome;

/// How long a client should wait before retrying a 503, in seconds.
pub const RETRY_AFTER_SECS: u32 = 1;

/// What a client is told of a refused request: the status and the
/// `uforgeError`'s `messageId`, `message` and `parameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub status: StatusCode,
    pub message_id: &'static str,
    pub message: String,
    pub parameters: Vec<String>,
}

impl Public {
    pub fn new(status: StatusCode, message_id: &'static str, message: impl Into<String>) -> Public {
        Public {
            status,
            message_id,
            message: message.into(),
            parameters: Vec::new(),
        }
    }

    fn with(mut self, parameter: impl Into<String>) -> Public {
        self.parameters.push(parameter.into());
        self
    }
}

/// An error a route answers with: what the client is told, and the
/// request's outcome in logs and metrics. The error itself, with its
/// source chain, goes to the logs only.
pub trait Refusal: std::error::Error + Send + Sync + 'static {
    fn public(&self) -> Public;
    fn outcome(&self) -> Outcome;
    /// The methods to name in a 405's `Allow`.
    fn allow(&self) -> Option<&'static Route> {
        None
    }
}

/// A refusal of any route.
pub type Refused = Box<dyn Refusal>;

impl<E: Refusal> From<E> for Box<dyn Refusal> {
    fn from(e: E) -> Self {
        Box::new(e)
    }
}

/// What the pipeline every route shares can refuse, before a route runs.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The front door could not read the request at all (an event whose
    /// method or a header is not valid HTTP): nothing was looked at.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("no such resource")]
    NoRoute,
    /// The path is a resource of the path table (`route`), the method is
    /// not one of those it answers.
    #[error("method not allowed")]
    MethodNotAllowed(&'static Route),
    #[error("no acceptable representation")]
    NotAcceptable,
    /// The request's time budget ran out (its backends were slow).
    #[error("request time budget exceeded")]
    OverBudget,
}

/// The 503 of a store that is unavailable (retryable).
pub fn unavailable() -> Public {
    Public::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "error.unavailable",
        "The service is temporarily unavailable; retry the request",
    )
}

impl Refusal for RequestError {
    fn public(&self) -> Public {
        match self {
            RequestError::Malformed(_) => Public::new(
                StatusCode::BAD_REQUEST,
                "error.badRequest",
                "The request is malformed",
            ),
            RequestError::NoRoute => Public::new(
                StatusCode::NOT_FOUND,
                "error.notFound",
                "The requested resource does not exist",
            ),
            RequestError::MethodNotAllowed(route) => Public::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "error.methodNotAllowed",
                format!("Method not allowed on this resource; use {}", route.allow()),
            ),
            RequestError::NotAcceptable => Public::new(
                StatusCode::NOT_ACCEPTABLE,
                "error.notAcceptable",
                "No acceptable representation; this resource produces application/xml or application/json",
            ),
            RequestError::OverBudget => unavailable(),
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            RequestError::Malformed(_) => Outcome::BadRequest,
            RequestError::NoRoute => Outcome::NoRoute,
            RequestError::MethodNotAllowed(_) => Outcome::MethodNotAllowed,
            RequestError::NotAcceptable => Outcome::NotAcceptable,
            RequestError::OverBudget => Outcome::Unavailable,
        }
    }

    fn allow(&self) -> Option<&'static Route> {
        match self {
            RequestError::MethodNotAllowed(route) => Some(route),
            _ => None,
        }
    }
}

impl Refusal for AccessError {
    fn public(&self) -> Public {
        match self {
            AccessError::Unauthenticated => Public::new(
                StatusCode::UNAUTHORIZED,
                "error.unauthorized",
                "Authentication is required: invalid or missing credentials",
            ),
            AccessError::MissingEntitlement(name) => Public::new(
                StatusCode::FORBIDDEN,
                "error.forbidden.entitlement",
                format!("Access denied: the {name} entitlement is required"),
            )
            .with(*name),
            AccessError::NotOwner => Public::new(
                StatusCode::FORBIDDEN,
                "error.forbidden.user",
                "Access denied: you may only act on your own publishes",
            ),
            AccessError::Backend(_) => unavailable(),
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            AccessError::Unauthenticated => Outcome::Unauthenticated,
            AccessError::MissingEntitlement(_) | AccessError::NotOwner => Outcome::Forbidden,
            AccessError::Backend(_) => Outcome::Unavailable,
        }
    }
}

impl Refusal for CancelError {
    fn public(&self) -> Public {
        match self {
            CancelError::NotFound => Public::new(
                StatusCode::NOT_FOUND,
                "publish.cancel.notFound",
                "The publish of this machine image does not exist",
            ),
            CancelError::Finished(state) => Public::new(
                StatusCode::CONFLICT,
                "publish.cancel.finished",
                format!("The publish cannot be cancelled: it is already {state}"),
            )
            .with(state.to_string()),
            CancelError::Backend(_) | CancelError::StopNotSent(_) => unavailable(),
            // Not the caller's doing, and no retry cures it: alarmed.
            CancelError::StopUndeliverable(_) => Public::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "publish.cancel.stopUndeliverable",
                "The publish is cancelled, but its stop message could not be queued; the operators have been alerted",
            ),
            CancelError::Unreadable(_) => unreadable(),
        }
    }

    fn outcome(&self) -> Outcome {
        CancelError::outcome(self)
    }
}

/// The 500 of a record this release cannot read (alarmed).
pub fn unreadable() -> Public {
    Public::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "error.internal",
        "The publish record cannot be read; the operators have been alerted",
    )
}
