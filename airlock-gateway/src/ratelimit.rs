//! A per-user budget for calls that write the audit log.
//!
//! Every such call costs an fsync'd record, so an unprivileged user looping
//! on one (filing requests, starting sessions) could fill the disk and keep
//! the gateway busy. Each uid gets a token bucket; a call over budget is
//! refused before it changes or records anything. Admins and root are not
//! limited: approving is their job, and they could stop the service anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use airlock_common::dbus::AirlockError;
use airlock_daemon::lock::MutexExt;

/// Calls a user may make at once.
const BURST: f64 = 60.0;
/// Calls per second the budget refills with.
const PER_SEC: f64 = 5.0;

#[derive(Default)]
pub struct AuditBudget {
    buckets: Mutex<HashMap<u32, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AuditBudget {
    /// Takes one call from `uid`'s budget, or refuses it. (One bucket per
    /// uid that ever called: bounded by the machine's users.)
    pub fn charge(&self, uid: u32, now: Instant) -> Result<(), AirlockError> {
        let mut buckets = self.buckets.locked();
        let bucket = buckets.entry(uid).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * PER_SEC).min(BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(AirlockError::LimitExceeded(format!(
                "uid {uid} made more than {BURST} audited calls in a burst (at most {PER_SEC} \
                 a second); nothing was done, try again shortly"
            )));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled() {
        let budget = AuditBudget::default();
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            budget.charge(1000, t0).unwrap();
        }
        assert!(matches!(
            budget.charge(1000, t0),
            Err(AirlockError::LimitExceeded(_))
        ));
        // Another user has its own budget.
        budget.charge(1001, t0).unwrap();
        // One call's worth after 1/PER_SEC seconds.
        let later = t0 + Duration::from_secs_f64(1.0 / PER_SEC);
        budget.charge(1000, later).unwrap();
        assert!(budget.charge(1000, later).is_err());
    }
}
