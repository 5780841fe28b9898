//! Who is calling: HTTP Basic or a UForge API-key signed URL.
//!
//! Parsing is pure and lives in the submodules; `authenticate` reads the
//! user record and checks the proof. Every failure is the same `Denied`, so
//! callers cannot tell an unknown login from a wrong password.

pub mod basic;
pub mod cache;
pub mod keks;
pub mod password;
pub mod sealed;
pub mod signed_url;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Login, User};
use crate::ports::{BackendError, Users};

pub use basic::BasicCredentials;
pub use cache::VerifiedCache;
pub use keks::{FixedKeks, KekSource};
pub use sealed::{SealError, Sealer};
pub use signed_url::SignedRequest;

/// The proof of identity a request carries.
#[derive(Debug)]
pub enum Credentials {
    Basic(BasicCredentials),
    /// An API-key signed URL. The principal it claims is the `{uid}` of the
    /// path (signed with it), so the key is looked up on that user only.
    SignedUrl(SignedRequest),
    /// No credentials, or credentials we could not parse.
    Missing,
}

impl Credentials {
    /// Reads the `Authorization` header(s), else the query. An
    /// `Authorization` header always wins: a request is authenticated one
    /// way only. Two or more `Authorization` headers are ambiguous (which
    /// one did a proxy check?) and authenticate nobody, however they
    /// arrive: as two fields (a socket, a REST or ALB event's
    /// `multiValueHeaders`) or joined by a comma into one (RFC 9110's list
    /// form, which is how HTTP APIs and function URLs deliver them; Basic
    /// credentials never contain a comma).
    pub fn from_request<'a>(
        mut authorization: impl Iterator<Item = &'a [u8]>,
        relative_path: &str,
        raw_query: &str,
    ) -> Credentials {
        match (authorization.next(), authorization.next()) {
            (Some(value), None) if value.contains(&b',') => return Credentials::Missing,
            (Some(value), None) => {
                return basic::parse(value).map_or(Credentials::Missing, Credentials::Basic)
            }
            (Some(_), Some(_)) => return Credentials::Missing,
            (None, _) => {}
        }
        match signed_url::parse(relative_path, raw_query) {
            Ok(Some(req)) => Credentials::SignedUrl(req),
            Ok(None) | Err(_) => Credentials::Missing,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad, unknown or missing credentials, or an inactive user: one answer.
    #[error("authentication failed")]
    Denied,
    #[error("user store unavailable")]
    Backend(#[from] BackendError),
}

/// Checks credentials against the users store.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// `None` when no KEK is configured: API-key requests are then refused.
    keks: Option<Arc<dyn KekSource>>,
    /// Recently verified passwords; `None` verifies every request with Argon2.
    cache: Option<Arc<VerifiedCache>>,
    /// Argon2 verifications running at once (each holds 19 MiB): a request
    /// beyond waits its turn (within its time budget), it is not refused.
    verifications: Arc<tokio::sync::Semaphore>,
    /// What the verifications did: how many ran, how many at once.
    stats: Arc<VerificationStats>,
}

/// Argon2 verifications as they really ran, counted inside the blocking
/// job around `password::verify` (not where a request decides to run one):
/// what the cost and concurrency guarantees are about.
#[derive(Debug, Default)]
pub struct VerificationStats {
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicU64,
}

impl VerificationStats {
    /// Verifications completed since start.
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most that ever ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `verify` as one counted verification.
    fn count<T>(&self, verify: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        let out = verify();
        self.running.fetch_sub(1, SeqCst);
        self.total.fetch_add(1, SeqCst);
        out
    }
}

/// The production cache: five minutes, bounded to a few thousand entries
/// (each 40-odd bytes).
pub const CACHE_TTL: Duration = Duration::from_secs(300);
pub const CACHE_CAPACITY: usize = 4096;

/// At most this many Argon2 verifications at once, per process: one per
/// core (at least 2, at most 8). Lambda serves one request at a time, so
/// this only bounds the local server, where 256 clients once meant 256
/// verifications (about 4.8 GiB) at once.
pub fn max_concurrent_verifications() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

impl Authenticator {
    /// Without a verified-credential cache.
    pub fn new(keks: Option<Arc<dyn KekSource>>) -> Self {
        Authenticator::build(keks, None, max_concurrent_verifications())
    }

    /// With the production verified-credential cache.
    pub fn with_cache(keks: Option<Arc<dyn KekSource>>) -> Self {
        Authenticator::build(
            keks,
            VerifiedCache::new(CACHE_TTL, CACHE_CAPACITY).map(Arc::new),
            max_concurrent_verifications(),
        )
    }

    fn build(
        keks: Option<Arc<dyn KekSource>>,
        cache: Option<Arc<VerifiedCache>>,
        verifications: usize,
    ) -> Self {
        Authenticator {
            keks,
            cache,
            verifications: Arc::new(tokio::sync::Semaphore::new(verifications.max(1))),
            stats: Arc::default(),
        }
    }

    /// What the Argon2 verifications of this authenticator did.
    pub fn verification_stats(&self) -> &VerificationStats {
        &self.stats
    }

    /// `path_uid` is the `{uid}` of the request path. The trace says how
    /// the credentials were checked (for metrics and logs, never clients).
    pub async fn authenticate(
        &self,
        users: &impl Users,
        credentials: Credentials,
        path_uid: &Login,
    ) -> (Result<User, AuthError>, AuthTrace) {
        let mut trace = AuthTrace::default();
        let result = match credentials {
            Credentials::Missing => Err(AuthError::Denied),
            Credentials::Basic(c) => {
                trace.scheme = Scheme::Basic;
                self.basic(users, c, &mut trace).await
            }
            Credentials::SignedUrl(req) => {
                trace.scheme = Scheme::ApiKey;
                self.signed(users, req, path_uid, &mut trace).await
            }
        };
        if matches!(result, Err(AuthError::Denied)) && trace.denied.is_none() {
            trace.denied = Some(Denied::NoCredentials);
        }
        (result, trace)
    }

    /// Every failure, whatever its reason, costs one Argon2 verification:
    /// the cache is consulted and filled for active users only, so an
    /// inactive user's correct password is as slow to refuse as a wrong
    /// one (it once was answered from the cache in a few ms, which told an
    /// attacker the password of a disabled account).
    async fn basic(
        &self,
        users: &impl Users,
        c: BasicCredentials,
        trace: &mut AuthTrace,
    ) -> Result<User, AuthError> {
        // Read on every request, cache or not: disabling a user, revoking
        // an entitlement or changing a password takes effect at once.
        let user = users.get(&c.login).await?;
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let cache = match (&self.cache, &user, &stored) {
            (Some(cache), Some(u), Some(_)) if u.active => Some(cache.clone()),
            _ => None,
        };
        if let (Some(cache), Some(hash)) = (&cache, &stored) {
            if cache.hit(c.login.as_str(), &c.password, hash) {
                trace.check = Check::CachedPassword;
                return user.ok_or(AuthError::Denied);
            }
        }
        trace.check = Check::Argon2;
        // Wait for a turn (queued, never refused: the request's own budget
        // bounds the wait), then keep Argon2's tens of ms of CPU off the
        // reactor threads.
        let Ok(turn) = self.verifications.clone().acquire_owned().await else {
            return Err(AuthError::Denied);
        };
        // The turn is the verification's, not the request's: a request
        // dropped meanwhile (its budget, its connection) leaves the job
        // running, and the job keeps its turn until it is done.
        let stats = self.stats.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let ok = stats.count(|| password::verify(&c.password, stored.as_deref()));
            if let (true, Some(cache), Some(hash)) = (ok, cache, stored) {
                cache.remember(c.login.as_str(), &c.password, &hash);
            }
            ok
        })
        .await
        .unwrap_or(false);
        let denied = match &user {
            None => Denied::UnknownUser,
            Some(u) if !u.active => Denied::Inactive,
            Some(_) if !verified => Denied::WrongPassword,
            Some(_) => return user.ok_or(AuthError::Denied),
        };
        trace.denied = Some(denied);
        Err(AuthError::Denied)
    }

    async fn signed(
        &self,
        users: &impl Users,
        req: SignedRequest,
        path_uid: &Login,
        trace: &mut AuthTrace,
    ) -> Result<User, AuthError> {
        let deny = |trace: &mut AuthTrace, why| {
            trace.denied = Some(why);
            Err(AuthError::Denied)
        };
        let Some(keks) = &self.keks else {
            return deny(trace, Denied::ApiKeysOff);
        };
        // The KEKs first, whoever is asking: while their store fails, every
        // API-key request is the same 503, so no answer tells which
        // (login, public key) pairs exist. (Read once, then cached.)
        let sealer = keks.sealer(None).await?;
        let user = users.get(path_uid).await?;
        let key = user.as_ref().and_then(|u| u.api_key(&req.public_key));
        trace.check = Check::Signature;
        let (Some(user), Some(k)) = (&user, key) else {
            // The same HMAC work as a real check, so no timing tells them
            // apart either.
            std::hint::black_box(signed_url::verify(UNKNOWN_KEY_SECRET, &req));
            let why = if user.is_none() {
                Denied::UnknownUser
            } else {
                Denied::NoSuchKey
            };
            return deny(trace, why);
        };
        let open =
            |sealer: &Sealer| sealer.open(user.login.as_str(), &k.public_key, &k.sealed_secret);
        let secret = match open(&sealer) {
            // Sealed under a KEK newer than ours: a rotation happened.
            Err(SealError::UnknownKey(id)) => open(&*keks.sealer(Some(id)).await?).ok(),
            opened => opened.ok(),
        };
        match secret {
            Some(secret) if signed_url::verify(&secret, &req) => {
                if user.active {
                    Ok(user.clone())
                } else {
                    deny(trace, Denied::Inactive)
                }
            }
            Some(_) => deny(trace, Denied::BadSignature),
            None => {
                tracing::warn!(login = %user.login, "an API secret does not open under the KEKs");
                deny(trace, Denied::NoSuchKey)
            }
        }
    }
}

