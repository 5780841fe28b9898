//! A publish of a machine image to a target environment, and its life cycle.

use std::fmt;
use std::str::FromStr;

use super::ids::PublishKey;

/// Where a publish is in its life cycle.
///
/// ```text
///   queued ──► publishing ──► published
///     │            │      └──► failed
///     └────────────┴─────────► cancelled
/// ```
/// `published`, `failed` and `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishState {
    Queued,
    Publishing,
    Published,
    Failed,
    Cancelled,
}

impl PublishState {
    pub const ALL: [PublishState; 5] = [
        PublishState::Queued,
        PublishState::Publishing,
        PublishState::Published,
        PublishState::Failed,
        PublishState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PublishState::Queued => "queued",
            PublishState::Publishing => "publishing",
            PublishState::Published => "published",
            PublishState::Failed => "failed",
            PublishState::Cancelled => "cancelled",
        }
    }

    /// The states a cancel may move out of: derived from `can_become`, the
    /// one statement of the life cycle. The in-memory adapter applies it
    /// through `PublishRecord::cancelled`, the DynamoDB adapter turns this
    /// list into its condition expression.
    pub fn cancellable() -> impl Iterator<Item = PublishState> {
        PublishState::ALL
            .into_iter()
            .filter(|s| s.can_become(PublishState::Cancelled))
    }

    /// The only legal transitions of the life cycle drawn above: the one
    /// place that says which state may follow which.
    pub fn can_become(self, next: PublishState) -> bool {
        use PublishState::*;
        matches!(
            (self, next),
            (Queued, Publishing)
                | (Queued | Publishing, Cancelled)
                | (Publishing, Published | Failed)
        )
    }
}

impl fmt::Display for PublishState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown publish state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for PublishState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublishState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Seconds since the Unix epoch, UTC. UForge's dateTimes carry no fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now, by AWS's clock as far as it is known (`crate::clock`).
    pub fn now() -> Self {
        Timestamp(crate::clock::now_secs())
    }

    /// ISO 8601 / xs:dateTime, e.g. `2026-11-26T18:47:27Z`.
    pub fn to_rfc3339(self) -> String {
        use aws_smithy_types::date_time::{DateTime, Format};
        DateTime::from_secs(self.0)
            .fmt(Format::DateTime)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
    }
}

/// Which cancel, when, by whom and why: written into the record by the
/// cancel that made the transition, and copied into every stop message for
/// it, so that re-sent stops carry the same deduplication id and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelStamp {
    pub request_id: super::RequestId,
    pub at: Timestamp,
    pub audit: super::CancelAudit,
}

impl CancelStamp {
    pub fn new(request_id: super::RequestId, at: Timestamp, audit: super::CancelAudit) -> Self {
        CancelStamp {
            request_id,
            at,
            audit,
        }
    }
}

/// The stored publish: the source of truth for UForge's `status` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRecord {
    pub key: PublishKey,
    pub state: PublishState,
    pub created: Option<Timestamp>,
    pub last_modified: Option<Timestamp>,
    pub percentage: Option<i32>,
    pub bytes_loaded: Option<i64>,
    pub bytes_total: Option<i64>,
    pub message: Option<String>,
    pub error_message: Option<String>,
    /// Set by the cancel that moved the record to `cancelled`.
    pub cancel: Option<CancelStamp>,
    /// The attempt that made that transition (`None` on records cancelled
    /// before attempts had tokens): the one execution that answers
    /// `cancelled` for it, also when the answer to its write was lost.
    pub cancel_attempt: Option<super::AttemptToken>,
    /// The stop message for that cancel has not been confirmed sent yet.
    /// Set in the same write as the cancel, cleared after a successful send;
    /// the reconciler re-sends stops that stay pending.
    pub stop_pending: bool,
    /// The send attempt in flight for a pending stop (the cancel's own, a
    /// repeat's or the reconciler's) and when it began: while it is recent,
    /// nobody else sends the same stop. See `cancel::STOP_CLAIM_LEASE`.
    pub stop_claim: Option<super::Claim>,
    /// SQS refused this record's stop for good (why, as SQS said it): no
    /// retry can cure it, so it is no longer pending; alarmed, and
    /// re-queued by an operator (`uforge-admin publish repair`).
    pub stop_undeliverable: Option<String>,
}

