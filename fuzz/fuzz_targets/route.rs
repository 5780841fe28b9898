#![no_main]
//! The router on arbitrary paths: a match always re-renders to a path that
//! routes to the same key.

use libfuzzer_sys::fuzz_target;
use publish_cancel::api::route;

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    if let Some(m) = route::route("/api", &path) {
        let again = format!("/api/{}", m.route.path_for(&m.key));
        assert_eq!(route::route("/api", &again).map(|r| r.key), Some(m.key));
    }
});
