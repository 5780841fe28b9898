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

use super::new_request_id;
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
