//! Shared test fixtures: the emulator, tables and queues of our schema, and
//! helpers to call the endpoint and inspect the stores.

pub mod alarms;
pub mod chaos;
pub mod emf;
pub mod fault_proxy;
pub mod hostile_events;
pub mod http_client;
pub mod moto;
pub mod ops;
pub mod runtime_api;
pub mod sample_events;
pub mod template;
pub mod worker;
pub mod xml;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use publish_cancel::adapters::dynamodb::{attr, record_to_item, user_to_item};
use publish_cancel::api::ApiRequest;
use publish_cancel::auth::{signed_url, Sealer};
use publish_cancel::config::{self, AwsSettings};
use publish_cancel::domain::{PublishRecord, User};
use publish_cancel::seed::Seed;
use publish_cancel::startup::{self, AwsApi, Options};

/// The KEK the tests seal API secrets with.
pub const KEK: [u8; 32] = [42; 32];

pub fn sealer() -> Sealer {
    Sealer::new(&KEK)
}

/// The bundled seed's users and publishes, in our domain types.
pub fn seed_data() -> (Vec<User>, Vec<PublishRecord>) {
    let seed = Seed::parse(publish_cancel::seed::BUNDLED).expect("bundled seed");
    (
        seed.users(&sealer()).expect("seed users"),
        seed.publishes().expect("seed publishes"),
    )
}

/// This stack's tables and queue, API secrets sealed under the tests' KEK.
pub fn aws_settings(users_table: &str, publishes_table: &str, queue_url: &str) -> AwsSettings {
    AwsSettings {
        users_table: users_table.to_owned(),
        publishes_table: publishes_table.to_owned(),
        stop_queue_url: queue_url.to_owned(),
        keks: config::KekSetting::Inline(std::sync::Arc::new(sealer())),
        pending_shards: Default::default(),
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh set of tables and a queue on the emulator, seeded with the
/// bundled seed, and the endpoint wired to them.
pub struct Stack {
    pub api: AwsApi,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub users_table: String,
    pub publishes_table: String,
    pub queue_url: String,
}

pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_at(&moto::moto().endpoint).await
}

/// The production SDK configuration, pointed at `endpoint`.
pub async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config_as(endpoint, "testing", "testing", None).await
}

/// The production SDK configuration, pointed at `endpoint`, with these
/// credentials (an IAM user's or an assumed role's, where IAM is enforced).
pub async fn sdk_config_as(
    endpoint: &str,
    key: &str,
    secret: &str,
    session_token: Option<&str>,
) -> aws_config::SdkConfig {
    config::sdk::sdk_config_loader(config::TlsRoots::Amazon)
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            key,
            secret,
            session_token.map(str::to_owned),
            None,
            "tests",
        ))
        .load()
        .await
}

pub struct StackOptions {
    pub fifo: bool,
    /// Create the queue (false: the URL points at a queue that does not exist yet).
    pub create_queue: bool,
    pub create_tables: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            fifo: false,
            create_queue: true,
            create_tables: true,
        }
    }
}

impl Stack {
    pub async fn new() -> Stack {
        Stack::with(StackOptions::default()).await
    }

    pub async fn with(opts: StackOptions) -> Stack {
        let sdk = sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let users_table = format!("users-{tag}");
        let publishes_table = format!("publishes-{tag}");
        let queue_name = format!("stop-{tag}{}", if opts.fifo { ".fifo" } else { "" });
        if opts.create_tables {
            // The template's own tables: one statement of the schema.
            template::create_table(&dynamo, "UsersTable", &users_table).await;
            template::create_table(&dynamo, "PublishesTable", &publishes_table).await;
        }
        let queue_url = if opts.create_queue {
            create_queue(&sqs, &queue_name).await
        } else {
            // moto's URL form, for a queue we may create later.
            format!("{}/123456789012/{queue_name}", moto::moto().endpoint)
        };
        let stack = Stack::existing(&sdk, users_table, publishes_table, queue_url);
        if opts.create_tables {
            stack.seed().await;
        }
        stack
    }

    /// Tables and a queue that exist already (e.g. a deployed stack's),
    /// reached with `sdk`'s credentials.
    pub fn existing(
        sdk: &aws_config::SdkConfig,
        users_table: String,
        publishes_table: String,
        queue_url: String,
    ) -> Stack {
        let api = startup::aws_api(
            sdk,
            aws_settings(&users_table, &publishes_table, &queue_url),
            Options::new("/api"),
        );
        Stack {
            api,
            dynamo: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            users_table,
            publishes_table,
            queue_url,
        }
    }

