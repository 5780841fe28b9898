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
