//! The endpoint end to end against DynamoDB and SQS emulated by moto_server,
//! through the real SDK clients: every row of the contract's semantics
//! table, both authentication modes, every error status, XML and JSON.

use crate::common;

use common::xml::{check_error, check_status};
use common::{body_text, cancel_path, header, Req, Stack, StackOptions};
use http::Method;
use publish_cancel::adapters::dynamodb::attr;
use publish_cancel::adapters::sqs::{ATTR_ATTEMPT, ATTR_SCHEMA_VERSION, ATTR_TYPE};
use publish_cancel::domain::{Login, User};
use publish_cancel::ports::StopMessage;
use publish_cancel::startup::{self, Options};

const ALICE_RUNNING: (i64, i64, i64) = (1, 2, 3); // publishing, 40 %
const ALICE_QUEUED: (i64, i64, i64) = (1, 2, 4);
const ALICE_PUBLISHED: (i64, i64, i64) = (1, 2, 5);
const ALICE_FAILED: (i64, i64, i64) = (1, 2, 6);
const ALICE_CANCELLED: (i64, i64, i64) = (1, 2, 7);

fn alice(ids: (i64, i64, i64)) -> String {
    cancel_path("alice", ids.0, ids.1, ids.2)
}

fn sort_key(ids: (i64, i64, i64)) -> String {
    format!("{}/{}/{}", ids.0, ids.1, ids.2)
}

async fn state_of(stack: &Stack, uid: &str, ids: (i64, i64, i64)) -> String {
    let item = stack
        .publish_item(uid, &sort_key(ids))
        .await
        .expect("record exists");
    item[attr::STATE].as_s().unwrap().clone()
}

/// Runs `req`, asserts it was refused with `status` and a well-formed
/// `uforgeError`, and that neither table nor the queue changed.
async fn assert_refused(stack: &Stack, req: Req, status: u16) -> common::xml::ErrorDoc {
    let before = stack.tables().await;
    let resp = stack.call(&req).await;
    assert_eq!(
        resp.status().as_u16(),
        status,
        "{req:?}: {}",
        body_text(&resp)
    );
    assert_eq!(header(&resp, "content-type"), Some("application/xml"));
    let doc = check_error(&body_text(&resp));
    assert_eq!(doc.status, status);
    assert_eq!(doc.method, req.method.as_str());
    assert_eq!(
        stack.tables().await,
        before,
        "tables changed by a refused request"
    );
    assert_eq!(
        stack.queue_depth().await,
        0,
        "queue changed by a refused request"
    );
    doc
}

#[tokio::test]
async fn running_publish_is_cancelled_and_the_worker_told() {
    let stack = Stack::new().await;
    let req = Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password");
    let resp = stack.call(&req).await;
    assert_eq!(resp.status(), 200, "{}", body_text(&resp));
    assert_eq!(header(&resp, "content-type"), Some("application/xml"));
    let status = check_status(&body_text(&resp));
    assert_eq!(status["cancelled"], "true");
    assert_eq!(status["complete"], "false");
    assert_eq!(status["error"], "false");
    assert_eq!(status["published"], "false");
    assert_eq!(status["percentage"], "40");
    assert_eq!(status["dbId"], "3");
    assert_eq!(status["message"], "Publish cancelled");
    assert_eq!(
        status["uri"],
        "users/alice/appliances/1/images/2/pimages/3/status"
    );

    // The record: cancelled by this request, progress kept.
    let item = stack.publish_item("alice", "1/2/3").await.unwrap();
    assert_eq!(item[attr::STATE].as_s().unwrap(), "cancelled");
    assert_eq!(
        item[attr::CANCEL_REQUEST_ID].as_s().unwrap(),
        &req.request_id
    );
    assert_eq!(item[attr::PERCENTAGE].as_n().unwrap(), "40");
    // Its audit: through HTTP, by the authenticated login.
    assert_eq!(item[attr::CANCEL_SOURCE].as_s().unwrap(), "http");
    assert_eq!(item[attr::CANCELLED_BY].as_s().unwrap(), "alice");
    assert!(!item.contains_key(attr::CANCEL_REASON));

    // The stop message: schema, attributes, ids.
    let msgs = stack.drain().await;
    assert_eq!(msgs.len(), 1);
    let stop: StopMessage = serde_json::from_str(msgs[0].body().unwrap()).unwrap();
    assert_eq!(stop.kind, "uforge.publish.stop");
    assert_eq!(stop.schema_version, 1);
    assert_eq!(
        (stop.uid.as_str(), stop.aid, stop.itid, stop.pitid),
        ("alice", 1, 2, 3)
    );
    assert_eq!(stop.request_id, req.request_id);
    assert_eq!(
        (stop.cancel_source.as_str(), stop.cancelled_by.as_str()),
        ("http", "alice")
    );
    let attrs = msgs[0].message_attributes().unwrap();
    assert_eq!(attrs[ATTR_TYPE].string_value(), Some("uforge.publish.stop"));
    assert_eq!(attrs[ATTR_SCHEMA_VERSION].string_value(), Some("1"));
    assert_eq!(attrs[ATTR_SCHEMA_VERSION].data_type(), "Number");
    // Its sender: the attempt whose write took the claim.
    let attempt = attrs[ATTR_ATTEMPT].string_value().unwrap_or_default();
    assert!(
        attempt.len() == 32 && attempt.bytes().all(|b| b.is_ascii_hexdigit()),
        "{attempt:?}"
    );
    assert_eq!(attrs.len(), 3, "{attrs:?}");
}

