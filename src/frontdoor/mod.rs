//! Front doors: ways a request reaches `api::Api::handle`.

pub mod lambda;
pub mod local;
