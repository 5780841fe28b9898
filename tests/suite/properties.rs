//! Property tests of every parser that sees raw input: none panics on any
//! input, and each round-trips what a real client would send.

use base64::Engine as _;
use proptest::prelude::*;
use publish_cancel::api::negotiate::{self, Format};
use publish_cancel::api::route;
use publish_cancel::auth::{basic, signed_url};

fn login() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn basic_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = basic::parse(&bytes);
        let mut prefixed = b"Basic ".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = basic::parse(&prefixed);
    }

    #[test]
    fn basic_round_trips(login in login(), password in "[^\\p{Cc}]{0,64}") {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
        let c = basic::parse(format!("Basic {token}").as_bytes()).unwrap();
        prop_assert_eq!(c.login.as_str(), login.as_str());
        prop_assert_eq!(c.password, password);
    }

    #[test]
    fn signed_url_never_panics(path in ".{0,200}", query in ".{0,300}") {
        let _ = signed_url::parse(&path, &query);
    }

    #[test]
    fn signed_url_round_trips_and_binds_the_path(
        login in login(),
        ids in (any::<i64>(), any::<i64>(), any::<i64>()),
        public in "[A-Za-z0-9]{1,40}",
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        other in any::<i64>(),
    ) {
        let path = format!("users/{login}/appliances/{}/images/{}/pimages/{}/cancel", ids.0, ids.1, ids.2);
        let sig = signed_url::sign(&secret, &format!("{path}?apiKey={public}"));
        let sig = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC).to_string();
        let query = format!("apiKey={public}&signature={sig}");
        let req = signed_url::parse(&path, &query).unwrap().unwrap();
        prop_assert!(signed_url::verify(&secret, &req));
        if other != ids.2 {
            let moved = format!("users/{login}/appliances/{}/images/{}/pimages/{other}/cancel", ids.0, ids.1);
            let replay = signed_url::parse(&moved, &query).unwrap().unwrap();
            prop_assert!(!signed_url::verify(&secret, &replay));
        }
    }

    #[test]
    fn route_never_panics(path in ".{0,600}") {
        let _ = route::route("/api", &path);
        let _ = route::route("", &path);
    }

    #[test]
    fn route_round_trips(login in login(), aid in any::<i64>(), itid in any::<i64>(), pitid in any::<i64>(), base in prop_oneof![Just("/api"), Just("")]) {
        let path = format!("{base}/users/{login}/appliances/{aid}/images/{itid}/pimages/{pitid}/cancel");
        let m = route::route("/api", &path).unwrap();
        prop_assert_eq!(m.key.uid.as_str(), login.as_str());
        prop_assert_eq!((m.key.aid.get(), m.key.itid.get(), m.key.pitid.get()), (aid, itid, pitid));
        prop_assert!(path.ends_with(m.relative));
    }

    #[test]
    fn accept_never_panics(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4)) {
        let _ = negotiate::choose(values.iter().map(Vec::as_slice));
        let _ = negotiate::wants_minimal(values.iter().map(Vec::as_slice));
    }

    #[test]
    fn accept_follows_q_values(qx in 0u16..=1000, qj in 0u16..=1000) {
        let header = format!("application/xml;q={}.{:03}, application/json;q={}.{:03}", qx / 1000, qx % 1000, qj / 1000, qj % 1000);
        let want = match (qx, qj) {
            (0, 0) => None,
            (x, j) if x >= j => Some(Format::Xml),
            _ => Some(Format::Json),
        };
        prop_assert_eq!(negotiate::choose([header.as_bytes()]), want);
    }
}

mod lambda_events {
    //! Any JSON at all, and the sample events with any part replaced by any
    //! JSON, through the Lambda front door: never a panic; an HTTP event
    //! gets an HTTP answer that is never a 5xx (the stores here cannot
    //! fail) and whose body is a document; anything else is `NotHttp`.

    use std::sync::OnceLock;

