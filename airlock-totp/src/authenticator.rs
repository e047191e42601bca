//! TOTP verification (RFC 6238: SHA-1, 6 digits, ±1 step) with replay
//! protection and a growing lockout, all persisted so a restart forgets
//! neither.
//!
//! Decisions:
//! - A reused code (right code, already-used time step) counts as a failure
//!   like a wrong one: someone replaying an observed code is attacking, and an
//!   honest approver only hits it by retyping within one period.
//! - The attempt that reaches the failure limit reports its own result
//!   (`InvalidCode`/`CodeReused`) and sets the lock; later attempts get
//!   `Locked` until it passes.
//! - Step numbers are absolute (`unix time / period`), so `last_used_step`
//!   keeps its meaning across restarts.
//! - Every state change is written to disk (atomically) before the call
//!   returns; if that write fails the call fails, and an accepted step stays
//!   consumed in memory (fail closed).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use airlock_common::dbus::TotpStatus;
use airlock_common::timefmt::rfc3339;
use constant_time_eq::constant_time_eq;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::files;

/// The active secret: raw bytes.
pub const SECRET_FILE: &str = "totp-secret";
/// A secret from `begin_enrolment`, active only once a code for it is shown.
pub const PENDING_FILE: &str = "totp-secret.pending";
/// Replay and lockout state.
pub const STATE_FILE: &str = "totp-state.json";
/// Failures within [`FAILURE_WINDOW_SECS`] that lock verification.
pub const MAX_FAILURES: u32 = 5;
/// How far back failures count towards a lockout.
pub const FAILURE_WINDOW_SECS: i64 = 300;
/// The first lockout's length; each further one doubles it.
pub const BASE_LOCK_SECS: i64 = 60;
/// The longest lockout, so a forgetful approver is never locked out for days.
pub const MAX_LOCK_SECS: i64 = 3600;
/// Failures within a day that lock verification however they are paced:
/// four every five minutes would otherwise never lock, and over weeks
/// that is enough guesses to hit a code.
pub const MAX_DAILY_FAILURES: usize = 20;
const DAY_SECS: i64 = 86_400;

/// 160 bits, the HMAC-SHA-1 block-friendly size RFC 4226 recommends.
const SECRET_LEN: usize = 20;
/// RFC 4226 requires at least 128 bits; more than this is not something we wrote.
const SECRET_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=64;
const DIGITS: usize = airlock_common::limits::TOTP_DIGITS;
const SKEW: u8 = 1;
const SECRET_MODE: u32 = 0o600;

/// How codes are generated and labelled in authenticator apps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpConfig {
    pub period_secs: u32,
    /// Shown as the issuer in authenticator apps; must not contain `:`.
    pub issuer: String,
    /// Shown as the account (e.g. the host name); must not contain `:`.
    pub account: String,
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig {
            period_secs: 30,
            issuer: "Airlock".into(),
            account: "admin".into(),
        }
    }
}

/// Why a TOTP operation failed. Messages never contain a secret or a code.
#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("no TOTP secret is enrolled; run `airlockctl totp setup`")]
    NotEnrolled,
    #[error("no TOTP enrolment is pending; run `airlockctl totp setup` first")]
    NoPendingEnrolment,
    #[error(
        "a TOTP secret is already enrolled; re-enrolling needs a valid current code (or root with --force)"
    )]
    AlreadyEnrolled,
    #[error(
        "invalid TOTP code ({failures} recent failures; verification locks after {MAX_FAILURES})"
    )]
    InvalidCode { failures: u32 },
    #[error("this TOTP code was already used; wait for the next one")]
    CodeReused,
    #[error("a TOTP code is {DIGITS} digits")]
    MalformedCode,
    #[error("too many failed TOTP codes; verification is locked until {}", rfc3339(*.until))]
    Locked { until: i64 },
    #[error("TOTP state: {0}")]
    Io(#[from] io::Error),
    #[error("TOTP state is corrupt: {0}")]
    Corrupt(String),
}

