//! A plain HTTP/1.1 server on a socket, for local runs and tests. It hands
//! requests to the same `Api::handle` as the Lambda front door.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::{Api, ApiRequest};
use crate::ports::{Publishes, StopQueue, Users};

/// Serves `api` on `listener` until the task is dropped.
pub async fn serve<U, P, Q>(listener: TcpListener, api: Arc<Api<U, P, Q>>) -> std::io::Result<()>
where
    U: Users + 'static,
    P: Publishes + 'static,
    Q: StopQueue + 'static,
{
    loop {
        let (stream, _) = listener.accept().await?;
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(handle(&api, req).await) }
            });
            // A client that goes away mid-request is not our error.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle<U: Users, P: Publishes, Q: StopQueue>(
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

/// A random id in UUID form, standing in for Lambda's request id.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    // Without the OS RNG the id is still unique enough per process for
    // logs; it is never a secret.
    if getrandom::getrandom(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = nanos.to_le_bytes();
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
