//! The command's wire format: a cancel command (bare, or the `detail` of
//! an EventBridge request), and the answer a caller gets
//! (docs/automation.md).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::Deserialize as _;
use serde_json::{json, Value};

use super::error::{invalid, AutomationError};
use crate::cancel::{outcome_of, CancelError, Cancelled};
use crate::domain::{AuditText, Login, PublishKey, RequestId};

pub const COMMAND_TYPE: &str = "uforge.publish.cancel";
pub const COMMAND_SCHEMA_VERSION: u64 = 1;
pub const REQUEST_DETAIL_TYPE: &str = "Publish Cancel Requested";

/// A validated cancel command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub key: PublishKey,
    pub reason: Option<AuditText>,
    pub requested_by: Option<AuditText>,
}

/// Reads a command; `typed`: it must say `"type": "uforge.publish.cancel"`
/// (bare commands do; an EventBridge event's `detail-type` says it instead).
pub fn parse_command(v: &Value, typed: bool) -> Result<Command, AutomationError> {
    if !v.is_object() {
        return Err(invalid("a command is a JSON object"));
    }
    if typed && v.get("type").and_then(Value::as_str) != Some(COMMAND_TYPE) {
        return Err(invalid(format!("\"type\" must be \"{COMMAND_TYPE}\"")));
    }
    match v.get("schemaVersion").and_then(Value::as_u64) {
        Some(COMMAND_SCHEMA_VERSION) => {}
        _ => return Err(invalid("\"schemaVersion\" must be 1")),
    }
    let uid = v
        .get("uid")
        .and_then(Value::as_str)
        .and_then(|u| Login::parse(u).ok())
        .ok_or_else(|| invalid("\"uid\" must be a UForge login"))?;
    let id = |name: &'static str| {
        v.get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid(format!("\"{name}\" must be an integer (xs:long)")))
    };
    let text = |name: &'static str| match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => AuditText::parse(s)
            .map(Some)
            .map_err(|e| invalid(format!("\"{name}\": {e}"))),
        Some(_) => Err(invalid(format!("\"{name}\" must be a string"))),
    };
    Ok(Command {
        key: PublishKey {
            uid,
            aid: id("aid")?.into(),
            itid: id("itid")?.into(),
            pitid: id("pitid")?.into(),
        },
        reason: text("reason")?,
        requested_by: text("requestedBy")?,
    })
}

/// The command inside an EventBridge event (`detail-type` must be the
/// request's), and its id.
pub(super) fn from_eventbridge(
    event: &EventBridgeEvent<Value>,
) -> Result<(Command, RequestId), AutomationError> {
    if event.detail_type != REQUEST_DETAIL_TYPE {
        return Err(invalid(format!(
            "an EventBridge event here must have detail-type \"{REQUEST_DETAIL_TYPE}\""
        )));
    }
    let id = event
        .id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("an EventBridge event without an id"))?;
    Ok((
        parse_command(&event.detail, false)?,
        RequestId::from_external(id),
    ))
}

/// An EventBridge event, typed (`aws_lambda_events`).
pub(super) fn eventbridge_event(v: &Value) -> Result<EventBridgeEvent<Value>, AutomationError> {
    EventBridgeEvent::deserialize(v).map_err(|e| invalid(format!("not an EventBridge event: {e}")))
}

/// What a command did, as the caller sees it: an answer for the outcomes
/// that are answers (`Outcome::answer_name`), else the cancel's error.
pub fn answer(result: Result<Cancelled, CancelError>) -> Result<Value, CancelError> {
    let Some(outcome) = outcome_of(&result).answer_name() else {
        return result.map(|_| Value::Null);
    };
    let mut out = json!({"outcome": outcome, "state": Value::Null});
    match result {
        Ok(done) => {
            out["state"] = json!(done.record.state.as_str());
            if let Some(stamp) = &done.record.cancel {
                out["cancelRequestId"] = json!(stamp.request_id.as_str());
                out["cancelledAt"] = json!(stamp.at.to_rfc3339());
                out["cancelSource"] = json!(stamp.audit.source.as_str());
                out["cancelledBy"] = json!(stamp.audit.cancelled_by.as_str());
                let text = |t: &Option<AuditText>| json!(t.as_ref().map(AuditText::as_str));
                out["reason"] = text(&stamp.audit.reason);
                out["requestedBy"] = text(&stamp.audit.requested_by);
                out["origin"] = text(&stamp.audit.origin);
            }
        }
        Err(CancelError::Finished(state)) => out["state"] = json!(state.as_str()),
        Err(_) => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PublishState;

    fn command() -> Value {
        json!({"type": COMMAND_TYPE, "schemaVersion": 1, "uid": "alice", "aid": 1, "itid": 2, "pitid": 3,
               "reason": "budget exceeded", "requestedBy": "watchdog"})
    }

    #[test]
    fn commands_are_validated_field_by_field() {
        let c = parse_command(&command(), true).unwrap();
        assert_eq!(c.key.to_string(), "alice/1/2/3");
        assert_eq!(c.reason.unwrap().as_str(), "budget exceeded");
        let mut no_type = command();
        no_type.as_object_mut().unwrap().remove("type");
        assert!(parse_command(&no_type, true).is_err());
        assert!(
            parse_command(&no_type, false).is_ok(),
            "an EventBridge detail has no type"
        );
        for (field, bad) in [
            ("schemaVersion", json!(2)),
            ("schemaVersion", json!("1")),
            ("uid", json!("al ice")),
            ("uid", json!(7)),
            ("aid", json!("1")),
            ("pitid", json!(1.5)),
            ("pitid", json!(null)),
            ("reason", json!("a\nb")),
            ("reason", json!("x".repeat(300))),
            ("requestedBy", json!(["x"])),
        ] {
            let mut c = command();
            c[field] = bad.clone();
            let err = parse_command(&c, true).unwrap_err();
            assert_eq!(err.error_type(), "UForge.InvalidCommand", "{field} {bad}");
            assert!(!err.retryable());
        }
        assert!(parse_command(&json!([1]), true).is_err());
    }

    #[test]
    fn eventbridge_events_must_be_cancel_requests() {
        let event = json!({"id": "e-1", "detail-type": REQUEST_DETAIL_TYPE, "source": "acme.watchdog",
                           "detail": {"schemaVersion": 1, "uid": "bob", "aid": 10, "itid": 20, "pitid": 30}});
        let typed = |e: &Value| eventbridge_event(e).unwrap();
        let (c, id) = from_eventbridge(&typed(&event)).unwrap();
        assert_eq!(
            (c.key.to_string(), id.as_str()),
            ("bob/10/20/30".to_owned(), "e-1")
        );
        let mut long = event.clone();
        long["id"] = json!("\u{ffff}".repeat(200));
        let (_, id) = from_eventbridge(&typed(&long)).unwrap();
        assert!(id.as_str().starts_with("sha256:"), "mapped to a valid id");
        let mut other = event.clone();
        other["detail-type"] = json!("Publish Cancelled");
        assert!(
            from_eventbridge(&typed(&other)).is_err(),
            "our own outbound events are not requests"
        );
    }

    #[test]
    fn answers_name_the_outcomes_that_are_not_errors() {
        assert_eq!(
            answer(Err(CancelError::Finished(PublishState::Published))).ok(),
            Some(json!({"outcome": "finished", "state": "published"}))
        );
        assert_eq!(
            answer(Err(CancelError::NotFound)).ok(),
            Some(json!({"outcome": "notFound", "state": null}))
        );
    }
}
