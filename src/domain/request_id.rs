//! The id of the cancel that made a transition. It travels as the stop
//! message's `requestId`, the FIFO queue's `MessageDeduplicationId` and the
//! record's `cancelRequestId`, so it must be something each of those accepts:
//! 1 to 128 printable ASCII characters (SQS's rule for deduplication ids,
//! the strictest of the three). Ids that come from outside (an EventBridge
//! event `id`, an SQS `messageId`, a Lambda request id, an item written by
//! hand) are kept as they are when they fit, and otherwise replaced by a
//! digest of themselves: deterministic, so a redelivery is still the same
//! cancel.

use std::fmt;

use sha2::{Digest, Sha256};

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a request id is 1 to 128 printable ASCII characters")]
pub struct InvalidRequestId;

impl RequestId {
    pub const MAX_LEN: usize = 128;
    /// The prefix of a derived id; never the start of an id kept as is.
    const DERIVED: &'static str = "sha256:";

    /// An id that fits as it is.
    pub fn parse(s: &str) -> Result<RequestId, InvalidRequestId> {
        let fits = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_graphic())
            && !s.starts_with(Self::DERIVED);
        if fits {
            Ok(RequestId(s.to_owned()))
        } else {
            Err(InvalidRequestId)
        }
    }

    /// An id from outside: itself when it fits, else `sha256:<hex>` of it.
    pub fn from_external(s: &str) -> RequestId {
        RequestId::parse(s).unwrap_or_else(|_| RequestId::derived(s.as_bytes()))
    }

    /// An id as we stored it: a derived id stays itself (hashing it again
    /// would give its stop another id than its record); anything else as
    /// `from_external` (hand-written items).
    pub fn from_stored(s: &str) -> RequestId {
        let derived = s.strip_prefix(Self::DERIVED).is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if derived {
            RequestId(s.to_owned())
        } else {
            RequestId::from_external(s)
        }
    }

    /// `sha256:<64 hex digits>` of `bytes` (71 characters).
    pub fn derived(bytes: &[u8]) -> RequestId {
        let digest = Sha256::digest(bytes);
        let mut id = String::with_capacity(Self::DERIVED.len() + 64);
        id.push_str(Self::DERIVED);
        for b in digest {
            id.push_str(&format!("{b:02x}"));
        }
        RequestId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

/// As `from_external`: whatever the text, a valid id.
impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::from_external(s)
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> Self {
        RequestId::from_external(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_fit_are_kept() {
        for ok in [
            "a",
            "c0ffee00-0000-4000-8000-000000000001",
            "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            &"x".repeat(128),
        ] {
            assert_eq!(RequestId::parse(ok).unwrap().as_str(), ok);
            assert_eq!(RequestId::from_external(ok).as_str(), ok);
        }
    }

    #[test]
    fn ids_that_do_not_fit_are_derived_deterministically() {
        for bad in [
            "",
            " ",
            "a b",
            "é",
            "\u{ffff}",
            "a\nb",
            &"x".repeat(129),
            "sha256:forged",
        ] {
            assert_eq!(RequestId::parse(bad), Err(InvalidRequestId), "{bad:?}");
            let derived = RequestId::from_external(bad);
            assert!(derived.as_str().starts_with("sha256:"), "{bad:?}");
            assert_eq!(derived.as_str().len(), 71);
            assert!(derived.as_str().bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(derived, RequestId::from_external(bad), "deterministic");
        }
        assert_ne!(
            RequestId::from_external(&"x".repeat(129)),
            RequestId::from_external(&"x".repeat(130))
        );
    }

    #[test]
    fn stored_ids_read_back_as_they_were_written() {
        for written in [
            RequestId::from_external("c0ffee"),
            RequestId::from_external("needs a digest"),
            RequestId::derived(b"anything"),
        ] {
            assert_eq!(RequestId::from_stored(written.as_str()), written);
        }
        // Only our own digests' form is kept; anything else claiming the
        // prefix is still replaced.
        for forged in ["sha256:forged", &format!("sha256:{}", "A".repeat(64))] {
            let read = RequestId::from_stored(forged);
            assert_ne!(read.as_str(), forged);
            assert_eq!(read.as_str().len(), 71);
        }
    }
}
