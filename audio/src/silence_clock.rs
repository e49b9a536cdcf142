//! The silence clock: decides, per speaker and tick, how many real frames to
//! process and how much synthetic silence to feed when packets stop.
//!
//! Discord sends nothing while a user is silent, so without this an
//! utterance would only end when the speaker talks again. Missing frames are
//! first tolerated for a jitter grace period (late frames then play in
//! order, so jitter never splits a turn); after it the missed time is
//! back-filled with silence and one silent frame follows per tick, up to a
//! cap, after which the idle speaker costs nothing.

use crate::frame::ms_to_frames_ceil;
use crate::settings::SilenceClockSettings;

/// What to feed a speaker's VAD this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedPlan {
    /// Real frames to take from the speaker's ring.
    pub real: u32,
    /// Synthetic silent frames to feed (after the real ones).
    pub silence: u32,
}

/// Per-speaker silence clock state.
#[derive(Debug, Clone)]
pub struct SilenceClock {
    grace: u32,
    cap: u32,
    max_catch_up: u32,
    missing: u32,
    fed: u32,
    active: bool,
}

impl SilenceClock {
    /// Creates an idle clock (it starts running with the first real frame).
    pub fn new(settings: &SilenceClockSettings) -> Self {
        Self {
            grace: ms_to_frames_ceil(settings.jitter_grace_ms),
            cap: ms_to_frames_ceil(settings.cap_ms).max(1),
            max_catch_up: settings.max_catch_up_frames.max(1),
            missing: 0,
            fed: 0,
            active: false,
        }
    }

    /// Back to idle (new speaker on this slot).
    pub fn reset(&mut self) {
        self.missing = 0;
        self.fed = 0;
        self.active = false;
    }

    /// True while synthetic silence may still be fed (a real frame arrived
    /// and the cap is not reached).
    pub fn is_running(&self) -> bool {
        self.active
    }

    /// Plans one tick given the number of whole frames waiting in the ring.
    pub fn plan(&mut self, available: usize) -> FeedPlan {
        if available > 0 {
            self.missing = 0;
            self.fed = 0;
            self.active = true;
            let real = u32::try_from(available).unwrap_or(u32::MAX).min(self.max_catch_up);
            return FeedPlan { real, silence: 0 };
        }
        if !self.active {
            return FeedPlan::default();
        }
        self.missing += 1;
        if self.missing <= self.grace {
            return FeedPlan::default();
        }
        let wanted = if self.missing == self.grace + 1 {
            self.grace + 1
        } else {
            1
        };
        let silence = wanted.min(self.cap - self.fed);
        self.fed += silence;
        if self.fed >= self.cap {
            self.active = false;
        }
        FeedPlan { real: 0, silence }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> SilenceClock {
        SilenceClock::new(&SilenceClockSettings {
            jitter_grace_ms: 60,
            cap_ms: 200,
            max_catch_up_frames: 4,
        })
    }

    #[test]
    fn idle_until_the_first_frame() {
        let mut c = clock();
        for _ in 0..10 {
            assert_eq!(c.plan(0), FeedPlan::default());
        }
    }

    #[test]
    fn jitter_within_grace_feeds_nothing_and_catches_up() {
        let mut c = clock();
        assert_eq!(c.plan(1), FeedPlan { real: 1, silence: 0 });
        assert_eq!(c.plan(0), FeedPlan::default());
        assert_eq!(c.plan(0), FeedPlan::default());
        assert_eq!(c.plan(0), FeedPlan::default());
        // Three late frames arrive together with the current one.
        assert_eq!(c.plan(4), FeedPlan { real: 4, silence: 0 });
        assert_eq!(c.plan(9), FeedPlan { real: 4, silence: 0 });
    }

    #[test]
    fn silence_is_back_filled_then_fed_per_tick_up_to_the_cap() {
        let mut c = clock();
        c.plan(1);
        let mut total = 0;
        let mut plans = Vec::new();
        for _ in 0..30 {
            let p = c.plan(0);
            total += p.silence;
            plans.push(p.silence);
        }
        assert_eq!(&plans[..6], &[0, 0, 0, 4, 1, 1]);
        assert_eq!(total, 10, "capped at 200 ms");
        assert!(!c.is_running());
        // A new frame restarts the clock.
        assert_eq!(c.plan(1).real, 1);
        assert!(c.is_running());
    }
}
