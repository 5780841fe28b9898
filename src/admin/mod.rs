//! Operator tooling behind the `uforge-admin` binary: users, entitlements,
//! API keys and publish records, through the `ports::AdminStore` port, on
//! DynamoDB (`adapters::dynamodb::admin`) or on a local server's seed file
//! (`adapters::seed_file`). Secrets are generated here and shown once.

pub use crate::adapters::dynamodb::admin::{DynamoAdmin, RepairReport, ResealReport};
pub use crate::adapters::dynamodb::provision::create_tables;
pub use crate::adapters::seed_file::SeedFileAdmin;
pub use crate::adapters::sqs::create_queue;
pub use crate::ports::{AdminError, AdminStore, Replacing, UserSummary};
pub use publish::{put_publish, PutReport};

mod progress;
mod publish;

pub use progress::{Counts, Progress};

/// A new API key pair: a public key (20 characters) and a secret (40), both
/// from the OS RNG, in an alphabet that needs no URL escaping.
pub fn new_key_pair() -> Result<(String, String), AdminError> {
    Ok((random_token(20)?, random_token(40)?))
}

fn random_token(len: usize) -> Result<String, AdminError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::getrandom(&mut buf)
            .map_err(|e| AdminError::Invalid(format!("no randomness: {e}")))?;
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if (b as usize) < 248 && out.len() < len {
                out.push(ALPHABET[b as usize % 62] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pairs_are_random_and_url_safe() {
        let (p1, s1) = new_key_pair().unwrap();
        let (p2, s2) = new_key_pair().unwrap();
        assert_eq!((p1.len(), s1.len()), (20, 40));
        assert_ne!(p1, p2);
        assert_ne!(s1, s2);
        assert!(p1
            .bytes()
            .chain(s1.bytes())
            .all(|b| b.is_ascii_alphanumeric()));
    }
}
