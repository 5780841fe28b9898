//! Password hashes: Argon2id PHC strings, verified in constant work whether
//! or not the user exists.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's Argon2id recommendation: 19 MiB, 2 passes, 1 lane.
pub fn hasher() -> Argon2<'static> {
    // These constants are within Argon2's bounds, so `new` cannot fail.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a new password into a PHC string for the users table.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// A well-formed hash with the production parameters whose tag matches no
/// known password. It is verified when the login is unknown or has no password, so that case costs
/// the same as a wrong password and timing does not reveal which logins exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$NcW2OdE6bNuR0mANAo+q0Mik6qjFkTCfi8sfwuIQ0DI";

/// The parameters every hash of ours has, as a PHC prefix (the salt and
/// the 32-byte output follow).
pub const PHC_PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// The stored hash to verify against, if it is one of ours: Argon2id,
/// version 19, exactly our cost parameters, a salt, a 32-byte output.
/// Anything else (another algorithm or version, other costs, no salt or
/// output, not a PHC string at all) is verified as the dummy hash would
/// be, so its timing is a wrong password's and says nothing of the login.
pub fn ours(stored: &str) -> Option<PasswordHash<'_>> {
    let parsed = PasswordHash::new(stored).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    let is_ours = parsed.algorithm == Algorithm::Argon2id.ident()
        && parsed.version == Some(Version::V0x13.into())
        && (params.m_cost(), params.t_cost(), params.p_cost()) == (19 * 1024, 2, 1)
        && parsed.salt.is_some()
        && parsed.hash.is_some_and(|h| h.len() == 32);
    is_ours.then_some(parsed)
}

/// Verifies `password` against `stored`, or against the dummy hash when there
/// is none or it is not one of ours (`ours`). Blocking: ~tens of ms of CPU,
/// call it off the async reactor.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    verify_with(password, stored, |password, hash| {
        // Argon2 compares the tags in constant time.
        hasher().verify_password(password.as_bytes(), hash).is_ok()
    })
}

/// `verify` with the Argon2 call given: exactly one call, whatever
/// `stored` holds, with our parameters every time.
fn verify_with(
    password: &str,
    stored: Option<&str>,
    check: impl FnOnce(&str, &PasswordHash<'_>) -> bool,
) -> bool {
    match stored.and_then(ours) {
        Some(hash) => check(password, &hash),
        None => {
            // The constant is well-formed and ours (tested below).
            if let Ok(dummy) = PasswordHash::new(DUMMY_HASH) {
                let _ = check(password, &dummy);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse", Some(&phc)));
        assert!(!verify("correct horsf", Some(&phc)));
        assert!(!verify("", Some(&phc)));
    }

    #[test]
    fn unknown_user_never_verifies() {
        assert!(!verify("", None));
        assert!(!verify("anything", None));
    }

    #[test]
    fn corrupt_hash_is_refused() {
        assert!(!verify("pw", Some("not a phc string")));
        assert!(!verify(
            "pw",
            Some("$argon2id$v=19$m=19456,t=2,p=1$AAAA$BBBB")
        ));
    }

    /// Which hash is verified, for every kind of stored value: ours, or
    /// the dummy hash, once, never anything cheaper or costlier.
    #[test]
    fn anything_but_our_own_hashes_is_verified_as_the_dummy() {
        let real = hash("pw").unwrap();
        let foreign = [
            "not a phc string".to_owned(),
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into(),
            "$argon2d$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into(),
            "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into(),
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into(),
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ".into(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA".into(),
            "$pbkdf2-sha256$i=1$c2FsdA$aGFzaA".into(),
        ];
        let verified = |stored: Option<&str>| {
            let mut calls = Vec::new();
            let ok = verify_with("pw", stored, |_, h| {
                calls.push(h.to_string());
                false
            });
            (ok, calls)
        };
        for stored in foreign.iter().map(String::as_str).map(Some).chain([None]) {
            let (ok, calls) = verified(stored);
            assert!(!ok);
            assert_eq!(calls, [DUMMY_HASH], "{stored:?}");
        }
        let (_, calls) = verified(Some(&real));
        assert_eq!(calls, std::slice::from_ref(&real));
        assert!(ours(&real).is_some() && ours(DUMMY_HASH).is_some());
        assert!(real.starts_with(PHC_PREFIX));
    }

    #[test]
    fn dummy_hash_has_the_production_parameters() {
        let p = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(p.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&p).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (19 * 1024, 2, 1)
        );
    }
}
