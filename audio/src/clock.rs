//! What paces the tick: a [`Clock`] decides when tick `n` may run.
//!
//! [`RealClock`] sleeps until each 20 ms deadline (offset by a per-session
//! phase so a worker's session threads do not all wake at once) and counts
//! overruns and jitter. [`VirtualClock`] runs ticks as fast as the CPU allows,
//! or one step at a time under the caller's control. The engine loop is the
//! same for both: `while clock.wait_for_tick(n) { core.tick() }`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::frame::FRAME_MS;

/// The tick period.
pub const TICK: Duration = Duration::from_millis(FRAME_MS as u64);

/// Paces the engine's tick loop. `wait_for_tick` is the only place the tick
/// thread may sleep or block.
pub trait Clock: Send {
    /// Waits until tick `tick` is due; returns false to end the loop.
    fn wait_for_tick(&mut self, tick: u64) -> bool;

    /// A handle that makes `wait_for_tick` return false promptly; the engine
    /// keeps it so that stopping never waits on a clock nobody steps.
    fn stopper(&self) -> ClockStopper {
        ClockStopper::none()
    }
}

/// Interrupts a [`Clock`]'s wait from another thread.
#[derive(Clone, Default)]
pub struct ClockStopper(Option<Arc<dyn Fn() + Send + Sync>>);

impl std::fmt::Debug for ClockStopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClockStopper").field(&self.0.is_some()).finish()
    }
}

impl ClockStopper {
    /// A stopper for clocks that never block for long.
    pub fn none() -> Self {
        Self(None)
    }

    /// A stopper calling `stop`.
    pub fn new(stop: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(stop)))
    }

    /// Makes the clock's wait return false.
    pub fn stop(&self) {
        if let Some(stop) = &self.0 {
            stop();
        }
    }
}

/// A phase offset for the `index`-th session of a worker: a low-discrepancy
/// sequence over the tick period (0, 10, 5, 15, 2.5, … ms), so any number of
/// sessions spread their wake-ups evenly.
pub fn stagger_phase(index: u64) -> Duration {
    // Van der Corput sequence in base 2.
    let mut n = index;
    let mut denominator = 1u64;
    let mut numerator = 0u64;
    while n > 0 {
        numerator = numerator * 2 + (n & 1);
        denominator *= 2;
        n >>= 1;
    }
    let period = TICK.as_nanos() as u64;
    Duration::from_nanos(period * numerator / denominator)
}

/// Timing counters of a [`RealClock`].
#[derive(Debug, Default)]
pub struct ClockStats {
    epoch: OnceLock<Instant>,
    /// Nanoseconds the deadlines were shifted by resynchronisations.
    shift_ns: AtomicU64,
    ticks: AtomicU64,
    late_ticks: AtomicU64,
    overruns: AtomicU64,
    resyncs: AtomicU64,
    jitter_max_us: AtomicU64,
    jitter_sum_us: AtomicU64,
    stop: AtomicBool,
}

/// A copy of [`ClockStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockSnapshot {
    /// Ticks paced.
    pub ticks: u64,
    /// Ticks that started more than 1 ms after their deadline.
    pub late_ticks: u64,
    /// Ticks that started a whole period or more after their deadline.
    pub overruns: u64,
    /// Times the clock gave up catching up and moved its deadlines.
    pub resyncs: u64,
    /// Largest wake-up delay after a deadline, in microseconds.
    pub jitter_max_us: u64,
    /// Mean wake-up delay after a deadline, in microseconds.
    pub jitter_mean_us: u64,
}

