//! One gateway fetch of an exchange serves every long-poll waiting on it
//! with the same credentials.
//!
//! When a decision is announced, every poll on that exchange wakes at once;
//! asking the gateway once each (1,000 D-Bus calls, at most `MAX_CALLS` in
//! flight) made the last poll's answer late. Here concurrent looks at one
//! exchange by one caller share one call. The key is the request id *and*
//! a digest of the caller's credentials, which are all the gateway decides
//! entitlement from: a poll only ever joins a fetch made with exactly its
//! own credentials, so one caller's answer never reaches another.
//!
//! What a flight keeps is up to its user: the long-poll keeps its answer
//! rendered, so the polls sharing a fetch also share one serialised body.
//!
//! A poll woken by an announcement asks for a fetch begun after the
//! announcement arrived, not after it woke: 1,000 woken polls do not all
//! run within one fetch (up to 30 ms on a loaded 2-core host), and asking
//! "after I woke" made each late one start a fetch of its own, up to
//! `MAX_CALLS` D-Bus calls at a time, until the first answer came.
//!
//! A decided answer is final (a decision never changes), so it stays in
//! the table for `LINGER` after it came, for polls that wake after it: still
//! only for the same credentials' digest; and `LINGER` is short, so a PAT
//! or pairing revoked just after a decision was fetched is honoured
//! within it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_common::integrations::{sha256_hex, ApiCredentials};
use tokio::sync::OnceCell;

use crate::error::ApiError;

type Key = (String, String);

/// How long a final answer is kept for polls still waking up.
const LINGER: Duration = Duration::from_secs(1);

/// An answer that never changes once given (an exchange's decision).
pub trait Settled {
    fn is_final(&self) -> bool;
}

/// One fetch in flight, and its answer once there is one.
struct Flight<T> {
    started: Instant,
    answer: OnceCell<Result<T, ApiError>>,
    /// Its answer is final: any look may take it while it is in the table.
    settled: AtomicBool,
}

/// Fetches in flight, each answering with a `T` (cheap to clone: every
/// look sharing the fetch takes a clone).
pub struct Fetches<T> {
    flights: Arc<Mutex<HashMap<Key, Arc<Flight<T>>>>>,
}

impl<T> Default for Fetches<T> {
    fn default() -> Self {
        Fetches {
            flights: Arc::default(),
        }
    }
}

/// Takes `flight` out of the table if it is still the one under `key`.
fn retire<T>(flights: &Mutex<HashMap<Key, Arc<Flight<T>>>>, key: &Key, flight: &Arc<Flight<T>>) {
    let mut flights = flights.lock().expect("not poisoned");
    if flights
        .get(key)
        .is_some_and(|current| Arc::ptr_eq(current, flight))
    {
        flights.remove(key);
    }
}

/// The credentials as a key: digests only, no secret in the clear.
fn fingerprint(creds: &ApiCredentials) -> String {
    [
        &creds.client_id,
        &creds.client_secret,
        &creds.origin,
        &creds.pat,
        &creds.bearer,
    ]
    .map(|field| sha256_hex(field.as_bytes()))
    .join(":")
}