    /// Puts the bundled seed's users (API secrets sealed under `KEK`) and
    /// publishes into the tables.
    pub async fn seed(&self) {
        let (users, publishes) = seed_data();
        for u in &users {
            self.put_user(u).await;
        }
        for p in &publishes {
            self.put_publish(p).await;
        }
    }

    /// The endpoint on this stack's tables and queue, but with DynamoDB and
    /// SQS reached through the given endpoints (fault proxies).
    pub async fn api_via(&self, dynamo_endpoint: &str, sqs_endpoint: &str) -> AwsApi {
        self.api_via_with(dynamo_endpoint, sqs_endpoint, Options::new("/api"))
            .await
    }

    /// The cancel's delivery protocol on this stack's table and queue,
    /// SQS reached through `sqs_endpoint` (a fault proxy): what the cancel
    /// route runs once its caller is admitted.
    pub async fn canceller_via(
        &self,
        sqs_endpoint: &str,
    ) -> publish_cancel::cancel::Canceller<
        publish_cancel::adapters::dynamodb::DynamoPublishes,
        publish_cancel::adapters::sqs::SqsStopQueue,
    > {
        startup::canceller_from_clients(
            self.dynamo.clone(),
            aws_sdk_sqs::Client::new(&sdk_config_at(sqs_endpoint).await),
            self.publishes_table.clone(),
            self.queue_url.clone(),
        )
    }

    /// The endpoint on this stack with the authenticator `auth` (a clone
    /// of which the caller keeps, to watch what it verified).
    pub fn api_with(&self, auth: publish_cancel::auth::Authenticator) -> AwsApi {
        startup::service_with(
            publish_cancel::adapters::dynamodb::DynamoUsers::new(
                self.dynamo.clone(),
                self.users_table.clone(),
            ),
            publish_cancel::adapters::dynamodb::DynamoPublishes::new(
                self.dynamo.clone(),
                self.publishes_table.clone(),
            ),
            publish_cancel::adapters::sqs::SqsStopQueue::new(
                self.sqs.clone(),
                self.queue_url.clone(),
            ),
            auth,
            Options::new("/api"),
        )
    }

    /// The same with other options (a shorter time budget).
    pub async fn api_via_with(
        &self,
        dynamo_endpoint: &str,
        sqs_endpoint: &str,
        options: Options,
    ) -> AwsApi {
        startup::aws_api_from_clients(
            aws_sdk_dynamodb::Client::new(&sdk_config_at(dynamo_endpoint).await),
            aws_sdk_sqs::Client::new(&sdk_config_at(sqs_endpoint).await),
            Some(publish_cancel::auth::FixedKeks::shared(sealer())),
            aws_settings(&self.users_table, &self.publishes_table, &self.queue_url),
            options,
        )
    }

    /// The environment of the Lambda binary on this stack, under the
    /// Runtime API at `runtime_api` (what the SAM template would set).
    pub fn lambda_env(&self, runtime_api: &str) -> Vec<(&'static str, String)> {
        use base64::Engine as _;
        vec![
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME", "publish-cancel".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_ENDPOINT_URL", moto::moto().endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("USERS_TABLE", self.users_table.clone()),
            ("PUBLISHES_TABLE", self.publishes_table.clone()),
            ("STOP_QUEUE_URL", self.queue_url.clone()),
            (
                "UFORGE_API_KEY_KEK",
                base64::engine::general_purpose::STANDARD.encode(KEK),
            ),
            // As the SAM template sets it.
            ("UFORGE_TLS_ROOTS", "amazon".into()),
        ]
    }

    /// Calls the endpoint's handler as a front door would.
    pub async fn call(&self, req: &Req) -> Response<Vec<u8>> {
        call(&self.api, req).await
    }

    /// Both tables, item by item, in a stable order.
    pub async fn tables(&self) -> Vec<String> {
        let mut all = Vec::new();
        for table in [&self.users_table, &self.publishes_table] {
            let out = self
                .dynamo
                .scan()
                .table_name(table)
                .consistent_read(true)
                .send()
                .await
                .expect("scan");
            for item in out.items() {
                let mut fields: Vec<String> =
                    item.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                fields.sort();
                all.push(format!("{table}: {}", fields.join(", ")));
            }
        }
        all.sort();
        all
    }

