//! Every sample event in `events/` through the Lambda front door, against
//! stores seeded with the bundled seed. A new event file without an
//! expected outcome in `events/expected.json` fails this test.

use crate::common;

use std::sync::OnceLock;

use common::xml::{check_error, check_status};
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
use publish_cancel::domain::{PublishRecord, User};
use publish_cancel::frontdoor;
use publish_cancel::seed::{Seed, BUNDLED};
use publish_cancel::startup::{self, Options};

/// The endpoint on fresh stores per event, and those stores, from users
/// hashed once (Argon2 is deliberately slow).
fn fresh_api() -> (startup::MemoryApi, MemoryPublishes, MemoryQueue) {
    static SEEDED: OnceLock<(Vec<User>, Vec<PublishRecord>)> = OnceLock::new();
    let (seed_users, seed_publishes) = SEEDED.get_or_init(|| {
        let seed = Seed::parse(BUNDLED).unwrap();
        (
            seed.users(&common::sealer()).unwrap(),
            seed.publishes().unwrap(),
        )
    });
    let users = MemoryUsers::default();
    seed_users.iter().cloned().for_each(|u| users.put(u));
    let publishes = MemoryPublishes::default();
    seed_publishes
        .iter()
        .cloned()
        .for_each(|p| publishes.put(p));
    let queue = MemoryQueue::default();
    let api = startup::service(
        users,
        publishes.clone(),
        queue.clone(),
        Some(publish_cancel::auth::FixedKeks::shared(common::sealer())),
        Options {
            credential_cache: false,
            ..Options::new("/api")
        },
    );
    (api, publishes, queue)
}

#[tokio::test]
async fn every_sample_event_has_its_documented_outcome() {
    let expected = common::sample_events::expected_in("");
    let files = common::sample_events::sample_files("");
    assert!(files.len() >= 20, "sample events went missing: {files:?}");
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        let want = expected
            .get(name.as_ref())
            .unwrap_or_else(|| panic!("events/{name} has no entry in events/expected.json"));
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("events/{name} is not JSON: {e}"));
        let (api, publishes, queue) = fresh_api();
        let before = publishes.all();
        let resp = frontdoor::lambda::handle(&api, &text, "events-test")
            .await
            .unwrap_or_else(|e| panic!("events/{name} is not an HTTP event: {e}"))
            .to_json();
        let status = resp["statusCode"].as_u64().expect("a status") as u16;
        assert_eq!(
            u64::from(status),
            want["status"].as_u64().unwrap(),
            "events/{name}"
        );
        let content_type = common::sample_events::content_type(&resp).map(str::to_owned);
        assert_eq!(
            content_type.as_deref(),
            want["contentType"].as_str(),
            "events/{name}"
        );
        let body = resp["body"].as_str().unwrap_or_default().to_owned();
        assert_eq!(resp["isBase64Encoded"], false, "events/{name}");
        let xml = content_type.as_deref() == Some("application/xml");
        if status >= 400 {
            if xml {
                assert_eq!(check_error(&body).status, status, "events/{name}");
            }
            assert_eq!(publishes.all(), before, "events/{name} changed a record");
            assert!(queue.sent().is_empty(), "events/{name} sent a stop");
        } else {
            if xml {
                let status = check_status(&body);
                let fields = want["fields"].as_object().unwrap_or_else(|| {
                    panic!("events/{name}: expected.json must say what its status holds")
                });
                for (field, value) in fields {
                    assert_eq!(
                        Some(status[field.as_str()].as_str()),
                        value.as_str(),
                        "events/{name}: {field}"
                    );
                }
            }
            // One stop for the cancel that makes the transition; none
            // for a repeat of a cancel whose stop was sent.
            let changed = publishes.all() != before;
            assert_eq!(
                queue.sent().len(),
                usize::from(changed),
                "events/{name}: one stop message per transition"
            );
        }
    }
    // And nothing in expected.json without a file.
    for key in expected
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
    {
        assert!(
            files.iter().any(|f| f.ends_with(key)),
            "events/expected.json names a missing file {key}"
        );
    }
}
