//! The hostile-input catalogue: every case is refused with the right status
//! and a well-formed `uforgeError`, and leaves both tables and the queue
//! exactly as they were (emulator-backed stores, real SDK clients).

use crate::common;

use base64::Engine as _;
use common::http_client::send;
use common::xml::check_error;
use common::{body_text, cancel_path, header, Req, Stack};
use http::Method;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// alice's running publish, the target of most attacks.
fn target() -> String {
    cancel_path("alice", 1, 2, 3)
}

fn with_auth(value: &[u8]) -> Req {
    Req::delete(target()).header_bytes("authorization", value)
}

fn alice() -> Req {
    Req::delete(target()).basic("alice", "alice-password")
}

fn signed() -> Req {
    Req::delete(target()).signed("PUBKEY123", "SECRETKEY456")
}

fn raw(uri: String) -> Req {
    Req::delete(uri).basic("alice", "alice-password")
}

fn catalogue() -> Vec<(&'static str, Req, u16)> {
    let good = signed().uri;
    let (path, query) = good.split_once('?').unwrap();
    let sig = query.split("&signature=").nth(1).unwrap().to_owned();
    let other_sig = Req::delete(cancel_path("alice", 1, 2, 4))
        .signed("PUBKEY123", "SECRETKEY456")
        .uri;
    let other_sig = other_sig.split("&signature=").nth(1).unwrap().to_owned();
    let p = |tail: &str| format!("/api/users/alice/appliances/1/images/2/pimages/{tail}");
    let long_segment = "7".repeat(10 * 1024);
    vec![
        // --- malformed Authorization: 401 ---
        ("wrong scheme", with_auth(b"Bearer abc.def.ghi"), 401),
        (
            "digest scheme",
            with_auth(b"Digest username=\"alice\""),
            401,
        ),
        ("scheme only", with_auth(b"Basic"), 401),
        ("empty token", with_auth(b"Basic "), 401),
        ("bad base64", with_auth(b"Basic !!!!"), 401),
        (
            "base64 with spaces inside",
            with_auth(format!("Basic {} {}", b64(b"alice:"), b64(b"alice-password")).as_bytes()),
            401,
        ),
        (
            "no colon",
            with_auth(format!("Basic {}", b64(b"alicealice-password")).as_bytes()),
            401,
        ),
        (
            "empty login",
            with_auth(format!("Basic {}", b64(b":alice-password")).as_bytes()),
            401,
        ),
        (
            "empty password",
            with_auth(format!("Basic {}", b64(b"alice:")).as_bytes()),
            401,
        ),
        (
            "control byte in login",
            with_auth(format!("Basic {}", b64(b"al\x01ice:alice-password")).as_bytes()),
            401,
        ),
        (
            "NUL in password",
            with_auth(format!("Basic {}", b64(b"alice:alice-pass\0word")).as_bytes()),
            401,
        ),
        (
            "non-UTF-8 credentials",
            with_auth(format!("Basic {}", b64(b"alice:\xff\xfe\xfd")).as_bytes()),
            401,
        ),
        (
            "non-UTF-8 header bytes",
            with_auth(b"Basic \xc3\x28\xa0\xa1"),
            401,
        ),
        (
            "100 KB header",
            with_auth(format!("Basic {}", "A".repeat(100 * 1024)).as_bytes()),
            401,
        ),
        (
            "overlong password",
            with_auth(
                format!(
                    "Basic {}",
                    b64(format!("alice:{}", "p".repeat(600)).as_bytes())
                )
                .as_bytes(),
            ),
            401,
        ),
        (
            "unicode login",
            with_auth(format!("Basic {}", b64("ålice:alice-password".as_bytes())).as_bytes()),
            401,
        ),
        (
            "login with slash",
            with_auth(format!("Basic {}", b64(b"al/ice:alice-password")).as_bytes()),
            401,
        ),
        (
            "trailing garbage",
            with_auth(format!("Basic {} extra", b64(b"alice:alice-password")).as_bytes()),
            401,
        ),
        (
            "two Authorization headers",
            alice().append("authorization", b"Basic Ym9iOmJvYi1wYXNzd29yZA=="),
            401,
        ),
        (
            "wrong password",
            Req::delete(target()).basic("alice", "alice-passwore"),
            401,
        ),
        (
            "unknown login",
            Req::delete(target()).basic("mallory", "alice-password"),
            401,
        ),
        (
            "disabled user",
            Req::delete(cancel_path("dave", 1, 2, 3)).basic("dave", "dave-password"),
            401,
        ),
        (
            "wrong Basic beats a valid signature",
            Req::delete(good.clone()).basic("alice", "nope"),
            401,
        ),
        ("no credentials", Req::delete(target()), 401),
        // --- API-key forgeries: 401 ---
        (
            "wrong secret",
            Req::delete(target()).signed("PUBKEY123", "SECRETKEY457"),
            401,
        ),
        (
            "unknown public key",
            Req::delete(target()).signed("PUBKEY999", "SECRETKEY456"),
            401,
        ),
        (
            "signature over another path",
            Req::delete(format!("{path}?apiKey=PUBKEY123&signature={other_sig}")),
            401,
        ),
        (
            "replay on another publish",
            Req::delete(good.replace("/pimages/3/", "/pimages/4/")),
            401,
        ),
        (
            "replay on another user",
            Req::delete(good.replace("/users/alice/", "/users/bob/")),
            401,
        ),
        (
            "missing apiKey",
            Req::delete(format!("{path}?signature={sig}")),
            401,
        ),
        (
            "missing signature",
            Req::delete(format!("{path}?apiKey=PUBKEY123")),
            401,
        ),
        (
            "duplicated apiKey",
            Req::delete(format!(
                "{path}?apiKey=PUBKEY123&apiKey=PUBKEY123&signature={sig}"
            )),
            401,
        ),
        (
            "duplicated signature",
            Req::delete(format!("{good}&signature={sig}")),
            401,
        ),
        (
            "truncated signature",
            Req::delete(format!("{path}?apiKey=PUBKEY123&signature=0CrZ0HktI7YH")),
            401,
        ),
        (
            "undecodable signature",
            Req::delete(format!("{path}?apiKey=PUBKEY123&signature=%ZZ%ZZ")),
            401,
        ),
        (
            "NUL in apiKey",
            Req::delete(format!("{path}?apiKey=PUB%00KEY123&signature={sig}")),
            401,
        ),
        (
            "parameter smuggled before apiKey",
            Req::delete(format!("{path}?x=1&apiKey=PUBKEY123&signature={sig}")),
            401,
        ),
        (
            "case-changed apiKey name",
            Req::delete(format!("{path}?APIKEY=PUBKEY123&signature={sig}")),
            401,
        ),
        // --- path tricks: 404 ---
        (
            "encoded slash in uid",
            raw("/api/users/al%2Fice/appliances/1/images/2/pimages/3/cancel".into()),
            404,
        ),
        (
            "dot-dot segment",
            raw("/api/users/alice/appliances/1/images/2/pimages/../pimages/3/cancel".into()),
            404,
        ),
        (
            "dot-dot uid",
            raw("/api/users/../appliances/1/images/2/pimages/3/cancel".into()),
            404,
        ),
        (
            "double slash",
            raw("/api/users/alice//appliances/1/images/2/pimages/3/cancel".into()),
            404,
        ),
        (
            "unicode uid",
            raw("/api/users/%C3%A5lice/appliances/1/images/2/pimages/3/cancel".into()),
            404,
        ),
        (
            "invalid UTF-8 uid",
            raw("/api/users/%FF%FE/appliances/1/images/2/pimages/3/cancel".into()),
            404,
        ),
        (
            "10 KB segment",
            raw(p(&format!("{long_segment}/cancel"))),
            404,
        ),
        ("id above i64", raw(p("9223372036854775808/cancel")), 404),
        ("id below i64", raw(p("-9223372036854775809/cancel")), 404),
        (
            "negative id (valid long, no record)",
            raw(p("-3/cancel")),
            404,
        ),
        ("leading plus", raw(p("+3/cancel")), 404),
        ("injected characters", raw(p("3x?injected=1")), 404),
        ("percent-encoded digit", raw(p("%33/cancel")), 404),
        ("encoded space", raw(p("%203/cancel")), 404),
        ("hex id", raw(p("0x3/cancel")), 404),
        ("empty id", raw(p("/cancel")), 404),
        ("trailing slash", raw(p("3/cancel/")), 404),
        ("extra segment", raw(p("3/cancel/now")), 404),
        ("upper-case segment", raw(p("3/CANCEL")), 404),
        (
            "wrong base",
            raw("/apix/users/alice/appliances/1/images/2/pimages/3/cancel".into()),
            404,
        ),
        // The status route takes GET only: a DELETE there cancels nothing.
        ("DELETE on the status resource", raw(p("3/status")), 405),
        ("unknown pitid", raw(p("999/cancel")), 404),
        (
            "pitid under another image",
            raw("/api/users/alice/appliances/1/images/9/pimages/3/cancel".into()),
            404,
        ),
        // --- methods: 405 ---
        (
            "GET",
            Req::new(Method::GET, target()).basic("alice", "alice-password"),
            405,
        ),
        (
            "POST",
            Req::new(Method::POST, target()).basic("alice", "alice-password"),
            405,
        ),
        (
            "PUT",
            Req::new(Method::PUT, target()).basic("alice", "alice-password"),
            405,
        ),
        (
            "PATCH",
            Req::new(Method::PATCH, target()).basic("alice", "alice-password"),
            405,
        ),
        (
            "HEAD",
            Req::new(Method::HEAD, target()).basic("alice", "alice-password"),
            405,
        ),
        ("OPTIONS", Req::new(Method::OPTIONS, target()), 405),
        ("TRACE", Req::new(Method::TRACE, target()), 405),
        (
            "extension method",
            Req::new(Method::from_bytes(b"PURGE").unwrap(), target()),
            405,
        ),
        // --- Accept: 406 ---
        (
            "Accept text/html",
            alice().header("accept", "text/html"),
            406,
        ),
        (
            "Accept image/png",
            alice().header("accept", "image/png"),
            406,
        ),
        (
            "Accept xml refused",
            alice().header("accept", "application/xml;q=0"),
            406,
        ),
        (
            "Accept both refused",
            alice().header("accept", "application/xml;q=0, application/json;q=0"),
            406,
        ),
        ("Accept garbage", alice().header("accept", ";;;,,,"), 406),
        // --- Prefer on a refusal changes nothing ---
        (
            "Prefer minimal on a 401",
            Req::delete(target())
                .basic("alice", "x")
                .header("prefer", "return=minimal"),
            401,
        ),
        (
            "Prefer garbage on a 401",
            Req::delete(target())
                .basic("alice", "x")
                .header("prefer", "return=;;;===,,,\tminimal"),
            401,
        ),
        // --- authorization (BOLA, entitlement): 403 ---
        (
            "another user's publish",
            Req::delete(target()).basic("bob", "bob-password"),
            403,
        ),
        (
            "another user's missing publish",
            Req::delete(cancel_path("alice", 9, 9, 9)).basic("bob", "bob-password"),
            403,
        ),
        (
            "another user's publish, JSON",
            Req::delete(target())
                .basic("bob", "bob-password")
                .header("accept", "application/json"),
            403,
        ),
        (
            "no image_publish entitlement",
            Req::delete(cancel_path("carol", 5, 6, 7)).basic("carol", "carol-password"),
            403,
        ),
        (
            "no entitlement, another user",
            Req::delete(target()).basic("carol", "carol-password"),
            403,
        ),
        // --- finished publishes: 409 ---
        ("published", raw(p("5/cancel")), 409),
        ("failed", raw(p("6/cancel")), 409),
    ]
}

