//! What each route does once the access gate has let its request through.
//! A route is its entry in `route::ROUTES`, its arm in `run` and its
//! function here, with what clients are told of its own errors
//! (`error::Refusal`).

use http::StatusCode;

use super::{Api, ApiRequest};
use crate::access::Admitted;
use crate::api::error::{self, Public, Refusal, Refused};
use crate::api::route::Endpoint;
use crate::domain::{CancelAudit, CancelStamp, PublishRecord, RequestId, Timestamp};
use crate::outcome::Outcome;
use crate::ports::{BackendError, CancelWrites, PublishReader, StopQueue, Users};

/// What a route answers on success: every route answers with a publish's
/// `status` (`render::status`).
#[derive(Debug)]
pub struct Answer {
    pub record: PublishRecord,
    pub outcome: Outcome,
}

/// Runs `endpoint` for a request the gate admitted.
pub(super) async fn run<U: Users, P: CancelWrites + PublishReader, Q: StopQueue>(
    api: &Api<U, P, Q>,
    endpoint: Endpoint,
    admitted: Admitted,
    req: &ApiRequest<'_>,
) -> Result<Answer, Refused> {
    match endpoint {
        Endpoint::Cancel => cancel(api, admitted, req).await,
        Endpoint::Status => status(api, admitted).await,
    }
}

/// `machineImagePublish_cancel`: stamped with the request's id, the time
/// and the caller's login, then the delivery protocol (`crate::cancel`).
async fn cancel<U, P: CancelWrites, Q: StopQueue>(
    api: &Api<U, P, Q>,
    admitted: Admitted,
    req: &ApiRequest<'_>,
) -> Result<Answer, Refused> {
    let stamp = CancelStamp::new(
        RequestId::from_external(req.request_id),
        Timestamp::now(),
        CancelAudit::http(&admitted.user.login),
    );
    let done = api.cancel.run(&admitted.key, &stamp).await?;
    Ok(Answer {
        outcome: done.outcome(),
        record: done.record,
    })
}

/// Why a publish's status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no such publish")]
    NotFound,
    #[error("the publishes table is unavailable")]
    Backend(#[source] BackendError),
    /// A record this release cannot read (a state it does not know).
    #[error("the publish record cannot be read")]
    Unreadable(#[source] BackendError),
}

/// `machineImagePublishedStatus_get`: the publish's record, read
/// consistently, so a poll after a cancel's answer sees the cancel.
async fn status<U, P: PublishReader, Q>(
    api: &Api<U, P, Q>,
    admitted: Admitted,
) -> Result<Answer, Refused> {
    let record = match api.cancel.publishes.read(&admitted.key).await {
        Ok(Some(record)) => record,
        Ok(None) => return Err(StatusError::NotFound.into()),
        Err(e) if e.is_permanent() => return Err(StatusError::Unreadable(e).into()),
        Err(e) => return Err(StatusError::Backend(e).into()),
    };
    Ok(Answer {
        record,
        outcome: Outcome::StatusRead,
    })
}

impl Refusal for StatusError {
    fn public(&self) -> Public {
        match self {
            StatusError::NotFound => Public::new(
                StatusCode::NOT_FOUND,
                "publish.status.notFound",
                "The publish of this machine image does not exist",
            ),
            StatusError::Backend(_) => error::unavailable(),
            StatusError::Unreadable(_) => error::unreadable(),
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            StatusError::NotFound => Outcome::NotFound,
            StatusError::Backend(_) => Outcome::Unavailable,
            StatusError::Unreadable(_) => Outcome::UnreadableRecord,
        }
    }
}
