//! Seed files: users and publishes for the local server's in-memory stores
//! (and for tests). The format is documented in docs/data.md; `seed/local.json`
//! is the bundled example.

use serde::{Deserialize, Serialize};

use crate::auth::{password, Sealer};
use crate::domain::{ApiKey, Login, PublishKey, PublishRecord, PublishState, Timestamp, User};

/// The bundled example seed, compiled in so the local server runs from any
/// directory.
pub const BUNDLED: &str = include_str!("../seed/local.json");

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed file is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("seed user {0:?}: {1}")]
    User(String, &'static str),
    #[error("seed publish {0}: {1}")]
    Publish(String, &'static str),
}

/// Not `Debug`: seeds carry plain-text passwords and API secrets.
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub publishes: Vec<SeedPublish>,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedUser {
    pub login: String,
    /// Plain text, hashed with Argon2id at load. For local use only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Or an existing PHC string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub entitlements: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<SeedApiKey>,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedApiKey {
    pub public_key: String,
    /// Plain text, sealed under the server's KEK at load.
    pub secret_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedPublish {
    pub uid: String,
    pub aid: i64,
    pub itid: i64,
    pub pitid: i64,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_loaded: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

fn yes() -> bool {
    true
}

impl Seed {
    pub fn parse(json: &str) -> Result<Seed, SeedError> {
        Ok(serde_json::from_str(json)?)
    }

    pub fn to_json(&self) -> String {
        // Plain data: serialising it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The users, with passwords hashed and API secrets sealed.
    pub fn users(&self, sealer: &Sealer) -> Result<Vec<User>, SeedError> {
        self.users.iter().map(|u| u.to_user(sealer)).collect()
    }

    pub fn publishes(&self) -> Result<Vec<PublishRecord>, SeedError> {
        self.publishes.iter().map(SeedPublish::to_record).collect()
    }
}

impl SeedUser {
    fn to_user(&self, sealer: &Sealer) -> Result<User, SeedError> {
        let err = |why| SeedError::User(self.login.clone(), why);
        let login = Login::parse(&self.login).map_err(|_| err("invalid login"))?;
        let password_hash = match (&self.password, &self.password_hash) {
            (Some(_), Some(_)) => return Err(err("give password or passwordHash, not both")),
            (Some(p), None) => Some(password::hash(p).map_err(|_| err("cannot hash password"))?),
            // A hash that is not ours would only ever be verified as the
            // dummy (auth::password::ours): refuse it where it is written.
            (None, Some(h)) if password::ours(h).is_none() => {
                return Err(err(
                    "passwordHash must be an Argon2id hash with this service's parameters \
                     ($argon2id$v=19$m=19456,t=2,p=1$...); give password instead to have it hashed",
                ))
            }
            (None, h) => h.clone(),
        };
        let api_keys = self
            .api_keys
            .iter()
            .map(|k| {
                let sealed = sealer
                    .seal(login.as_str(), &k.public_key, k.secret_key.as_bytes())
                    .map_err(|_| err("cannot seal API key"))?;
                Ok(ApiKey {
                    public_key: k.public_key.clone(),
                    sealed_secret: sealed,
                })
            })
            .collect::<Result<_, SeedError>>()?;
        Ok(User {
            login,
            password_hash,
            active: self.active,
            entitlements: self.entitlements.clone(),
            api_keys,
        })
    }
}

impl SeedPublish {
    pub fn from_record(r: &PublishRecord) -> Self {
        SeedPublish {
            uid: r.key.uid.to_string(),
            aid: r.key.aid.get(),
            itid: r.key.itid.get(),
            pitid: r.key.pitid.get(),
            state: r.state.as_str().to_owned(),
            created: r.created.map(|t| t.0),
            last_modified: r.last_modified.map(|t| t.0),
            percentage: r.percentage,
            bytes_loaded: r.bytes_loaded,
            bytes_total: r.bytes_total,
            message: r.message.clone(),
            error_message: r.error_message.clone(),
        }
    }

    pub fn to_record(&self) -> Result<PublishRecord, SeedError> {
        let name = format!("{}/{}/{}/{}", self.uid, self.aid, self.itid, self.pitid);
        let uid =
            Login::parse(&self.uid).map_err(|_| SeedError::Publish(name.clone(), "invalid uid"))?;
        let texts = [&self.message, &self.error_message];
        if texts
            .into_iter()
            .flatten()
            .any(|t| !crate::domain::is_display_text(t))
        {
            return Err(SeedError::Publish(
                name,
                "message and errorMessage: at most 1024 characters, no control characters \
                 but tab and newline, no Unicode noncharacters",
            ));
        }
        let state: PublishState = self
            .state
            .parse()
            .map_err(|_| SeedError::Publish(name, "unknown state"))?;
        let mut r = PublishRecord::new(
            PublishKey {
                uid,
                aid: self.aid.into(),
                itid: self.itid.into(),
                pitid: self.pitid.into(),
            },
            state,
        );
        r.created = self.created.map(Timestamp);
        r.last_modified = self.last_modified.map(Timestamp);
        r.percentage = self.percentage;
        r.bytes_loaded = self.bytes_loaded;
        r.bytes_total = self.bytes_total;
        r.message = self.message.clone();
        r.error_message = self.error_message.clone();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_seed_loads() {
        let seed = Seed::parse(BUNDLED).unwrap();
        let sealer = Sealer::new(&[1; 32]);
        let users = seed.users(&sealer).unwrap();
        assert!(users
            .iter()
            .any(|u| u.login.as_str() == "alice" && u.active));
        let pubs = seed.publishes().unwrap();
        for st in PublishState::ALL {
            assert!(
                pubs.iter().any(|p| p.state == st),
                "bundled seed lacks a {st} publish"
            );
        }
    }

    #[test]
    fn bad_seeds_are_refused() {
        for bad in [
            r#"{"users":[{"login":"a b"}]}"#,
            r#"{"users":[{"login":"a","password":"x","passwordHash":"y"}]}"#,
            r#"{"users":[{"login":"a","passwordHash":"y"}]}"#,
            r#"{"users":[{"login":"a","passwordHash":"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}]}"#,
            r#"{"users":[{"login":"a","passwordHash":"$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}]}"#,
            r#"{"publishes":[{"uid":"a","aid":1,"itid":2,"pitid":3,"state":"paused"}]}"#,
            r#"{"publishes":[{"uid":"a","aid":1,"itid":2,"pitid":3,"state":"queued","message":"\uffff"}]}"#,
            r#"{"publishes":[{"uid":"a","aid":1,"itid":2,"pitid":3,"state":"queued","errorMessage":"a\u0000"}]}"#,
            r#"{"publishes":[{"uid":"a","aid":1,"itid":2,"pitid":3,"state":"queued","typo":1}]}"#,
            r#"{"userz":[]}"#,
        ] {
            let seed = Seed::parse(bad);
            let loaded = seed.and_then(|s| {
                s.users(&Sealer::new(&[1; 32]))?;
                s.publishes().map(|_| ())
            });
            assert!(loaded.is_err(), "{bad}");
        }
    }
}
