//! The spec's per-app rate limit: a fixed window of `limit` requests a
//! minute per client id.
//!
//! The client id is counted as sent, before the gateway has checked it, so
//! anyone can make ids up: the table is bounded (`MAX_TRACKED` windows).
//! A full table never refuses a new app — it used to, until some window
//! ended, so a flood of made-up ids locked every new app out for up to a
//! minute. Room is made by forgetting, in this order:
//! 1. windows that ended (an ended window counts as much as none);
//! 2. the least recently used window with requests left (at worst its app
//!    gets a fresh allowance early, after someone sent `MAX_TRACKED` other
//!    ids);
//! 3. only when every tracked app is at its limit, the least recently used
//!    of those: freeing one limited app then takes `MAX_TRACKED × limit`
//!    requests within a minute.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_common::integrations::ApiCode;

use crate::error::ApiError;

pub const WINDOW: Duration = Duration::from_secs(60);
/// Apps tracked at most (each window costs its id, at most 256 bytes, and
/// a few words).
pub const MAX_TRACKED: usize = 4096;

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    /// When it was last charged, as a tick of `Table::tick`: its place in
    /// the recency order it is listed in.
    used: u64,
}

#[derive(Default)]
struct Table {
    windows: HashMap<Arc<str>, Window>,
    /// Windows with requests left, least recently used first.
    open: BTreeMap<u64, Arc<str>>,
    /// Windows at the limit, least recently used first.
    exhausted: BTreeMap<u64, Arc<str>>,
    tick: u64,
    /// No window ends before this (set by a sweep: every window starts no
    /// earlier than the earliest start it saw).
    no_end_before: Option<Instant>,
}

impl Table {
    fn order(&mut self, exhausted: bool) -> &mut BTreeMap<u64, Arc<str>> {
        if exhausted {
            &mut self.exhausted
        } else {
            &mut self.open
        }
    }

    /// Charges one request; false if `app` is at its limit.
    fn charge(&mut self, app: &str, limit: u32, now: Instant) -> bool {
        self.tick += 1;
        let tick = self.tick;
        let key = match self.windows.get_key_value(app) {
            Some((key, window)) => {
                let (key, window) = (key.clone(), *window);
                self.order(window.count >= limit).remove(&window.used);
                key
            }
            None => {
                if self.windows.len() >= MAX_TRACKED {
                    self.make_room(limit, now);
                }
                let key: Arc<str> = app.into();
                let window = Window {
                    start: now,
                    count: 0,
                    used: tick,
                };
                self.windows.insert(key.clone(), window);
                key
            }
        };
        let window = self.windows.get_mut(&key).expect("found or inserted");
        if now.duration_since(window.start) >= WINDOW {
            (window.start, window.count) = (now, 0);
        }
        let allowed = window.count < limit;
        if allowed {
            window.count += 1;
        }
        window.used = tick;
        let exhausted = window.count >= limit;
        self.order(exhausted).insert(tick, key);
        allowed
    }

    /// Forgets one window or more (see the module's comment for which).
    fn make_room(&mut self, limit: u32, now: Instant) {
        // Ended windows, swept only when one may have ended since the last
        // sweep, so a flood does not scan the table on every request.
        if self.no_end_before.is_none_or(|bound| now >= bound) {
            let Table {
                windows,
                open,
                exhausted,
                ..
            } = self;
            windows.retain(|_, window| {
                let live = now.duration_since(window.start) < WINDOW;
                if !live {
                    let order = if window.count >= limit {
                        &mut *exhausted
                    } else {
                        &mut *open
                    };
                    order.remove(&window.used);
                }
                live
            });
            let earliest = windows.values().map(|w| w.start).min().unwrap_or(now);
            self.no_end_before = Some(earliest + WINDOW);
            if self.windows.len() < MAX_TRACKED {
                return;
            }
        }
        let least_recent = self.open.pop_first().or_else(|| self.exhausted.pop_first());
        if let Some((_, key)) = least_recent {
            self.windows.remove(&key);
        }
    }
}

pub struct RateLimit {
    limit: u32,
    table: Mutex<Table>,
}

impl RateLimit {
    pub fn new(limit: u32) -> RateLimit {
        RateLimit {
            limit,
            table: Mutex::default(),
        }
    }

