//! A loopback proxy between the service's processes and moto that breaks a
//! share of DynamoDB and SQS requests at random, as an unreliable network
//! and a throttling service would: 500s, throttling, delays past the SDK's
//! attempt timeout, connections reset before the request is forwarded,
//! writes forwarded (so committed) whose answer is then dropped, and short
//! outages when everything is reset. Each process gets its own listening
//! port (`slot`), so a request's sender is known; every request is logged
//! with what was done to it, for the soak's invariants and figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What was done to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    Passed,
    /// Answered 500 without forwarding.
    ServerError,
    /// Answered as throttled without forwarding.
    Throttled,
    /// Forwarded after a delay longer than the SDK's attempt timeout: the
    /// caller has given up (and retried) when it happens.
    Late,
    /// Reset before forwarding.
    Reset,
    /// Forwarded, then the connection dropped: it happened, unanswered.
    AnswerLost,
    /// Reset during an outage window.
    Outage,
}

impl Fate {
    pub fn name(self) -> &'static str {
        match self {
            Fate::Passed => "passed",
            Fate::ServerError => "500",
            Fate::Throttled => "throttled",
            Fate::Late => "late",
            Fate::Reset => "reset",
            Fate::AnswerLost => "answer_lost",
            Fate::Outage => "outage",
        }
    }

    /// The request reached moto but its sender could not learn how it went.
    pub fn ambiguous(self) -> bool {
        matches!(self, Fate::Late | Fate::AnswerLost)
    }
}

/// The share of requests broken, and how.
#[derive(Debug, Clone, Copy)]
pub struct FaultMix {
    /// Requests broken, of all (outages come on top).
    pub rate: f64,
    /// Relative weights: 500, throttled, late, reset, answer lost.
    pub weights: [u32; 5],
    /// An outage of `outage` every `outage_every` (none when zero).
    pub outage_every: Duration,
    pub outage: Duration,
    /// How late a `Late` request is forwarded.
    pub late_by: Duration,
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            rate: 0.25,
            weights: [2, 2, 1, 1, 2],
            outage_every: Duration::from_secs(12),
            outage: Duration::from_millis(1500),
            late_by: Duration::from_millis(2500),
        }
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub slot: String,
    pub fate: Fate,
    /// The stop messages it carried: a `SendMessage`'s, each entry's of a
    /// `SendMessageBatch` (the reconciler's), none otherwise.
    pub messages: Vec<Carried>,
}

struct State {
    rng: u64,
    log: Vec<Seen>,
}

#[derive(Clone)]
pub struct ChaosProxy {
    upstream: String,
    mix: FaultMix,
    started: Instant,
    on: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
    requests: Arc<AtomicU64>,
}

