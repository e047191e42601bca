//! The credential store: one file per service under the state directory's
//! `credentials/`, each field's value sealed under its own data key and the
//! data key wrapped by airlock-totp (see `airlock_common::credential`). The
//! gateway alone cannot open any of it: a copy of this directory, or the
//! gateway without a live grant, reads nothing.
//!
//! Files are replaced atomically and synced, mode 0600 in a 0700 directory.
//! Nothing here ever holds a plaintext value.

pub mod cache;
pub mod service;
pub mod services;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use airlock_common::credential::bus::{CredentialInfo, SealedCredential};
use airlock_common::credential::{is_service_name, Slot};
use airlock_common::fsutil::{replace, Durability};
use serde::{Deserialize, Serialize};

/// Fields one service may hold.
pub const MAX_FIELDS: usize = 16;
/// Services the store may hold.
pub const MAX_SERVICES: usize = 256;
const VERSION: u32 = 1;

/// One sealed field, with who stored it when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub wrapped_key: String,
    pub sealed_value: String,
    pub stored_at: i64,
    pub stored_by: u32,
}

impl Entry {
    pub fn sealed(&self) -> SealedCredential {
        SealedCredential {
            wrapped_key: self.wrapped_key.clone(),
            sealed_value: self.sealed_value.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    version: u32,
    service: String,
    fields: BTreeMap<String, Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no credentials are stored for service {0:?}")]
    NoService(String),
    #[error("service {service:?} has no field {field:?}")]
    NoField { service: String, field: String },
    #[error("{0}")]
    Full(String),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path} is not a credential file of this gateway: {message}")]
    Corrupt { path: PathBuf, message: String },
}

pub struct CredentialStore {
    dir: PathBuf,
}

impl CredentialStore {
    /// The store under `state_dir`, creating its directory (0700).
    pub fn open(state_dir: &Path) -> anyhow::Result<CredentialStore> {
        let dir = state_dir.join("credentials");
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                anyhow::bail!("creating {}: {e}", dir.display())
            }
            _ => {}
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        Ok(CredentialStore { dir })
    }

    fn path(&self, service: &str) -> PathBuf {
        debug_assert!(is_service_name(service));
        self.dir.join(format!("{service}.json"))
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |error| StoreError::Io {
            path: path.to_owned(),
            error,
        }
    }

