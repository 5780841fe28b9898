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
            let (users, publishes) = Seed::parse(BUNDLED).unwrap().into_memory(&sealer).unwrap();
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
        match runtime().block_on(lambda::handle(api(), event, "prop")) {
            Err(lambda::NotHttp(_)) => Ok(()),
            Ok(resp) => {
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
