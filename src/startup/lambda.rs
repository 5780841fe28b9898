//! One way to run a Lambda binary: each declares its function
//! (`LambdaFunction`) beside its `main`, which is `run_lambda::<It>()`. A
//! start that cannot succeed is an init error posted to the Runtime API,
//! naming the variable and the fix, and the process exits (Lambda shows it
//! in the invoke response; a local emulator does not hang). Which binary
//! each template function runs: `lambda-functions.txt`.

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use lambda_runtime::{service_fn, LambdaEvent};

use aws_config::SdkConfig;

use super::BoxError;
use crate::config::{sdk, Backend, ConfigError, Env, FromEnv, TlsRoots};
use crate::frontdoor::{LambdaHandler, RawEvent};
use crate::metrics::Metrics;

/// A Lambda function of this crate, declared once, beside its binary's
/// `main` (`run_lambda::<ItsFunction>()`): what it reads from the
/// environment, what it needs on AWS, and its handler on either stores.
/// Everything else (the checks of what Lambda gives, `UFORGE_BACKEND`, the
/// SDK's configuration, the seed of the in-memory stores, the metrics, the
/// runtime loop, init errors) is `run_lambda`'s, the same for each.
pub trait LambdaFunction {
    /// Its settings, whatever its stores.
    type Settings: FromEnv;
    /// What it needs on DynamoDB and SQS (`UFORGE_BACKEND=aws`).
    type Resources: FromEnv;
    /// Its handler on DynamoDB and SQS.
    type OnAws: LambdaHandler + 'static;
    /// Its handler on in-memory stores (local invocation only).
    type InMemory: LambdaHandler + 'static;

    fn on_aws(
        settings: Self::Settings,
        resources: Self::Resources,
        sdk: &SdkConfig,
        metrics: Option<Metrics>,
    ) -> Result<Self::OnAws, BoxError>;

    /// `seed`: the seed file's text (`UFORGE_SEED`, or the bundled one).
    fn in_memory(
        settings: Self::Settings,
        seed: &str,
        env: &Env,
        metrics: Option<Metrics>,
    ) -> Result<Self::InMemory, BoxError>;
}

/// What a start yields: the future that serves events.
type Serving = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;

/// Runs the Lambda function `F` as Lambda (or an emulator of it) asks;
/// the exit code says whether its start or its serving failed.
pub fn run_lambda<F: LambdaFunction>() -> ExitCode {
    let env = Env::process();
    // Lambda sends one event at a time: a single-threaded runtime starts
    // faster and holds less; Argon2 still runs on a blocking thread.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async {
            crate::logging::init(&env);
            let serving = check_lambda_environment(&env)
                .map_err(BoxError::from)
                .and_then(|()| start::<F>(&env, Metrics::from_env(&env)));
            run(serving, &env).await
        }),
        Err(e) => init_failed(&e, &env),
    }
}

/// `F`'s settings, its stores (`UFORGE_BACKEND`), then its handler.
fn start<F: LambdaFunction>(env: &Env, metrics: Option<Metrics>) -> Result<Serving, BoxError> {
    let settings = F::Settings::from_env(env)?;
    Ok(match Backend::from_env(env)? {
        Backend::Aws => {
            let resources = F::Resources::from_env(env)?;
            let sdk = sdk::lambda_sdk_config(TlsRoots::from_env(env)?, env)?;
            serve(
                F::on_aws(settings, resources, &sdk, metrics.clone())?,
                metrics,
            )
        }
        Backend::Memory { seed } => {
            tracing::warn!("in-memory stores (UFORGE_BACKEND=memory): local invocation only");
            let seed = super::seed_text(seed.as_deref())?;
            serve(
                F::in_memory(settings, &seed, env, metrics.clone())?,
                metrics,
            )
        }
    })
}

/// Serves `handler` with the Lambda runtime, one event at a time.
fn serve<H: LambdaHandler + 'static>(handler: H, metrics: Option<Metrics>) -> Serving {
    Box::pin(async move {
        let handler = &handler;
        // Boxed: the handler's future nested in the runtime's is otherwise
        // deeper than the compiler's default layout recursion limit.
        let events = service_fn(move |event: LambdaEvent<RawEvent>| Box::pin(handler.call(event)));
        lambda_runtime::Runtime::new(events)
            .layer(Invocation::new(metrics))
            .layer(NotJsonIsNull)
            .run()
            .await
    })
}

