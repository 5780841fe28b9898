//! The operator's port (`ports::AdminStore`) on a local server's seed file: read, change, write back
//! atomically. Passwords are stored hashed; API secrets stay in clear here
//! because the seed format is for local use (the server seals them at load).

use std::path::PathBuf;

use crate::domain::{Login, PublishKey, PublishRecord};
use crate::ports::{AdminError, AdminStore, Replacing, UserSummary};
use crate::seed::{Seed, SeedApiKey, SeedPublish, SeedUser};

pub struct SeedFileAdmin {
    path: PathBuf,
}

impl SeedFileAdmin {
    pub fn new(path: PathBuf) -> Self {
        SeedFileAdmin { path }
    }

    fn load(&self) -> Result<Seed, AdminError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Seed::parse(&text)
                .map_err(|e| AdminError::Invalid(format!("{}: {e}", self.path.display()))),
            // Starting a new seed file is fine.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Seed::default()),
            Err(e) => Err(AdminError::Invalid(format!("{}: {e}", self.path.display()))),
        }
    }

    fn save(&self, seed: &Seed) -> Result<(), AdminError> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, seed.to_json())
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| AdminError::Invalid(format!("{}: {e}", self.path.display())))
    }

    /// Loads, changes one user, saves.
    fn edit_user(
        &self,
        login: &Login,
        change: impl FnOnce(&mut SeedUser) -> Result<(), AdminError>,
    ) -> Result<(), AdminError> {
        let mut seed = self.load()?;
        let user = seed
            .users
            .iter_mut()
            .find(|u| u.login == login.as_str())
            .ok_or_else(|| AdminError::NoSuchUser(login.clone()))?;
        change(user)?;
        self.save(&seed)
    }
}

impl AdminStore for SeedFileAdmin {
    async fn create_user(
        &self,
        login: &Login,
        password_hash: Option<String>,
        entitlements: &[String],
        active: bool,
    ) -> Result<(), AdminError> {
        let mut seed = self.load()?;
        if seed.users.iter().any(|u| u.login == login.as_str()) {
            return Err(AdminError::UserExists(login.clone()));
        }
        seed.users.push(SeedUser {
            login: login.to_string(),
            password: None,
            password_hash,
            active,
            entitlements: entitlements.to_vec(),
            api_keys: Vec::new(),
        });
        self.save(&seed)
    }

    async fn set_password(&self, login: &Login, hash: String) -> Result<(), AdminError> {
        self.edit_user(login, |u| {
            u.password = None;
            u.password_hash = Some(hash);
            Ok(())
        })
    }

    async fn set_active(&self, login: &Login, active: bool) -> Result<(), AdminError> {
        self.edit_user(login, |u| {
            u.active = active;
            Ok(())
        })
    }

    async fn grant(&self, login: &Login, entitlement: &str) -> Result<(), AdminError> {
        self.edit_user(login, |u| {
            if !u.entitlements.iter().any(|e| e == entitlement) {
                u.entitlements.push(entitlement.to_owned());
            }
            Ok(())
        })
    }

    async fn revoke(&self, login: &Login, entitlement: &str) -> Result<(), AdminError> {
        self.edit_user(login, |u| {
            u.entitlements.retain(|e| e != entitlement);
            Ok(())
        })
    }

    async fn add_api_key(
        &self,
        login: &Login,
        public_key: &str,
        secret_key: &str,
    ) -> Result<(), AdminError> {
        self.edit_user(login, |u| {
            u.api_keys.push(SeedApiKey {
                public_key: public_key.to_owned(),
                secret_key: secret_key.to_owned(),
            });
            Ok(())
        })
    }

    async fn remove_api_key(&self, login: &Login, public_key: &str) -> Result<(), AdminError> {
        self.edit_user(login, |u| {
            let before = u.api_keys.len();
            u.api_keys.retain(|k| k.public_key != public_key);
            if u.api_keys.len() == before {
                return Err(AdminError::NoSuchKey(login.clone(), public_key.to_owned()));
            }
            Ok(())
        })
    }

    async fn user(&self, login: &Login) -> Result<Option<UserSummary>, AdminError> {
        let seed = self.load()?;
        Ok(seed
            .users
            .iter()
            .find(|u| u.login == login.as_str())
            .map(|u| {
                let mut api_keys: Vec<String> =
                    u.api_keys.iter().map(|k| k.public_key.clone()).collect();
                api_keys.sort();
                UserSummary {
                    login: login.clone(),
                    active: u.active,
                    has_password: u.password.is_some() || u.password_hash.is_some(),
                    entitlements: u.entitlements.clone(),
                    api_keys,
                }
            }))
    }

    async fn put_publish(
        &self,
        record: &PublishRecord,
        replacing: Replacing<'_>,
    ) -> Result<(), AdminError> {
        let mut seed = self.load()?;
        let new = SeedPublish::from_record(record);
        let same = |p: &SeedPublish| {
            (p.uid.as_str(), p.aid, p.itid, p.pitid)
                == (new.uid.as_str(), new.aid, new.itid, new.pitid)
        };
        let stored = seed.publishes.iter_mut().find(|p| same(p));
        let as_read = match (&stored, replacing) {
            (None, Replacing::Nothing) => true,
            (Some(p), Replacing::Read(old)) => p.to_record().ok().as_ref() == Some(old),
            _ => false,
        };
        if !as_read {
            return Err(AdminError::Changed(record.key.clone()));
        }
        match stored {
            Some(existing) => *existing = new,
            None => seed.publishes.push(new),
        }
        self.save(&seed)
    }

    async fn publish(&self, key: &PublishKey) -> Result<Option<PublishRecord>, AdminError> {
        let seed = self.load()?;
        let found = seed.publishes.iter().find(|p| {
            (p.uid.as_str(), p.aid, p.itid, p.pitid)
                == (
                    key.uid.as_str(),
                    key.aid.get(),
                    key.itid.get(),
                    key.pitid.get(),
                )
        });
        found
            .map(|p| {
                p.to_record()
                    .map_err(|e| AdminError::Invalid(e.to_string()))
            })
            .transpose()
    }
}
