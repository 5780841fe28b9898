//! A loopback HTTP proxy between the SDK and moto that injects faults per
//! operation (the `x-amz-target` header): pass, delay, drop the connection,
//! answer with a canned error, or forward and then lose the response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward after a delay.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer with this status and JSON error type, without forwarding.
    Error(u16, &'static str),
    /// Forward (so the operation happens), then drop the connection: the
    /// client never learns that it succeeded.
    LoseResponse,
    /// Hold the request until the gate opens, then forward it: a test puts
    /// another write in between, by synchronisation rather than by time.
    Hold(Arc<Gate>),
    /// Forward, and move the answer's `Date` by this many seconds: the
    /// answer of a service whose clock is that far from this machine's.
    ShiftDate(i64),
}

/// Where a held request waits. `arrived` resolves once a request is held.
#[derive(Debug)]
pub struct Gate {
    held: tokio::sync::Notify,
    open: tokio::sync::Semaphore,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            held: tokio::sync::Notify::new(),
            open: tokio::sync::Semaphore::new(0),
        })
    }

    /// Waits until a request is held at the gate.
    pub async fn arrived(&self) {
        self.held.notified().await
    }

    /// Lets the held request (and any later one) through.
    pub fn open(&self) {
        self.open.add_permits(1_000);
    }
}

#[derive(Default)]
struct State {
    /// (target substring, body substring, fault, remaining times; None = always)
    rules: Vec<(String, String, Fault, Option<usize>)>,
    counts: HashMap<String, usize>,
    /// Each request's operation and `X-Amzn-Trace-Id`, in arrival order.
    traces: Vec<(String, Option<String>)>,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    upstream: String,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    pub async fn start(upstream_url: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy {
            url: format!("http://{}", listener.local_addr().unwrap()),
            upstream: upstream_url.trim_start_matches("http://").to_owned(),
            state: Arc::default(),
        };
        let serving = proxy.clone();
        serve(listener, move |req| {
            let proxy = serving.clone();
            async move { proxy.handle(req).await }
        });
        proxy
    }

    /// Applies `fault` to operations whose target contains `target`,
    /// `times` times (None: until cleared).
    pub fn inject(&self, target: &str, fault: Fault, times: Option<usize>) {
        self.inject_for(target, "", fault, times);
    }

    /// The same, only for requests whose body contains `body` (e.g. one
    /// item's key), whatever else runs concurrently.
    pub fn inject_for(&self, target: &str, body: &str, fault: Fault, times: Option<usize>) {
        self.state
            .lock()
            .unwrap()
            .rules
            .push((target.to_owned(), body.to_owned(), fault, times));
    }

    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// How many requests for operations containing `target` arrived.
    pub fn count(&self, target: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .counts
            .iter()
            .filter(|(k, _)| k.contains(target))
            .map(|(_, v)| v)
            .sum()
    }

    /// Each request so far: its operation and its `X-Amzn-Trace-Id`.
    pub fn traces(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().traces.clone()
    }

    pub fn reset_counts(&self) {
        self.state.lock().unwrap().counts.clear();
    }

    fn fault_for(&self, target: &str, body: &[u8]) -> Option<Fault> {
        let body = String::from_utf8_lossy(body);
        let mut state = self.state.lock().unwrap();
        *state.counts.entry(target.to_owned()).or_default() += 1;
        let rule = state.rules.iter_mut().find(|(t, b, _, left)| {
            target.contains(t.as_str()) && body.contains(b.as_str()) && *left != Some(0)
        })?;
        if let Some(left) = &mut rule.3 {
            *left -= 1;
        }
        Some(rule.2.clone())
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        let trace = req
            .headers()
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (target, parts, body) = read_request(req).await?;
        self.state
            .lock()
            .unwrap()
            .traces
            .push((target.clone(), trace));
        let fault = self.fault_for(&target, &body);
        match fault {
            Some(Fault::Drop) => return Err(std::io::Error::other("fault: drop")),
            Some(Fault::Error(status, kind)) => {
                let body = format!("{{\"__type\":\"{kind}\",\"message\":\"injected fault\"}}");
                return Ok(Response::builder()
                    .status(status)
                    .header("content-type", "application/x-amz-json-1.0")
                    .header("x-amzn-errortype", kind.rsplit('#').next().unwrap_or(kind))
                    .body(Full::new(Bytes::from(body)))
                    .unwrap());
            }
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Hold(ref gate)) => {
                gate.held.notify_one();
                let _ = gate.open.acquire().await;
            }
            Some(Fault::LoseResponse) | Some(Fault::ShiftDate(_)) | None => {}
        }
        let mut response = forward(&self.upstream, parts, body).await?;
        if let Some(Fault::ShiftDate(secs)) = fault {
            use aws_smithy_types::date_time::{DateTime, Format};
            let shifted = response
                .headers()
                .get("date")
                .and_then(|d| d.to_str().ok())
                .and_then(|d| DateTime::from_str(d, Format::HttpDate).ok())
                .and_then(|d| {
                    DateTime::from_secs(d.secs() + secs)
                        .fmt(Format::HttpDate)
                        .ok()
                })
                .and_then(|d| http::HeaderValue::from_str(&d).ok());
            if let Some(date) = shifted {
                response.headers_mut().insert("date", date);
            }
        }
        if matches!(fault, Some(Fault::LoseResponse)) {
            return Err(std::io::Error::other("fault: response lost"));
        }
        Ok(response)
    }
}

/// A request's operation (`x-amz-target`, `unknown` without one), its
/// head, and its whole body.
pub async fn read_request(
    req: Request<Incoming>,
) -> Result<(String, http::request::Parts, Bytes), std::io::Error> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((target, parts, body))
}

/// The answer a proxy gives.
pub type Answer = Result<Response<Full<Bytes>>, std::io::Error>;

/// Serves `handle` on `listener`, each connection on its own task, until
/// the runtime ends.
pub fn serve<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Answer> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
}

/// Forwards a request to `upstream` (`host:port`) on a new connection and
/// reads the whole answer.
pub async fn forward(upstream: &str, parts: http::request::Parts, body: Bytes) -> Answer {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
