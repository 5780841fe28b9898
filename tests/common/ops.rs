//! The stack's three functions as Lambda runs them (each its compiled
//! binary under its own Runtime API, named by its logical id, JSON logs),
//! against the emulator through a fault proxy: what the tracing and the
//! alarm tests inject failures into and read back.

use base64::Engine as _;
use serde_json::{json, Value};

use super::fault_proxy::FaultProxy;
use super::runtime_api::{Outcome, RuntimeApi};
use super::sample_events::{function_binary, LambdaProcess};
use super::Stack;

/// One function: its Runtime API, its process, how much of its output has
/// been read.
pub struct Function {
    pub logical: &'static str,
    pub runtime: RuntimeApi,
    pub process: LambdaProcess,
    read: usize,
    env: Vec<(String, String)>,
}

impl Function {
    async fn spawn(logical: &'static str, env: Vec<(String, String)>) -> Function {
        let runtime = RuntimeApi::start().await;
        let mut with_runtime = env.clone();
        with_runtime.push(("AWS_LAMBDA_RUNTIME_API".into(), runtime.addr.clone()));
        let process = LambdaProcess::spawn(&function_binary(logical), &with_runtime);
        Function {
            logical,
            runtime,
            process,
            read: 0,
            env,
        }
    }

    /// Invokes it with `event`; `None` when it gave no answer within `wait`.
    pub async fn try_invoke(&mut self, event: &str, wait: std::time::Duration) -> Option<Outcome> {
        self.runtime.try_invoke(event, wait).await
    }

    /// The JSON lines it printed since the last call.
    pub fn new_lines(&mut self) -> Vec<Value> {
        let logs = self.process.logs();
        let fresh = logs.get(self.read..).unwrap_or_default().to_owned();
        // Only whole lines: a line being written is read next time.
        let whole = fresh.rfind('\n').map_or(0, |i| i + 1);
        self.read += whole;
        fresh[..whole]
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Kills the process (a crash, or Lambda ending a timed-out sandbox)
    /// and starts a fresh one on a fresh Runtime API: a cold start.
    pub async fn restart(&mut self) {
        self.process.child.kill().await.ok();
        let mut env = self.env.clone();
        self.runtime = RuntimeApi::start().await;
        env.push(("AWS_LAMBDA_RUNTIME_API".into(), self.runtime.addr.clone()));
        self.process = LambdaProcess::spawn(&function_binary(self.logical), &env);
        self.read = 0;
    }
}

pub struct Ops {
    pub stack: Stack,
    pub proxy: FaultProxy,
    pub cancel: Function,
    pub automation: Function,
    pub reconciler: Function,
}

impl Ops {
    /// A fresh stack, its KEK in Secrets Manager, the three functions.
    pub async fn start() -> Ops {
        let stack = Stack::new().await;
        let proxy = FaultProxy::start(&super::moto::moto().endpoint).await;
        let secret = format!("kek-{}", stack.users_table);
        aws_sdk_secretsmanager::Client::new(&super::sdk_config().await)
            .create_secret()
            .name(&secret)
            .secret_string(base64::engine::general_purpose::STANDARD.encode(super::KEK))
            .send()
            .await
            .expect("the KEK's secret");
        let common = |logical: &str, memory: &str| -> Vec<(String, String)> {
            [
                ("AWS_LAMBDA_FUNCTION_NAME", logical),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory),
                ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
                ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
                ("AWS_ENDPOINT_URL", proxy.url.as_str()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("PUBLISHES_TABLE", stack.publishes_table.as_str()),
                ("STOP_QUEUE_URL", stack.queue_url.as_str()),
                ("UFORGE_TLS_ROOTS", "amazon"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let mut cancel_env = common("CancelFunction", "512");
        cancel_env.push(("USERS_TABLE".into(), stack.users_table.clone()));
        cancel_env.push(("UFORGE_BASE_PATH".into(), "/api".into()));
        cancel_env.push(("UFORGE_API_KEY_KEK_SECRET".into(), secret));
        let mut reconciler_env = common("ReconcilerFunction", "512");
        reconciler_env.push(("RECONCILE_GRACE_SECONDS".into(), "0".into()));
        Ops {
            cancel: Function::spawn("CancelFunction", cancel_env).await,
            automation: Function::spawn("AutomationFunction", common("AutomationFunction", "128"))
                .await,
            reconciler: Function::spawn("ReconcilerFunction", reconciler_env).await,
            stack,
            proxy,
        }
    }

    /// A publish of alice's in `state`, created now: `1/2/{pitid}`.
    pub async fn publish(&self, pitid: i64, state: &str) {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let now = publish_cancel::clock::now_secs().to_string();
        self.stack
            .put_raw_publish(&[
                ("uid", A::S("alice".into())),
                ("publishKey", A::S(format!("1/2/{pitid}"))),
                ("aid", A::N("1".into())),
                ("itid", A::N("2".into())),
                ("pitid", A::N(pitid.to_string())),
                ("state", A::S(state.into())),
                ("created", A::N(now.clone())),
                ("lastModified", A::N(now)),
                ("percentage", A::N("10".into())),
                ("message", A::S("Publishing".into())),
            ])
            .await;
    }
}

/// API Gateway's REST event for `method` on alice's publish `pitid`
/// (`cancel` or `status`), with her password, or `password` instead.
pub fn http_event(method: &str, pitid: i64, action: &str, password: &str) -> String {
    let path = format!("/api/users/alice/appliances/1/images/2/pimages/{pitid}/{action}");
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"))
    );
    json!({"resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {"accept": "application/xml", "authorization": auth},
        "multiValueHeaders": {"accept": ["application/xml"], "authorization": [auth]},
        "queryStringParameters": null, "multiValueQueryStringParameters": null,
        "pathParameters": {"proxy": path.trim_start_matches('/')}, "stageVariables": null,
        "requestContext": {"accountId": "123456789012", "resourceId": "a1b2c3", "stage": "prod",
            "requestId": format!("req-{pitid}-{action}"), "identity": {"sourceIp": "203.0.113.10"},
            "resourcePath": "/{proxy+}", "httpMethod": method, "apiId": "abcdef1234",
            "path": format!("/prod{path}"), "protocol": "HTTP/1.1"},
        "body": null, "isBase64Encoded": false})
    .to_string()
}

/// The sample API-key cancel (alice's publish 3): needs the KEK store.
pub fn api_key_event() -> String {
    std::fs::read_to_string(
        super::sample_events::events_dir().join("apigw-rest-cancel-apikey.json"),
    )
    .expect("the sample API-key event")
}

/// A direct-invoke cancel command for alice's publish `pitid`.
pub fn command(pitid: i64) -> String {
    json!({"type": "uforge.publish.cancel", "schemaVersion": 1, "uid": "alice", "aid": 1,
        "itid": 2, "pitid": pitid, "reason": "ops test"})
    .to_string()
}

/// One reconciler run over every shard.
pub const RECONCILE: &str = r#"{"shardGroup": 0, "shardGroups": 1}"#;
