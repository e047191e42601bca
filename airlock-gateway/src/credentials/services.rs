//! The service definitions in force: loaded at start and on SIGHUP; an
//! invalid directory is reported with every error and the previous set
//! stays in force (at start, none).

use std::path::PathBuf;
use std::sync::Mutex;

use airlock_common::services::{ServiceDef, ServiceSet};
use airlock_daemon::lock::MutexExt;

pub struct Services {
    dir: PathBuf,
    set: Mutex<ServiceSet>,
}

impl Services {
    pub fn load(dir: PathBuf) -> Services {
        let services = Services {
            dir,
            set: Mutex::new(ServiceSet::default()),
        };
        services.reload();
        services
    }

    /// Re-reads the directory; returns whether the new set is in force.
    pub fn reload(&self) -> bool {
        match ServiceSet::load_dir(&self.dir) {
            Ok(set) => {
                tracing::info!(
                    "{}: {} service(s) in force",
                    self.dir.display(),
                    set.services().len()
                );
                *self.set.locked() = set;
                true
            }
            Err(diagnostics) => {
                for d in &diagnostics {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    "{}: {} error(s); the previous services stay in force",
                    self.dir.display(),
                    diagnostics.len()
                );
                false
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<ServiceDef> {
        self.set.locked().get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "[[service]]\nname = \"a\"\nkind = \"http\"\nupstream = \"https://a.example\"\nfields = [\"token\"]\ninject = { style = \"bearer\", field = \"token\" }\n";

    #[test]
    fn a_bad_reload_keeps_the_previous_set() {
        let dir = tempfile::tempdir().unwrap();
        let services = Services::load(dir.path().join("missing"));
        assert!(services.get("a").is_none());
        let services = Services::load(dir.path().to_path_buf());
        std::fs::write(dir.path().join("a.toml"), OK).unwrap();
        assert!(services.reload());
        assert!(services.get("a").is_some());
        std::fs::write(dir.path().join("b.toml"), "[[service]]\nname = 1\n").unwrap();
        assert!(!services.reload());
        assert!(services.get("a").is_some());
    }
}
