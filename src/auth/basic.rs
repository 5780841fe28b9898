//! Pre-emptive HTTP Basic credentials (RFC 7617).

use base64::Engine as _;

use crate::domain::Login;

/// Longest `Authorization` value we look at. A Basic header for the longest
/// login and password we accept fits easily; anything longer is refused
/// before it is decoded or hashed.
pub const MAX_HEADER_LEN: usize = 1024;
/// Longest password we hash. Argon2 accepts more, but nobody types this much
/// and it bounds the work an anonymous request can cause.
pub const MAX_PASSWORD_LEN: usize = 512;

pub struct BasicCredentials {
    pub login: Login,
    pub password: String,
}

// Never print the password, even in a debug log.
impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed Basic credentials")]
pub struct Malformed;

/// Is this `Authorization` value a Basic one? (The scheme is case-insensitive.)
pub fn is_basic(value: &[u8]) -> bool {
    value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"basic ")
}

/// Parses `Basic base64(login:password)`.
pub fn parse(value: &[u8]) -> Result<BasicCredentials, Malformed> {
    if value.len() > MAX_HEADER_LEN || !is_basic(value) {
        return Err(Malformed);
    }
    let token = value[6..].trim_ascii();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| Malformed)?;
    let (login, password) = text.split_once(':').ok_or(Malformed)?;
    // RFC 7617: no control characters in either part.
    if password.len() > MAX_PASSWORD_LEN || password.chars().any(char::is_control) {
        return Err(Malformed);
    }
    Ok(BasicCredentials {
        login: Login::parse(login).map_err(|_| Malformed)?,
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_login_and_password() {
        let h = format!("Basic {}", b64(b"alice:s3cr:et"));
        let c = parse(h.as_bytes()).unwrap();
        assert_eq!(c.login.as_str(), "alice");
        assert_eq!(c.password, "s3cr:et");
        let h = format!("bAsIc   {}  ", b64(b"bob:"));
        assert_eq!(parse(h.as_bytes()).unwrap().password, "");
    }

    /// Both limits are inclusive: a 512-byte password in a 1024-byte value.
    #[test]
    fn the_limits_are_inclusive() {
        let token = b64(format!("alice:{}", "x".repeat(MAX_PASSWORD_LEN)).as_bytes());
        let value = format!("Basic {token}");
        let value = format!("{value}{}", " ".repeat(MAX_HEADER_LEN - value.len()));
        assert_eq!(value.len(), MAX_HEADER_LEN);
        assert_eq!(
            parse(value.as_bytes()).unwrap().password.len(),
            MAX_PASSWORD_LEN
        );
        assert!(parse(format!("{value} ").as_bytes()).is_err());
        let longer = b64(format!("alice:{}", "x".repeat(MAX_PASSWORD_LEN + 1)).as_bytes());
        assert!(parse(format!("Basic {longer}").as_bytes()).is_err());
    }

    #[test]
    fn refuses_malformed_values() {
        let long = format!(
            "Basic {}",
            b64(format!("alice:{}", "x".repeat(600)).as_bytes())
        );
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"Basic".to_vec(),
            b"Basic ".to_vec(),
            b"Bearer abc".to_vec(),
            b"Basic !!!not-base64".to_vec(),
            format!("Basic {}", b64(b"no-colon")).into_bytes(),
            format!("Basic {}", b64(b":empty-login")).into_bytes(),
            format!("Basic {}", b64(b"al ice:pw")).into_bytes(),
            format!("Basic {}", b64(b"alice:p\0w")).into_bytes(),
            format!("Basic {}", b64(b"alice:p\nw")).into_bytes(),
            format!("Basic {}", b64(b"alice:\xff\xfe")).into_bytes(),
            format!("Basic {}", b64(b"al\0ice:pw")).into_bytes(),
            long.into_bytes(),
            format!("Basic {}", "A".repeat(MAX_HEADER_LEN)).into_bytes(),
        ];
        for c in cases {
            assert_eq!(
                parse(&c).err(),
                Some(Malformed),
                "{:?}",
                String::from_utf8_lossy(&c)
            );
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let h = format!("Basic {}", b64(b"alice:hunter2"));
        let text = format!("{:?}", parse(h.as_bytes()).unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("alice"), "the login is shown: {text}");
    }
}
