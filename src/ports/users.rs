//! The users of the installation, as the access gate reads them.

use std::future::Future;

use super::BackendError;
use crate::domain::{Login, User};

/// Read access to the users of the installation.
pub trait Users: Send + Sync {
    fn get(&self, login: &Login)
        -> impl Future<Output = Result<Option<User>, BackendError>> + Send;
}
