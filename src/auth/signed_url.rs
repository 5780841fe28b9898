//! UForge API-key signed URLs.
//!
//! The client appends `apiKey=<public key>` to the query, signs the request
//! URI relative to the API base (no leading slash) up to and including that
//! parameter with HMAC-SHA1 under the secret key, and appends
//! `&signature=<url-encoded base64>`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha1::Sha1;

/// Longest query string we look at.
pub const MAX_QUERY_LEN: usize = 2048;
/// Longest public key we accept (UForge's are ~20-40 characters).
pub const MAX_PUBLIC_KEY_LEN: usize = 128;

/// A request that claims to be signed with an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub public_key: String,
    /// The raw HMAC-SHA1 tag sent by the client.
    pub signature: Vec<u8>,
    /// The exact text the client signed.
    pub signed_text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API-key signature")]
pub struct Malformed;

/// Finds an API-key signature in the query. `relative_path` is the request
/// path after the API base, without the leading slash, exactly as received.
///
/// `Ok(None)`: the query has neither `apiKey` nor `signature`, so the
/// request is not using this scheme. A query that has one without the other,
/// either of them twice, or an undecodable value is `Malformed`.
pub fn parse(relative_path: &str, raw_query: &str) -> Result<Option<SignedRequest>, Malformed> {
    if raw_query.len() > MAX_QUERY_LEN {
        return Err(Malformed);
    }
    let mut public_key = None;
    let mut signature = None;
    // The signed part of the query: every parameter up to and including
    // `apiKey`, except the signature itself (a front end may reorder).
    let mut signed_query: Vec<&str> = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "signature" => &mut signature,
            "apiKey" => {
                signed_query.push(pair);
                &mut public_key
            }
            _ => {
                if public_key.is_none() {
                    signed_query.push(pair);
                }
                continue;
            }
        };
        // A parameter given twice is ambiguous: which one was signed?
        if slot.replace(value).is_some() {
            return Err(Malformed);
        }
    }
    let (public_key, signature) = match (public_key, signature) {
        (None, None) => return Ok(None),
        (Some(k), Some(s)) => (k, s),
        _ => return Err(Malformed),
    };
    let public_key = percent_decode_str(public_key)
        .decode_utf8()
        .map_err(|_| Malformed)?;
    if public_key.is_empty()
        || public_key.len() > MAX_PUBLIC_KEY_LEN
        || !public_key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Malformed);
    }
    let sig_b64: Vec<u8> = percent_decode_str(signature).collect();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.trim_ascii())
        .map_err(|_| Malformed)?;
    if signature.len() != 20 {
        return Err(Malformed);
    }
    Ok(Some(SignedRequest {
        public_key: public_key.into_owned(),
        signature,
        signed_text: format!("{relative_path}?{}", signed_query.join("&")),
    }))
}

type HmacSha1 = Hmac<Sha1>;

/// `base64(HMAC-SHA1(secret, text))`: what a client sends (before URL-encoding).
pub fn sign(secret: &[u8], text: &str) -> String {
    let tag = tag(secret, text).finalize().into_bytes();
    base64::engine::general_purpose::STANDARD.encode(tag)
}

/// Checks the client's tag in constant time.
pub fn verify(secret: &[u8], req: &SignedRequest) -> bool {
    tag(secret, &req.signed_text)
        .verify_slice(&req.signature)
        .is_ok()
}

fn tag(secret: &[u8], text: &str) -> HmacSha1 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(text.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "users/alice/appliances/1/images/2/pimages/3/cancel";

    #[test]
    fn the_uforge_sdk_vector() {
        // From the UForge Python SDK, see CONTRACT.md.
        let text = format!("{PATH}?apiKey=PUBKEY123");
        assert_eq!(sign(b"SECRETKEY456", &text), "0CrZ0HktI7YH/Ob65tZrApx9Z8M=");
        let req = parse(
            PATH,
            "apiKey=PUBKEY123&signature=0CrZ0HktI7YH%2FOb65tZrApx9Z8M%3D",
        )
        .unwrap()
        .unwrap();
        assert_eq!(req.public_key, "PUBKEY123");
        assert_eq!(req.signed_text, text);
        assert!(verify(b"SECRETKEY456", &req));
        assert!(!verify(b"SECRETKEY457", &req));
    }

    #[test]
    fn signature_binds_the_path_and_earlier_parameters() {
        let q = "apiKey=PUBKEY123&signature=0CrZ0HktI7YH%2FOb65tZrApx9Z8M%3D";
        let other = parse("users/alice/appliances/1/images/2/pimages/4/cancel", q)
            .unwrap()
            .unwrap();
        assert!(!verify(b"SECRETKEY456", &other));
        let extra = parse(PATH, &format!("x=1&{q}")).unwrap().unwrap();
        assert_eq!(extra.signed_text, format!("{PATH}?x=1&apiKey=PUBKEY123"));
        assert!(!verify(b"SECRETKEY456", &extra));
        // Parameters after apiKey are not signed (as in the SDK).
        let after = parse(PATH, &format!("{q}&x=1")).unwrap().unwrap();
        assert!(verify(b"SECRETKEY456", &after));
        // A front end that moved the signature first changes nothing.
        let moved = parse(
            PATH,
            "signature=0CrZ0HktI7YH%2FOb65tZrApx9Z8M%3D&apiKey=PUBKEY123",
        )
        .unwrap()
        .unwrap();
        assert!(verify(b"SECRETKEY456", &moved));
    }

    #[test]
    fn no_api_key_means_another_scheme() {
        assert_eq!(parse(PATH, ""), Ok(None));
        assert_eq!(parse(PATH, "x=1&y"), Ok(None));
        // The length limits are inclusive.
        assert_eq!(parse(PATH, &"x".repeat(MAX_QUERY_LEN)), Ok(None));
        let longest_key = format!(
            "apiKey={}&signature=0CrZ0HktI7YH%2FOb65tZrApx9Z8M%3D",
            "k".repeat(MAX_PUBLIC_KEY_LEN)
        );
        assert!(matches!(parse(PATH, &longest_key), Ok(Some(_))));
    }

    #[test]
    fn malformed_queries() {
        let sig = "0CrZ0HktI7YH%2FOb65tZrApx9Z8M%3D";
        for q in [
            "apiKey=PUB".to_string(),
            format!("signature={sig}"),
            format!("apiKey=&signature={sig}"),
            format!("apiKey=PUB&apiKey=PUB&signature={sig}"),
            format!("apiKey=PUB&signature={sig}&signature={sig}"),
            "apiKey=PUB&signature=not*base64".to_string(),
            "apiKey=PUB&signature=AAAA".to_string(),
            format!("apiKey=P%00B&signature={sig}"),
            format!("apiKey=P%FFB&signature={sig}"),
            format!("apiKey={}&signature={sig}", "k".repeat(200)),
            format!(
                "apiKey=PUB&signature={sig}&pad={}",
                "x".repeat(MAX_QUERY_LEN)
            ),
            "x".repeat(MAX_QUERY_LEN + 1),
        ] {
            assert_eq!(parse(PATH, &q), Err(Malformed), "{q}");
        }
    }
}