/// Raw secret bytes, wiped on drop and never printed.
struct Secret(Zeroizing<Vec<u8>>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What survives a restart: `totp-state.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The highest time step ever accepted; no step at or below it is
    /// accepted again.
    last_used_step: Option<u64>,
    /// Unix times of recent failures.
    failures: Vec<i64>,
    /// Verification is locked while `now < locked_until`; 0 when never set.
    locked_until: i64,
    /// Lockouts since the last success; the next lock lasts
    /// `BASE_LOCK_SECS * 2^lockouts`.
    lockouts: u32,
    /// Unix times of failures within the last day (kept across locks).
    #[serde(default)]
    daily_failures: Vec<i64>,
    /// The time step `last_used_step` counts in (absent in older files).
    #[serde(default)]
    period_secs: Option<u32>,
}

impl State {
    fn is_locked(&self, now: i64) -> bool {
        now < self.locked_until
    }

    /// Whether a lock was set and has passed, so its failures no longer count.
    fn lock_passed(&self, now: i64) -> bool {
        self.locked_until != 0 && !self.is_locked(now)
    }

    fn recent_failures(&self, now: i64) -> u32 {
        if self.lock_passed(now) {
            return 0;
        }
        let count = self
            .failures
            .iter()
            .filter(|&&t| t > now - FAILURE_WINDOW_SECS)
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Re-expresses the replay mark in steps of `period` if the configured
    /// period changed: every new step that overlaps a used one is used, so
    /// a longer period cannot lock everyone out nor a shorter one re-open
    /// codes already spent.
    fn convert_period(&mut self, period: u32) {
        if let (Some(old), Some(used)) = (self.period_secs, self.last_used_step) {
            if old != period {
                let end = used.saturating_add(1).saturating_mul(u64::from(old));
                self.last_used_step = end.div_ceil(u64::from(period)).checked_sub(1);
            }
        }
        self.period_secs = Some(period);
    }

    /// Starts afresh once a lock has passed and forgets failures that fell out
    /// of the window.
    fn expire(&mut self, now: i64) {
        if self.lock_passed(now) {
            self.failures.clear();
            self.locked_until = 0;
        }
        self.failures.retain(|&t| t > now - FAILURE_WINDOW_SECS);
        self.daily_failures.retain(|&t| t > now - DAY_SECS);
    }
}

fn lock_secs(lockouts: u32) -> i64 {
    // 2^6 minutes already exceeds the cap; clamping the exponent avoids overflow.
    (BASE_LOCK_SECS << lockouts.min(6)).min(MAX_LOCK_SECS)
}

/// Which secret a code is checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Active,
    Pending,
}

enum Outcome {
    Accepted(u64),
    Reused,
    Invalid,
}

/// The TOTP verifier. Holds the secrets; only `airlock-totp` ever has one.
pub struct Authenticator {
    dir: PathBuf,
    config: TotpConfig,
    active: Option<Secret>,
    pending: Option<Secret>,
    state: State,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("enrolled", &self.active.is_some())
            .field("enrolment_pending", &self.pending.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the secrets and state from `dir`. A malformed file is an error
    /// rather than a reset, so that corrupting the state cannot clear a
    /// lockout or re-open replay.
    pub fn open(dir: &Path, config: TotpConfig) -> Result<Self, TotpError> {
        if config.period_secs == 0 {
            return Err(invalid_config("period_secs must be positive"));
        }
        // Catch a `:` in issuer or account now rather than at enrolment.
        totp_for(&config, &[0; SECRET_LEN]).map_err(|e| invalid_config(&e))?;

        let active = load_secret(&dir.join(SECRET_FILE))?;
        let mut pending = load_secret(&dir.join(PENDING_FILE))?;
        // Left over by a crash between activating it and removing the file:
        // confirming it again would skip the replay check.
        if let (Some(a), Some(p)) = (&active, &pending) {
            if a.0 == p.0 {
                files::remove_synced(&dir.join(PENDING_FILE))?;
                pending = None;
            }
        }
        let mut state: State = match files::read_optional(&dir.join(STATE_FILE))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TotpError::Corrupt(format!("{STATE_FILE}: {e}")))?,
            None => State::default(),
        };
        state.convert_period(config.period_secs);
        Ok(Authenticator {
            dir: dir.to_path_buf(),
            config,
            active,
            pending,
            state,
        })
    }

    pub fn status(&self, now: i64) -> TotpStatus {
        TotpStatus {
            enrolled: self.active.is_some(),
            enrolment_pending: self.pending.is_some(),
            locked_until: if self.state.is_locked(now) {
                self.state.locked_until
            } else {
                0
            },
            recent_failures: self.state.recent_failures(now),
            lockouts: self.state.lockouts,
            period_secs: self.config.period_secs,
        }
    }

    /// Creates a new pending secret and returns its `otpauth://` URI.
    ///
    /// With a secret already active, the caller must prove they hold it with
    /// `current_code` (which goes through [`Self::verify`], so it is consumed
    /// and counts towards lockout), unless `force` is set; the gateway passes
    /// `force` only for root. The active secret stays in use until
    /// [`Self::confirm_enrolment`].
    pub fn begin_enrolment(
        &mut self,
        force: bool,
        current_code: Option<&str>,
        now: i64,
    ) -> Result<Zeroizing<String>, TotpError> {
        if self.active.is_some() && !force {
            let code = current_code.ok_or(TotpError::AlreadyEnrolled)?;
            self.verify(code, now)?;
        }
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| io::Error::other("the kernel's random source failed"))?;
        let secret = Secret(bytes);
        let uri = self.uri(&secret)?;
        files::write_atomic(&self.dir.join(PENDING_FILE), &secret.0, SECRET_MODE)?;
        self.pending = Some(secret);
        Ok(uri)
    }

    /// Activates the pending secret once `code` shows the authenticator app
    /// has it. Success resets replay (to the step just used), failures and
    /// lockouts; a wrong code counts as a failure.
    pub fn confirm_enrolment(&mut self, code: &str, now: i64) -> Result<(), TotpError> {
        self.attempt(Target::Pending, code, now)?;
        // The state (replay mark for the new secret) is already on disk, so
        // the new secret never becomes usable without it.
        let pending = self.pending.as_ref().ok_or(TotpError::NoPendingEnrolment)?;
        files::write_atomic(&self.dir.join(SECRET_FILE), &pending.0, SECRET_MODE)?;
        self.active = self.pending.take();
        files::remove_synced(&self.dir.join(PENDING_FILE))?;
        Ok(())
    }

    /// Verifies a code against the active secret and returns the time step it
    /// was accepted for; that step and all before it are used up.
    pub fn verify(&mut self, code: &str, now: i64) -> Result<u64, TotpError> {
        self.attempt(Target::Active, code, now)
    }

    /// The one path every code goes through: lock check, constant-time
    /// comparison, replay check, failure accounting, persistence.
    fn attempt(&mut self, target: Target, code: &str, now: i64) -> Result<u64, TotpError> {
        // Not a code at all: refused without touching the state.
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::MalformedCode);
        }
        let secret = match target {
            Target::Active => self.active.as_ref().ok_or(TotpError::NotEnrolled)?,
            Target::Pending => self.pending.as_ref().ok_or(TotpError::NoPendingEnrolment)?,
        };
        if self.state.is_locked(now) {
            return Err(TotpError::Locked {
                until: self.state.locked_until,
            });
        }
        // A pending secret has never had a code accepted.
        let last_used = match target {
            Target::Active => self.state.last_used_step,
            Target::Pending => None,
        };
        let outcome = check_code(&self.config, secret, code, now, last_used)?;

        self.state.expire(now);
        match outcome {
            Outcome::Accepted(step) => {
                // Never lower: a confirmation (no replay check against the
                // new secret) must not re-open steps already spent.
                let last_used_step = self
                    .state
                    .last_used_step
                    .map_or(step, |used| used.max(step));
                // A success clears the lock and its back-off, but not the
                // day's failures: a guesser between real approvals still
                // meets the daily cap.
                self.state = State {
                    last_used_step: Some(last_used_step),
                    period_secs: Some(self.config.period_secs),
                    daily_failures: std::mem::take(&mut self.state.daily_failures),
                    ..State::default()
                };
                self.save()?;
                Ok(step)
            }
            Outcome::Reused => {
                self.record_failure(now)?;
                Err(TotpError::CodeReused)
            }
            Outcome::Invalid => {
                let failures = self.record_failure(now)?;
                Err(TotpError::InvalidCode { failures })
            }
        }
    }

    /// Counts a failure, locks once there are enough, saves; returns the
    /// number of recent failures.
    fn record_failure(&mut self, now: i64) -> Result<u32, TotpError> {
        self.state.failures.push(now);
        self.state.daily_failures.push(now);
        let failures = self.state.recent_failures(now);
        if failures >= MAX_FAILURES || self.state.daily_failures.len() >= MAX_DAILY_FAILURES {
            self.state.locked_until = now.saturating_add(lock_secs(self.state.lockouts));
            self.state.lockouts = self.state.lockouts.saturating_add(1);
        }
        self.save()?;
        Ok(failures)
    }

    fn save(&self) -> Result<(), TotpError> {
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| TotpError::Corrupt(format!("cannot serialise state: {e}")))?;
        files::write_atomic(&self.dir.join(STATE_FILE), &json, SECRET_MODE)?;
        Ok(())
    }

    /// The `otpauth://` URI for `secret`, always with an explicit `period`
    /// (totp-rs leaves out the default 30, and stating it costs nothing).
    fn uri(&self, secret: &Secret) -> Result<Zeroizing<String>, TotpError> {
        let totp = totp_for(&self.config, &secret.0).map_err(TotpError::Corrupt)?;
        let url = Zeroizing::new(totp.get_url());
        // Pre-size so that appending never reallocates and leaves an unwiped
        // copy of the secret behind.
        let mut uri = Zeroizing::new(String::with_capacity(url.len() + 32));
        uri.push_str(&url);
        if !url.contains("period=") {
            uri.push_str("&period=");
            uri.push_str(&self.config.period_secs.to_string());
        }
        Ok(uri)
    }
}

