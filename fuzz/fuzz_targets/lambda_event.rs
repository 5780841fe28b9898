#![no_main]
//! The Lambda front door on arbitrary payloads, as the runtime hands them
//! over: the one-pass reader, the pre-check, `lambda_http`'s typed events
//! and our mapping. Any text is either answered (never with a 5xx: the
//! in-memory stores cannot fail) or refused as no HTTP event. Seed the
//! corpus with `events/*.json` to start from real shapes.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use publish_cancel::frontdoor::lambda;
use publish_cancel::config::Env;
use publish_cancel::seed::{Seed, BUNDLED};
use publish_cancel::startup::{memory_service, MemoryApi, Options};

fn setup() -> &'static (tokio::runtime::Runtime, MemoryApi) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, MemoryApi)> = OnceLock::new();
    SETUP.get_or_init(|| {
        // The composition root's in-memory service, as the local server.
        let seed = Seed::parse(BUNDLED).unwrap();
        let api = memory_service(&seed, Options::new("/api"), &Env::from_pairs(&[]))
            .unwrap()
            .api;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (rt, api)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = std::str::from_utf8(data) else {
        return;
    };
    let (rt, api) = setup();
    if let Ok(resp) = rt.block_on(lambda::handle(api, event, "fuzz")) {
        let status = resp.to_json()["statusCode"].as_u64().unwrap_or(0);
        assert!((200..500).contains(&status), "{status}");
    }
});
