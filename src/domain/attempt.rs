//! Who is executing a cancel's transition or sending its stop: each attempt
//! (one cancel request, one redelivery, one reconciler visit of a record)
//! draws a random token, writes it with the transition and with every
//! claim it takes, and conditions releasing, clearing and parking the stop
//! on still holding it. Two attempts never share a token, so neither a
//! redelivery (same request id) nor a claim taken in the same second can
//! pass for another attempt, while an attempt still recognises its own
//! write when the answer to it was lost (docs/guarantees.md, "Delivery").

use std::fmt;

use super::Timestamp;

/// One attempt's token: 128 random bits, as 32 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AttemptToken(String);

impl AttemptToken {
    /// The token of these random bytes (the caller draws them).
    pub fn from_bytes(bytes: [u8; 16]) -> AttemptToken {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let hex = bytes
            .iter()
            .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
            .map(char::from)
            .collect();
        AttemptToken(hex)
    }

    /// A token as stored: exactly 32 lowercase hex digits, else `None`.
    pub fn parse(s: &str) -> Option<AttemptToken> {
        let valid = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| AttemptToken(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AttemptToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttemptToken({})", self.0)
    }
}

impl fmt::Display for AttemptToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The right to send a pending stop, held by one attempt since `at`; it
/// lapses after `cancel::STOP_CLAIM_LEASE`. `by` is `None` only for claims
/// written before tokens existed (or by hand): nobody holds those but
/// the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub at: Timestamp,
    pub by: Option<AttemptToken>,
}

impl Claim {
    /// A claim `attempt` takes at `at`.
    pub fn by(attempt: &AttemptToken, at: Timestamp) -> Claim {
        Claim {
            at,
            by: Some(attempt.clone()),
        }
    }

    pub fn is_held_by(&self, attempt: &AttemptToken) -> bool {
        self.by.as_ref() == Some(attempt)
    }

    /// Whether `new` may take over this claim: it lapsed (taken before
    /// `stale_before`), it is `new`'s own attempt's, or it is stamped more
    /// than `MAX_CLAIM_AHEAD` seconds ahead of `new` (a clock that far off
    /// would otherwise hide the stop for as long).
    pub fn yields_to(&self, new: &Claim, stale_before: Timestamp) -> bool {
        self.at < stale_before
            || self.at.0 > new.at.0.saturating_add(MAX_CLAIM_AHEAD)
            || new.by.as_ref().is_some_and(|by| self.is_held_by(by))
    }
}

/// How far ahead of the claimer's clock a claim may be stamped and still
/// hold: far beyond any clock a Lambda environment keeps, well short of the
/// hours a wrong laptop clock could hide a stop for.
pub const MAX_CLAIM_AHEAD: i64 = 300;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_and_parse_back() {
        let every_digit = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ];
        assert_eq!(
            AttemptToken::from_bytes(every_digit).as_str(),
            "0123456789abcdeffedcba9876543210"
        );
        let t = AttemptToken::from_bytes([0xab; 16]);
        assert_eq!(t.as_str(), "ab".repeat(16));
        assert_eq!(AttemptToken::parse(t.as_str()), Some(t.clone()));
        for bad in [
            "",
            "AB".repeat(16).as_str(),
            &"a".repeat(31),
            &"g".repeat(32),
        ] {
            assert_eq!(AttemptToken::parse(bad), None, "{bad:?}");
        }
        let claim = Claim::by(&t, Timestamp(5));
        assert!(claim.is_held_by(&t));
        assert!(!claim.is_held_by(&AttemptToken::from_bytes([0; 16])));
        assert!(!Claim {
            at: Timestamp(5),
            by: None
        }
        .is_held_by(&t));
    }
}
