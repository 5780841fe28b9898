//! A Lambda Runtime API on loopback, enough for a real function binary:
//! `GET /2018-06-01/runtime/invocation/next`, `POST .../{id}/response`,
//! `POST .../{id}/error` and `POST .../init/error`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(serde_json::Value),
    Error(serde_json::Value),
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<(Outcome, Duration)>>>,
    /// When each invocation in flight was handed to the function.
    handed: Mutex<HashMap<String, Instant>>,
    first_next: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
    /// Each invocation's time limit, in ms (Lambda's function timeout).
    timeout_ms: AtomicU64,
    /// The ARN Lambda says was invoked (`Lambda-Runtime-Invoked-Function-Arn`).
    invoked_arn: Mutex<String>,
}

/// One event on its way: its request id, the event, and the ARN it says
/// was invoked (`None`: the runtime's current one).
type Invocation = (String, String, Option<String>);

/// The invoked ARN unless a test sets another.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:publish-cancel";

pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub addr: String,
    queue: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl RuntimeApi {
    /// The time limit of the invocations from now on (20 s unless set).
    pub fn set_timeout(&self, timeout: std::time::Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.shared
            .timeout_ms
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// The ARN the next invocations say was invoked: an alias's for an
    /// event source's delivery, the function's for a direct invoke.
    #[allow(dead_code)]
    pub fn set_invoked_arn(&self, arn: &str) {
        *self.shared.invoked_arn.lock().unwrap() = arn.to_owned();
    }

    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        let (queue, events) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(events),
            waiting: Mutex::new(HashMap::new()),
            handed: Mutex::new(HashMap::new()),
            first_next: Mutex::new(None),
            init_error: Mutex::new(None),
            timeout_ms: AtomicU64::new(20_000),
            invoked_arn: Mutex::new(FUNCTION_ARN.to_owned()),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(&shared, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        RuntimeApi {
            addr,
            queue,
            shared,
            next_id: AtomicU64::new(1),
        }
    }

    /// Invokes the function with `event` and waits for its answer (the
    /// benchmark's; tests use `LambdaProcess::invoke`, which shows the
    /// function's output when it does not answer).
    #[allow(dead_code)]
    pub async fn invoke(&self, event: &str) -> Outcome {
        self.try_invoke(event, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("no answer within 30 s"))
    }

    /// Invokes the function with `event`; `None` if it has not answered
    /// within `wait`.
    pub async fn try_invoke(&self, event: &str, wait: Duration) -> Option<Outcome> {
        self.try_invoke_as(event, None, wait).await
    }

    /// The same, saying `arn` was invoked (several invocations at once,
    /// each through its own door).
    pub async fn try_invoke_as(
        &self,
        event: &str,
        arn: Option<&str>,
        wait: Duration,
    ) -> Option<Outcome> {
        self.try_invoke_timed(event, arn, wait)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// The same, with how long the function took from being handed the
    /// event to answering (what Lambda holds against its timeout).
    pub async fn try_invoke_timed(
        &self,
        event: &str,
        arn: Option<&str>,
        wait: Duration,
    ) -> Option<(Outcome, Duration)> {
        let id = format!(
            "00000000-0000-4000-8000-{:012}",
            self.next_id.fetch_add(1, Ordering::SeqCst)
        );
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().unwrap().insert(id.clone(), tx);
        self.queue
            .send((id.clone(), event.to_owned(), arn.map(str::to_owned)))
            .await
            .expect("queue");
        tokio::time::timeout(wait, rx)
            .await
            .ok()
            .map(|r| r.expect("answer"))
    }

    /// When the function first asked for work (its init was done), once
    /// it has: the benchmark's measure of init.
    #[allow(dead_code)]
    pub async fn first_next(&self) -> Instant {
        loop {
            if let Some(at) = *self.shared.first_next.lock().unwrap() {
                return at;
            }
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    }

    pub fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().unwrap().clone()
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["2018-06-01", "runtime", "invocation", "next"]) => {
            shared
                .first_next
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            let next = shared.events.lock().await.recv().await;
            let Some((id, event, arn)) = next else {
                return reply(500, "no more events");
            };
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + u128::from(shared.timeout_ms.load(std::sync::atomic::Ordering::SeqCst));
            let invoked_arn = arn.unwrap_or_else(|| shared.invoked_arn.lock().unwrap().clone());
            shared
                .handed
                .lock()
                .unwrap()
                .insert(id.clone(), Instant::now());
            Response::builder()
                .status(200)
                .header("lambda-runtime-aws-request-id", &id)
                .header("lambda-runtime-deadline-ms", deadline.to_string())
                .header("lambda-runtime-invoked-function-arn", invoked_arn)
                .header("lambda-runtime-trace-id", trace_id(&id))
                .body(Full::new(Bytes::from(event)))
                .unwrap()
        }
        ("POST", ["2018-06-01", "runtime", "invocation", id, kind @ ("response" | "error")]) => {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
            });
            let outcome = if *kind == "response" {
                Outcome::Response(value)
            } else {
                Outcome::Error(value)
            };
            let ran = shared
                .handed
                .lock()
                .unwrap()
                .remove(*id)
                .map_or(Duration::ZERO, |at| at.elapsed());
            if let Some(tx) = shared.waiting.lock().unwrap().remove(*id) {
                let _ = tx.send((outcome, ran));
            }
            reply(202, "")
        }
        ("POST", ["2018-06-01", "runtime", "init", "error"]) => {
            *shared.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
            reply(202, "")
        }
        _ => reply(404, "unknown runtime API path"),
    }
}

/// The X-Ray trace id Lambda hands the invocation `request_id`: its own
/// for each (derived from the id, so a test can tell which is whose).
pub fn trace_id(request_id: &str) -> String {
    let digits: String = request_id.chars().filter(char::is_ascii_hexdigit).collect();
    let tail = &digits[digits.len().saturating_sub(24)..];
    format!("Root=1-5759e988-{tail:0>24};Parent=53995c3f42cd8ad8;Sampled=1")
}

fn reply(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}
