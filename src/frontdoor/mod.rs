//! Front doors: ways a request reaches `api::Api::handle`.

pub mod automation;
pub mod lambda;
pub mod local;

/// A random id in UUID form, standing in for Lambda's request id where
/// there is none (the local server, an event invoked without a context).
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
