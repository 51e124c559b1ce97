//! A circuit breaker: after `failures` failures in a row a dependency (the variant cache's
//! reads or writes, the store) is not asked for `cooldown`; then one request at a time probes
//! it, and the first success closes the breaker again. Input: each call's outcome; output:
//! whether to ask at all. It logs its own transitions (one warning on open, one line on
//! close) and keeps a 0/1 gauge, so every user reports them alike. Uses only the metrics'
//! gauge type.
//!
//! Hand-written: the breaker crates (failsafe and the like) wrap the call itself in their own
//! futures and policies; what the callers need is this small state and its time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// The breaker's state, shared by clones.
#[derive(Debug, Clone)]
pub struct Breaker {
    name: &'static str,
    state: Arc<Mutex<State>>,
    failures: u32,
    cooldown: Duration,
    /// 1 while open (or probing).
    gauge: Gauge,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Asking; `failed` failures in a row so far.
    Closed { failed: u32 },
    /// Not asking until `until`.
    Open { until: Instant },
    /// One probe is out; if it never reports, another may go at `until` (a cooldown on).
    Probing { until: Instant },
}

impl Breaker {
    /// `failures` = 0 turns the breaker off (always asking). `open`: the gauge that reads 1
    /// while it is open (or probing).
    pub fn new(name: &'static str, failures: u32, cooldown: Duration, open: Gauge) -> Breaker {
        Breaker {
            name,
            state: Arc::new(Mutex::new(State::Closed { failed: 0 })),
            failures,
            cooldown,
            gauge: open,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written (it is Copy).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether to ask the dependency now: closed, or the cooldown is over and this call is
    /// the one probe.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } | State::Probing { until } if now < until => false,
            State::Open { .. } | State::Probing { .. } => {
                *state = State::Probing {
                    until: now + self.cooldown,
                };
                true
            }
        }
    }

    /// Whether the breaker is open now (probing counts as open), for `/readyz`.
    pub fn is_open(&self) -> bool {
        !matches!(*self.state(), State::Closed { .. })
    }

    /// How long until the next probe may go (`Retry-After`); zero when closed.
    pub fn retry_after(&self) -> Duration {
        match *self.state() {
            State::Closed { .. } => Duration::ZERO,
            State::Open { until } | State::Probing { until } => {
                until.saturating_duration_since(Instant::now())
            }
        }
    }

    /// The dependency answered (a "not found" is an answer too).
    pub fn success(&self) {
        let mut state = self.state();
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!(
                dependency = self.name,
                "circuit breaker closed: answering again"
            );
            self.gauge.set(0);
        }
        *state = State::Closed { failed: 0 };
    }

    /// The dependency failed (an error or a time-out). `error` is logged when this opens it.
    pub fn failure(&self, error: &dyn std::fmt::Display) {
        if self.failures == 0 {
            return;
        }
        let mut state = self.state();
        match *state {
            State::Closed { failed } if failed + 1 < self.failures => {
                *state = State::Closed { failed: failed + 1 };
            }
            _ => self.open(&mut state, error),
        }
    }

    /// Opens at once (a failure that will not pass by itself, such as a full disk).
    pub fn trip(&self, error: &dyn std::fmt::Display) {
        if self.failures == 0 {
            return;
        }
        let mut state = self.state();
        self.open(&mut state, error);
    }

    /// Not asked for a cooldown from now. Opening a closed breaker warns once; a failed
    /// probe only starts another cooldown.
    fn open(&self, state: &mut State, error: &dyn std::fmt::Display) {
        if let State::Closed { failed } = *state {
            tracing::warn!(
                dependency = self.name,
                error = %error,
                failures = failed + 1,
                cooldown_s = self.cooldown.as_secs_f64(),
                "circuit breaker open: not asking for a while"
            );
            self.gauge.set(1);
        }
        *state = State::Open {
            until: Instant::now() + self.cooldown,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cooldown_ms: u64) -> Breaker {
        Breaker::new(
            "test",
            failures,
            Duration::from_millis(cooldown_ms),
            Gauge::default(),
        )
    }

    #[test]
    fn opens_after_failures_in_a_row_and_probes_once_after_the_cooldown() {
        let b = breaker(3, 50);
        b.failure(&"x");
        b.failure(&"x");
        b.success();
        b.failure(&"x");
        b.failure(&"x");
        assert!(b.allow(), "a success in between starts the count again");
        b.failure(&"x");
        assert!(b.is_open());
        assert!(!b.allow());
        assert!(b.retry_after() > Duration::ZERO);
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe at a time");
        b.failure(&"x");
        assert!(!b.allow(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow());
        b.success();
        assert!(!b.is_open());
        assert!(b.allow() && b.allow());
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn a_trip_opens_at_once_and_zero_turns_it_off() {
        let b = breaker(5, 10_000);
        b.trip(&"disk full");
        assert!(!b.allow());
        assert_eq!(b.gauge.get(), 1);
        let off = breaker(0, 10_000);
        for _ in 0..10 {
            off.failure(&"x");
        }
        off.trip(&"x");
        assert!(off.allow());
    }
}