/// What every invocation runs in: a span whose fields are on each of its
/// log lines (`requestId`, `xrayTraceId`, `coldStart`, `functionVersion`,
/// `service`), its X-Ray trace for our own code (`crate::trace`), and, on
/// a process's first invocation, a `ColdStart` metric line. (It replaces
/// the runtime's `TracingLayer`, whose span has only the first two.)
#[derive(Debug, Clone)]
struct Invocation {
    metrics: Option<Metrics>,
    cold: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Invocation {
    fn new(metrics: Option<Metrics>) -> Self {
        Invocation {
            metrics,
            cold: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }
}

impl<S> lambda_runtime::tower::Layer<S> for Invocation {
    type Service = InvocationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InvocationService {
            inner,
            invocation: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct InvocationService<S> {
    inner: S,
    invocation: Invocation,
}

impl<S> lambda_runtime::Service<lambda_runtime::LambdaInvocation> for InvocationService<S>
where
    S: lambda_runtime::Service<lambda_runtime::LambdaInvocation>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<crate::trace::Scoped<S::Future>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: lambda_runtime::LambdaInvocation) -> Self::Future {
        use tracing::Instrument as _;
        let cold = self
            .invocation
            .cold
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let ctx = &invocation.context;
        // One copy of the trace id, shared by the span and our code.
        let trace: Option<std::sync::Arc<str>> = ctx.xray_trace_id.as_deref().map(Into::into);
        // Strings recorded as strings: a `%` (Display) field goes through
        // the formatting machinery, several times the cost on every event.
        let span = tracing::info_span!(
            "Lambda runtime invoke",
            requestId = ctx.request_id.as_str(),
            xrayTraceId = trace.as_deref().unwrap_or(""),
            coldStart = cold,
            functionVersion = ctx.env_config.version.as_str(),
            service = crate::metrics::SERVICE,
        );
        if cold {
            if let Some(metrics) = &self.invocation.metrics {
                metrics.emit(metrics.cold_start_line(crate::metrics::now_ms()));
            }
        }
        let served = {
            // Entered while the inner service starts, so that its spans
            // are children of this one.
            let _entered = span.enter();
            self.inner.call(invocation)
        };
        crate::trace::scope(trace, served).instrument(span)
    }
}

/// Lambda hands a function whatever bytes it was invoked with, and the
/// runtime crate refuses a body that is not JSON with its own error type
/// (`&lambda_runtime::deserializer::DeserializeError`) before any of our
/// code sees it. Such a body reaches the handler as `null` instead, which
/// every handler refuses with its documented type (the reconciler, which
/// reads no event, runs as scheduled). One syntax pass over the body.
#[derive(Debug, Clone, Copy)]
struct NotJsonIsNull;

impl<S> lambda_runtime::tower::Layer<S> for NotJsonIsNull {
    type Service = NotJsonIsNullService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NotJsonIsNullService(inner)
    }
}

#[derive(Debug, Clone)]
struct NotJsonIsNullService<S>(S);

impl<S> lambda_runtime::Service<lambda_runtime::LambdaInvocation> for NotJsonIsNullService<S>
where
    S: lambda_runtime::Service<lambda_runtime::LambdaInvocation>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: lambda_runtime::LambdaInvocation) -> Self::Future {
        if serde_json::from_slice::<&serde_json::value::RawValue>(&invocation.body).is_err() {
            tracing::warn!("the event is not JSON");
            invocation.body = bytes::Bytes::from_static(b"null");
        }
        self.0.call(invocation)
    }
}

/// What the Lambda Runtime client reads from Lambda's environment (it
/// panics on a missing one; here it is a reported init error instead).
const LAMBDA_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Checks the variables Lambda (or an emulator of it) always sets.
fn check_lambda_environment(env: &Env) -> Result<(), ConfigError> {
    for name in LAMBDA_VARIABLES {
        if env.get(name).is_none() {
            return Err(ConfigError::NotInLambda(name));
        }
    }
    let memory = env
        .get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(ConfigError::Invalid(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            format!("{memory:?} (a number of MB)"),
        ));
    }
    Ok(())
}

/// A failed start is an init error (reported), a failed serve is logged.
/// Either way, the exit code says so.
async fn run(serving: Result<Serving, BoxError>, env: &Env) -> ExitCode {
    let serving = match serving {
        Ok(serving) => serving,
        Err(e) => return init_failed(e.as_ref(), env),
    };
    match serving.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// Reports a failed start: logs it, posts it to the Runtime API's init
/// error endpoint when there is one, and returns the failure exit code.
fn init_failed(error: &(dyn std::error::Error + 'static), env: &Env) -> ExitCode {
    let message = crate::ErrorChain(error).to_string();
    tracing::error!(error = %message, "init failed");
    if let Some(api) = env.get("AWS_LAMBDA_RUNTIME_API") {
        if let Err(e) = post_init_error(&api, "Runtime.ConfigError", &message) {
            tracing::error!(error = %e, runtime_api = %api, "could not report the init error to the Runtime API");
        }
    }
    ExitCode::FAILURE
}

/// `POST /2018-06-01/runtime/init/error`, by hand: the Runtime client is
/// not started yet (it may be what failed), and this is one request.
fn post_init_error(api: &str, error_type: &str, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string();
    // `host:port` (Lambda), or `http://host:port/prefix` (cargo lambda's
    // emulator routes by function under a path prefix).
    let api = api.strip_prefix("http://").unwrap_or(api);
    let (host, prefix) = match api.find('/') {
        Some(i) => (&api[..i], api[i..].trim_end_matches('/')),
        None => (api, ""),
    };
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "POST {prefix}/2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {host}\r\n\
         Lambda-Runtime-Function-Error-Type: {error_type}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // Wait for the answer, so the report is in before the process exits.
    let mut answer = [0u8; 64];
    let _ = stream.read(&mut answer)?;
    Ok(())
}
