//! The domain: what a publish, a user and their identifiers are, with no I/O.

mod attempt;
mod audit;
mod ids;
mod publish;
mod request_id;
mod user;

pub use attempt::{AttemptToken, Claim};
pub use audit::{
    is_display_text, is_noncharacter, AuditText, CancelAudit, CancelSource, InvalidAudit,
};
pub use ids::{ApplianceId, ImageId, InvalidId, InvalidLogin, Login, PublishId, PublishKey};
pub use publish::{CancelStamp, PublishRecord, PublishState, Timestamp, UnknownState};
pub use request_id::{InvalidRequestId, RequestId};
pub use user::{ApiKey, User, IMAGE_PUBLISH};
