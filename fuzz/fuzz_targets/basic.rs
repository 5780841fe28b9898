#![no_main]
//! The Basic `Authorization` parser on arbitrary bytes: no panic, and a
//! parsed login is always a valid one.

use libfuzzer_sys::fuzz_target;
use publish_cancel::auth::basic;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = basic::parse(data) {
        assert!(publish_cancel::domain::Login::parse(c.login.as_str()).is_ok());
        assert!(c.password.len() <= basic::MAX_PASSWORD_LEN);
    }
});
