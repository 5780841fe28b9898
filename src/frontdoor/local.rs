//! A plain HTTP/1.1 server on a socket, for local runs and tests. It hands
//! requests to the same `Api::handle` as the Lambda front door.
//!
//! It is a development server, but the first thing a user runs, so it
//! survives what a careless or hostile client does: running out of file
//! descriptors makes it back off and keep accepting (it once exited on the
//! first "Too many open files"), a connection must send its request head
//! within `header_timeout` (a byte-a-second client no longer holds it), a
//! connection lives at most `max_lifetime` whatever it does (a client that
//! pipelines requests and never reads the answers no longer holds its slot
//! for ever), and at most `max_connections` are open at once (the rest wait
//! in the kernel's backlog). Password verifications are bounded apart
//! (`auth::max_concurrent_verifications`): queued, not refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::new_request_id;
use crate::api::{Api, ApiRequest};
use crate::ports::{CancelWrites, PublishReader, StopQueue, Users};

/// How the server treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time a connection has to send a request's head (and, idle between
    /// requests, the next one's).
    pub header_timeout: Duration,
    /// Longest a connection stays open, busy or not.
    pub max_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(60),
        }
    }
}

/// Longest pause after a failed `accept()`.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `api` on `listener` until the task is dropped; it never returns
/// on its own.
pub async fn serve<U, P, Q>(listener: TcpListener, api: Arc<Api<U, P, Q>>, limits: Limits)
where
    U: Users + 'static,
    P: CancelWrites + PublishReader + 'static,
    Q: StopQueue + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Duration::ZERO;
    loop {
        // Wait for a free slot before accepting: excess clients queue in
        // the kernel's backlog instead of costing a descriptor each.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ECONNABORTED...: none is fatal
                // to the listener. Back off so a full descriptor table is
                // not a busy loop, then accept again.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; retrying");
                drop(slot);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(handle(&api, req).await) }
            });
            // A client that goes away mid-request, or too slowly, is not
            // our error; one that outlives its lifetime is closed.
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.max_lifetime, connection).await;
            drop(slot);
        });
    }
}

async fn handle<U: Users, P: CancelWrites + PublishReader, Q: StopQueue>(
    api: &Api<U, P, Q>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    // The body is never read: the resource takes none.
    let request_id = new_request_id();
    let response = api
        .handle(ApiRequest {
            method: req.method(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            headers: req.headers(),
            request_id: &request_id,
        })
        .await;
    response.map(|body| Full::new(Bytes::from(body)))
}
