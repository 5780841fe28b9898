//! The operator's port (`ports::AdminStore`) on DynamoDB.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::client::{backend, DynamoAdmin};
use crate::adapters::dynamodb::{
    attr, publish_item_key, record_from_item, record_to_item, user_from_item, user_to_item,
};
use crate::domain::{Login, PublishKey, PublishRecord, User};
use crate::ports::{AdminError, AdminStore, Replacing, UserSummary};

const EXISTS: &str = "attribute_exists(#login)";

impl AdminStore for DynamoAdmin {
    async fn create_user(
        &self,
        login: &Login,
        password_hash: Option<String>,
        entitlements: &[String],
        active: bool,
    ) -> Result<(), AdminError> {
        let mut item = user_to_item(&User {
            login: login.clone(),
            password_hash,
            active,
            entitlements: entitlements.to_vec(),
            api_keys: Vec::new(),
        });
        // An empty map, so that issuing a key is a single nested SET.
        item.insert(attr::API_KEYS.to_owned(), AttributeValue::M(HashMap::new()));
        let result = self
            .client
            .put_item()
            .table_name(&self.users_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#login)")
            .expression_attribute_names("#login", attr::LOGIN)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(AdminError::UserExists(login.clone()))
            }
            Err(e) => Err(backend("creating a user", e)),
        }
    }

    async fn set_password(&self, login: &Login, hash: String) -> Result<(), AdminError> {
        self.update_user(
            login,
            "SET #h = :h",
            &[("#h", attr::PASSWORD_HASH)],
            vec![(":h", AttributeValue::S(hash))],
            EXISTS,
        )
        .await
    }

    async fn set_active(&self, login: &Login, active: bool) -> Result<(), AdminError> {
        self.update_user(
            login,
            "SET #a = :a",
            &[("#a", attr::ACTIVE)],
            vec![(":a", AttributeValue::Bool(active))],
            EXISTS,
        )
        .await
    }

    async fn grant(&self, login: &Login, entitlement: &str) -> Result<(), AdminError> {
        let set = AttributeValue::Ss(vec![entitlement.to_owned()]);
        self.update_user(
            login,
            "ADD #e :e",
            &[("#e", attr::ENTITLEMENTS)],
            vec![(":e", set)],
            EXISTS,
        )
        .await
    }

    async fn revoke(&self, login: &Login, entitlement: &str) -> Result<(), AdminError> {
        let set = AttributeValue::Ss(vec![entitlement.to_owned()]);
        self.update_user(
            login,
            "DELETE #e :e",
            &[("#e", attr::ENTITLEMENTS)],
            vec![(":e", set)],
            EXISTS,
        )
        .await
    }

    async fn add_api_key(
        &self,
        login: &Login,
        public_key: &str,
        secret_key: &str,
    ) -> Result<(), AdminError> {
        let sealer = self.sealer().await?;
        let sealed = sealer
            .seal(login.as_str(), public_key, secret_key.as_bytes())
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        let names = [("#k", attr::API_KEYS), ("#p", public_key)];
        let nested = self
            .update_user(
                login,
                "SET #k.#p = :s",
                &names,
                vec![(":s", AttributeValue::S(sealed.clone()))],
                "attribute_exists(#login) AND attribute_exists(#k)",
            )
            .await;
        match nested {
            // Users written by other tools may lack the map: create it.
            Err(AdminError::NoSuchUser(_)) => {
                let map = HashMap::from([(public_key.to_owned(), AttributeValue::S(sealed))]);
                self.update_user(
                    login,
                    "SET #k = :m",
                    &[("#k", attr::API_KEYS)],
                    vec![(":m", AttributeValue::M(map))],
                    "attribute_exists(#login) AND attribute_not_exists(#k)",
                )
                .await
            }
            other => other,
        }
    }

    async fn remove_api_key(&self, login: &Login, public_key: &str) -> Result<(), AdminError> {
        self.update_user(
            login,
            "REMOVE #k.#p",
            &[("#k", attr::API_KEYS), ("#p", public_key)],
            vec![],
            "attribute_exists(#k.#p)",
        )
        .await
        .map_err(|e| match e {
            AdminError::NoSuchUser(l) => AdminError::NoSuchKey(l, public_key.to_owned()),
            other => other,
        })
    }

    async fn user(&self, login: &Login) -> Result<Option<UserSummary>, AdminError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .key(attr::LOGIN, AttributeValue::S(login.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("reading the users table", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let u = user_from_item(login, &item)?;
        let mut api_keys: Vec<String> = u.api_keys.iter().map(|k| k.public_key.clone()).collect();
        api_keys.sort();
        Ok(Some(UserSummary {
            login: u.login,
            active: u.active,
            has_password: u.password_hash.is_some(),
            entitlements: u.entitlements,
            api_keys,
        }))
    }

    async fn put_publish(
        &self,
        record: &PublishRecord,
        replacing: Replacing<'_>,
    ) -> Result<(), AdminError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.publishes_table)
            .set_item(Some(record_to_item(record, self.shards)))
            .expression_attribute_names("#uid", attr::UID);
        request = match replacing {
            Replacing::Nothing => request.condition_expression("attribute_not_exists(#uid)"),
            Replacing::Read(old) => {
                // What a cancel, a claim, a clearing or another operator
                // would have changed since `old` was read.
                let (condition, names, values) = unchanged_since(old);
                let mut request = request.condition_expression(condition);
                for (k, v) in names {
                    request = request.expression_attribute_names(k, v);
                }
                for (k, v) in values {
                    request = request.expression_attribute_values(k, v);
                }
                request
            }
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(AdminError::Changed(record.key.clone()))
            }
            Err(e) => Err(backend("writing the publishes table", e)),
        }
    }

    async fn publish(&self, key: &PublishKey) -> Result<Option<PublishRecord>, AdminError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("reading the publishes table", e))?;
        Ok(match out.item {
            Some(item) => Some(record_from_item(key, &item)?),
            None => None,
        })
    }
}