    /// Messages waiting in the queue (visible + in flight).
    pub async fn queue_depth(&self) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }

    /// Receives (and deletes) every message now in the queue.
    pub async fn drain(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut got = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let batch = out.messages().to_vec();
            if batch.is_empty() {
                return got;
            }
            for m in &batch {
                if let Some(h) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(h)
                        .send()
                        .await
                        .expect("delete");
                }
            }
            got.extend(batch);
        }
    }

    /// Receives (and deletes) every stop now in the queue, read as stops.
    pub async fn drain_stops(&self) -> Vec<publish_cancel::ports::StopMessage> {
        self.drain()
            .await
            .iter()
            .map(|m| serde_json::from_str(m.body().expect("a body")).expect("a stop message"))
            .collect()
    }

    /// The request ids of every stop now in the queue, sorted.
    pub async fn drain_request_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .drain_stops()
            .await
            .into_iter()
            .map(|s| s.request_id)
            .collect();
        ids.sort();
        ids
    }

    /// The publish item under (uid, "aid/itid/pitid").
    pub async fn publish_item(
        &self,
        uid: &str,
        sort: &str,
    ) -> Option<HashMap<String, AttributeValue>> {
        self.dynamo
            .get_item()
            .table_name(&self.publishes_table)
            .key(attr::UID, AttributeValue::S(uid.into()))
            .key(attr::PUBLISH_KEY, AttributeValue::S(sort.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item
    }

    pub async fn put_user(&self, user: &User) {
        put_user(&self.dynamo, &self.users_table, user).await
    }

    pub async fn put_publish(&self, rec: &PublishRecord) {
        put_publish(&self.dynamo, &self.publishes_table, rec).await
    }

    /// A publish item as an earlier release, an operator or a script might
    /// have written it: every attribute given as is.
    pub async fn put_raw_publish(&self, attrs: &[(&str, AttributeValue)]) {
        let item: HashMap<String, AttributeValue> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.dynamo
            .put_item()
            .table_name(&self.publishes_table)
            .set_item(Some(item))
            .send()
            .await
            .expect("put raw item");
    }

    pub async fn create_queue_now(&self) {
        let name = self
            .queue_url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        create_queue(&self.sqs, &name).await;
    }
}

async fn put_user(dynamo: &aws_sdk_dynamodb::Client, table: &str, user: &User) {
    dynamo
        .put_item()
        .table_name(table)
        .set_item(Some(user_to_item(user)))
        .send()
        .await
        .expect("put user");
}

async fn put_publish(dynamo: &aws_sdk_dynamodb::Client, table: &str, rec: &PublishRecord) {
    dynamo
        .put_item()
        .table_name(table)
        .set_item(Some(record_to_item(rec, Default::default())))
        .send()
        .await
        .expect("put publish");
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    publish_cancel::admin::create_queue(sqs, name)
        .await
        .expect("create queue")
}

pub use publish_cancel::startup::{MemoryApi, MemoryService};

/// The endpoint on in-memory stores holding `seed`, API secrets sealed
/// under the tests' KEK, built by the composition root.
pub fn memory_api(seed: &Seed, cached: bool) -> MemoryApi {
    memory_service(seed, cached).api
}

/// The same, with its stores.
pub fn memory_service(seed: &Seed, cached: bool) -> MemoryService {
    use base64::Engine as _;
    let kek = base64::engine::general_purpose::STANDARD.encode(KEK);
    let env =
        publish_cancel::config::Env::from_pairs(&[(publish_cancel::config::ENV_API_KEY_KEK, &kek)]);
    let options = Options {
        credential_cache: cached,
        ..Options::new("/api")
    };
    startup::memory_service(seed, options, &env).expect("seed loads")
}

/// Serves `api` with the local HTTP front door on a free loopback port, in
/// the background; returns its `host:port`.
pub async fn serve_locally<U, P, Q>(
    api: std::sync::Arc<publish_cancel::api::Api<U, P, Q>>,
) -> String
where
    U: publish_cancel::ports::Users + 'static,
    P: publish_cancel::ports::CancelWrites + publish_cancel::ports::PublishReader + 'static,
    Q: publish_cancel::ports::StopQueue + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address").to_string();
    tokio::spawn(publish_cancel::frontdoor::local::serve(
        listener,
        api,
        publish_cancel::frontdoor::local::Limits::default(),
    ));
    addr
}

/// The key of alice's publish `1/2/{pitid}` (the bundled seed's appliance and image).
pub fn alice_key(pitid: i64) -> publish_cancel::domain::PublishKey {
    publish_cancel::domain::PublishKey {
        uid: publish_cancel::domain::Login::parse("alice").expect("valid login"),
        aid: 1.into(),
        itid: 2.into(),
        pitid: pitid.into(),
    }
}

