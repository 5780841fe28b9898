//! `uforge-admin apikey reseal`: every API secret moved under the current
//! KEK, each by one conditional update (docs/security.md).

use aws_sdk_dynamodb::types::AttributeValue;

use super::client::{backend, DynamoAdmin};
use crate::adapters::dynamodb::attr;
use crate::domain::Login;
use crate::ports::AdminError;

/// What `reseal_api_keys` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: usize,
    pub current: usize,
    pub skipped: usize,
}

impl ResealReport {
    /// Keys seen, re-sealed, skipped (changed meanwhile).
    pub fn counts(&self) -> crate::admin::Counts {
        crate::admin::Counts {
            scanned: self.resealed + self.current + self.skipped,
            fixed: self.resealed,
            failed: self.skipped,
        }
    }
}

impl DynamoAdmin {
    /// Re-seals every API secret that is not sealed under the current KEK
    /// (after a rotation, before the previous KEK is retired). Each key is
    /// one conditional update: a key changed meanwhile is left alone and
    /// counted as skipped. Returns (re-sealed, already current, skipped).
    pub async fn reseal_api_keys(&self) -> Result<ResealReport, AdminError> {
        self.reseal_api_keys_with(&mut |_| {}).await
    }

    /// The same, telling `page_done` the report so far after each page.
    /// Each key is one conditional update: stopped at any point, every key
    /// is under the old or the new KEK, and a second run does the rest.
    pub async fn reseal_api_keys_with(
        &self,
        page_done: &mut (dyn FnMut(&ResealReport) + Send),
    ) -> Result<ResealReport, AdminError> {
        let sealer = self.sealer().await?;
        let mut report = ResealReport::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.users_table)
                .projection_expression("#login, #k")
                .expression_attribute_names("#login", attr::LOGIN)
                .expression_attribute_names("#k", attr::API_KEYS)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("scanning the users table", e))?;
            for item in page.items() {
                let Some(login) = item
                    .get(attr::LOGIN)
                    .and_then(|v| v.as_s().ok())
                    .and_then(|s| Login::parse(s).ok())
                else {
                    continue;
                };
                let Some(keys) = item.get(attr::API_KEYS).and_then(|v| v.as_m().ok()) else {
                    continue;
                };
                for (public_key, sealed) in keys {
                    let Ok(sealed) = sealed.as_s() else { continue };
                    if sealer.is_current(sealed) {
                        report.current += 1;
                        continue;
                    }
                    let secret = sealer
                        .open(login.as_str(), public_key, sealed)
                        .map_err(|e| {
                            AdminError::Invalid(format!(
                                "{login}'s key {public_key} does not open under the current or previous KEK ({e}); re-issue it"
                            ))
                        })?;
                    let resealed = sealer
                        .seal(login.as_str(), public_key, &secret)
                        .map_err(|e| AdminError::Invalid(e.to_string()))?;
                    let names = [("#k", attr::API_KEYS), ("#p", public_key.as_str())];
                    let done = self
                        .update_user(
                            &login,
                            "SET #k.#p = :new",
                            &names,
                            vec![
                                (":new", AttributeValue::S(resealed)),
                                (":old", AttributeValue::S(sealed.clone())),
                            ],
                            "#k.#p = :old",
                        )
                        .await;
                    match done {
                        Ok(()) => report.resealed += 1,
                        // Revoked or replaced meanwhile: nothing to re-seal.
                        Err(AdminError::NoSuchUser(_)) => report.skipped += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            page_done(&report);
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(report),
            }
        }
    }
}