impl PublishRecord {
    /// A fresh record in `state`, with no progress yet.
    pub fn new(key: PublishKey, state: PublishState) -> Self {
        PublishRecord {
            key,
            state,
            created: None,
            last_modified: None,
            percentage: None,
            bytes_loaded: None,
            bytes_total: None,
            message: None,
            error_message: None,
            cancel: None,
            cancel_attempt: None,
            stop_pending: false,
            stop_claim: None,
            stop_undeliverable: None,
        }
    }

    /// The message UForge shows for a cancelled publish.
    pub const CANCELLED_MESSAGE: &'static str = "Publish cancelled";

    /// This record after `attempt`'s cancel: the in-memory twin of the
    /// DynamoDB adapter's update expression. `None` if the state does not
    /// allow it.
    pub fn cancelled(
        &self,
        stamp: &CancelStamp,
        attempt: &super::AttemptToken,
    ) -> Option<PublishRecord> {
        if !self.state.can_become(PublishState::Cancelled) {
            return None;
        }
        Some(PublishRecord {
            state: PublishState::Cancelled,
            last_modified: Some(stamp.at),
            message: Some(Self::CANCELLED_MESSAGE.to_owned()),
            cancel: Some(stamp.clone()),
            cancel_attempt: Some(attempt.clone()),
            // The cancel that makes the transition sends the stop itself.
            stop_pending: true,
            stop_claim: Some(super::Claim::by(attempt, stamp.at)),
            stop_undeliverable: None,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Login;
    use PublishState::*;

    #[test]
    fn only_running_publishes_can_be_cancelled() {
        let cancellable: Vec<_> = PublishState::cancellable().collect();
        assert_eq!(cancellable, [Queued, Publishing]);
    }

    #[test]
    fn final_states_go_nowhere() {
        for from in [Published, Failed, Cancelled] {
            for to in PublishState::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
        assert!(Queued.can_become(Publishing));
        assert!(Publishing.can_become(Published));
        assert!(!Queued.can_become(Published));
        assert!(!Publishing.can_become(Queued));
    }

    #[test]
    fn state_names_round_trip() {
        for st in PublishState::ALL {
            assert_eq!(st.as_str().parse::<PublishState>(), Ok(st));
        }
        assert!("Cancelled".parse::<PublishState>().is_err());
    }

    #[test]
    fn timestamps_render_as_xs_datetime() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_795_718_847).to_rfc3339(),
            "2026-11-26T18:47:27Z"
        );
    }

    #[test]
    fn cancelling_sets_state_time_message_and_stamp() {
        let key = PublishKey {
            uid: Login::parse("alice").unwrap(),
            aid: 1.into(),
            itid: 2.into(),
            pitid: 3.into(),
        };
        let mut rec = PublishRecord::new(key, Publishing);
        rec.percentage = Some(40);
        // A mark left by hand on a running publish does not survive a cancel.
        rec.stop_undeliverable = Some("stale".into());
        let stamp = CancelStamp::new(
            "r1".into(),
            Timestamp(10),
            crate::domain::CancelAudit::http(&rec.key.uid),
        );
        let attempt = crate::domain::AttemptToken::from_bytes([1; 16]);
        let done = rec.cancelled(&stamp, &attempt).unwrap();
        assert_eq!(done.state, Cancelled);
        assert_eq!(done.percentage, Some(40));
        assert_eq!(done.last_modified, Some(Timestamp(10)));
        assert_eq!(done.cancel, Some(stamp.clone()));
        assert_eq!(done.cancel_attempt.as_ref(), Some(&attempt));
        assert!(done.stop_pending);
        assert_eq!(done.stop_undeliverable, None);
        assert!(done
            .stop_claim
            .as_ref()
            .is_some_and(|c| c.is_held_by(&attempt)));
        assert!(done.cancelled(&stamp, &attempt).is_none());
    }
}