/// Calls an endpoint's handler as a front door would.
pub async fn call<U, P, Q>(api: &publish_cancel::api::Api<U, P, Q>, req: &Req) -> Response<Vec<u8>>
where
    U: publish_cancel::ports::Users,
    P: publish_cancel::ports::CancelWrites + publish_cancel::ports::PublishReader,
    Q: publish_cancel::ports::StopQueue,
{
    let (path, query) = req.uri.split_once('?').unwrap_or((&req.uri, ""));
    api.handle(ApiRequest {
        method: &req.method,
        path,
        query,
        headers: &req.headers,
        request_id: &req.request_id,
    })
    .await
}

/// A request to the endpoint, built up fluently.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub request_id: String,
}

pub fn cancel_path(uid: &str, aid: i64, itid: i64, pitid: i64) -> String {
    format!("/api/users/{uid}/appliances/{aid}/images/{itid}/pimages/{pitid}/cancel")
}

impl Req {
    pub fn delete(uri: impl Into<String>) -> Req {
        Req::new(Method::DELETE, uri)
    }

    pub fn new(method: Method, uri: impl Into<String>) -> Req {
        static ID: AtomicU32 = AtomicU32::new(0);
        let mut headers = HeaderMap::new();
        // What the UForge SDK sends.
        headers.insert("content-type", HeaderValue::from_static("application/xml"));
        headers.insert("accept", HeaderValue::from_static("application/xml"));
        Req {
            method,
            uri: uri.into(),
            headers,
            request_id: format!("test-request-{}", ID.fetch_add(1, Ordering::SeqCst)),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        self.headers.insert(
            name,
            HeaderValue::from_bytes(value.as_bytes()).expect("header value"),
        );
        self
    }

    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Req {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        self.headers
            .insert(name, HeaderValue::from_bytes(value).expect("header value"));
        self
    }

    /// Adds a header value without replacing existing ones.
    pub fn append(mut self, name: &str, value: &[u8]) -> Req {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        self.headers
            .append(name, HeaderValue::from_bytes(value).expect("header value"));
        self
    }

    pub fn basic(self, login: &str, password: &str) -> Req {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
        self.header("authorization", &format!("Basic {token}"))
    }

    /// Signs the URI like the UForge SDK: relative to the base `/api`.
    pub fn signed(mut self, public: &str, secret: &str) -> Req {
        let sep = if self.uri.contains('?') { '&' } else { '?' };
        self.uri = format!("{}{sep}apiKey={public}", self.uri);
        let relative = self.uri.strip_prefix("/api/").expect("uri under /api");
        let sig = signed_url::sign(secret.as_bytes(), relative);
        let sig = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC);
        self.uri = format!("{}&signature={sig}", self.uri);
        self
    }
}

pub fn body_text(r: &Response<Vec<u8>>) -> String {
    String::from_utf8(r.body().clone()).expect("utf-8 body")
}

pub fn header<'a>(r: &'a Response<Vec<u8>>, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// What no log line (metric lines included), no answer body and no admin
/// output may ever contain: every password and API secret the suite uses,
/// their Basic tokens whole and bare (with and without padding, and the
/// bare `login:` prefixes every token of a seed user starts with), the KEK,
/// signatures and the SDK's signing headers.
pub fn secrets() -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut out: Vec<String> = [
        "alice-password",
        "bob-password",
        "carol-password",
        "dave-password",
        "not-the-password",
        "SECRETKEY456",
        "0CrZ0HktI7YH",
        "signature=",
        "Basic ",
        "AWS4-HMAC-SHA256",
        "x-amz-security-token",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (login, password) in [
        ("alice", "alice-password"),
        ("alice", "not-the-password"),
        ("alice", "wrong"),
        ("bob", "bob-password"),
        ("carol", "carol-password"),
        ("dave", "dave-password"),
    ] {
        let token = b64(&format!("{login}:{password}"));
        out.push(token.trim_end_matches('=').to_owned());
    }
    // Any Basic token of a seed user begins with these (base64 of
    // `login:`, cut to whole characters).
    for login in ["alice", "bob", "carol", "dave"] {
        let prefix = b64(&format!("{login}:"));
        let whole = (login.len() + 1) / 3 * 4;
        out.push(prefix[..whole].to_owned());
    }
    out.push(base64::engine::general_purpose::STANDARD.encode(KEK));
    out
}

/// Fails if `text` (what `what` printed) holds any of `secrets()` or `extra`.
pub fn assert_no_secrets(what: &str, text: &str, extra: &[&str]) {
    for secret in secrets()
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        assert!(
            !text.contains(secret),
            "{what} contains {secret:?}:\n{text}"
        );
    }
}