#[tokio::test]
async fn queued_publish_is_cancelled() {
    let stack = Stack::new().await;
    let resp = stack
        .call(&Req::delete(alice(ALICE_QUEUED)).basic("alice", "alice-password"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(check_status(&body_text(&resp))["cancelled"], "true");
    assert_eq!(state_of(&stack, "alice", ALICE_QUEUED).await, "cancelled");
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn repeated_cancel_succeeds_without_a_second_change_or_a_second_stop() {
    let stack = Stack::new().await;
    let first = Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password");
    assert_eq!(stack.call(&first).await.status(), 200);
    let after_first = stack.tables().await;

    let again = Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password");
    let resp = stack.call(&again).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(check_status(&body_text(&resp))["cancelled"], "true");
    assert_eq!(
        stack.tables().await,
        after_first,
        "second cancel wrote to the table"
    );

    let msgs = stack.drain().await;
    assert_eq!(
        msgs.len(),
        1,
        "a stop known sent is not re-sent on a repeat"
    );
    for m in &msgs {
        let stop: StopMessage = serde_json::from_str(m.body().unwrap()).unwrap();
        assert_eq!(
            stop.request_id, first.request_id,
            "re-sends carry the original cancel's id"
        );
    }
}

#[tokio::test]
async fn a_publish_cancelled_before_is_a_success() {
    let stack = Stack::new().await;
    let before = stack.tables().await;
    let resp = stack
        .call(&Req::delete(alice(ALICE_CANCELLED)).basic("alice", "alice-password"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(check_status(&body_text(&resp))["cancelled"], "true");
    assert_eq!(stack.tables().await, before);
    // Its stop was sent when it was cancelled: a repeat adds none.
    assert_eq!(stack.drain().await.len(), 0);
}

#[tokio::test]
async fn finished_publishes_conflict_and_name_their_state() {
    let stack = Stack::new().await;
    for (ids, state) in [(ALICE_PUBLISHED, "published"), (ALICE_FAILED, "failed")] {
        let req = Req::delete(alice(ids)).basic("alice", "alice-password");
        let doc = assert_refused(&stack, req, 409).await;
        assert!(doc.message.contains(state), "{}", doc.message);
        assert_eq!(doc.parameters, [state]);
        assert_eq!(state_of(&stack, "alice", ids).await, state);
    }
}

#[tokio::test]
async fn unknown_publishes_are_not_found() {
    let stack = Stack::new().await;
    for path in [
        cancel_path("alice", 1, 2, 999),
        // pitid 3 exists, but under another appliance / image.
        cancel_path("alice", 9, 2, 3),
        cancel_path("alice", 1, 9, 3),
        cancel_path("alice", -1, 2, 3),
    ] {
        let doc = assert_refused(
            &stack,
            Req::delete(path.clone()).basic("alice", "alice-password"),
            404,
        )
        .await;
        assert_eq!(doc.uri, path);
    }
}

#[tokio::test]
async fn api_key_signed_urls_authenticate() {
    let stack = Stack::new().await;
    let req = Req::delete(alice(ALICE_RUNNING)).signed("PUBKEY123", "SECRETKEY456");
    assert!(
        req.uri
            .ends_with("&signature=0CrZ0HktI7YH%2FOb65tZrApx9Z8M%3D"),
        "{}",
        req.uri
    );
    let resp = stack.call(&req).await;
    assert_eq!(resp.status(), 200, "{}", body_text(&resp));
    assert_eq!(state_of(&stack, "alice", ALICE_RUNNING).await, "cancelled");
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let stack = Stack::new().await;
    let good = Req::delete(alice(ALICE_RUNNING)).signed("PUBKEY123", "SECRETKEY456");
    let cases = [
        Req::delete(alice(ALICE_RUNNING)).signed("PUBKEY123", "WRONGSECRET"),
        Req::delete(alice(ALICE_RUNNING)).signed("UNKNOWNKEY", "SECRETKEY456"),
        // A signature for pimage 3 replayed on pimage 4.
        Req::delete(good.uri.replace("/pimages/3/", "/pimages/4/")),
        Req::delete(good.uri.replace("&signature=", "&signature=A")),
        Req::delete(good.uri.split("&signature").next().unwrap().to_owned()),
        Req::delete(good.uri.replace("?apiKey=PUBKEY123&", "?")),
        Req::delete(format!("{}&apiKey=PUBKEY123", good.uri)),
    ];
    for req in cases {
        assert_refused(&stack, req, 401).await;
    }
}

#[tokio::test]
async fn every_authentication_failure_looks_the_same() {
    let stack = Stack::new().await;
    let path = alice(ALICE_RUNNING);
    let signed = Req::delete(path.clone()).signed("PUBKEY123", "WRONGSECRET");
    let cases = [
        Req::delete(path.clone()),
        Req::delete(path.clone()).basic("alice", "wrong-password"),
        Req::delete(path.clone()).basic("nobody", "alice-password"),
        Req::delete(path.clone()).basic("dave", "dave-password"), // inactive
        Req::delete(path.clone()).header("authorization", "Basic !!!"),
        Req::delete(path.clone()).header("authorization", "Bearer abc"),
        Req::delete(path.clone()).header("authorization", &format!("Basic {}", "A".repeat(5000))),
        // API keys: a bad signature, an unknown key, a signature cut off.
        signed.clone(),
        Req::delete(path.clone()).signed("UNKNOWNKEY", "SECRETKEY456"),
        Req::delete(signed.uri.split("&signature").next().unwrap().to_owned()),
    ];
    let mut seen = Vec::new();
    for req in cases {
        let resp = stack.call(&req).await;
        assert_eq!(resp.status(), 401, "{req:?}");
        assert_eq!(
            header(&resp, "www-authenticate"),
            Some("Basic realm=\"UForge\"")
        );
        // The whole answer, status, every header and the body byte for
        // byte, but the body's timestamp (and the Date header) must be
        // identical whatever the reason.
        let mut headers: Vec<String> = resp
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str() != "date")
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        headers.sort();
        let body = body_text(&resp);
        check_error(&body);
        let masked = match (body.find("<timestamp>"), body.find("</timestamp>")) {
            (Some(a), Some(b)) => format!("{}{}", &body[..a], &body[b..]),
            _ => panic!("no timestamp in {body}"),
        };
        seen.push((resp.status().as_u16(), headers, masked));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
    assert_refused(&stack, Req::delete(path).basic("alice", "nope"), 401).await;
}

#[tokio::test]
async fn forbidden_without_entitlement_or_for_another_users_publish() {
    let stack = Stack::new().await;
    // carol lacks image_publish; her own publish exists.
    let doc = assert_refused(
        &stack,
        Req::delete(cancel_path("carol", 5, 6, 7)).basic("carol", "carol-password"),
        403,
    )
    .await;
    assert!(doc.message.contains("image_publish"));
    // bob is entitled, but alice's publish is not his; nor is a missing one
    // of alice's (same answer, so nothing about alice's data leaks).
    let a = assert_refused(
        &stack,
        Req::delete(alice(ALICE_RUNNING)).basic("bob", "bob-password"),
        403,
    )
    .await;
    let b = assert_refused(
        &stack,
        Req::delete(cancel_path("alice", 1, 2, 999)).basic("bob", "bob-password"),
        403,
    )
    .await;
    assert_eq!((a.message, a.message_id), (b.message, b.message_id));
    assert_eq!(state_of(&stack, "alice", ALICE_RUNNING).await, "publishing");
}

#[tokio::test]
async fn revoked_entitlement_and_disabled_user_take_effect_at_once() {
    let stack = Stack::new().await;
    let (users, _) = common::seed_data();
    let bob = users
        .iter()
        .find(|u| u.login.as_str() == "bob")
        .unwrap()
        .clone();
    stack
        .put_user(&User {
            entitlements: vec![],
            ..bob.clone()
        })
        .await;
    assert_refused(
        &stack,
        Req::delete(cancel_path("bob", 10, 20, 30)).basic("bob", "bob-password"),
        403,
    )
    .await;
    stack
        .put_user(&User {
            active: false,
            ..bob.clone()
        })
        .await;
    assert_refused(
        &stack,
        Req::delete(cancel_path("bob", 10, 20, 30)).basic("bob", "bob-password"),
        401,
    )
    .await;
    stack.put_user(&bob).await;
    let resp = stack
        .call(&Req::delete(cancel_path("bob", 10, 20, 30)).basic("bob", "bob-password"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(Login::parse("bob").unwrap(), bob.login);
}

#[tokio::test]
async fn routing_errors() {
    let stack = Stack::new().await;
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ] {
        let req = Req::new(method, alice(ALICE_RUNNING)).basic("alice", "alice-password");
        let resp = stack.call(&req).await;
        assert_eq!(resp.status(), 405);
        assert_eq!(header(&resp, "allow"), Some("DELETE"));
        assert_refused(&stack, req, 405).await;
    }
    for path in [
        "/api/users/alice/appliances/1/images/2/pimages/3",
        "/api/users/alice/appliances/one/images/2/pimages/3/cancel",
        "/api/users/alice/appliances/1/images/2/pimages/9223372036854775808/cancel",
        "/api/users/alice/appliances/1/images/2/pimages/+3/cancel",
        "/api/users/alice%2F../appliances/1/images/2/pimages/3/cancel",
        "/api//users/alice/appliances/1/images/2/pimages/3/cancel",
    ] {
        assert_refused(
            &stack,
            Req::delete(path).basic("alice", "alice-password"),
            404,
        )
        .await;
    }
    let req = Req::delete(alice(ALICE_RUNNING))
        .basic("alice", "alice-password")
        .header("accept", "text/html");
    assert_refused(&stack, req, 406).await;
}

#[tokio::test]
async fn the_path_works_without_the_base_prefix() {
    let stack = Stack::new().await;
    let path = alice(ALICE_RUNNING).replacen("/api", "", 1);
    let resp = stack
        .call(&Req::delete(path).basic("alice", "alice-password"))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn json_representations() {
    let stack = Stack::new().await;
    let ok = stack
        .call(
            &Req::delete(alice(ALICE_RUNNING))
                .basic("alice", "alice-password")
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(ok.body()).unwrap();
    assert_eq!(v["cancelled"], true);
    assert_eq!(v["percentage"], 40);
    assert_eq!(v["dbId"], 3);

    let before = stack.tables().await;
    let err = stack
        .call(
            &Req::delete(alice(ALICE_PUBLISHED))
                .basic("alice", "alice-password")
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(err.status(), 409);
    assert_eq!(header(&err, "content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(err.body()).unwrap();
    assert_eq!(v["statusCode"], 409);
    assert_eq!(v["requestMethod"], "DELETE");
    assert!(v["localizedErrorMsg"]["message"]
        .as_str()
        .unwrap()
        .contains("published"));
    assert_eq!(stack.tables().await, before);
}

#[tokio::test]
async fn prefer_return_minimal_gives_204() {
    let stack = Stack::new().await;
    let resp = stack
        .call(
            &Req::delete(alice(ALICE_RUNNING))
                .basic("alice", "alice-password")
                .header("prefer", "return=minimal"),
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert!(resp.body().is_empty());
    assert_eq!(header(&resp, "content-type"), None);
    assert_eq!(state_of(&stack, "alice", ALICE_RUNNING).await, "cancelled");
}

#[tokio::test]
async fn stop_not_sent_is_503_and_a_retry_recovers() {
    let stack = Stack::with(StackOptions {
        create_queue: false,
        ..StackOptions::default()
    })
    .await;
    let resp = stack
        .call(&Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password"))
        .await;
    assert_eq!(resp.status(), 503, "{}", body_text(&resp));
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    let doc = check_error(&body_text(&resp));
    assert!(
        !doc.message.to_lowercase().contains("queue"),
        "no internals: {}",
        doc.message
    );
    // The record is the source of truth and is already cancelled...
    assert_eq!(state_of(&stack, "alice", ALICE_RUNNING).await, "cancelled");
    // ...and the client's retry delivers the stop once the queue is back.
    stack.create_queue_now().await;
    let resp = stack
        .call(&Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(stack.drain().await.len(), 1);
}

#[tokio::test]
async fn store_unavailable_is_503_without_detail() {
    let stack = Stack::with(StackOptions {
        create_tables: false,
        ..StackOptions::default()
    })
    .await;
    let resp = stack
        .call(&Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password"))
        .await;
    assert_eq!(resp.status(), 503);
    let body = body_text(&resp);
    let doc = check_error(&body);
    assert_eq!(doc.status, 503);
    for leak in ["ResourceNotFound", "users-", "dynamo", "Dynamo"] {
        assert!(!body.contains(leak), "body leaks {leak}: {body}");
    }
    assert_eq!(stack.queue_depth().await, 0);
}

#[tokio::test]
async fn fifo_queues_get_group_and_deduplication_ids() {
    let stack = Stack::with(StackOptions {
        fifo: true,
        ..StackOptions::default()
    })
    .await;
    let req = Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password");
    assert_eq!(stack.call(&req).await.status(), 200);
    // A repeat within the dedup window is de-duplicated by SQS.
    assert_eq!(
        stack
            .call(&Req::delete(alice(ALICE_RUNNING)).basic("alice", "alice-password"))
            .await
            .status(),
        200
    );
    let msgs = stack.drain().await;
    assert_eq!(msgs.len(), 1, "FIFO dedup on the cancel's id");
    let sys = msgs[0].attributes().unwrap();
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    assert_eq!(sys[&A::MessageGroupId], "alice/1/2/3");
    assert_eq!(sys[&A::MessageDeduplicationId], req.request_id);
}

#[tokio::test]
async fn a_warm_credential_cache_never_outlives_a_change_to_the_user() {
    let stack = Stack::new().await;
    let (users, _) = common::seed_data();
    let bob = users
        .iter()
        .find(|u| u.login.as_str() == "bob")
        .unwrap()
        .clone();
    let path = cancel_path("bob", 10, 20, 30);
    // The production authenticator, a clone kept to count what it verified.
    let auth = startup::authenticator(
        Some(publish_cancel::auth::FixedKeks::shared(common::sealer())),
        &Options::new("/api"),
    );
    let api = stack.api_with(auth.clone());
    let call = |password: &'static str| {
        let req = Req::delete(path.clone()).basic("bob", password);
        let api = &api;
        async move { common::call(api, &req).await.status().as_u16() }
    };
    let verified = || auth.verification_stats().total();

    assert_eq!(call("bob-password").await, 200);
    assert_eq!(verified(), 1);
    assert_eq!(call("bob-password").await, 200);
    assert_eq!(verified(), 1, "success is cached");
    assert_eq!(call("wrong").await, 401);
    assert_eq!(call("wrong").await, 401);
    assert_eq!(verified(), 3, "failures are never cached");

    stack
        .put_user(&User {
            active: false,
            ..bob.clone()
        })
        .await;
    assert_eq!(call("bob-password").await, 401, "disabled while cached");
    stack
        .put_user(&User {
            entitlements: vec![],
            ..bob.clone()
        })
        .await;
    assert_eq!(
        call("bob-password").await,
        403,
        "entitlement revoked while cached"
    );
    let new_hash = publish_cancel::auth::password::hash("bob-new").unwrap();
    stack
        .put_user(&User {
            password_hash: Some(new_hash),
            ..bob.clone()
        })
        .await;
    assert_eq!(
        call("bob-password").await,
        401,
        "old password after a change"
    );
    assert_eq!(call("bob-new").await, 200);
    stack.put_user(&bob).await;
    assert_eq!(
        call("bob-password").await,
        200,
        "still cached for the original hash"
    );
}

/// The KEK lives in Secrets Manager and rotates while API-key requests
/// flow: AWSCURRENT moves to a new key, secrets sealed under the old one
/// still open (AWSPREVIOUS), `uforge-admin apikey reseal` moves them to the
/// new one, which a warm environment picks up at once; after the next
/// rotation the re-sealed secrets still open. No request fails throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_keep_working_through_a_kek_rotation() {
    use base64::Engine as _;
    use publish_cancel::admin::DynamoAdmin;
    use publish_cancel::config::{AwsSettings, KekSetting};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let stack = Stack::new().await;
    let sdk = common::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("kek-{}", stack.users_table);
    let b64 = |k: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    // The seed is sealed under common::KEK: it is the secret's first value.
    secrets
        .create_secret()
        .name(&name)
        .secret_string(b64(common::KEK))
        .send()
        .await
        .unwrap();
    let api = Arc::new(publish_cancel::startup::aws_api(
        &sdk,
        AwsSettings {
            keks: KekSetting::Secret(name.clone()),
            ..common::aws_settings(&stack.users_table, &stack.publishes_table, &stack.queue_url)
        },
        publish_cancel::startup::Options::new("/api"),
    ));
    let signed = || Req::delete(alice(ALICE_CANCELLED)).signed("PUBKEY123", "SECRETKEY456");
    assert_eq!(common::call(&api, &signed()).await.status(), 200);

    // Requests keep flowing while the operator rotates and re-seals.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flow = tokio::spawn({
        let (api, stop, done) = (api.clone(), stop.clone(), done.clone());
        async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                statuses.push(common::call(&api, &signed()).await.status().as_u16());
                done.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        }
    });
    // Two more requests answered: each step is met by requests, by count
    // rather than by a sleep.
    let two_more = || {
        let done = done.clone();
        async move {
            let from = done.load(Ordering::SeqCst);
            while done.load(Ordering::SeqCst) < from + 2 {
                tokio::task::yield_now().await;
            }
        }
    };
    let admin = DynamoAdmin::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.users_table.clone(),
        stack.publishes_table.clone(),
        publish_cancel::startup::kek_source(&KekSetting::Secret(name.clone()), &sdk),
    );
    let sealed_secret = || async {
        let item = stack
            .dynamo
            .get_item()
            .table_name(&stack.users_table)
            .key(
                attr::LOGIN,
                aws_sdk_dynamodb::types::AttributeValue::S("alice".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        item[attr::API_KEYS].as_m().unwrap()["PUBKEY123"]
            .as_s()
            .unwrap()
            .clone()
    };
    let before = sealed_secret().await;
    for (round, next) in [[7u8; 32], [8u8; 32]].into_iter().enumerate() {
        secrets
            .put_secret_value()
            .secret_id(&name)
            .secret_string(b64(next))
            .send()
            .await
            .unwrap();
        two_more().await;
        let report = DynamoAdmin::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            stack.users_table.clone(),
            stack.publishes_table.clone(),
            publish_cancel::startup::kek_source(&KekSetting::Secret(name.clone()), &sdk),
        )
        .reseal_api_keys()
        .await
        .unwrap();
        assert_eq!(report.resealed, 1, "round {round}: {report:?}");
        two_more().await;
    }
    // A second re-seal has nothing left to do.
    let again = admin.reseal_api_keys().await.unwrap();
    assert_eq!((again.resealed, again.current), (0, 1), "{again:?}");
    let after = sealed_secret().await;
    assert_ne!(before, after, "re-sealed");
    assert!(after.starts_with("v2:") && !after.contains("SECRETKEY456"));
    stop.store(true, Ordering::SeqCst);
    let statuses = flow.await.unwrap();
    assert!(statuses.len() > 5, "requests flowed: {}", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The original KEK is retired now: under it nothing opens any more.
    let old_only = publish_cancel::auth::Sealer::new(&common::KEK);
    assert!(old_only.open("alice", "PUBKEY123", &after).is_err());
}

/// The emulator refuses what SQS refuses (tests/moto_serial.py), and the
/// SQS adapter calls those refusals permanent: no retry can cure them.
#[tokio::test]
async fn the_queue_refuses_what_sqs_refuses_and_the_adapter_calls_it_permanent() {
    use publish_cancel::adapters::sqs::SqsStopQueue;
    use publish_cancel::ports::StopQueue;

    for fifo in [false, true] {
        let stack = Stack::with(StackOptions {
            fifo,
            ..Default::default()
        })
        .await;
        let raw = stack
            .sqs
            .send_message()
            .queue_url(&stack.queue_url)
            .message_body("stop \u{ffff}")
            .set_message_group_id(fifo.then(|| "g".to_owned()))
            .set_message_deduplication_id(fifo.then(|| "d".to_owned()))
            .send()
            .await;
        let err = raw.expect_err("SQS refuses U+FFFF in a body");
        let text = format!(
            "{}",
            aws_smithy_types::error::display::DisplayErrorContext(&err)
        );
        assert!(text.contains("InvalidMessageContents"), "{text}");

        let queue = SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url);
        let good = StopMessage::new(
            &common::alice_key(3),
            &publish_cancel::domain::CancelStamp::new(
                "r-1".into(),
                publish_cancel::domain::Timestamp(1),
                publish_cancel::domain::CancelAudit::http(&common::alice_key(3).uid),
            ),
        );
        // Built by hand, past every type that would refuse it.
        let mut bad = good.clone();
        bad.reason = Some("\u{fffe}".into());
        let e = queue.send(&bad).await.expect_err("refused");
        assert!(e.is_permanent(), "{e:?}");
        if fifo {
            let mut bad_id = good.clone();
            bad_id.request_id = "has a space".into();
            let e = queue.send(&bad_id).await.expect_err("refused");
            assert!(e.is_permanent(), "{e:?}");
            bad_id.request_id = "x".repeat(129);
            assert!(queue
                .send(&bad_id)
                .await
                .expect_err("refused")
                .is_permanent());
        }
        // What our types let through is accepted, and the queue was never
        // touched by the refusals.
        queue.send(&good).await.expect("a valid stop is sent");
        assert_eq!(stack.drain().await.len(), 1);
    }
}

/// Issue 32: `SendMessageBatch` answers per entry, and so does the
/// adapter: an entry SQS refuses for its contents is a permanent failure
/// of that stop only (the emulator refuses it as SQS does,
/// tests/moto_serial.py), and the others are on the queue.
#[tokio::test]
async fn a_batch_fails_only_the_entries_sqs_refuses() {
    use publish_cancel::adapters::sqs::SqsStopQueue;
    use publish_cancel::ports::StopQueue;

    for fifo in [false, true] {
        let stack = Stack::with(StackOptions {
            fifo,
            ..Default::default()
        })
        .await;
        let queue = SqsStopQueue::new(stack.sqs.clone(), &stack.queue_url);
        let stop = |pitid: i64| {
            StopMessage::new(
                &common::alice_key(pitid),
                &publish_cancel::domain::CancelStamp::new(
                    format!("r-{pitid}").as_str().into(),
                    publish_cancel::domain::Timestamp(1),
                    publish_cancel::domain::CancelAudit::http(&common::alice_key(pitid).uid),
                ),
            )
        };
        let mut bad = stop(2);
        bad.reason = Some("\u{fffe}".into());
        let batch = [stop(1), bad, stop(3)];
        let results = queue.send_batch(&batch).await;
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let refused = results[1].as_ref().expect_err("refused");
        assert!(refused.is_permanent(), "{refused:?}");
        let mut on_queue: Vec<i64> = stack.drain_stops().await.iter().map(|s| s.pitid).collect();
        on_queue.sort();
        assert_eq!(on_queue, [1, 3], "fifo={fifo}");
    }
}