#[tokio::test]
async fn every_hostile_request_is_refused_and_changes_nothing() {
    let stack = Stack::new().await;
    let cases = catalogue();
    assert!(cases.len() >= 60, "the catalogue shrank to {}", cases.len());
    eprintln!("hostile cases: {}", cases.len());
    let tables = stack.tables().await;
    for (name, req, status) in cases {
        let resp = stack.call(&req).await;
        assert_eq!(
            resp.status().as_u16(),
            status,
            "{name}: {}",
            String::from_utf8_lossy(resp.body())
        );
        match header(&resp, "content-type") {
            Some("application/xml") => {
                let doc = check_error(&body_text(&resp));
                assert_eq!(doc.status, status, "{name}");
                assert!(doc.uri.len() <= 256, "{name}: the echoed URI is bounded");
            }
            Some("application/json") => {
                let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
                assert_eq!(v["statusCode"], status, "{name}");
                assert!(v["localizedErrorMsg"]["message"].is_string(), "{name}");
            }
            other => panic!("{name}: content type {other:?}"),
        }
        let body = body_text(&resp);
        for secret in ["alice-password", "SECRETKEY456", "signature", "Basic "] {
            assert!(!body.contains(secret), "{name}: body echoes {secret:?}");
        }
        assert_eq!(stack.tables().await, tables, "{name}: a table changed");
        assert_eq!(stack.queue_depth().await, 0, "{name}: the queue changed");
    }
}

