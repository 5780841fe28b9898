//! Who cancelled a publish, through which door, and why: written into the
//! record by the same conditional write that makes the transition (so the
//! first cancel's audit is the one that stays), and carried by every stop
//! message for it.

use std::fmt;
use std::str::FromStr;

/// Where a cancel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelSource {
    /// A UForge client through API Gateway (or the local server).
    Http,
    /// An EventBridge rule on the automation bus.
    EventBridge,
    /// A message on the automation command queue.
    Sqs,
    /// A direct invocation of the automation function (a Step Functions
    /// task, an operator's `aws lambda invoke`).
    Invoke,
}

impl CancelSource {
    pub const ALL: [CancelSource; 4] = [
        CancelSource::Http,
        CancelSource::EventBridge,
        CancelSource::Sqs,
        CancelSource::Invoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CancelSource::Http => "http",
            CancelSource::EventBridge => "eventbridge",
            CancelSource::Sqs => "sqs",
            CancelSource::Invoke => "invoke",
        }
    }
}

impl fmt::Display for CancelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CancelSource {
    type Err = InvalidAudit;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CancelSource::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(InvalidAudit("an unknown cancel source"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid audit field: {0}")]
pub struct InvalidAudit(pub &'static str);

/// A short text of the audit trail (a reason, a principal): 1 to
/// `AuditText::MAX` characters, trimmed, with no control character and no
/// Unicode noncharacter (U+FFFE, U+FFFF, U+FDD0..U+FDEF and their twins in
/// every plane). What is left is inside every character set the text
/// travels through: an SQS message body (`#x9 | #xA | #xD | #x20-#xD7FF |
/// #xE000-#xFFFD | #x10000-#x10FFFF`; a Rust `char` is never a
/// surrogate), a DynamoDB string, EventBridge's JSON, an XML 1.0 document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuditText(String);

impl AuditText {
    pub const MAX: usize = 256;

    pub fn parse(text: &str) -> Result<AuditText, InvalidAudit> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidAudit("empty"));
        }
        if text.chars().count() > Self::MAX {
            return Err(InvalidAudit("longer than 256 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(InvalidAudit("a control character"));
        }
        if text.chars().any(is_noncharacter) {
            return Err(InvalidAudit("a Unicode noncharacter"));
        }
        Ok(AuditText(text.to_owned()))
    }

    /// A text an AWS service handed over (a rule's ARN, a queue's
    /// `SenderId`, an event's `source`), made valid rather than refused:
    /// what is not allowed becomes U+FFFD and what is too long is cut to
    /// `MAX` characters ending in `…`; `None` when nothing is left.
    pub fn lossy(text: &str) -> Option<AuditText> {
        let clean: Vec<char> = text
            .trim()
            .chars()
            .map(|c| {
                if c.is_control() || is_noncharacter(c) {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        let clean: String = if clean.len() > Self::MAX {
            clean[..Self::MAX - 1].iter().chain(['…'].iter()).collect()
        } else {
            clean.into_iter().collect()
        };
        AuditText::parse(&clean).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuditText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// U+FDD0..=U+FDEF, and U+xxFFFE / U+xxFFFF in every plane: code points
/// Unicode reserves for internal use, which SQS (U+FFFE, U+FFFF) refuses.
pub fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// A status message of a publish record (`message`, `errorMessage`) as the
/// operator tooling and the seed file may write it: at most 1024
/// characters, no control character but tab and newline, no noncharacter:
/// what an XML 1.0 document, a DynamoDB string and an event all carry.
pub fn is_display_text(text: &str) -> bool {
    text.chars().count() <= 1024
        && text
            .chars()
            .all(|c| !is_noncharacter(c) && (!c.is_control() || matches!(c, '\t' | '\n')))
}

/// Who cancelled and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelAudit {
    pub source: CancelSource,
    /// The principal the service can vouch for: the authenticated UForge
    /// login (HTTP), the queue's `SenderId` (SQS), the rule that delivered
    /// the event (EventBridge), or `lambda:invoke` (a direct invocation,
    /// whose caller IAM checked but Lambda does not name).
    pub cancelled_by: AuditText,
    pub reason: Option<AuditText>,
    /// Who the sender says asked for it: asserted, not verified.
    pub requested_by: Option<AuditText>,
    /// What the delivering AWS service says of the sender, beside the
    /// principal: for EventBridge the event's `account` (set by
    /// EventBridge) and `source` (chosen by the sender), as
    /// `account <id> source <source>`. `None` for the other doors.
    pub origin: Option<AuditText>,
}

impl CancelAudit {
    /// A UForge user's cancel through the HTTP API.
    pub fn http(login: &super::Login) -> CancelAudit {
        CancelAudit {
            source: CancelSource::Http,
            // A login is 1-64 printable characters: always a valid text.
            cancelled_by: AuditText(login.to_string()),
            reason: None,
            requested_by: None,
            origin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_texts_are_bounded_and_printable() {
        assert_eq!(
            AuditText::parse("  budget exceeded ").unwrap().as_str(),
            "budget exceeded"
        );
        assert!(AuditText::parse(&"x".repeat(256)).is_ok());
        assert!(
            AuditText::parse(&"é".repeat(256)).is_ok(),
            "characters, not bytes"
        );
        for bad in [
            "",
            "   ",
            "a\nb",
            "\u{1b}[31m",
            &"x".repeat(257),
            "\u{fffe}",
            "a\u{ffff}",
            "\u{fdd0}",
            "\u{1fffe}",
            "\u{10ffff}",
            "\u{85}",
        ] {
            assert!(AuditText::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_accepted_text_is_in_the_sqs_character_set() {
        let sqs = |c: char| matches!(u32::from(c), 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF);
        // Every code point, one at a time, between two letters.
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            if let Ok(t) = AuditText::parse(&format!("a{c}b")) {
                assert!(t.as_str().chars().all(sqs), "U+{:04X}", u32::from(c));
            }
        }
        assert!(AuditText::parse("a\u{fffd}\u{e000}\u{10fffd}b").is_ok());
    }

    #[test]
    fn lossy_texts_are_valid_and_bounded() {
        assert_eq!(
            AuditText::lossy(" a\u{0}b ").unwrap().as_str(),
            "a\u{fffd}b"
        );
        assert_eq!(AuditText::lossy("x\u{ffff}").unwrap().as_str(), "x\u{fffd}");
        let long = AuditText::lossy(&"é".repeat(300)).unwrap();
        assert_eq!(long.as_str().chars().count(), AuditText::MAX);
        assert!(long.as_str().ends_with('…'));
        assert!(AuditText::lossy("   ").is_none());
        let exact = "y".repeat(AuditText::MAX);
        assert_eq!(AuditText::lossy(&exact).unwrap().as_str(), exact);
    }

    #[test]
    fn sources_round_trip() {
        for s in CancelSource::ALL {
            assert_eq!(s.as_str().parse::<CancelSource>(), Ok(s));
        }
        assert!("HTTP".parse::<CancelSource>().is_err());
    }
}
