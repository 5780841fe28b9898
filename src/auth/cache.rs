//! A cache of recently verified passwords, as httpd's `mod_authn_socache`:
//! warm invocations skip Argon2 for credentials that verified moments ago.
//!
//! - The key is HMAC-SHA256 over (login, password) under a random
//!   per-process key, and each entry holds a 64-bit fingerprint of the
//!   stored hash it verified against (SipHash under another random key):
//!   the cache holds no password or hash, and a new password hash in the
//!   table makes old entries miss. (The hash was in the HMAC before: three
//!   SHA-256 blocks a request instead of one.)
//! - Only successes are cached; entries live at most `MAX_TTL`.
//! - The user record is still read on every request, so disabling a user or
//!   revoking an entitlement takes effect at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const MAX_TTL: Duration = Duration::from_secs(300);

type Tag = [u8; 32];

/// A verified (login, password): until when, and against which stored hash.
#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: Instant,
    stored_hash: u64,
}

pub struct VerifiedCache {
    /// HMAC-SHA256 keyed once (the key's pads hashed once, not per tag).
    mac: Hmac<Sha256>,
    /// The stored hashes' fingerprints: SipHash under a random key.
    fingerprint: RandomState,
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<Tag, Entry>>,
}

// Never print the key.
impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// `ttl` is capped at `MAX_TTL`. `None` if the OS has no randomness.
    pub fn new(ttl: Duration, capacity: usize) -> Option<Self> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).ok()?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
        Some(VerifiedCache {
            mac,
            fingerprint: RandomState::new(),
            ttl: ttl.min(MAX_TTL),
            capacity,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn tag(&self, login: &str, password: &str) -> Tag {
        let mut mac = self.mac.clone();
        // The login length-prefixed, so no two pairs share an encoding.
        mac.update(&(login.len() as u64).to_be_bytes());
        mac.update(login.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Tag, Entry>> {
        // Entries are plain values: a panic elsewhere cannot corrupt them.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Did these exact credentials verify against this exact hash recently?
    pub fn hit(&self, login: &str, password: &str, stored_hash: &str) -> bool {
        let tag = self.tag(login, password);
        let stored_hash = self.fingerprint.hash_one(stored_hash);
        let now = Instant::now();
        let mut entries = self.entries();
        match entries.get(&tag) {
            Some(e) if e.expires > now => e.stored_hash == stored_hash,
            Some(_) => {
                entries.remove(&tag);
                false
            }
            None => false,
        }
    }

    /// Records a successful verification.
    pub fn remember(&self, login: &str, password: &str, stored_hash: &str) {
        let tag = self.tag(login, password);
        let now = Instant::now();
        let entry = Entry {
            expires: now + self.ttl,
            stored_hash: self.fingerprint.hash_one(stored_hash),
        };
        let mut entries = self.entries();
        // Its own entry (a new stored hash) is replaced in place.
        let replacing = entries.contains_key(&tag);
        if !replacing && entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires > now);
        }
        // Still full of live entries: keep the bound rather than evict
        // someone's warm entry; this one simply pays Argon2 next time.
        if replacing || entries.len() < self.capacity {
            entries.insert(tag, entry);
        }
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_the_exact_triple() {
        let c = VerifiedCache::new(Duration::from_secs(60), 10).unwrap();
        assert!(!c.hit("alice", "pw", "$h1"));
        c.remember("alice", "pw", "$h1");
        assert!(c.hit("alice", "pw", "$h1"));
        assert!(!c.hit("alice", "pw2", "$h1"), "another password");
        assert!(!c.hit("alice", "pw", "$h2"), "the stored hash changed");
        // The same password under a new hash (a new salt): remembered anew,
        // and the old hash no longer hits.
        c.remember("alice", "pw", "$h2");
        assert!(c.hit("alice", "pw", "$h2"));
        assert!(!c.hit("alice", "pw", "$h1"), "the old stored hash");
        assert_eq!(c.len(), 1);
        assert!(!c.hit("bob", "pw", "$h1"), "another login");
        assert!(!c.hit("alic", "epw", "$h1"), "no ambiguous encodings");
    }

    #[test]
    fn entries_expire_and_ttl_is_capped() {
        let c = VerifiedCache::new(Duration::from_millis(20), 10).unwrap();
        c.remember("alice", "pw", "$h");
        assert!(c.hit("alice", "pw", "$h"));
        assert!(!c.is_empty());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!c.hit("alice", "pw", "$h"));
        assert!(c.is_empty(), "expired entry removed");
        let long = VerifiedCache::new(Duration::from_secs(3600), 10).unwrap();
        assert_eq!(long.ttl, MAX_TTL);
    }

    #[test]
    fn size_is_bounded() {
        let c = VerifiedCache::new(Duration::from_secs(60), 3).unwrap();
        for i in 0..10 {
            c.remember(&format!("u{i}"), "pw", "$h");
        }
        assert_eq!(c.len(), 3);
        assert!(c.hit("u0", "pw", "$h"));
        assert!(!c.hit("u9", "pw", "$h"));
    }

    #[test]
    fn a_full_cache_of_expired_entries_makes_room() {
        let c = VerifiedCache::new(Duration::from_millis(20), 2).unwrap();
        c.remember("u0", "pw", "$h");
        c.remember("u1", "pw", "$h");
        std::thread::sleep(Duration::from_millis(40));
        c.remember("u2", "pw", "$h");
        assert_eq!(
            c.len(),
            1,
            "the expired entries were purged for the new one"
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let c = VerifiedCache::new(Duration::from_secs(1), 1).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("key"), "{text}");
        assert!(text.contains("VerifiedCache"), "{text}");
    }
}
