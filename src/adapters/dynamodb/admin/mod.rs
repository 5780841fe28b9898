//! The operator's tooling on DynamoDB, by job: the store (`client`), the
//! port `uforge-admin` edits users and publishes through (`store`), the
//! re-sealing of API secrets (`reseal`), the repair of publish records
//! (`repair`).

mod client;
mod repair;
mod reseal;
mod store;

pub use client::DynamoAdmin;
pub use repair::RepairReport;
pub use reseal::ResealReport;
