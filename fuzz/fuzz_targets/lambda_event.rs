#![no_main]
//! The Lambda front door on arbitrary payloads, as the runtime hands them
//! over: whatever parses as JSON is either answered (never with a 5xx: the
//! in-memory stores cannot fail) or refused as no HTTP event. Seed the
//! corpus with `events/*.json` to start from real shapes.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use publish_cancel::adapters::memory::{MemoryPublishes, MemoryQueue, MemoryUsers};
use publish_cancel::api::Api;
use publish_cancel::auth::{Authenticator, FixedKeks, Sealer};
use publish_cancel::cancel::CancelPublish;
use publish_cancel::frontdoor::lambda;
use publish_cancel::seed::{Seed, BUNDLED};

type MemApi = Api<MemoryUsers, MemoryPublishes, MemoryQueue>;

fn setup() -> &'static (tokio::runtime::Runtime, MemApi) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, MemApi)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let sealer = Sealer::new(&[1; 32]);
        let (users, publishes) = Seed::parse(BUNDLED).unwrap().into_memory(&sealer).unwrap();
        let api = Api::new(
            CancelPublish {
                users,
                publishes,
                queue: MemoryQueue::default(),
                auth: Authenticator::with_cache(Some(FixedKeks::shared(sealer))),
            },
            "/api",
        );
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (rt, api)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let (rt, api) = setup();
    if let Ok(resp) = rt.block_on(lambda::handle(api, &event, "fuzz")) {
        let status = resp["statusCode"].as_u64().unwrap_or(0);
        assert!((200..500).contains(&status), "{status}");
    }
});
