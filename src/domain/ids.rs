//! Identifiers taken from the request path. Each is parsed once, at the edge,
//! and is valid from then on ("parse, don't validate").

use std::fmt;

/// A UForge login name (the `{uid}` path segment).
///
/// UForge logins are short, printable names. We accept ASCII letters, digits
/// and `. _ - @`, starting with a letter or digit, 1 to 64 bytes: enough for
/// every real login, it keeps logins safe to put in DynamoDB keys, log lines
/// and URIs unescaped, and `.`/`..` can never be a login.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Login(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid login name")]
pub struct InvalidLogin;

impl Login {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, InvalidLogin> {
        let ok = s.len() <= Self::MAX_LEN
            && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        if ok {
            Ok(Login(s.to_owned()))
        } else {
            Err(InvalidLogin)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login({})", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid xs:long id")]
pub struct InvalidId;

/// Parses the lexical form we accept for an `xs:long` path id: an optional
/// `-` and 1 to 19 ASCII digits, within `i64`. A leading `+`, spaces, or
/// anything `str::parse` would otherwise tolerate is refused, so one record
/// has exactly one spelling per digit string.
fn parse_long(s: &str) -> Result<i64, InvalidId> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidId);
    }
    s.parse().map_err(|_| InvalidId)
}

macro_rules! long_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                parse_long(s).map($name)
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                $name(v)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

long_id!(
    /// `{aid}`: the appliance.
    ApplianceId
);
long_id!(
    /// `{itid}`: the machine image generated from the appliance.
    ImageId
);
long_id!(
    /// `{pitid}`: the publish of that image to a target environment.
    PublishId
);

/// The whole key of a publish record. A `pitid` is only meaningful under its
/// own user, appliance and image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishKey {
    pub uid: Login,
    pub aid: ApplianceId,
    pub itid: ImageId,
    pub pitid: PublishId,
}

/// `uid/aid/itid/pitid`: for logs, and as the stop queue's FIFO group.
impl std::fmt::Display for PublishKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.uid, self.aid, self.itid, self.pitid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        for ok in [
            "alice",
            "a",
            "bob.smith",
            "x_y-z",
            "ops@example.com",
            &"a".repeat(64),
        ] {
            assert_eq!(Login::parse(ok).map(|l| l.to_string()), Ok(ok.to_string()));
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "a%2Fb",
            "ä",
            "a\0",
            "..",
            ".a",
            "-a",
            &"a".repeat(65),
        ] {
            assert_eq!(Login::parse(bad), Err(InvalidLogin), "{bad:?}");
        }
    }

    #[test]
    fn longs() {
        assert_eq!(PublishId::parse("3").map(PublishId::get), Ok(3));
        assert_eq!(PublishId::parse("-3").map(PublishId::get), Ok(-3));
        assert_eq!(PublishId::parse("007").map(PublishId::get), Ok(7));
        assert_eq!(
            PublishId::parse("9223372036854775807").map(PublishId::get),
            Ok(i64::MAX)
        );
        assert_eq!(
            PublishId::parse("-9223372036854775808").map(PublishId::get),
            Ok(i64::MIN)
        );
        for bad in [
            "",
            "-",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "0x10",
            "1e3",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "00000000000000000001",
            "١",
        ] {
            assert_eq!(PublishId::parse(bad), Err(InvalidId), "{bad:?}");
        }
    }

    #[test]
    fn publish_uri() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        };
        assert_eq!(key.to_string(), "alice/1/2/3");
    }
}