    fn read(&self, service: &str) -> Result<Option<ServiceFile>, StoreError> {
        let path = self.path(service);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(&path)(e)),
        };
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.clone(),
            message,
        };
        let file: ServiceFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.version != VERSION || file.service != service {
            return Err(corrupt(format!(
                "version {} for service {:?}",
                file.version, file.service
            )));
        }
        Ok(Some(file))
    }

    fn write(&self, file: &ServiceFile) -> Result<(), StoreError> {
        let path = self.path(&file.service);
        if file.fields.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Self::io(&path)(e)),
                _ => fs::File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(Self::io(&self.dir)),
            };
        }
        let bytes = serde_json::to_vec_pretty(file).expect("credential files serialise");
        replace(&path, &bytes, 0o600, Durability::Synced).map_err(Self::io(&path))
    }

    /// Stores `entry` at `slot`; returns what it replaced, to put back if
    /// the audit record cannot be written.
    pub fn put(&self, slot: Slot<'_>, entry: Entry) -> Result<Option<Entry>, StoreError> {
        let mut file = match self.read(slot.service)? {
            Some(file) => file,
            None => {
                if self.services()?.len() >= MAX_SERVICES {
                    return Err(StoreError::Full(format!(
                        "the store holds {MAX_SERVICES} services already"
                    )));
                }
                ServiceFile {
                    version: VERSION,
                    service: slot.service.to_owned(),
                    fields: BTreeMap::new(),
                }
            }
        };
        if !file.fields.contains_key(slot.field) && file.fields.len() >= MAX_FIELDS {
            return Err(StoreError::Full(format!(
                "service {:?} holds {MAX_FIELDS} fields already",
                slot.service
            )));
        }
        let previous = file.fields.insert(slot.field.to_owned(), entry);
        self.write(&file)?;
        Ok(previous)
    }

    /// Puts back what [`Self::put`] replaced (or removes what it added).
    pub fn restore(&self, slot: Slot<'_>, previous: Option<Entry>) -> Result<(), StoreError> {
        let Some(mut file) = self.read(slot.service)? else {
            return Ok(());
        };
        match previous {
            Some(entry) => file.fields.insert(slot.field.to_owned(), entry),
            None => file.fields.remove(slot.field),
        };
        self.write(&file)
    }

    pub fn get(&self, slot: Slot<'_>) -> Result<Entry, StoreError> {
        let file = self
            .read(slot.service)?
            .ok_or_else(|| StoreError::NoService(slot.service.to_owned()))?;
        file.fields
            .get(slot.field)
            .cloned()
            .ok_or_else(|| StoreError::NoField {
                service: slot.service.to_owned(),
                field: slot.field.to_owned(),
            })
    }

    /// Removes one field, or every field of `service`; returns the removed
    /// entries (to put back if the audit record cannot be written).
    pub fn remove(
        &self,
        service: &str,
        field: Option<&str>,
    ) -> Result<BTreeMap<String, Entry>, StoreError> {
        let mut file = self
            .read(service)?
            .ok_or_else(|| StoreError::NoService(service.to_owned()))?;
        let removed = match field {
            None => std::mem::take(&mut file.fields),
            Some(field) => {
                let entry = file
                    .fields
                    .remove(field)
                    .ok_or_else(|| StoreError::NoField {
                        service: service.to_owned(),
                        field: field.to_owned(),
                    })?;
                BTreeMap::from([(field.to_owned(), entry)])
            }
        };
        self.write(&file)?;
        Ok(removed)
    }

    /// Puts back what [`Self::remove`] removed.
    pub fn unremove(
        &self,
        service: &str,
        removed: BTreeMap<String, Entry>,
    ) -> Result<(), StoreError> {
        let mut file = self.read(service)?.unwrap_or_else(|| ServiceFile {
            version: VERSION,
            service: service.to_owned(),
            fields: BTreeMap::new(),
        });
        file.fields.extend(removed);
        self.write(&file)
    }

    /// Every service with its field names, by name. A file that does not
    /// parse is skipped (and logged), so one damaged file hides no other.
    pub fn list(&self) -> Result<Vec<CredentialInfo>, StoreError> {
        let mut out = Vec::new();
        for service in self.services()? {
            match self.read(&service) {
                Ok(Some(file)) => out.push(CredentialInfo {
                    service,
                    fields: file.fields.into_keys().collect(),
                }),
                Ok(None) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
        Ok(out)
    }

    fn services(&self) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(Self::io(&self.dir))? {
            let entry = entry.map_err(Self::io(&self.dir))?;
            let name = entry.file_name();
            let Some(service) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if is_service_name(service) {
                names.push(service.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry {
            wrapped_key: format!("key{n}"),
            sealed_value: format!("value{n}"),
            stored_at: 1,
            stored_by: 0,
        }
    }

    fn slot<'a>(service: &'a str, field: &'a str) -> Slot<'a> {
        Slot { service, field }
    }

    #[test]
    fn put_get_list_remove_and_undo() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.put(slot("github", "token"), entry(1)).unwrap(), None);
        store.put(slot("github", "user"), entry(2)).unwrap();
        store.put(slot("gmail", "password"), entry(3)).unwrap();
        assert_eq!(
            store.list().unwrap(),
            vec![
                CredentialInfo {
                    service: "github".into(),
                    fields: vec!["token".into(), "user".into()]
                },
                CredentialInfo {
                    service: "gmail".into(),
                    fields: vec!["password".into()]
                },
            ]
        );
        let previous = store.put(slot("github", "token"), entry(4)).unwrap();
        assert_eq!(previous, Some(entry(1)));
        store.restore(slot("github", "token"), previous).unwrap();
        assert_eq!(store.get(slot("github", "token")).unwrap(), entry(1));

        let removed = store.remove("github", None).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(!dir.path().join("credentials/github.json").exists());
        assert!(matches!(
            store.get(slot("github", "token")),
            Err(StoreError::NoService(_))
        ));
        store.unremove("github", removed).unwrap();
        assert_eq!(store.get(slot("github", "user")).unwrap(), entry(2));
        assert!(matches!(
            store.remove("github", Some("nope")),
            Err(StoreError::NoField { .. })
        ));

        let mode = |p: &str| {
            fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("credentials"), 0o700);
        assert_eq!(mode("credentials/github.json"), 0o600);
    }

    #[test]
    fn limits_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        for i in 0..MAX_FIELDS {
            store.put(slot("many", &format!("f{i}")), entry(0)).unwrap();
        }
        assert!(matches!(
            store.put(slot("many", "one-more"), entry(0)),
            Err(StoreError::Full(_))
        ));
        fs::write(dir.path().join("credentials/broken.json"), b"{").unwrap();
        assert!(matches!(
            store.get(slot("broken", "token")),
            Err(StoreError::Corrupt { .. })
        ));
        // The damaged file hides nothing else, and is not overwritten.
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.put(slot("broken", "token"), entry(1)).is_err());
        assert_eq!(
            fs::read(dir.path().join("credentials/broken.json")).unwrap(),
            b"{"
        );
    }
}