    /// Charges one request to `app` (the client id as sent; none shares one
    /// anonymous window).
    pub fn charge(&self, app: &str, now: Instant) -> Result<(), ApiError> {
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if table.charge(app, self.limit, now) {
            Ok(())
        } else {
            Err(ApiError::new(
                ApiCode::QuotaExceeded,
                format!("more than {} requests a minute from this app", self.limit),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    impl RateLimit {
        fn tracked(&self) -> usize {
            let table = self.table.lock().unwrap();
            assert_eq!(
                table.windows.len(),
                table.open.len() + table.exhausted.len(),
                "every window is listed once"
            );
            table.windows.len()
        }

        fn tracks(&self, app: &str) -> bool {
            self.table.lock().unwrap().windows.contains_key(app)
        }
    }

    /// Fills the table with apps `filler-0..`, one request each at `at`.
    fn fill(limit: &RateLimit, count: usize, at: Instant) {
        for i in 0..count {
            limit.charge(&format!("filler-{i}"), at).unwrap();
        }
    }

    #[test]
    fn the_window_refuses_the_sixty_first_and_reopens() {
        let limit = RateLimit::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            limit.charge("app", start).unwrap();
        }
        let refused = limit.charge("app", start).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        limit.charge("other", start).unwrap();
        limit.charge("app", start + WINDOW).unwrap();
    }

    /// The gap this module closes: with every window still running, a new
    /// app was refused "too many clients" until the first one ended.
    #[test]
    fn a_full_table_lets_a_new_app_in_at_once() {
        let limit = RateLimit::new(60);
        let start = Instant::now();
        fill(&limit, MAX_TRACKED, start);
        assert_eq!(limit.tracked(), MAX_TRACKED);
        let soon = start + Duration::from_secs(1);
        limit.charge("new-app", soon).expect("a new app gets in");
        assert!(limit.tracks("new-app"));
        assert_eq!(limit.tracked(), MAX_TRACKED);
        // And it is counted from then on like any other.
        for _ in 1..60 {
            limit.charge("new-app", soon).unwrap();
        }
        assert!(limit.charge("new-app", soon).is_err());
    }

    #[test]
    fn made_up_client_ids_neither_grow_the_table_nor_free_a_limited_app() {
        let limit = RateLimit::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            limit.charge("app", start).unwrap();
        }
        // A flood of made-up client ids, each sent once: all are counted
        // (none locked out), the table stays bounded.
        for i in 0..3 * MAX_TRACKED {
            limit.charge(&format!("random-{i}"), start).unwrap();
        }
        assert!(limit.tracked() <= MAX_TRACKED);
        // The limited app stays limited: the flood did not reset its window.
        let still = limit.charge("app", start).unwrap_err();
        assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
        limit.charge("new-app", start).unwrap();
        assert!(limit.tracked() <= MAX_TRACKED);
    }

    #[test]
    fn ended_windows_are_forgotten_before_running_ones() {
        let limit = RateLimit::new(60);
        let start = Instant::now();
        // "old" is the most recently used, but its window ends first.
        limit.charge("old", start).unwrap();
        fill(&limit, MAX_TRACKED - 1, start + Duration::from_secs(30));
        limit
            .charge("old", start + Duration::from_secs(59))
            .unwrap();
        limit
            .charge("new-app", start + Duration::from_secs(61))
            .unwrap();
        assert!(!limit.tracks("old"), "the ended window goes");
        assert!(limit.tracks("filler-0"), "running windows stay");
        assert_eq!(limit.tracked(), MAX_TRACKED);
    }

    #[test]
    fn the_least_recently_used_running_window_goes_next() {
        let limit = RateLimit::new(60);
        let start = Instant::now();
        fill(&limit, MAX_TRACKED, start);
        limit.charge("filler-0", start).unwrap();
        limit.charge("new-app", start).unwrap();
        assert!(limit.tracks("filler-0"), "used again, so kept");
        assert!(!limit.tracks("filler-1"), "the least recently used goes");
    }

    #[test]
    fn limited_apps_are_forgotten_last_and_a_new_app_still_gets_in() {
        let limit = RateLimit::new(2);
        let start = Instant::now();
        for _ in 0..2 {
            fill(&limit, MAX_TRACKED - 1, start);
        }
        // One app with a request left, used last of all.
        limit.charge("spare", start).unwrap();
        limit.charge("new-app", start).unwrap();
        assert!(!limit.tracks("spare"), "the one with requests left goes");
        assert!(limit.tracks("filler-0"), "limited apps stay limited");
        // Now every tracked app but new-app is at its limit; exhaust it too.
        limit.charge("new-app", start).unwrap();
        limit.charge("newer-app", start).unwrap();
        assert!(!limit.tracks("filler-0"), "then the least recently used");
        assert!(limit.charge("filler-1", start).is_err());
        assert_eq!(limit.tracked(), MAX_TRACKED);
    }
}
