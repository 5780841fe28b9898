//! The operator's port (`ports::AdminStore`) on DynamoDB, with targeted conditional updates so that
//! concurrent edits of one user do not overwrite each other.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodb::Client;

use super::{
    applied, attr, publish_item_key, record_from_item, record_to_item, user_from_item,
    user_to_item, PENDING_STOPS_INDEX,
};
use crate::adapters::sdk_error;
use crate::auth::KekSource;
use crate::domain::{Login, PublishKey, PublishRecord, Timestamp, User};
use crate::ports::{AdminError, AdminStore, Replacing, UserSummary};

pub struct DynamoAdmin {
    client: Client,
    users_table: String,
    publishes_table: String,
    /// Needed only to seal API secrets (issue, import, re-seal).
    keks: Option<Arc<dyn KekSource>>,
}

impl DynamoAdmin {
    pub fn new(
        client: Client,
        users_table: String,
        publishes_table: String,
        keks: Option<Arc<dyn KekSource>>,
    ) -> Self {
        DynamoAdmin {
            client,
            users_table,
            publishes_table,
            keks,
        }
    }

    /// The KEKs (read from their store on first use: each run of the CLI
    /// sees the store as it is now).
    async fn sealer(&self) -> Result<Arc<crate::auth::Sealer>, AdminError> {
        let keks = self.keks.as_ref().ok_or_else(|| {
            AdminError::Invalid(
                "set UFORGE_API_KEY_KEK_SECRET (or UFORGE_API_KEY_KEK) to seal API secrets".into(),
            )
        })?;
        Ok(keks.sealer(None).await?)
    }

    /// Re-seals every API secret that is not sealed under the current KEK
    /// (after a rotation, before the previous KEK is retired). Each key is
    /// one conditional update: a key changed meanwhile is left alone and
    /// counted as skipped. Returns (re-sealed, already current, skipped).
    pub async fn reseal_api_keys(&self) -> Result<ResealReport, AdminError> {
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
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(report),
            }
        }
    }

    /// One conditional update of an existing user.
    async fn update_user(
        &self,
        login: &Login,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        condition: &str,
    ) -> Result<(), AdminError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key(attr::LOGIN, AttributeValue::S(login.to_string()))
            .update_expression(expression)
            .condition_expression(condition);
        // DynamoDB refuses names an expression does not use.
        if condition.contains("#login") {
            req = req.expression_attribute_names("#login", attr::LOGIN);
        }
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(AdminError::NoSuchUser(login.clone()))
            }
            Err(e) => Err(backend("updating the users table", e)),
        }
    }
}

/// What `repair_publishes` found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Items read.
    pub scanned: usize,
    /// Cancelled before the audit existed: `cancelSource`/`cancelledBy`
    /// written with the defaults they read as (`http`, the record's uid).
    pub backfilled: usize,
    /// Parked stops put back to pending, for the reconciler.
    pub requeued: usize,
    /// Pending stops outside the reconciler's index (no numeric
    /// `cancelledAt`, written by hand): given their stamp's time, which
    /// brings them in.
    pub indexed: usize,
    /// Items that cannot be read as publish records: their key and why.
    pub unreadable: Vec<(String, String)>,
}

