//! The domain: what a publish, a user and their identifiers are, with no I/O.

mod audit;
mod ids;
mod publish;
mod user;

pub use audit::{AuditText, CancelAudit, CancelSource, InvalidAudit};
pub use ids::{ApplianceId, ImageId, InvalidId, InvalidLogin, Login, PublishId, PublishKey};
pub use publish::{CancelStamp, PublishRecord, PublishState, Timestamp, UnknownState};
pub use user::{ApiKey, User, IMAGE_PUBLISH};
