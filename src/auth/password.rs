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

/// Verifies `password` against `stored`, or against the dummy hash when there
/// is none. Blocking: ~tens of ms of CPU, call it off the async reactor.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let (phc, real) = match stored {
        Some(s) => (s, true),
        None => (DUMMY_HASH, false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        // A corrupt stored hash: still spend the time, then refuse.
        let _ = verify_against(password, DUMMY_HASH);
        return false;
    };
    // Argon2 compares the tags in constant time.
    let ok = hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

fn verify_against(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|p| hasher().verify_password(password.as_bytes(), &p).is_ok())
        .unwrap_or(false)
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
