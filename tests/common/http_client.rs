//! A minimal HTTP/1.1 client for talking to the local server over a real
//! socket (one request per connection).

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// Sends `method path` with `headers` to `addr` and reads the whole answer.
pub async fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    try_send(addr, method, path, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"))
}

/// The same, an error when the connection fails or the answer is cut
/// short (a server killed mid-request).
pub async fn try_send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<RawResponse> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let cut = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "answer cut short");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(cut)?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(cut)?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let complete = headers
        .get("content-length")
        .and_then(|n| n.parse::<usize>().ok())
        .is_none_or(|n| n == body.len());
    if !complete {
        return Err(cut());
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}