impl ClockStats {
    /// Counters whose tick 0 is due at `epoch`, for a clock that does not
    /// set its epoch itself: a stepped [`VirtualClock`] whose driver runs
    /// tick `n` at `epoch + n × 20 ms` of its own (virtual) time line, so
    /// that [`ClockStats::tick_deadline`] maps tick stamps onto that line.
    pub fn with_epoch(epoch: Instant) -> Self {
        let stats = Self::default();
        let _ = stats.epoch.set(epoch);
        stats
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> ClockSnapshot {
        let ticks = self.ticks.load(Ordering::Relaxed);
        ClockSnapshot {
            ticks,
            late_ticks: self.late_ticks.load(Ordering::Relaxed),
            overruns: self.overruns.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            jitter_max_us: self.jitter_max_us.load(Ordering::Relaxed),
            jitter_mean_us: self.jitter_sum_us.load(Ordering::Relaxed) / ticks.max(1),
        }
    }

    /// The wall-clock deadline of `tick` (None before the first tick), for
    /// turning the tick stamps of events into instants.
    pub fn tick_deadline(&self, tick: u64, phase: Duration) -> Option<Instant> {
        let epoch = *self.epoch.get()?;
        let shift = Duration::from_nanos(self.shift_ns.load(Ordering::Relaxed));
        Some(epoch + phase + shift + TICK * u32::try_from(tick).unwrap_or(u32::MAX))
    }

    /// Makes the clock end the engine loop at its next wait.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Ticks behind schedule after which the clock stops catching up.
const MAX_BEHIND_TICKS: u32 = 5;

/// Paces ticks on wall-clock deadlines: `epoch + phase + n × 20 ms`.
#[derive(Debug)]
pub struct RealClock {
    phase: Duration,
    epoch: Option<Instant>,
    shift: Duration,
    stats: Arc<ClockStats>,
}

impl RealClock {
    /// A clock whose deadlines are offset by `phase` (see [`stagger_phase`]).
    pub fn new(phase: Duration) -> Self {
        Self {
            phase: Duration::from_nanos((phase.as_nanos() % TICK.as_nanos()) as u64),
            epoch: None,
            shift: Duration::ZERO,
            stats: Arc::new(ClockStats::default()),
        }
    }

    /// The clock's counters (keep the handle before moving the clock into
    /// the engine).
    pub fn stats(&self) -> Arc<ClockStats> {
        Arc::clone(&self.stats)
    }

    /// The phase offset.
    pub fn phase(&self) -> Duration {
        self.phase
    }
}

impl Clock for RealClock {
    fn stopper(&self) -> ClockStopper {
        let stats = Arc::clone(&self.stats);
        ClockStopper::new(move || stats.request_stop())
    }

    fn wait_for_tick(&mut self, tick: u64) -> bool {
        if self.stats.stop.load(Ordering::Relaxed) {
            return false;
        }
        let epoch = *self.epoch.get_or_insert_with(|| {
            let now = Instant::now();
            let _ = self.stats.epoch.set(now);
            now
        });
        let n = u32::try_from(tick).unwrap_or(u32::MAX);
        let deadline = epoch + self.phase + self.shift + TICK * n;
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
        }
        let late = Instant::now().saturating_duration_since(deadline);
        let late_us = late.as_micros() as u64;
        let s = &self.stats;
        s.ticks.fetch_add(1, Ordering::Relaxed);
        s.jitter_sum_us.fetch_add(late_us, Ordering::Relaxed);
        s.jitter_max_us.fetch_max(late_us, Ordering::Relaxed);
        if late > Duration::from_millis(1) {
            s.late_ticks.fetch_add(1, Ordering::Relaxed);
        }
        if late >= TICK {
            s.overruns.fetch_add(1, Ordering::Relaxed);
        }
        if late >= TICK * MAX_BEHIND_TICKS {
            // Give up catching up: later deadlines move with us.
            self.shift += late;
            s.shift_ns.store(self.shift.as_nanos() as u64, Ordering::Relaxed);
            s.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

#[derive(Debug, Default)]
struct StepState {
    allowed: u64,
    completed: u64,
    stop: bool,
}

#[derive(Debug, Default)]
struct StepShared {
    state: Mutex<StepState>,
    changed: Condvar,
}

impl StepShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, StepState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs ticks without wall-clock time: as fast as possible, or stepped.
#[derive(Debug)]
pub struct VirtualClock {
    limit: Option<u64>,
    stepped: Option<Arc<StepShared>>,
}

impl VirtualClock {
    /// Runs ticks back to back until the engine is shut down.
    pub fn free_running() -> Self {
        Self {
            limit: None,
            stepped: None,
        }
    }

    /// Runs `ticks` ticks back to back, then ends the loop.
    pub fn with_limit(ticks: u64) -> Self {
        Self {
            limit: Some(ticks),
            stepped: None,
        }
    }

    /// A clock that runs only the ticks the returned stepper allows.
    pub fn stepped() -> (Self, ClockStepper) {
        let shared = Arc::new(StepShared::default());
        (
            Self {
                limit: None,
                stepped: Some(Arc::clone(&shared)),
            },
            ClockStepper { shared },
        )
    }
}

impl Clock for VirtualClock {
    fn stopper(&self) -> ClockStopper {
        match &self.stepped {
            Some(shared) => {
                let shared = Arc::clone(shared);
                ClockStopper::new(move || {
                    shared.lock().stop = true;
                    shared.changed.notify_all();
                })
            }
            None => ClockStopper::none(),
        }
    }

    fn wait_for_tick(&mut self, tick: u64) -> bool {
        if self.limit.is_some_and(|limit| tick >= limit) {
            return false;
        }
        let Some(shared) = self.stepped.as_ref() else {
            return true;
        };
        // The stepped clock's wait is this thread's only blocking point
        // (a condition variable, the virtual counterpart of the real sleep).
        let mut state = shared.lock();
        state.completed = tick;
        shared.changed.notify_all();
        while state.allowed <= tick && !state.stop {
            state = shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        !state.stop
    }
}

/// Steps a [`VirtualClock::stepped`] clock from another thread.
#[derive(Debug)]
pub struct ClockStepper {
    shared: Arc<StepShared>,
}

impl ClockStepper {
    /// Allows `n` more ticks to run (returns at once).
    pub fn step(&self, n: u64) {
        let mut state = self.shared.lock();
        state.allowed += n;
        self.shared.changed.notify_all();
    }

    /// Allows `n` more ticks and waits until they have run (or `timeout`
    /// passes); returns the number of completed ticks.
    pub fn run(&self, n: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        state.allowed += n;
        let target = state.allowed;
        self.shared.changed.notify_all();
        while state.completed < target && !state.stop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        state.completed
    }

    /// Ticks completed so far.
    pub fn completed(&self) -> u64 {
        self.shared.lock().completed
    }

    /// Ends the engine loop at its next wait.
    pub fn stop(&self) {
        let mut state = self.shared.lock();
        state.stop = true;
        self.shared.changed.notify_all();
    }
}

impl Drop for ClockStepper {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stagger_spreads_phases_over_the_period() {
        let phases: Vec<u64> = (0..8).map(|i| stagger_phase(i).as_micros() as u64).collect();
        assert_eq!(phases, vec![0, 10_000, 5_000, 15_000, 2_500, 12_500, 7_500, 17_500]);
    }

    #[test]
    fn real_clock_paces_ticks_at_twenty_milliseconds() {
        let mut clock = RealClock::new(Duration::from_millis(3));
        let stats = clock.stats();
        let start = Instant::now();
        for tick in 0..10 {
            assert!(clock.wait_for_tick(tick));
        }
        let elapsed = start.elapsed();
        // Tick 9 is due 3 + 180 ms after the first wait.
        assert!(elapsed >= Duration::from_millis(183), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
        let snap = stats.snapshot();
        assert_eq!(snap.ticks, 10);
        assert!(stats.tick_deadline(0, clock.phase()).is_some());
    }

    #[test]
    fn real_clock_counts_overruns_and_resyncs() {
        let mut clock = RealClock::new(Duration::ZERO);
        let stats = clock.stats();
        assert!(clock.wait_for_tick(0));
        std::thread::sleep(Duration::from_millis(130));
        assert!(clock.wait_for_tick(1)); // ~110 ms late: overrun + resync
        assert!(clock.wait_for_tick(2)); // back on a fresh schedule
        let snap = stats.snapshot();
        assert!(snap.overruns >= 1, "{snap:?}");
        assert_eq!(snap.resyncs, 1, "{snap:?}");
        stats.request_stop();
        assert!(!clock.wait_for_tick(3));
    }

    #[test]
    fn stats_with_an_epoch_map_ticks_onto_it() {
        let epoch = Instant::now();
        let stats = ClockStats::with_epoch(epoch);
        assert_eq!(
            stats.tick_deadline(3, Duration::from_millis(1)),
            Some(epoch + Duration::from_millis(61))
        );
        assert!(ClockStats::default().tick_deadline(0, Duration::ZERO).is_none());
    }

    #[test]
    fn stepped_clock_runs_only_what_is_allowed() {
        let (mut clock, stepper) = VirtualClock::stepped();
        let worker = std::thread::spawn(move || {
            let mut tick = 0;
            while clock.wait_for_tick(tick) {
                tick += 1;
            }
            tick
        });
        assert_eq!(stepper.run(5, Duration::from_secs(5)), 5);
        assert_eq!(stepper.run(3, Duration::from_secs(5)), 8);
        stepper.stop();
        assert_eq!(worker.join().unwrap(), 8);

        let mut limited = VirtualClock::with_limit(2);
        assert!(limited.wait_for_tick(0) && limited.wait_for_tick(1));
        assert!(!limited.wait_for_tick(2));
    }
}
