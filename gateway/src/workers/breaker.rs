//! A circuit breaker per worker: after a run of transport failures the
//! circuit opens and calls fail at once, without waiting for a deadline;
//! after a cool-down one probe call is let through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use glyphoxa_proto::ApiError;

/// When a circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive transport failures that open the circuit (at least 1).
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        }
    }
}

/// The state of a circuit, for health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe call is allowed to test the worker.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A circuit breaker (thread-safe).
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// Whether an error says the worker itself is unreachable or unresponsive
/// (counts against the circuit), as opposed to an answer it gave.
pub fn is_transport_failure(error: &ApiError) -> bool {
    matches!(error, ApiError::Unavailable(_) | ApiError::DeadlineExceeded(_))
}

impl CircuitBreaker {
    /// A closed circuit.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Asks to make a call: `Err(remaining)` while the circuit is open
    /// (and while a half-open probe is in flight, `Err(ZERO)`).
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen { probing: true };
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            State::HalfOpen { probing: true } => Err(Duration::ZERO),
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(())
            }
        }
    }

    /// Records a call's outcome.
    pub fn record<T>(&self, outcome: &Result<T, ApiError>) {
        match outcome {
            Err(error) if is_transport_failure(error) => self.record_failure(),
            _ => self.record_success(),
        }
    }

    /// Records a successful call (or an answer from the worker): closes the
    /// circuit.
    pub fn record_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// Records a transport failure: opens the circuit after enough of them
    /// (at once when half-open).
    pub fn record_failure(&self) {
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + self.settings.open_for,
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.settings.failure_threshold.max(1) => {
                State::Closed { failures: failures + 1 }
            }
            _ => open,
        };
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if Instant::now() >= until => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let breaker = CircuitBreaker::new(BreakerSettings {
            failure_threshold: 2,
            open_for: Duration::from_millis(30),
        });
        let down: Result<(), ApiError> = Err(ApiError::unavailable("down"));
        let answered: Result<(), ApiError> = Err(ApiError::not_found("x"));
        assert!(breaker.try_acquire().is_ok());
        breaker.record(&down);
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.record(&answered); // an answer resets the count
        breaker.record(&down);
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.record(&down);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(breaker.try_acquire().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.try_acquire().is_ok(), "one probe");
        assert_eq!(breaker.try_acquire(), Err(Duration::ZERO), "only one probe");
        breaker.record(&down);
        assert_eq!(breaker.state(), CircuitState::Open, "failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.try_acquire().is_ok());
        breaker.record(&Ok(()));
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