impl DynamoAdmin {
    /// Scans the publishes table: backfills the audit fields of items
    /// cancelled before they existed (with the defaults they already read
    /// as, each a conditional write that never overwrites), lists the items
    /// that cannot be read, and, with `requeue`, moves parked
    /// (`stopUndeliverable`) stops back to pending for the reconciler.
    /// With `dry_run`, writes nothing and reports what it would do.
    pub async fn repair_publishes(
        &self,
        dry_run: bool,
        requeue: bool,
    ) -> Result<RepairReport, AdminError> {
        let mut report = RepairReport::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.publishes_table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| backend("scanning the publishes table", e))?;
            for item in page.items() {
                report.scanned += 1;
                let record = crate::adapters::dynamodb::key_from_item(item)
                    .and_then(|key| record_from_item(&key, item));
                let record = match record {
                    Ok(r) => r,
                    Err(e) => {
                        report.unreadable.push((
                            crate::adapters::dynamodb::describe_item_key(item),
                            crate::ErrorChain(&e).to_string(),
                        ));
                        continue;
                    }
                };
                let legacy = record.cancel.is_some()
                    && !(item.contains_key(attr::CANCEL_SOURCE)
                        && item.contains_key(attr::CANCELLED_BY));
                if legacy {
                    report.backfilled += 1;
                    if !dry_run {
                        self.backfill_audit(&record).await?;
                    }
                }
                if item.contains_key(attr::STOP_PENDING) && !record.stop_pending {
                    report.unreadable.push((
                        crate::adapters::dynamodb::describe_item_key(item),
                        crate::ports::NOT_CANCELLED.to_owned(),
                    ));
                    continue;
                }
                let at = record.cancel.as_ref().map_or(Timestamp(0), |s| s.at);
                let indexed = matches!(item.get(attr::CANCELLED_AT), Some(AttributeValue::N(_)));
                if record.stop_pending && !indexed {
                    report.indexed += 1;
                    if !dry_run {
                        self.index_pending(&record.key, at).await?;
                    }
                }
                if requeue && record.stop_undeliverable.is_some() {
                    report.requeued += 1;
                    if !dry_run {
                        self.requeue_stop(&record.key, at).await?;
                    }
                }
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(report),
            }
        }
    }

    async fn backfill_audit(&self, record: &PublishRecord) -> Result<(), AdminError> {
        let Some(stamp) = &record.cancel else {
            return Ok(());
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(&record.key)))
            .update_expression(
                "SET #source = if_not_exists(#source, :source), #by = if_not_exists(#by, :by)",
            )
            .condition_expression("attribute_exists(#state)")
            .expression_attribute_names("#source", attr::CANCEL_SOURCE)
            .expression_attribute_names("#by", attr::CANCELLED_BY)
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_values(
                ":source",
                AttributeValue::S(stamp.audit.source.as_str().to_owned()),
            )
            .expression_attribute_values(
                ":by",
                AttributeValue::S(stamp.audit.cancelled_by.to_string()),
            )
            .send()
            .await;
        // Not applied: deleted meanwhile, nothing to repair.
        applied(result, "backfilling a cancel's audit")
            .map(|_| ())
            .map_err(AdminError::Backend)
    }

    /// Gives a pending item without `cancelledAt` its stamp's time, so
    /// that it enters the reconciler's index.
    async fn index_pending(&self, key: &PublishKey, at: Timestamp) -> Result<(), AdminError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(key)))
            .update_expression("SET #cancelledAt = :at")
            .condition_expression(
                "attribute_exists(#pending) AND attribute_not_exists(#cancelledAt)",
            )
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_values(":at", AttributeValue::N(at.0.to_string()))
            .send()
            .await;
        applied(result, "bringing a pending stop into the index")
            .map(|_| ())
            .map_err(AdminError::Backend)
    }

    async fn requeue_stop(&self, key: &PublishKey, at: Timestamp) -> Result<(), AdminError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.publishes_table)
            .set_key(Some(publish_item_key(key)))
            .update_expression(
                "SET #pending = :pending, #cancelledAt = if_not_exists(#cancelledAt, :at) \
                 REMOVE #undeliverable, #claimed, #claimedBy",
            )
            .condition_expression("attribute_exists(#undeliverable)")
            .expression_attribute_names("#pending", attr::STOP_PENDING)
            .expression_attribute_names("#undeliverable", attr::STOP_UNDELIVERABLE)
            .expression_attribute_names("#claimed", attr::STOP_CLAIMED_AT)
            .expression_attribute_names("#claimedBy", attr::STOP_CLAIMED_BY)
            .expression_attribute_names("#cancelledAt", attr::CANCELLED_AT)
            .expression_attribute_values(":pending", AttributeValue::S(attr::PENDING.into()))
            .expression_attribute_values(":at", AttributeValue::N(at.0.to_string()))
            .send()
            .await;
        applied(result, "re-queueing a parked stop")
            .map(|_| ())
            .map_err(AdminError::Backend)
    }
}

/// A condition that holds while the item is still `old` in everything the
/// service or an operator changes: its state, the transition's attempt, the
/// pending mark, the claim, its time.
/// A condition expression with its attribute names and values.
type Condition = (
    String,
    Vec<(&'static str, &'static str)>,
    Vec<(String, AttributeValue)>,
);

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

fn backend(context: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> AdminError {
    AdminError::Backend(sdk_error(context, e))
}

/// What `reseal_api_keys` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: usize,
    pub current: usize,
    pub skipped: usize,
}

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
            .set_item(Some(record_to_item(record)))
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

/// Creates the users and publishes tables with the production key schemas,
/// the publishes table's sparse `pendingStops` index and its stream (for an
/// emulator or a scratch account). template.yaml is the statement of the
/// schema: production and every emulator test build from it
/// (`tests/deploy/stack.py tables`). This is the one copy, for `uforge-admin
/// setup`, which has no template at run time, and the rehearsal holds it
/// equal to the template (`uforge_admin_setup_creates_the_template_s_tables`).
pub async fn create_tables(
    dynamo: &Client,
    users_table: &str,
    publishes_table: &str,
) -> Result<(), AdminError> {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| AdminError::Invalid(e.to_string()))
    };
    let def = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(|e| AdminError::Invalid(e.to_string()))
    };
    dynamo
        .create_table()
        .table_name(users_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def(attr::LOGIN, ScalarAttributeType::S)?)
        .key_schema(key(attr::LOGIN, KeyType::Hash)?)
        .send()
        .await
        .map_err(|e| backend("creating the users table", e))?;
    let pending_index = GlobalSecondaryIndex::builder()
        .index_name(PENDING_STOPS_INDEX)
        .key_schema(key(attr::STOP_PENDING, KeyType::Hash)?)
        .key_schema(key(attr::CANCELLED_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    dynamo
        .create_table()
        .table_name(publishes_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def(attr::UID, ScalarAttributeType::S)?)
        .attribute_definitions(def(attr::PUBLISH_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(def(attr::STOP_PENDING, ScalarAttributeType::S)?)
        .attribute_definitions(def(attr::CANCELLED_AT, ScalarAttributeType::N)?)
        .key_schema(key(attr::UID, KeyType::Hash)?)
        .key_schema(key(attr::PUBLISH_KEY, KeyType::Range)?)
        .global_secondary_indexes(pending_index)
        // What "Publish Cancelled" events are made from (template.yaml's
        // PublishCancelledPipe).
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(|e| AdminError::Invalid(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| backend("creating the publishes table", e))?;
    Ok(())
}

/// Creates the stop queue (FIFO when the name ends in `.fifo`); returns its URL.
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    queue_name: &str,
) -> Result<String, AdminError> {
    let mut queue = sqs.create_queue().queue_name(queue_name);
    if queue_name.ends_with(".fifo") {
        queue = queue.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    let out = queue
        .send()
        .await
        .map_err(|e| backend("creating the stop queue", e))?;
    out.queue_url
        .ok_or_else(|| AdminError::Invalid("CreateQueue returned no URL".into()))
}
