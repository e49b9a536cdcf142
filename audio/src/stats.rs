//! Counters of one engine. The tick thread never logs: it counts here
//! (relaxed atomic adds, no allocation) and the async side reads snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters, updated by the tick thread.
        #[derive(Debug, Default)]
        pub struct EngineStats {
            $( $(#[$doc])* pub(crate) $name: AtomicU64, )*
        }

        /// A point-in-time copy of [`EngineStats`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl EngineStats {
            /// Copies every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                }
            }
        }
    };
}

counters! {
    /// Ticks run.
    ticks,
    /// Real speaker frames processed.
    input_frames,
    /// Synthetic silence frames fed by the silence clock.
    synthetic_frames,
    /// Frames the transport could not push (speaker ring full).
    input_overflows,
    /// Frames of the bot's own voice ignored (self-hearing guard).
    own_frames_ignored,
    /// VAD calls that failed (never expected).
    vad_errors,
    /// Events lost because the event ring was full.
    events_dropped,
    /// Utterance audio frames lost because the utterance ring was full.
    utterance_frames_dropped,
    /// Output frames handed to the sink.
    output_frames,
    /// Output frames in which some source was audible.
    audible_frames,
    /// Opus encode failures (never expected).
    encode_errors,
    /// Sources refused because all source slots were taken.
    source_overflows,
    /// Finished sources that could not be handed back for disposal (leaked).
    disposal_leaks,
    /// Speaker slots lost because a detach command could not be queued.
    leaked_speaker_slots,
}

impl EngineStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