/// A condition expression with its attribute names and values.
type Condition = (
    String,
    Vec<(&'static str, &'static str)>,
    Vec<(String, AttributeValue)>,
);

/// A condition that holds while the item is still `old` in everything the
/// service or an operator changes: its state, the transition's attempt, the
/// pending mark, the claim, its time.
fn unchanged_since(old: &PublishRecord) -> Condition {
    let present = |yes: bool| (yes, None);
    let equal = |v: AttributeValue| (true, Some(v));
    let checks = [
        (
            "#uid",
            attr::UID,
            equal(AttributeValue::S(old.key.uid.to_string())),
        ),
        (
            "#state",
            attr::STATE,
            equal(AttributeValue::S(old.state.as_str().to_owned())),
        ),
        ("#pending", attr::STOP_PENDING, present(old.stop_pending)),
        (
            "#undeliverable",
            attr::STOP_UNDELIVERABLE,
            present(old.stop_undeliverable.is_some()),
        ),
        (
            "#attempt",
            attr::CANCEL_ATTEMPT,
            old.cancel_attempt
                .as_ref()
                .map_or(present(false), |t| equal(AttributeValue::S(t.to_string()))),
        ),
        (
            "#claimed",
            attr::STOP_CLAIMED_AT,
            old.stop_claim.as_ref().map_or(present(false), |c| {
                equal(AttributeValue::N(c.at.0.to_string()))
            }),
        ),
    ];
    let mut parts = Vec::new();
    let mut names = Vec::new();
    let mut values = Vec::new();
    for (name, attribute, (exists, value)) in checks {
        if name != "#uid" {
            names.push((name, attribute));
        }
        let placeholder = format!(":{}", &name[1..]);
        parts.push(match (exists, value) {
            (_, Some(v)) => {
                values.push((placeholder.clone(), v));
                format!("{name} = {placeholder}")
            }
            (true, None) => format!("attribute_exists({name})"),
            (false, None) => format!("attribute_not_exists({name})"),
        });
    }
    (parts.join(" AND "), names, values)
}
