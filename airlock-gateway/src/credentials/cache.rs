//! HTTP services' injected credentials, kept per live grant so that each
//! proxied request does not cost a round trip to airlock-totp (which
//! unwraps the data key) and an AES-GCM open.
//!
//! Correctness does not rest on the cache: `Authorize` looks up the
//! caller's live grants on every request, before the cache is asked, and
//! asks it only for the grant it found, so a revoked or expired grant stops
//! serving at once. An entry also names the injection it was made for (a
//! services.d reload that changes it misses) and lasts at most until its
//! grant's expiry; storing or removing a service's credential forgets the
//! service's entries. What stays in memory for a grant no longer live
//! (revoked) is dropped by the next tick ([`InjectionCache::retain`]), and
//! every value is zeroized when dropped. The gateway can have these values
//! only while a grant lives anyway: airlock-totp unwraps for a live grant.

use std::collections::HashMap;
use std::sync::Mutex;

use airlock_common::services::Injection;
use airlock_daemon::lock::MutexExt;
use zeroize::Zeroizing;

/// What `Authorize` injects: header name and value, query name and value
/// (either pair empty).
#[derive(Clone)]
pub struct Injected {
    pub header_name: String,
    pub header_value: Zeroizing<String>,
    pub query_name: String,
    pub query_value: Zeroizing<String>,
}

struct Entry {
    expires_at: i64,
    inject: Injection,
    injected: Injected,
}

/// Entries at most (grants × services; far more than any host has live).
const MAX_ENTRIES: usize = 1024;

#[derive(Default)]
pub struct InjectionCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By (grant id, service).
    entries: HashMap<(String, String), Entry>,
    /// Bumped whenever a stored value changes: an injection made from
    /// values read before is not kept.
    generation: u64,
}

impl InjectionCache {
    /// The injection made for `grant_id` (live, as the caller checked) and
    /// `service` under `inject`, if still fresh at `now`.
    pub fn get(
        &self,
        grant_id: &str,
        service: &str,
        inject: &Injection,
        now: i64,
    ) -> Option<Injected> {
        let inner = self.inner.locked();
        let entry = inner
            .entries
            .get(&(grant_id.to_owned(), service.to_owned()))?;
        (entry.expires_at > now && entry.inject == *inject).then(|| entry.injected.clone())
    }

    /// What [`put`](Self::put) must be given: read before the values are.
    pub fn generation(&self) -> u64 {
        self.inner.locked().generation
    }

    /// Keeps `injected`, made from values read at `generation`, unless a
    /// value was stored or removed since.
    pub fn put(
        &self,
        generation: u64,
        key: (&str, &str),
        inject: &Injection,
        expires_at: i64,
        injected: Injected,
    ) {
        let (grant_id, service) = key;
        let mut inner = self.inner.locked();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(
            (grant_id.to_owned(), service.to_owned()),
            Entry {
                expires_at,
                inject: inject.clone(),
                injected,
            },
        );
    }

    /// A service's credential was stored or removed: its values changed.
    pub fn forget_service(&self, service: &str) {
        let mut inner = self.inner.locked();
        inner.generation += 1;
        inner.entries.retain(|(_, s), _| s != service);
    }

    /// Keeps only entries whose grant is still live at `now`.
    pub fn retain(&self, now: i64, live: impl Fn(&str) -> bool) {
        self.inner
            .locked()
            .entries
            .retain(|(grant, _), entry| entry.expires_at > now && live(grant));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.locked().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected(value: &str) -> Injected {
        Injected {
            header_name: "Authorization".into(),
            header_value: Zeroizing::new(format!("Bearer {value}")),
            query_name: String::new(),
            query_value: Zeroizing::new(String::new()),
        }
    }

    fn bearer(field: &str) -> Injection {
        Injection::Bearer {
            field: field.into(),
        }
    }

    #[test]
    fn an_entry_serves_its_grant_service_and_injection_until_expiry() {
        let cache = InjectionCache::default();
        cache.put(0, ("g1", "api"), &bearer("token"), 100, injected("t"));
        let hit = cache.get("g1", "api", &bearer("token"), 99).unwrap();
        assert_eq!(hit.header_value.as_str(), "Bearer t");
        assert!(cache.get("g1", "api", &bearer("token"), 100).is_none());
        assert!(cache.get("g2", "api", &bearer("token"), 0).is_none());
        assert!(cache.get("g1", "other", &bearer("token"), 0).is_none());
        // services.d now injects another field: a miss.
        assert!(cache.get("g1", "api", &bearer("key"), 0).is_none());
    }

    #[test]
    fn stored_values_and_dead_grants_are_forgotten() {
        let cache = InjectionCache::default();
        cache.put(0, ("g1", "api"), &bearer("token"), 100, injected("t"));
        cache.put(0, ("g1", "keyed"), &bearer("token"), 100, injected("k"));
        cache.put(0, ("g2", "api"), &bearer("token"), 100, injected("t"));
        let before = cache.generation();
        cache.forget_service("keyed");
        assert_eq!(cache.len(), 2);
        // Made from values read before the store: not kept.
        cache.put(
            before,
            ("g1", "keyed"),
            &bearer("token"),
            100,
            injected("old"),
        );
        assert!(cache.get("g1", "keyed", &bearer("token"), 0).is_none());
        cache.retain(0, |grant| grant == "g2");
        assert_eq!(cache.len(), 1);
        assert!(cache.get("g2", "api", &bearer("token"), 0).is_some());
        cache.retain(100, |_| true);
        assert_eq!(cache.len(), 0);
    }
}
