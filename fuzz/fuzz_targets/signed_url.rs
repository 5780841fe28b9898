#![no_main]
//! The API-key signed-URL parser on arbitrary path/query text.

use libfuzzer_sys::fuzz_target;
use publish_cancel::auth::signed_url;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    if let Ok(Some(req)) = signed_url::parse(path, query) {
        assert_eq!(req.signature.len(), 20);
        assert!(req.signed_text.starts_with(path));
        // Verification is total, too.
        let _ = signed_url::verify(b"key", &req);
    }
});