/// What an API-key request for a login or key that does not exist is
/// checked against: the work of a real check, and never a match.
const UNKNOWN_KEY_SECRET: &[u8] =
    b"not the secret of any key: a signature is never checked against it";

/// How one request's credentials were checked: for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthTrace {
    pub scheme: Scheme,
    pub check: Check,
    /// Why authentication failed, when it did (the client only ever sees 401).
    pub denied: Option<Denied>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheme {
    /// No credentials, or none that parse.
    #[default]
    None,
    Basic,
    ApiKey,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Check {
    /// Refused before any check (nothing to verify).
    #[default]
    None,
    /// A password verified moments ago, found in the cache.
    CachedPassword,
    /// One Argon2id verification.
    Argon2,
    /// An HMAC-SHA1 signature check.
    Signature,
}

impl Check {
    /// As logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::None => "none",
            Check::CachedPassword => "cached_password",
            Check::Argon2 => "argon2",
            Check::Signature => "hmac",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NoCredentials,
    UnknownUser,
    WrongPassword,
    Inactive,
    ApiKeysOff,
    NoSuchKey,
    BadSignature,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::NoCredentials => "no_credentials",
            Denied::UnknownUser => "unknown_user",
            Denied::WrongPassword => "wrong_password",
            Denied::Inactive => "inactive_user",
            Denied::ApiKeysOff => "api_keys_off",
            Denied::NoSuchKey => "no_such_key",
            Denied::BadSignature => "hmac_mismatch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{Seed, BUNDLED};

    fn basic(login: &str, password: &str) -> Credentials {
        Credentials::Basic(BasicCredentials {
            login: Login::parse(login).unwrap(),
            password: password.into(),
        })
    }

    /// The bundled seed's users, in memory.
    fn bundled_users() -> crate::adapters::memory::MemoryUsers {
        let sealer = Sealer::new(&[1; 32]);
        Seed::parse(BUNDLED)
            .unwrap()
            .users(&sealer)
            .unwrap()
            .into_iter()
            .collect()
    }

    /// A flood of password guesses queues for Argon2: never more than the
    /// bound verify at once, and every one is answered (none refused for
    /// want of a turn).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_verifications_are_bounded_and_queued() {
        let users = bundled_users();
        let auth = Arc::new(Authenticator::build(None, None, 2));
        let users = Arc::new(users);
        let alice = Login::parse("alice").unwrap();
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let (auth, users, alice) = (auth.clone(), users.clone(), alice.clone());
                tokio::spawn(async move {
                    let pw = if i % 2 == 0 {
                        "wrong"
                    } else {
                        "alice-password"
                    };
                    auth.authenticate(&*users, basic("alice", pw), &alice).await
                })
            })
            .collect();
        let mut answered = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            let (result, trace) = t.await.unwrap();
            assert_eq!(trace.check, Check::Argon2);
            assert_eq!(result.is_ok(), i % 2 == 1, "answered on its merits");
            answered += 1;
        }
        assert_eq!(answered, 24);
        let stats = auth.verification_stats();
        // 24 verifications of tens of ms each on a bound of 2: the bound is
        // reached, never passed.
        assert_eq!(stats.peak(), 2, "peak {}", stats.peak());
        assert_eq!(stats.total(), 24, "every request verified, once");
    }

    /// Issue 25 (4): a request dropped while its Argon2 job runs (its
    /// budget ran out, its client went away) does not give its turn to
    /// another while the job still runs: the bound holds for the jobs, not
    /// only for the requests waiting on them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_dropped_request_keeps_its_verification_s_turn_until_it_ends() {
        let users = Arc::new(bundled_users());
        let auth = Arc::new(Authenticator::build(None, None, 2));
        let alice = Login::parse("alice").unwrap();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (auth, users, alice) = (auth.clone(), users.clone(), alice.clone());
            tasks.push(tokio::spawn(async move {
                // Dropped long before Argon2 (tens of ms) is done.
                let _ = tokio::time::timeout(
                    Duration::from_millis(1),
                    auth.authenticate(&*users, basic("alice", "wrong"), &alice),
                )
                .await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Let every detached job finish.
        let _ = auth.verifications.acquire_many(2).await.unwrap();
        let peak = auth.verification_stats().peak();
        assert!((1..=2).contains(&peak), "peak {peak} verifications at once");
    }

    /// Only the key's own signature opens the door: the right signature, the
    /// key's secret over another path, a wrong secret, another user's key.
    #[tokio::test]
    async fn an_api_key_request_passes_only_with_its_own_signature() {
        let users = bundled_users();
        let auth = Authenticator::new(Some(keks::FixedKeks::shared(Sealer::new(&[1; 32]))));
        let path = "users/alice/appliances/1/images/2/pimages/3/cancel";
        let signed = |secret: &[u8], text: &str| {
            let sig = signed_url::sign(secret, text);
            let sig: String = sig
                .chars()
                .map(|c| match c {
                    '+' => "%2B".to_owned(),
                    '/' => "%2F".to_owned(),
                    '=' => "%3D".to_owned(),
                    c => c.to_string(),
                })
                .collect();
            format!("apiKey=PUBKEY123&signature={sig}")
        };
        let alice = Login::parse("alice").unwrap();
        let good = signed(b"SECRETKEY456", &format!("{path}?apiKey=PUBKEY123"));
        let other_path = signed(
            b"SECRETKEY456",
            "users/alice/appliances/1/images/2/pimages/4/cancel?apiKey=PUBKEY123",
        );
        let wrong_secret = signed(b"SECRETKEY457", &format!("{path}?apiKey=PUBKEY123"));
        for (query, ok) in [(&good, true), (&other_path, false), (&wrong_secret, false)] {
            let creds = Credentials::from_request(std::iter::empty(), path, query);
            let (result, _) = auth.authenticate(&users, creds, &alice).await;
            assert_eq!(result.is_ok(), ok, "{query}: {result:?}");
        }
    }

    /// The log fields `auth_check` and `denied` (docs/operating.md).
    #[test]
    fn check_and_refusal_names_are_the_documented_ones() {
        let checks = [
            (Check::None, "none"),
            (Check::CachedPassword, "cached_password"),
            (Check::Argon2, "argon2"),
            (Check::Signature, "hmac"),
        ];
        for (check, name) in checks {
            assert_eq!(check.as_str(), name);
        }
        let refusals = [
            (Denied::NoCredentials, "no_credentials"),
            (Denied::UnknownUser, "unknown_user"),
            (Denied::WrongPassword, "wrong_password"),
            (Denied::Inactive, "inactive_user"),
            (Denied::ApiKeysOff, "api_keys_off"),
            (Denied::NoSuchKey, "no_such_key"),
            (Denied::BadSignature, "hmac_mismatch"),
        ];
        for (denied, name) in refusals {
            assert_eq!(denied.as_str(), name);
        }
    }

    #[test]
    fn verifications_at_once_are_between_two_and_eight() {
        assert!((2..=8).contains(&max_concurrent_verifications()));
    }

    /// Issue 25 (3): while the KEK store fails, an API-key request is the
    /// same `Backend` error (a 503) whether or not its login and key exist;
    /// before, only a real (login, key) pair got that far and the others
    /// were refused (401): an oracle for which pairs exist.
    #[tokio::test]
    async fn a_failing_kek_store_answers_every_api_key_request_alike() {
        #[derive(Debug)]
        struct Down;
        impl KekSource for Down {
            fn sealer(&self, _: Option<sealed::KeyId>) -> keks::KekFuture<'_> {
                Box::pin(async { Err(BackendError::msg("the KEK store is down")) })
            }
        }
        let users = bundled_users();
        let auth = Authenticator::new(Some(Arc::new(Down)));
        for (uid, public_key) in [
            ("alice", "PUBKEY123"),
            ("alice", "NOSUCHKEY"),
            ("nobody", "PUBKEY123"),
        ] {
            let relative = format!("users/{uid}/appliances/1/images/2/pimages/3/cancel");
            let query = format!("apiKey={public_key}&signature={}=", "A".repeat(27));
            let creds = Credentials::from_request(std::iter::empty(), &relative, &query);
            assert!(matches!(creds, Credentials::SignedUrl(_)));
            let (result, _) = auth
                .authenticate(&users, creds, &Login::parse(uid).unwrap())
                .await;
            assert!(
                matches!(result, Err(AuthError::Backend(_))),
                "{uid}/{public_key}: {result:?}"
            );
        }
    }

    /// A timing oracle is a difference in work between failures; this
    /// checks the work itself, which is what the timing follows: every
    /// refused Basic request costs exactly one Argon2 verification, a
    /// disabled account's correct password included, also after that
    /// password was verified (and cached) while the account was active.
    #[tokio::test]
    async fn every_basic_failure_costs_one_argon2_verification_whatever_its_reason() {
        let users = bundled_users();
        let auth = Authenticator::with_cache(None);
        let alice = Login::parse("alice").unwrap();
        let run = |creds| auth.authenticate(&users, creds, &alice);
        // Verifications that really ran (counted around password::verify,
        // not where the trace says one will): the cost the guarantee is
        // about. A request skipping Argon2 for some reason shows here.
        let ran = || auth.verification_stats().total();

        // A success is verified once, then answered from the cache.
        let (ok, t) = run(basic("alice", "alice-password")).await;
        assert!(ok.is_ok());
        assert_eq!((t.check, ran()), (Check::Argon2, 1));
        let (ok, t) = run(basic("alice", "alice-password")).await;
        assert!(ok.is_ok());
        assert_eq!((t.check, ran()), (Check::CachedPassword, 1));

        let failures = [
            ("alice", "wrong", Denied::WrongPassword),
            ("nobody", "alice-password", Denied::UnknownUser),
            ("dave", "dave-password", Denied::Inactive),
            ("dave", "dave-password", Denied::Inactive),
            ("dave", "wrong", Denied::Inactive),
        ];
        for (login, password, why) in failures {
            let before = ran();
            let (result, t) = run(basic(login, password)).await;
            assert!(matches!(result, Err(AuthError::Denied)), "{login}");
            assert_eq!(t.check, Check::Argon2, "{login}/{password}: {t:?}");
            assert_eq!(
                ran(),
                before + 1,
                "{login}/{password}: one verification ran"
            );
            assert_eq!(t.denied, Some(why), "{login}/{password}");
        }

        // Disabled after its password was cached: refused at the same cost.
        let mut disabled = users.get(&alice).await.unwrap().unwrap();
        disabled.active = false;
        users.put(disabled);
        for _ in 0..2 {
            let before = ran();
            let (result, t) = run(basic("alice", "alice-password")).await;
            assert!(result.is_err());
            assert_eq!((t.check, t.denied), (Check::Argon2, Some(Denied::Inactive)));
            assert_eq!(
                ran(),
                before + 1,
                "a disabled account: one verification ran"
            );
        }
        // Re-enabled, the cache may serve it again (after one verification).
        let mut enabled = users.get(&alice).await.unwrap().unwrap();
        enabled.active = true;
        users.put(enabled);
        let (_, t) = run(basic("alice", "alice-password")).await;
        assert!(matches!(t.check, Check::Argon2 | Check::CachedPassword));
        let (ok, t) = run(basic("alice", "alice-password")).await;
        assert!(ok.is_ok());
        assert_eq!(t.check, Check::CachedPassword);

        // Nothing to verify: refused without Argon2 (reveals no user).
        let ok = b"Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=".as_slice();
        for repeated in [
            vec![ok, ok],
            vec![
                b"Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=,Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=".as_slice(),
            ],
        ] {
            let creds = Credentials::from_request(repeated.into_iter(), "users/alice/x", "");
            assert!(matches!(creds, Credentials::Missing));
        }
        assert!(matches!(
            Credentials::from_request([ok].into_iter(), "users/alice/x", ""),
            Credentials::Basic(_)
        ));
        let before = ran();
        let (_, t) = run(Credentials::Missing).await;
        assert_eq!(
            (t.scheme, t.check, t.denied),
            (Scheme::None, Check::None, Some(Denied::NoCredentials))
        );
        assert_eq!(ran(), before, "nothing to verify: no verification");
    }
}