/// Checks `code` (already known to be `DIGITS` digits: `attempt` refuses
/// anything else) against the steps around `now` (±1). All three candidates
/// are always compared, in constant time, so timing does not tell which
/// matched; the highest unused matching step wins.
fn check_code(
    config: &TotpConfig,
    secret: &Secret,
    code: &str,
    now: i64,
    last_used: Option<u64>,
) -> Result<Outcome, TotpError> {
    // A clock before 1970 matches nothing.
    let Ok(now) = u64::try_from(now) else {
        return Ok(Outcome::Invalid);
    };
    let totp = totp_for(config, &secret.0).map_err(TotpError::Corrupt)?;
    let period = u64::from(config.period_secs);
    let step = now / period;
    let mut fresh: Option<u64> = None;
    let mut matched = false;
    for candidate in [step.checked_sub(1), Some(step), step.checked_add(1)]
        .into_iter()
        .flatten()
    {
        let expected = Zeroizing::new(totp.generate(candidate.saturating_mul(period)));
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            matched = true;
            if last_used.is_none_or(|used| candidate > used) {
                fresh = Some(fresh.map_or(candidate, |f| f.max(candidate)));
            }
        }
    }
    Ok(match (fresh, matched) {
        (Some(step), _) => Outcome::Accepted(step),
        (None, true) => Outcome::Reused,
        (None, false) => Outcome::Invalid,
    })
}