impl<T: Clone + Settled + Send + Sync + 'static> Fetches<T> {
    /// The exchange `request_id` as the gateway answers `creds`, from a
    /// fetch begun after `not_before` (so a poll that subscribed to
    /// decisions at `not_before` never takes an answer read before it,
    /// unless that answer is final): joins such a fetch in flight or
    /// answered, or starts one with `fetch`.
    pub async fn exchange<F, Fut>(
        &self,
        request_id: &str,
        creds: &ApiCredentials,
        not_before: Instant,
        fetch: F,
    ) -> Result<T, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let key = (request_id.to_owned(), fingerprint(creds));
        let flight = {
            let mut flights = self.flights.lock().expect("not poisoned");
            match flights.get(&key) {
                Some(flight)
                    if flight.started > not_before || flight.settled.load(Ordering::Acquire) =>
                {
                    flight.clone()
                }
                _ => {
                    let flight = Arc::new(Flight {
                        started: Instant::now(),
                        answer: OnceCell::new(),
                        settled: AtomicBool::new(false),
                    });
                    flights.insert(key.clone(), flight.clone());
                    flight
                }
            }
        };
        // If the poll running the fetch goes away, a joined one runs it.
        let answer = flight.answer.get_or_init(fetch).await.clone();
        if matches!(&answer, Ok(answer) if answer.is_final()) {
            // Kept for `LINGER`; the first look to see it starts the clock.
            if !flight.settled.swap(true, Ordering::AcqRel) {
                let flights = self.flights.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(LINGER).await;
                    retire(&flights, &key, &flight);
                });
            }
        } else {
            // Answered: later looks fetch afresh.
            retire(&self.flights, &key, &flight);
        }
        answer
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.flights.lock().unwrap().len()
    }

    /// How many looks hold a flight in the table (the table's own
    /// reference aside): each has joined it and will take its answer.
    #[cfg(test)]
    fn joined(&self) -> usize {
        let flights = self.flights.lock().unwrap();
        flights.values().map(|f| Arc::strong_count(f) - 1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_common::integrations::ExchangeView;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// Lets every held fetch finish (a permit stays once given).
    fn open(gate: &Semaphore) {
        gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    fn creds(pat: &str) -> ApiCredentials {
        let mut creds = ApiCredentials::default();
        creds.client_id = "cli".into();
        creds.pat = pat.into();
        creds
    }

    impl Settled for ExchangeView {
        fn is_final(&self) -> bool {
            self.decision.is_some()
        }
    }

    fn decided(request_id: &str) -> ExchangeView {
        let mut decided = view(request_id, "Decided");
        decided.decision = Some(Default::default()).into();
        decided
    }

    fn view(request_id: &str, state: &str) -> ExchangeView {
        ExchangeView {
            request_id: request_id.into(),
            state: state.into(),
            created_at: 0,
            expires_at: 0,
            artifact_hash: String::new(),
            decision: None.into(),
        }
    }

    /// Many concurrent looks by one caller: the gateway is asked once.
    /// Another caller's looks at the same exchange get their own fetch
    /// and their own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_looks_share_one_fetch_per_caller() {
        let fetches = Arc::new(Fetches::<ExchangeView>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let before = Instant::now();
        let mut polls = Vec::new();
        for i in 0..200 {
            let (fetches, calls, release) = (fetches.clone(), calls.clone(), release.clone());
            let who = if i % 2 == 0 {
                "airpat_alice"
            } else {
                "airpat_bob"
            };
            polls.push(tokio::spawn(async move {
                fetches
                    .exchange("req-1", &creds(who), before, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        drop(release.acquire().await);
                        Ok(view("req-1", who))
                    })
                    .await
                    .map(|v| (who, v.state))
            }));
        }
        // Wait until every poll has joined a flight and both callers'
        // fetches are in flight, then answer them. (A poll that arrives
        // after an answer fetches afresh, by design: so the test must not
        // answer before all 200 are waiting.)
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while calls.load(Ordering::SeqCst) < 2 || fetches.joined() < polls.len() {
            assert!(Instant::now() < deadline, "the polls never all joined");
            tokio::task::yield_now().await;
        }
        open(&release);
        for poll in polls {
            let (who, state) = poll.await.unwrap().unwrap();
            assert_eq!(state, who, "a poll got another caller's answer");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one fetch per caller");
        assert_eq!(fetches.in_flight(), 0, "answered flights are retired");
    }

    /// A poll that subscribed after a fetch began does not take its
    /// (possibly older) answer: it fetches again.
    #[tokio::test]
    async fn a_fetch_begun_before_the_poll_subscribed_is_not_joined() {
        let fetches = Arc::new(Fetches::<ExchangeView>::default());
        let release = Arc::new(Semaphore::new(0));
        let early = {
            let (fetches, release) = (fetches.clone(), release.clone());
            tokio::spawn(async move {
                fetches
                    .exchange("req-2", &creds("airpat_a"), Instant::now(), || async move {
                        drop(release.acquire().await);
                        Ok(view("req-2", "PendingApproval"))
                    })
                    .await
            })
        };
        while fetches.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let subscribed = Instant::now();
        let late = fetches
            .exchange("req-2", &creds("airpat_a"), subscribed, || async {
                Ok(view("req-2", "Decided"))
            })
            .await
            .unwrap();
        assert_eq!(late.state, "Decided");
        open(&release);
        assert_eq!(early.await.unwrap().unwrap().state, "PendingApproval");
    }

    /// A decision is final: a poll woken late by its announcement takes
    /// the answer already fetched (same credentials only) instead of asking
    /// the gateway again, for `LINGER`; then it is gone.
    #[tokio::test]
    async fn a_final_answer_serves_late_wakers_with_the_same_credentials() {
        let fetches = Fetches::<ExchangeView>::default();
        let first = fetches
            .exchange("req-3", &creds("airpat_a"), Instant::now(), || async {
                Ok(decided("req-3"))
            })
            .await
            .unwrap();
        assert!(first.is_final());
        let late = fetches
            .exchange("req-3", &creds("airpat_a"), Instant::now(), || async {
                panic!("a final answer in the table is not fetched again")
            })
            .await
            .unwrap();
        assert!(late.is_final());
        let other = fetches
            .exchange("req-3", &creds("airpat_b"), Instant::now(), || async {
                Ok(view("req-3", "not yours"))
            })
            .await
            .unwrap();
        assert_eq!(other.state, "not yours", "another caller fetches its own");
        let deadline = Instant::now() + LINGER * 10;
        while fetches.in_flight() > 0 {
            assert!(Instant::now() < deadline, "the final answer never left");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
