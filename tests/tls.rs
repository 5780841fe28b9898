//! The SDK's HTTPS client (`config::sdk::https_client`: rustls on ring) over a
//! real TLS handshake on loopback. moto speaks plain HTTP, so without this
//! nothing would show that certificates are verified at all, or that the
//! client we hand the SDK can complete a handshake and a call.
//!
//! One test function: the positive case points `SSL_CERT_FILE` at the
//! fixture certificate, and the environment is process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use publish_cancel::config::{self, TlsRoots};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tls/localhost.crt"
);
const KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tls/localhost.key"
);

/// A TLS server for `localhost` with a self-signed certificate that answers
/// every HTTP request with an empty DynamoDB JSON document. Counts completed
/// handshakes and answered requests.
struct Server {
    port: u16,
    handshakes: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

async fn server() -> Server {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_file(CERT).unwrap()];
    let key = PrivateKeyDer::from_pem_file(KEY).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (handshakes, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, r) = (handshakes.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, h, r) = (acceptor.clone(), h.clone(), r.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    buf.drain(..end + 4 + length);
                    r.fetch_add(1, Ordering::SeqCst);
                    let body = "{}";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server {
        port,
        handshakes,
        requests,
    }
}

async fn get_item(roots: TlsRoots, port: u16) -> Result<(), String> {
    let sdk = config::sdk::sdk_config_loader(roots)
        .endpoint_url(format!("https://localhost:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name("users")
        .key(
            "login",
            aws_sdk_dynamodb::types::AttributeValue::S("alice".into()),
        )
        .send()
        .await
        .map(|out| assert!(out.item.is_none()))
        .map_err(|e| DisplayErrorContext(&e).to_string())
}

const TRUST_VARS: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Makes `cert` the system's only trusted root; returns what was set.
fn only_root(cert: &str) -> Vec<(&'static str, Option<String>)> {
    let saved = TRUST_VARS
        .iter()
        .map(|&name| (name, std::env::var(name).ok()))
        .collect();
    std::env::set_var("SSL_CERT_FILE", cert);
    std::env::remove_var("SSL_CERT_DIR");
    saved
}

fn restore(saved: Vec<(&'static str, Option<String>)>) {
    for (name, value) in saved {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

#[tokio::test]
async fn https_client_verifies_certificates_and_completes_calls() {
    let server = server().await;

    // Amazon's roots do not trust a self-signed certificate: the handshake
    // fails, no request is ever sent.
    let err = get_item(TlsRoots::Amazon, server.port).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);

    // With the fixture as the system's only root (rustls-native-certs reads
    // SSL_CERT_FILE, and SSL_CERT_DIR too if set), the same client
    // completes the handshake and the call. The SDK loads the system's
    // roots once per process, so this must be the first `System` client.
    let saved = only_root(CERT);
    let outcome = get_item(TlsRoots::System, server.port).await;
    restore(saved);
    outcome.unwrap();
    assert_eq!(server.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // The Amazon store ignores SSL_CERT_FILE: compiled-in roots only.
    let saved = only_root(CERT);
    let outcome = get_item(TlsRoots::Amazon, server.port).await;
    restore(saved);
    assert!(outcome.is_err());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}