impl ChaosProxy {
    /// Off until `set_on(true)`; `seed` fixes the random choices' sequence.
    pub fn new(upstream_url: &str, seed: u64, mix: FaultMix) -> ChaosProxy {
        ChaosProxy {
            upstream: upstream_url.trim_start_matches("http://").to_owned(),
            mix,
            started: Instant::now(),
            on: Arc::new(AtomicBool::new(false)),
            state: Arc::new(Mutex::new(State {
                rng: seed ^ 0x9E37_79B9_7F4A_7C15,
                log: Vec::new(),
            })),
            requests: Arc::default(),
        }
    }

    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    /// A new listening port for the process `slot`; its URL.
    pub async fn listener(&self, slot: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let proxy = self.clone();
        let slot = slot.to_owned();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let proxy = proxy.clone();
                let slot = slot.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let proxy = proxy.clone();
                        let slot = slot.clone();
                        async move { proxy.handle(&slot, req).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        url
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests by fate.
    pub fn fates(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for seen in self.state.lock().unwrap().log.iter() {
            *out.entry(seen.fate.name()).or_default() += 1;
        }
        out
    }

    fn in_outage(&self) -> bool {
        if self.mix.outage_every.is_zero() {
            return false;
        }
        let period = self.mix.outage_every.as_millis().max(1);
        let into = self.started.elapsed().as_millis() % period;
        into < self.mix.outage.as_millis()
    }

    fn choose(&self) -> Fate {
        if !self.on.load(Ordering::SeqCst) {
            return Fate::Passed;
        }
        if self.in_outage() {
            return Fate::Outage;
        }
        let mut state = self.state.lock().unwrap();
        let roll = next(&mut state.rng);
        if (roll % 1_000_000) as f64 >= self.mix.rate * 1_000_000.0 {
            return Fate::Passed;
        }
        let total: u32 = self.mix.weights.iter().sum();
        let mut pick = (next(&mut state.rng) % u64::from(total.max(1))) as u32;
        for (weight, fate) in self.mix.weights.iter().zip([
            Fate::ServerError,
            Fate::Throttled,
            Fate::Late,
            Fate::Reset,
            Fate::AnswerLost,
        ]) {
            if pick < *weight {
                return fate;
            }
            pick -= weight;
        }
        Fate::Passed
    }

    async fn handle(
        &self,
        slot: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, std::io::Error> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (target, parts, body) = super::fault_proxy::read_request(req).await?;
        let fate = self.choose();
        let messages = stop_bodies(&target, &body);
        self.state.lock().unwrap().log.push(Seen {
            at: Instant::now(),
            slot: slot.to_owned(),
            fate,
            messages,
        });
        let sqs = target.starts_with("AmazonSQS");
        match fate {
            Fate::Reset | Fate::Outage => return Err(std::io::Error::other("chaos: reset")),
            Fate::ServerError => {
                let kind = if sqs {
                    "com.amazonaws.sqs#InternalError"
                } else {
                    "com.amazonaws.dynamodb.v20120810#InternalServerError"
                };
                return Ok(error(500, kind));
            }
            Fate::Throttled => {
                let kind = if sqs {
                    "com.amazonaws.sqs#ThrottlingException"
                } else {
                    "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
                };
                return Ok(error(400, kind));
            }
            Fate::Late => {
                // Forwarded in the background: the caller's attempt times
                // out, yet the request still happens, late.
                let proxy = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(proxy.mix.late_by).await;
                    let _ = super::fault_proxy::forward(&proxy.upstream, parts, body).await;
                });
                tokio::time::sleep(self.mix.late_by + Duration::from_secs(1)).await;
                return Err(std::io::Error::other("chaos: late"));
            }
            Fate::Passed | Fate::AnswerLost => {}
        }
        let response = super::fault_proxy::forward(&self.upstream, parts, body).await?;
        if fate == Fate::AnswerLost {
            return Err(std::io::Error::other("chaos: answer lost"));
        }
        Ok(response)
    }
}

fn error(status: u16, kind: &str) -> Response<Full<Bytes>> {
    let body = format!("{{\"__type\":\"{kind}\",\"message\":\"chaos\"}}");
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", kind.rsplit('#').next().unwrap_or(kind))
        .header(
            "x-amzn-query-error",
            format!("{};Sender", kind.rsplit('#').next().unwrap_or(kind)),
        )
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// SplitMix64: a small, seeded, well-mixed sequence (no crate needed).
pub fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The message bodies a send to SQS carries: one for `SendMessage`, one
/// per entry for `SendMessageBatch`.
/// One message a send carried: its body (JSON) and its `attempt` attribute.
#[derive(Debug, Clone)]
pub struct Carried {
    pub body: String,
    pub attempt: Option<String>,
}

fn stop_bodies(target: &str, body: &[u8]) -> Vec<Carried> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let body_of = |e: &serde_json::Value| {
        e["MessageBody"].as_str().map(|body| Carried {
            body: body.to_owned(),
            attempt: e["MessageAttributes"]["attempt"]["StringValue"]
                .as_str()
                .map(str::to_owned),
        })
    };
    match target {
        "AmazonSQS.SendMessage" => body_of(&v).into_iter().collect(),
        "AmazonSQS.SendMessageBatch" => v["Entries"]
            .as_array()
            .map(|entries| entries.iter().filter_map(body_of).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