/// A TOTP generator for `secret`. totp-rs copies the bytes and wipes its copy
/// on drop (feature `zeroize`); the error text names no secret.
fn totp_for(config: &TotpConfig, secret: &[u8]) -> Result<TOTP, String> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW,
        u64::from(config.period_secs),
        secret.to_vec(),
        Some(config.issuer.clone()),
        config.account.clone(),
    )
    .map_err(|e| format!("cannot use the TOTP secret: {e}"))
}

fn load_secret(path: &Path) -> Result<Option<Secret>, TotpError> {
    let Some(bytes) = files::read_optional(path)? else {
        return Ok(None);
    };
    if !SECRET_LEN_RANGE.contains(&bytes.len()) {
        return Err(TotpError::Corrupt(format!(
            "{} holds {} bytes; expected {SECRET_LEN}",
            path.display(),
            bytes.len()
        )));
    }
    Ok(Some(Secret(bytes)))
}

fn invalid_config(message: &str) -> TotpError {
    TotpError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid TOTP configuration: {message}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Aligned to a 30 s step; tests work a few seconds into it.
    const T0: i64 = 1_700_000_010;
    const NOW: i64 = T0 + 5;

    fn open(dir: &Path) -> Authenticator {
        Authenticator::open(dir, TotpConfig::default()).unwrap()
    }

    fn code(totp: &TOTP, at: i64) -> String {
        totp.generate(u64::try_from(at).unwrap())
    }

    fn step(at: i64) -> u64 {
        u64::try_from(at).unwrap() / 30
    }

    /// A well-formed code that is not valid for any step around `at`.
    fn wrong_code(totp: &TOTP, at: i64) -> String {
        let valid: Vec<String> = [-30, 0, 30].iter().map(|d| code(totp, at + d)).collect();
        (0..)
            .map(|n| format!("{n:06}"))
            .find(|c| !valid.contains(c))
            .unwrap()
    }

    fn totp_from_file(dir: &Path, name: &str) -> TOTP {
        let secret = fs::read(dir.join(name)).unwrap();
        TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, None, String::new()).unwrap()
    }

    /// A freshly enrolled authenticator (confirmed at `T0`) and its generator.
    fn enrolled(dir: &Path) -> (Authenticator, TOTP) {
        let mut auth = open(dir);
        let uri = auth.begin_enrolment(false, None, T0).unwrap();
        let totp = TOTP::from_url(uri.as_str()).unwrap();
        auth.confirm_enrolment(&code(&totp, T0), T0).unwrap();
        (auth, totp)
    }

    /// Fails with wrong codes at `at` until verification locks.
    fn lock(auth: &mut Authenticator, totp: &TOTP, at: i64) {
        let wrong = wrong_code(totp, at);
        let before = auth.status(at).recent_failures;
        for n in before + 1..=MAX_FAILURES {
            assert_eq!(auth.status(at).locked_until, 0, "locked early");
            match auth.verify(&wrong, at) {
                Err(TotpError::InvalidCode { failures }) => assert_eq!(failures, n),
                other => panic!("expected InvalidCode, got {other:?}"),
            }
        }
        assert!(auth.status(at).locked_until > at, "not locked");
    }

    #[test]
    fn enrolment_returns_a_uri_and_activates_only_on_confirmation() {
        let dir = tempfile::tempdir().unwrap();
        let mut auth = open(dir.path());
        assert!(matches!(
            auth.verify("123456", NOW),
            Err(TotpError::NotEnrolled)
        ));
        assert!(matches!(
            auth.confirm_enrolment("123456", NOW),
            Err(TotpError::NoPendingEnrolment)
        ));

        let uri = auth.begin_enrolment(false, None, NOW).unwrap();
        assert!(uri.starts_with("otpauth://totp/Airlock:admin?"), "{}", *uri);
        assert!(uri.contains("secret="));
        assert!(uri.contains("issuer=Airlock"));
        assert!(uri.contains("period=30"));
        let totp = TOTP::from_url(uri.as_str()).unwrap();
        assert_eq!(
            totp.secret,
            fs::read(dir.path().join(PENDING_FILE)).unwrap()
        );
        assert_eq!(totp.secret.len(), SECRET_LEN);

        let status = auth.status(NOW);
        assert!(!status.enrolled && status.enrolment_pending);
        assert!(!dir.path().join(SECRET_FILE).exists());
        assert!(matches!(
            auth.verify(&code(&totp, NOW), NOW),
            Err(TotpError::NotEnrolled)
        ));

        assert!(matches!(
            auth.confirm_enrolment(&wrong_code(&totp, NOW), NOW),
            Err(TotpError::InvalidCode { failures: 1 })
        ));
        assert!(!auth.status(NOW).enrolled);

        auth.confirm_enrolment(&code(&totp, NOW), NOW).unwrap();
        let status = auth.status(NOW);
        assert!(status.enrolled && !status.enrolment_pending);
        assert_eq!(status.recent_failures, 0, "success resets failures");
        assert!(!dir.path().join(PENDING_FILE).exists());
        assert_eq!(fs::read(dir.path().join(SECRET_FILE)).unwrap(), totp.secret);
        // The confirmation code's step is used up.
        assert!(matches!(
            auth.verify(&code(&totp, NOW), NOW),
            Err(TotpError::CodeReused)
        ));
    }

    #[test]
    fn accepts_one_step_of_skew_either_way_and_no_more() {
        let later = NOW + 300;
        for offset in [-30, 0, 30] {
            let dir = tempfile::tempdir().unwrap();
            let (mut auth, totp) = enrolled(dir.path());
            assert_eq!(
                auth.verify(&code(&totp, later + offset), later).unwrap(),
                step(later + offset),
                "offset {offset}"
            );
        }
        for offset in [-60, 60, 90] {
            let dir = tempfile::tempdir().unwrap();
            let (mut auth, totp) = enrolled(dir.path());
            let c = code(&totp, later + offset);
            // Skip the (one in a million) case of a code shared with a valid step.
            if [-30, 0, 30].iter().any(|d| code(&totp, later + d) == c) {
                continue;
            }
            assert!(
                matches!(
                    auth.verify(&c, later),
                    Err(TotpError::InvalidCode { failures: 1 })
                ),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn re_enrolment_never_lowers_the_replay_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, old) = enrolled(dir.path());
        let at = NOW + 90;
        // The current code spends step(at); the new secret is confirmed with
        // its code for the step before (within the skew).
        let uri = auth
            .begin_enrolment(false, Some(&code(&old, at)), at)
            .unwrap();
        let new = TOTP::from_url(uri.as_str()).unwrap();
        auth.confirm_enrolment(&code(&new, at - 30), at).unwrap();
        assert_eq!(auth.state.last_used_step, Some(step(at)));
        assert!(matches!(
            auth.verify(&code(&new, at), at),
            Err(TotpError::CodeReused)
        ));
    }

    #[test]
    fn a_pending_secret_left_equal_to_the_active_one_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = enrolled(dir.path());
        drop(auth);
        // A crash after activating the secret, before removing the file.
        fs::copy(dir.path().join(SECRET_FILE), dir.path().join(PENDING_FILE)).unwrap();
        let auth = open(dir.path());
        assert!(!auth.status(NOW).enrolment_pending);
        assert!(!dir.path().join(PENDING_FILE).exists());
    }

    #[test]
    fn malformed_codes_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, totp) = enrolled(dir.path());
        let valid = code(&totp, NOW + 60);
        let state = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
        for bad in [
            "",
            "12345",
            "1234567",
            "abcdef",
            &format!(" {}", &valid[1..]),
            &"9".repeat(10_000),
        ] {
            assert!(
                matches!(auth.verify(bad, NOW + 60), Err(TotpError::MalformedCode)),
                "{bad:?}"
            );
        }
        assert_eq!(std::fs::read(dir.path().join(STATE_FILE)).unwrap(), state);
        assert_eq!(auth.status(NOW + 60).recent_failures, 0);
        auth.verify(&valid, NOW + 60).unwrap();
    }

    #[test]
    fn a_step_is_never_accepted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, totp) = enrolled(dir.path());
        let now = NOW + 300;
        let current = code(&totp, now);
        assert_eq!(auth.verify(&current, now).unwrap(), step(now));
        assert!(matches!(
            auth.verify(&current, now),
            Err(TotpError::CodeReused)
        ));
        assert!(matches!(
            auth.verify(&current, now + 10),
            Err(TotpError::CodeReused)
        ));
        assert_eq!(auth.status(now).recent_failures, 2, "reuse is a failure");

        // A later step, then an earlier (still in-window) one.
        let next = code(&totp, now + 60);
        assert_eq!(auth.verify(&next, now + 60).unwrap(), step(now + 60));
        let previous = code(&totp, now + 30);
        if previous != next {
            assert!(matches!(
                auth.verify(&previous, now + 60),
                Err(TotpError::CodeReused)
            ));
        }
    }

    #[test]
    fn five_failures_lock_even_the_right_code_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, totp) = enrolled(dir.path());
        let now = NOW + 300;
        lock(&mut auth, &totp, now);
        let status = auth.status(now);
        assert_eq!(status.locked_until, now + 60);
        assert_eq!(status.lockouts, 1);
        assert_eq!(status.recent_failures, 5);

        for at in [now, now + 59] {
            match auth.verify(&code(&totp, at), at) {
                Err(TotpError::Locked { until }) => assert_eq!(until, now + 60),
                other => panic!("expected Locked, got {other:?}"),
            }
        }
        // Locked attempts are not even recorded as failures.
        assert_eq!(auth.status(now + 59).recent_failures, 5);

        // Once it passes, failures start afresh and the right code works.
        let after = now + 60;
        let status = auth.status(after);
        assert_eq!((status.locked_until, status.recent_failures), (0, 0));
        assert_eq!(status.lockouts, 1);
        assert_eq!(
            auth.verify(&code(&totp, after), after).unwrap(),
            step(after)
        );
        assert_eq!(auth.status(after).lockouts, 0, "success resets lockouts");
    }

    #[test]
    fn changing_the_period_keeps_spent_codes_spent_and_fresh_ones_usable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, _) = enrolled(dir.path());
        let at = NOW + 300;
        let thirty = totp_from_file(dir.path(), SECRET_FILE);
        auth.verify(&code(&thirty, at), at).unwrap();
        drop(auth);
        let config = |period_secs| TotpConfig {
            period_secs,
            ..TotpConfig::default()
        };
        // 60 s steps: the step holding the spent 30 s one is spent.
        let mut auth = Authenticator::open(dir.path(), config(60)).unwrap();
        let sixty = TOTP::new(
            Algorithm::SHA1,
            6,
            1,
            60,
            fs::read(dir.path().join(SECRET_FILE)).unwrap(),
            None,
            String::new(),
        )
        .unwrap();
        let spent = (u64::try_from(at).unwrap() / 60) * 60;
        let spent = i64::try_from(spent).unwrap();
        assert!(matches!(
            auth.verify(&code(&sixty, spent), spent + 10),
            Err(TotpError::CodeReused)
        ));
        assert!(auth.verify(&code(&sixty, spent + 60), spent + 60).is_ok());
        drop(auth);
        // Back to 30 s: nothing up to the spent 60 s step opens again.
        let mut auth = Authenticator::open(dir.path(), config(30)).unwrap();
        assert!(matches!(
            auth.verify(&code(&thirty, spent + 90), spent + 90),
            Err(TotpError::CodeReused)
        ));
        assert!(auth
            .verify(&code(&thirty, spent + 120), spent + 120)
            .is_ok());
    }

    #[test]
    fn slow_guessing_locks_too() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, totp) = enrolled(dir.path());
        // One failure every 100 s never makes 5 in 5 minutes, but 20 in a
        // day lock all the same.
        let mut at = NOW + 300;
        for n in 1..=MAX_DAILY_FAILURES {
            assert_eq!(auth.status(at).locked_until, 0, "locked after {n} failures");
            let result = auth.verify(&wrong_code(&totp, at), at);
            assert!(
                matches!(result, Err(TotpError::InvalidCode { .. })),
                "{result:?}"
            );
            at += 100;
        }
        let locked_at = at - 100;
        assert_eq!(auth.status(locked_at).locked_until, locked_at + 60);
        // Successes in between do not reset the day's count.
        let dir2 = tempfile::tempdir().unwrap();
        let (mut other, totp2) = enrolled(dir2.path());
        let mut t = NOW + 300;
        for _ in 1..MAX_DAILY_FAILURES {
            let _ = other.verify(&wrong_code(&totp2, t), t);
            t += 100;
            if other.status(t).recent_failures >= 2 {
                other.verify(&code(&totp2, t), t).unwrap();
                t += 100;
            }
        }
        assert_eq!(other.status(t).locked_until, 0);
        let _ = other.verify(&wrong_code(&totp2, t), t);
        assert_eq!(
            other.status(t).locked_until,
            t + 60,
            "the 20th failure of the day locks"
        );
        assert!(matches!(
            auth.verify(&code(&totp, locked_at + 30), locked_at + 30),
            Err(TotpError::Locked { .. })
        ));
        // Past the lock, a further failure within the day locks again, longer.
        let later = locked_at + 90;
        let _ = auth.verify(&wrong_code(&totp, later), later);
        assert_eq!(auth.status(later).locked_until, later + 120);
    }

    #[test]
    fn lockouts_grow_and_reset_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, totp) = enrolled(dir.path());
        let mut at = NOW + 300;
        for expected in [60, 120, 240, 480] {
            lock(&mut auth, &totp, at);
            let until = auth.status(at).locked_until;
            assert_eq!(until - at, expected);
            at = until;
        }
        // That made 20 failures within a day: now every failure locks.
        for expected in [960, 1920, 3600, 3600] {
            let _ = auth.verify(&wrong_code(&totp, at), at);
            let until = auth.status(at).locked_until;
            assert_eq!(until - at, expected);
            at = until;
        }
        assert_eq!(auth.verify(&code(&totp, at), at).unwrap(), step(at));
        // The success reset the back-off; a day later the failures are gone too.
        let next_day = at + DAY_SECS;
        lock(&mut auth, &totp, next_day);
        assert_eq!(auth.status(next_day).locked_until, next_day + 60);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, totp) = enrolled(dir.path());
        let now = NOW + 300;
        let wrong = wrong_code(&totp, now);
        for _ in 0..4 {
            auth.verify(&wrong, now).unwrap_err();
        }
        let later = now + FAILURE_WINDOW_SECS;
        let wrong = wrong_code(&totp, later);
        assert!(matches!(
            auth.verify(&wrong, later),
            Err(TotpError::InvalidCode { failures: 1 })
        ));
        assert_eq!(auth.status(later).locked_until, 0);
    }

    #[test]
    fn replay_marks_and_locks_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, totp) = enrolled(dir.path());
        let now = NOW + 300;
        let current = code(&totp, now);
        auth.verify(&current, now).unwrap();
        drop(auth);

        let mut auth = open(dir.path());
        assert!(auth.status(now).enrolled);
        assert!(matches!(
            auth.verify(&current, now),
            Err(TotpError::CodeReused)
        ));
        lock(&mut auth, &totp, now + 1);
        drop(auth);

        let mut auth = open(dir.path());
        assert_eq!(auth.status(now + 1).locked_until, now + 61);
        assert!(matches!(
            auth.verify(&code(&totp, now + 30), now + 30),
            Err(TotpError::Locked { .. })
        ));
        let state: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(state["last_used_step"], step(now));
        assert_eq!(state["locked_until"], now + 61);
        assert_eq!(state["lockouts"], 1);
        assert_eq!(state["failures"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn corrupt_files_are_refused_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        drop(enrolled(dir.path()));
        fs::write(dir.path().join(STATE_FILE), b"{\"last_used_step\": ").unwrap();
        assert!(matches!(
            Authenticator::open(dir.path(), TotpConfig::default()),
            Err(TotpError::Corrupt(_))
        ));
        fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
        fs::write(dir.path().join(SECRET_FILE), b"short").unwrap();
        assert!(matches!(
            Authenticator::open(dir.path(), TotpConfig::default()),
            Err(TotpError::Corrupt(_))
        ));
    }

    #[test]
    fn bad_configuration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for config in [
            TotpConfig {
                period_secs: 0,
                ..TotpConfig::default()
            },
            TotpConfig {
                issuer: "Air:lock".into(),
                ..TotpConfig::default()
            },
        ] {
            assert!(matches!(
                Authenticator::open(dir.path(), config),
                Err(TotpError::Io(_))
            ));
        }
    }

    #[test]
    fn re_enrolment_needs_the_current_code_or_force() {
        let dir = tempfile::tempdir().unwrap();
        let (mut auth, old) = enrolled(dir.path());
        let now = NOW + 300;
        assert!(matches!(
            auth.begin_enrolment(false, None, now),
            Err(TotpError::AlreadyEnrolled)
        ));
        assert!(matches!(
            auth.begin_enrolment(false, Some(&wrong_code(&old, now)), now),
            Err(TotpError::InvalidCode { failures: 1 })
        ));
        assert!(!auth.status(now).enrolment_pending);

        let uri = auth
            .begin_enrolment(false, Some(&code(&old, now)), now)
            .unwrap();
        let new = TOTP::from_url(uri.as_str()).unwrap();
        assert_ne!(new.secret, old.secret);
        // The current code was consumed, and the old secret still rules
        // until the new one is confirmed.
        assert!(matches!(
            auth.begin_enrolment(false, Some(&code(&old, now)), now),
            Err(TotpError::CodeReused)
        ));
        assert_eq!(
            auth.verify(&code(&old, now + 30), now + 30).unwrap(),
            step(now + 30)
        );

        // Root may force it without a code; this replaces the pending secret.
        let uri = auth.begin_enrolment(true, None, now + 30).unwrap();
        let forced = TOTP::from_url(uri.as_str()).unwrap();
        assert_ne!(forced.secret, new.secret);
        assert_eq!(
            totp_from_file(dir.path(), PENDING_FILE).secret,
            forced.secret
        );

        // Confirming switches secrets: the new one works, the old one no longer.
        auth.confirm_enrolment(&code(&forced, now + 30), now + 30)
            .unwrap();
        let at = now + 90;
        let old_code = code(&old, at);
        if old_code != code(&forced, at) {
            assert!(matches!(
                auth.verify(&old_code, at),
                Err(TotpError::InvalidCode { .. })
            ));
        }
        let at = now + 120;
        assert_eq!(auth.verify(&code(&forced, at), at).unwrap(), step(at));
    }

    #[test]
    fn secrets_and_state_are_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut auth = open(dir.path());
        auth.begin_enrolment(false, None, NOW).unwrap();
        assert_eq!(
            files::mode_of(&dir.path().join(PENDING_FILE)).unwrap(),
            0o600
        );
        let totp = totp_from_file(dir.path(), PENDING_FILE);
        auth.confirm_enrolment(&code(&totp, NOW), NOW).unwrap();
        for name in [SECRET_FILE, STATE_FILE] {
            assert_eq!(
                files::mode_of(&dir.path().join(name)).unwrap(),
                0o600,
                "{name}"
            );
        }
    }

    #[test]
    fn debug_output_does_not_reveal_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, totp) = enrolled(dir.path());
        let printed = format!("{auth:?}");
        assert!(printed.contains("enrolled: true"));
        assert!(!printed.contains(&totp.get_secret_base32()));
        assert!(!printed.contains(&format!("{:?}", totp.secret)));
    }
}