#[tokio::test]
async fn huge_and_binary_bodies_over_a_real_socket() {
    // The local server on the emulator-free default: bodies are never read,
    // and the answer depends on the credentials alone.
    let seed = publish_cancel::seed::Seed::parse(publish_cancel::seed::BUNDLED).unwrap();
    let service = common::memory_service(&seed, false);
    let addr = common::serve_locally(std::sync::Arc::new(service.api)).await;

    let wrong = format!("Basic {}", b64(b"alice:wrong"));
    let binary: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let resp = send_with_body(&addr, &target(), &wrong, &binary).await;
    assert_eq!(resp, 401);
    assert_eq!(service.queue.sent().len(), 0);
    let right = format!("Basic {}", b64(b"alice:alice-password"));
    let resp = send_with_body(&addr, &target(), &right, b"<xml>ignored</xml>").await;
    assert_eq!(resp, 200);
    // And the plain client still works after the big upload.
    let again = send(
        &addr,
        "DELETE",
        &target(),
        &[("Authorization", right.as_str())],
    )
    .await;
    assert_eq!(again.status, 200);
}

/// A DELETE with a body, over a raw socket; returns the status.
async fn send_with_body(addr: &str, path: &str, auth: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before reading it all: that is fine.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Issue 28 (6): nothing touches a publish record before the caller is
/// proven to be `{uid}` with `image_publish`, through every front door, not
/// only the use case: the HTTP layer (`Api::handle`), the Lambda event door
/// (an API Gateway event) and the local server's socket. Each refused
/// request leaves the publishes store's call count where it was.
#[tokio::test]
async fn refusals_touch_no_publish_through_any_front_door() {
    use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
    use publish_cancel::domain::{AttemptToken, CancelStamp, Claim, PublishKey, Timestamp};
    use publish_cancel::ports::{BackendError, CancelFound, CancelWrites, PublishReader};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The bundled seed's publishes, every call counted.
    #[derive(Clone, Default)]
    struct Counted(MemoryPublishes, Arc<AtomicUsize>);
    impl Counted {
        fn tick(&self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl PublishReader for Counted {
        async fn read(
            &self,
            k: &PublishKey,
        ) -> Result<Option<publish_cancel::domain::PublishRecord>, BackendError> {
            self.tick();
            self.0.read(k).await
        }
    }
    impl CancelWrites for Counted {
        async fn cancel(
            &self,
            k: &PublishKey,
            s: &CancelStamp,
            a: &AttemptToken,
        ) -> Result<CancelFound, BackendError> {
            self.tick();
            self.0.cancel(k, s, a).await
        }
        async fn claim_stop(
            &self,
            k: &PublishKey,
            c: &Claim,
            s: Timestamp,
            at: Timestamp,
        ) -> Result<Option<publish_cancel::domain::PublishRecord>, BackendError> {
            self.tick();
            self.0.claim_stop(k, c, s, at).await
        }
        async fn release_stop(
            &self,
            k: &PublishKey,
            a: &AttemptToken,
        ) -> Result<bool, BackendError> {
            self.tick();
            self.0.release_stop(k, a).await
        }
        async fn stop_sent(&self, k: &PublishKey, a: &AttemptToken) -> Result<bool, BackendError> {
            self.tick();
            self.0.stop_sent(k, a).await
        }
        async fn stop_undeliverable(
            &self,
            k: &PublishKey,
            a: &AttemptToken,
            w: &str,
        ) -> Result<bool, BackendError> {
            self.tick();
            self.0.stop_undeliverable(k, a, w).await
        }
    }

    let (users, publishes) = common::seed_data();
    let store = Counted(publishes.into_iter().collect(), Arc::default());
    let api = Arc::new(publish_cancel::startup::service(
        users.into_iter().collect::<MemoryUsers>(),
        store.clone(),
        MemoryQueue::default(),
        Some(publish_cancel::auth::FixedKeks::shared(common::sealer())),
        publish_cancel::startup::Options {
            credential_cache: false,
            ..publish_cancel::startup::Options::new("/api")
        },
    ));
    let carol = |uid: &str, pitid: i64| {
        Req::delete(cancel_path(uid, 5, 6, pitid)).basic("carol", "carol-password")
    };
    let cases: Vec<(&str, Req, u16)> = vec![
        ("no credentials", Req::delete(target()), 401),
        (
            "a wrong password",
            Req::delete(target()).basic("alice", "wrong"),
            401,
        ),
        (
            "an unknown login",
            Req::delete(target()).basic("mallory", "x"),
            401,
        ),
        (
            "an inactive user",
            Req::delete(target()).basic("dave", "dave-password"),
            401,
        ),
        (
            "another user's key",
            Req::delete(cancel_path("bob", 10, 20, 30)).signed("PUBKEY123", "SECRETKEY456"),
            401,
        ),
        ("no image_publish", carol("carol", 7), 403),
        (
            "another user's publish",
            Req::delete(target()).basic("bob", "bob-password"),
            403,
        ),
        (
            "another user's absent publish",
            Req::delete(cancel_path("alice", 1, 2, 999)).basic("bob", "bob-password"),
            403,
        ),
    ];
    let event_template: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::sample_events::events_dir().join("apigw-rest-cancel-basic.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let addr = common::serve_locally(api.clone()).await;
    for (name, req, status) in cases {
        let before = store.1.load(Ordering::SeqCst);
        // The HTTP layer.
        assert_eq!(common::call(&api, &req).await.status(), status, "{name}");
        // The Lambda event door: the same request as API Gateway sends it.
        let (path, query) = req.uri.split_once('?').unwrap_or((&req.uri, ""));
        let mut event = event_template.clone();
        event["path"] = serde_json::json!(path);
        event["requestContext"]["path"] = serde_json::json!(path);
        let mut single = serde_json::Map::new();
        let mut multi = serde_json::Map::new();
        for (k, v) in &req.headers {
            let v = v.to_str().unwrap();
            single.insert(k.as_str().to_owned(), serde_json::json!(v));
            multi.insert(k.as_str().to_owned(), serde_json::json!([v]));
        }
        event["headers"] = serde_json::Value::Object(single);
        event["multiValueHeaders"] = serde_json::Value::Object(multi);
        let (mut qs, mut mqs) = (serde_json::Map::new(), serde_json::Map::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap()
                .into_owned();
            qs.insert(k.to_owned(), serde_json::json!(v));
            mqs.insert(k.to_owned(), serde_json::json!([v]));
        }
        event["queryStringParameters"] = if qs.is_empty() {
            serde_json::Value::Null
        } else {
            qs.into()
        };
        event["multiValueQueryStringParameters"] = if mqs.is_empty() {
            serde_json::Value::Null
        } else {
            mqs.into()
        };
        let answer = publish_cancel::frontdoor::lambda::handle(&api, &event.to_string(), "bola")
            .await
            .unwrap_or_else(|e| panic!("{name}: not an HTTP event: {e:?}"))
            .to_json();
        assert_eq!(
            answer["statusCode"], status,
            "{name} (Lambda event): {answer}"
        );
        // The local server's socket.
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            send(&addr, "DELETE", &req.uri, &headers).await.status,
            status,
            "{name} (socket)"
        );
        assert_eq!(
            store.1.load(Ordering::SeqCst),
            before,
            "{name}: a publish was touched"
        );
    }
    // And the instrument sees a request that does get through.
    assert_eq!(common::call(&api, &alice()).await.status(), 200);
    assert!(store.1.load(Ordering::SeqCst) > 0);
}