    use proptest::prelude::*;
    use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
    use publish_cancel::api::Api;
    use publish_cancel::auth::{FixedKeks, Sealer};
    use publish_cancel::frontdoor::lambda;
    use publish_cancel::seed::{Seed, BUNDLED};
    use publish_cancel::startup;
    use serde_json::Value;

    type MemApi = Api<MemoryUsers, MemoryPublishes, MemoryQueue>;

    fn api() -> &'static MemApi {
        static API: OnceLock<MemApi> = OnceLock::new();
        API.get_or_init(|| {
            let sealer = Sealer::new(&[1; 32]);
            let (users, publishes) =
                publish_cancel::startup::memory_stores(&Seed::parse(BUNDLED).unwrap(), &sealer)
                    .unwrap();
            // Cached (the default): a mutated sample keeping alice's
            // password pays Argon2 once, not once per case.
            startup::service(
                users,
                publishes,
                MemoryQueue::default(),
                Some(FixedKeks::shared(sealer)),
                startup::Options::new("/api"),
            )
        })
    }

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        })
    }

    fn samples() -> &'static Vec<Value> {
        static SAMPLES: OnceLock<Vec<Value>> = OnceLock::new();
        SAMPLES.get_or_init(|| {
            // The HTTP samples and the automation ones (which the HTTP
            // front door must refuse, mutated or not).
            let mut names = crate::common::sample_events::sample_files("");
            names.extend(crate::common::sample_events::sample_files("automation"));
            names
                .iter()
                .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
                .collect()
        })
    }

    /// Field names the front door looks at, and some it does not.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "httpMethod", "path", "headers", "multiValueHeaders", "requestContext",
                "version", "rawPath", "rawQueryString", "elb", "http", "method", "stage",
                "queryStringParameters", "multiValueQueryStringParameters", "body",
                "isBase64Encoded", "authorization", "accept", "host", "x-forwarded-proto",
            ]).prop_map(str::to_owned),
            1 => ".{0,12}",
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            prop::sample::select(vec![
                "DELETE",
                "2.0",
                "/api/users/alice/appliances/1/images/2/pimages/3/cancel",
                "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=",
                "application/xml",
                "prod",
                "$default"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A sample event with the values at some of its paths replaced.
    fn mutated() -> impl Strategy<Value = Value> {
        (
            0..samples().len(),
            prop::collection::vec((prop::collection::vec(key(), 1..4), json()), 1..4),
        )
            .prop_map(|(i, edits)| {
                let mut event = samples()[i].clone();
                for (path, value) in edits {
                    let mut at = &mut event;
                    for k in &path[..path.len() - 1] {
                        if !at.is_object() {
                            break;
                        }
                        at = at
                            .as_object_mut()
                            .unwrap()
                            .entry(k.clone())
                            .or_insert_with(|| Value::Object(Default::default()));
                    }
                    if let Some(obj) = at.as_object_mut() {
                        obj.insert(path[path.len() - 1].clone(), value);
                    }
                }
                event
            })
    }

    fn check(event: &Value) -> Result<(), TestCaseError> {
        match runtime().block_on(lambda::handle(api(), &event.to_string(), "prop")) {
            Err(lambda::NotHttp(_)) => Ok(()),
            Ok(resp) => {
                let resp = resp.to_json();
                let status = resp["statusCode"].as_u64().unwrap_or(0);
                prop_assert!(
                    (200..500).contains(&status),
                    "status {} for {}",
                    status,
                    event
                );
                let body = resp["body"].as_str().unwrap_or_default();
                prop_assert!(
                    body.is_empty() || body.starts_with("<ns0:") || body.starts_with('{'),
                    "body {:?}",
                    body
                );
                Ok(())
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_json_is_answered_or_refused(event in json()) {
            check(&event)?;
        }

        #[test]
        fn any_mutation_of_a_sample_event_is_answered_or_refused(event in mutated()) {
            check(&event)?;
        }
    }
}

/// Valid by construction: whatever a sender writes, through every entry of
/// the automation function (EventBridge, SQS, direct invoke) and the HTTP
/// API, an accepted cancel's stop is a message SQS accepts whole (body,
/// group, deduplication id), on a standard and on a FIFO queue: the
/// without-audit fallback is never needed, and a refused cancel changes
/// nothing.
mod stops_are_valid_by_construction {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue};
    use publish_cancel::cancel::Canceller;
    use publish_cancel::domain::{Login, PublishKey, PublishRecord, PublishState};
    use publish_cancel::frontdoor::automation::{Automation, Door};
    use publish_cancel::ports::{BackendError, StopMessage, StopQueue};
    use serde_json::{json, Value};

    /// What the SendMessage reference says SQS refuses.
    fn sqs_refuses(stop: &StopMessage, fifo: bool) -> Option<String> {
        let allowed = |c: char| matches!(u32::from(c), 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF);
        let body = stop.to_json();
        if let Some(c) = body.chars().find(|c| !allowed(*c)) {
            return Some(format!("body character U+{:04X}", u32::from(c)));
        }
        if body.len() > 262_144 {
            return Some("body over 256 KiB".into());
        }
        let id_ok =
            |id: &str| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
        if fifo && !(id_ok(&stop.group_id()) && id_ok(&stop.request_id)) {
            return Some(format!(
                "FIFO ids {:?} / {:?}",
                stop.group_id(),
                stop.request_id
            ));
        }
        None
    }

    /// A queue as strict as SQS: refuses (for good) what SQS refuses.
    #[derive(Default)]
    struct StrictSqs {
        fifo: bool,
        inner: MemoryQueue,
    }

    impl StopQueue for StrictSqs {
        async fn send(&self, stop: &StopMessage) -> Result<(), BackendError> {
            if let Some(why) = sqs_refuses(stop, self.fifo) {
                return Err(BackendError::new("SQS refuses", why).permanent());
            }
            self.inner.send(stop).await
        }
    }

    /// Any text: arbitrary characters, or printable ones mixed with the
    /// code points at the edges of what each service accepts.
    fn text() -> impl Strategy<Value = String> {
        let edges = prop::sample::select(vec![
            '\u{fffe}',
            '\u{ffff}',
            '\u{fdd0}',
            '\u{1fffe}',
            '\u{10ffff}',
            '\u{10fffd}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{fffd}',
            'a',
            ' ',
            '\u{e9}',
            '"',
            '\\',
            '~',
        ]);
        let controls = prop::sample::select(vec!['\u{0}', '\u{85}', '\n', '\t', '\u{7f}']);
        prop_oneof![
            2 => proptest::collection::vec(edges, 1..40),
            1 => proptest::collection::vec(any::<char>(), 0..300),
            1 => proptest::collection::vec(prop_oneof![9 => any::<char>(), 1 => controls], 1..20),
        ]
        .prop_map(String::from_iter)
    }

    fn optional_text() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), text().prop_map(Value::String)]
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn every_accepted_cancel_sends_a_stop_sqs_accepts(
            reason in optional_text(),
            requested_by in optional_text(),
            id in prop_oneof![1 => Just(String::new()), 9 => text()],
            sender in text(),
            uid in prop_oneof![Just("alice".to_owned()), text()],
            pitid in any::<i64>(),
            fifo in any::<bool>(),
            entry in 0..3usize,
        ) {
            let publishes = MemoryPublishes::default();
            if let Ok(login) = Login::parse(&uid) {
                publishes.put(PublishRecord::new(
                    PublishKey { uid: login, aid: i64::MIN.into(), itid: i64::MAX.into(), pitid: pitid.into() },
                    PublishState::Publishing,
                ));
            }
            let automation = Automation::new(Canceller {
                publishes,
                queue: StrictSqs { fifo, ..StrictSqs::default() },
            });
            let detail = json!({"schemaVersion": 1, "uid": uid, "aid": i64::MIN, "itid": i64::MAX,
                                "pitid": pitid, "reason": reason, "requestedBy": requested_by});
            let mut command = detail.clone();
            command["type"] = json!("uforge.publish.cancel");
            let queue_arn = if fifo { "arn:aws:sqs:us-east-1:1:q.fifo" } else { "arn:aws:sqs:us-east-1:1:q" };
            let (event, invocation): (Value, String) = match entry {
                0 => (json!({"ruleArn": sender, "event": {"id": id, "detail-type": "Publish Cancel Requested",
                        "source": sender, "detail": detail}}), "inv".into()),
                1 => (json!({"Records": [{"messageId": id, "body": command.to_string(), "eventSource": "aws:sqs",
                        "eventSourceARN": queue_arn, "attributes": {"SenderId": sender, "MessageGroupId": "g"}}]}), "inv".into()),
                _ => (command.clone(), id.clone()),
            };
            let rt = runtime();
            let door = if entry < 2 { Door::EventSources } else { Door::Direct };
            let answer = rt.block_on(automation.handle(&event, door, &invocation, Instant::now() + Duration::from_secs(30)));
            let sent = automation.cancel.queue.inner.sent();
            let record = Login::parse(&uid).ok().and_then(|login| automation.cancel.publishes.get(&PublishKey {
                uid: login, aid: i64::MIN.into(), itid: i64::MAX.into(), pitid: pitid.into(),
            }));
            // Accepted exactly when the command is valid (a login, audit
            // texts the type takes): not "any Err is fine", which would
            // pass if everything were refused.
            let valid_text = |v: &Value| match v {
                Value::Null => true,
                Value::String(s) => publish_cancel::domain::AuditText::parse(s).is_ok(),
                _ => false,
            };
            // EventBridge and SQS always name their event; one with an
            // empty id is refused (the id is the cancel's request id).
            let named = entry == 2 || !id.is_empty();
            let valid = named && Login::parse(&uid).is_ok() && valid_text(&reason) && valid_text(&requested_by);
            let accepted = record.as_ref().is_some_and(|r| r.state == PublishState::Cancelled);
            prop_assert_eq!(accepted, valid, "{:?}", answer);
            if let Some(r) = record.filter(|_| accepted) {
                // Accepted: one stop, whole, and nothing parked.
                prop_assert_eq!(sent.len(), 1, "{:?}", answer);
                prop_assert!(!sent[0].audit_omitted, "the fallback was needed: {:?}", sent[0]);
                prop_assert!(!r.stop_pending && r.stop_undeliverable.is_none());
                prop_assert_eq!(sqs_refuses(&sent[0], true), None);
            } else {
                // Refused as invalid, and nothing sent: never a backend
                // error, never a silent success.
                prop_assert!(sent.is_empty());
                match (&answer, entry) {
                    (Err(e), 0 | 2) => prop_assert_eq!(e.error_type(), "UForge.InvalidCommand"),
                    (Ok(batch), 1) => prop_assert_eq!(
                        batch["batchItemFailures"].as_array().map(Vec::len),
                        Some(1),
                        "the message is reported failed: {}", batch
                    ),
                    _ => prop_assert!(false, "refused how? {:?}", answer),
                }
            }
        }

        #[test]
        fn every_http_request_id_gives_a_stop_sqs_accepts(id in text(), fifo in any::<bool>()) {
            let cancel = publish_cancel::cancel::Canceller {
                publishes: MemoryPublishes::default(),
                queue: StrictSqs { fifo, ..StrictSqs::default() },
            };
            let publishes = &cancel.publishes;
            let key = crate::common::alice_key(3);
            publishes.put(PublishRecord::new(key.clone(), PublishState::Publishing));
            let stamp = publish_cancel::domain::CancelStamp::new(publish_cancel::domain::RequestId::from_external(&id), publish_cancel::domain::Timestamp(1), publish_cancel::domain::CancelAudit::http(&key.uid));
            let rt = runtime();
            let done = rt.block_on(cancel.run(&key, &stamp));
            prop_assert!(done.is_ok(), "{:?}", done);
            let sent = cancel.queue.inner.sent();
            prop_assert_eq!(sent.len(), 1);
            prop_assert!(!sent[0].audit_omitted);
        }
    }
}
