//! Playback sources: what the async side writes (a [`SourceWriter`]) and what
//! the tick plays (a `PlaybackSource`, boxed and moved to the tick through
//! the command queue, moved back for disposal when done so that nothing is
//! freed on the realtime thread).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::error::AudioError;
use crate::frame::{NpcId, QueueId, SourceId, OUTPUT_FRAME_LEN, OUTPUT_SAMPLE_RATE};
use crate::resample::StreamResampler;

/// What a source is; decides its priority (narrator > NPC speech > ambience).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceClass {
    /// The narrator / GM helper voice, voice recaps, PlayAudio at narrator priority.
    Narrator,
    /// Speech of one NPC.
    Npc(NpcId),
    /// Background audio (music, effects), ducked under speech.
    Ambience,
}

impl SourceClass {
    /// Higher plays over lower.
    pub fn priority(self) -> u8 {
        match self {
            SourceClass::Narrator => 2,
            SourceClass::Npc(_) => 1,
            SourceClass::Ambience => 0,
        }
    }
}

/// Describes a playback source when it is opened.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Kind and owner of the audio.
    pub class: SourceClass,
    /// Sources of one queue play one after another, in the order opened.
    pub queue: Option<QueueId>,
    /// Sample rate of the PCM that will be written.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (interleaved stereo).
    pub channels: u16,
    /// Linear gain applied to this source (1.0 = unchanged).
    pub gain: f32,
    /// Wait a randomized gap (mixer settings) after the previous line of the
    /// same queue ended. Set it on the first sentence of a new line, not on
    /// the following sentences of the same line.
    pub gap_before: bool,
}

impl SourceSpec {
    /// NPC speech, queued per NPC, with a gap before it.
    pub fn npc(npc: NpcId, sample_rate: u32, channels: u16) -> Self {
        Self {
            class: SourceClass::Npc(npc),
            queue: Some(QueueId(npc.0)),
            sample_rate,
            channels,
            gain: 1.0,
            gap_before: true,
        }
    }

    /// Narrator audio, not queued.
    pub fn narrator(sample_rate: u32, channels: u16) -> Self {
        Self {
            class: SourceClass::Narrator,
            queue: None,
            sample_rate,
            channels,
            gain: 1.0,
            gap_before: false,
        }
    }

    /// Ambience, not queued.
    pub fn ambience(sample_rate: u32, channels: u16) -> Self {
        Self {
            class: SourceClass::Ambience,
            queue: None,
            sample_rate,
            channels,
            gain: 1.0,
            gap_before: false,
        }
    }

    fn validate(&self) -> Result<(), AudioError> {
        if !self.gain.is_finite() || !(0.0..=8.0).contains(&self.gain) {
            return Err(AudioError::setting(
                "source.gain",
                format!("must be between 0 and 8, got {}", self.gain),
            ));
        }
        Ok(())
    }
}

/// State shared by a writer and its playing source: advisory flags only (no
/// data is published through them; completion reports travel as events).
#[derive(Debug, Default)]
pub(crate) struct SourceFlags {
    /// Set by the tick when the source was cut: stop producing audio.
    pub(crate) cut: AtomicBool,
    /// Set by the tick when the source is done (played out or cut).
    pub(crate) done: AtomicBool,
}

/// The async side's end of a playback source: write interleaved PCM at the
/// source's rate; back-pressure by the ring's capacity.
///
/// Tell the engine the stream is complete with
/// [`SessionControl::finish_source`](crate::SessionControl::finish_source)
/// (dropping the writer does it too, best effort).
pub struct SourceWriter {
    pub(crate) id: SourceId,
    pub(crate) channels: usize,
    pub(crate) prod: HeapProd<i16>,
    pub(crate) flags: Arc<SourceFlags>,
    pub(crate) on_drop: Option<crate::control::FinishOnDrop>,
}

impl std::fmt::Debug for SourceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceWriter")
            .field("id", &self.id)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl SourceWriter {
    /// The source's id (echoed in its events).
    pub fn id(&self) -> SourceId {
        self.id
    }

    /// Writes as many whole sample frames as fit; returns the samples taken
    /// (0 once the source was cut or finished playing).
    pub fn write(&mut self, samples: &[i16]) -> usize {
        if self.is_cut() || self.flags.done.load(Ordering::Relaxed) {
            return 0;
        }
        let room = self.prod.vacant_len() / self.channels * self.channels;
        let whole = samples.len() / self.channels * self.channels;
        self.prod.push_slice(&samples[..whole.min(room)])
    }

    /// Free room in the ring, in samples.
    pub fn vacant(&self) -> usize {
        self.prod.vacant_len() / self.channels * self.channels
    }

    /// Samples written but not yet taken by the mixer.
    pub fn pending(&self) -> usize {
        self.prod.occupied_len()
    }

    /// True once the mixer cut this source: stop producing its audio.
    pub fn is_cut(&self) -> bool {
        self.flags.cut.load(Ordering::Relaxed)
    }

    /// True once the mixer is done with this source (played out or cut); its
    /// `SourceFinished` event carries the played duration.
    pub fn is_done(&self) -> bool {
        self.flags.done.load(Ordering::Relaxed)
    }
}

impl Drop for SourceWriter {
    fn drop(&mut self) {
        if let Some(finish) = self.on_drop.take() {
            finish.finish(self.id);
        }
    }
}

/// A new source, the producer of its ring and its flags.
pub(crate) type NewSource = (Box<PlaybackSource>, HeapProd<i16>, Arc<SourceFlags>);

/// A source as the tick sees it.
pub(crate) struct PlaybackSource {
    pub(crate) id: SourceId,
    pub(crate) spec: SourceSpec,
    cons: HeapCons<i16>,
    pub(crate) flags: Arc<SourceFlags>,
    resampler: StreamResampler,
    chunk: Vec<i16>,
    /// The writer announced the end of the stream.
    pub(crate) end_of_stream: bool,
    /// All input consumed (the last chunk was zero-padded).
    input_done: bool,
    consumed_frames: u64,
    emitted_frames: u64,
    pub(crate) started_tick: Option<u64>,
    pub(crate) underruns: u32,
    pub(crate) gain: f32,
}

impl std::fmt::Debug for PlaybackSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackSource")
            .field("id", &self.id)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// What a source produced for one output frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Render {
    /// A full frame of audio (or the final partial one) was written.
    Audio(usize),
    /// Not enough audio buffered (the writer is behind).
    Starved,
    /// Everything was played.
    Finished,
}

impl PlaybackSource {
    /// Builds a source and its writer (allocates: async side only).
    pub(crate) fn create(id: SourceId, spec: SourceSpec, ring_ms: u32) -> Result<NewSource, AudioError> {
        spec.validate()?;
        let resampler = StreamResampler::new(spec.sample_rate, spec.channels)?;
        let channels = usize::from(spec.channels);
        let ring_frames = (u64::from(spec.sample_rate) * u64::from(ring_ms) / 1000) as usize;
        let capacity = ring_frames.max(resampler.chunk_frames() * 2) * channels;
        let (prod, cons) = HeapRb::<i16>::new(capacity).split();
        let flags = Arc::new(SourceFlags::default());
        let chunk = vec![0; resampler.chunk_frames() * channels];
        let source = Box::new(Self {
            id,
            spec,
            cons,
            flags: Arc::clone(&flags),
            resampler,
            chunk,
            end_of_stream: false,
            input_done: false,
            consumed_frames: 0,
            emitted_frames: 0,
            started_tick: None,
            underruns: 0,
            gain: 0.0,
        });
        Ok((source, prod, flags))
    }

    /// Output frames (48 kHz) the whole input amounts to; known once all
    /// input is consumed.
    fn total_output_frames(&self) -> u64 {
        (self.consumed_frames * u64::from(OUTPUT_SAMPLE_RATE)).div_ceil(u64::from(self.spec.sample_rate))
    }

    /// Milliseconds of real audio handed out so far.
    pub(crate) fn played_ms(&self) -> u64 {
        self.emitted_frames * 1000 / u64::from(OUTPUT_SAMPLE_RATE)
    }

    /// True once the writer's audio is in (or was in) the mixer.
    pub(crate) fn has_started(&self) -> bool {
        self.started_tick.is_some()
    }

    /// Renders the next 20 ms into `out` (interleaved stereo, 1920 long).
    pub(crate) fn render(&mut self, out: &mut [f32]) -> Render {
        let channels = self.resampler.channels();
        let chunk_frames = self.resampler.chunk_frames();
        while self.resampler.wants_input() {
            if !self.input_done {
                let available = self.cons.occupied_len() / channels;
                if available >= chunk_frames {
                    let n = self.cons.pop_slice(&mut self.chunk);
                    if self.resampler.push_chunk(&self.chunk[..n]).is_err() {
                        break;
                    }
                    self.consumed_frames += (n / channels) as u64;
                } else if self.end_of_stream {
                    let n = self.cons.pop_slice(&mut self.chunk[..available * channels]);
                    self.input_done = true;
                    self.consumed_frames += (n / channels) as u64;
                    if n > 0 && self.resampler.push_chunk(&self.chunk[..n]).is_err() {
                        break;
                    }
                } else {
                    break;
                }
            } else {
                // Flush the resampler's tail with silence.
                let owed = self.total_output_frames().saturating_sub(self.emitted_frames);
                if (self.resampler.buffered_frames() as u64) >= owed {
                    break;
                }
                if self.resampler.push_chunk(&[]).is_err() {
                    break;
                }
            }
        }
        let buffered = self.resampler.buffered_frames();
        if !self.input_done && buffered < OUTPUT_FRAME_LEN {
            return Render::Starved;
        }
        let owed = if self.input_done {
            self.total_output_frames().saturating_sub(self.emitted_frames)
        } else {
            u64::MAX
        };
        if owed == 0 {
            return Render::Finished;
        }
        let frames = self.resampler.take_frame(out);
        let real = frames.min(usize::try_from(owed).unwrap_or(usize::MAX));
        out[real * 2..].fill(0.0);
        self.emitted_frames += real as u64;
        if real == 0 {
            return Render::Finished;
        }
        Render::Audio(real)
    }

    /// True when everything has been handed out.
    pub(crate) fn is_played_out(&self) -> bool {
        self.input_done && self.emitted_frames >= self.total_output_frames()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn played_duration_matches_the_input_for_any_rate() {
        for rate in [8_000u32, 22_050, 24_000, 44_100, 48_000] {
            let (mut src, mut prod, _) =
                PlaybackSource::create(SourceId(1), SourceSpec::narrator(rate, 1), 2_000).unwrap();
            // 700 ms of a tone (a whole number of frames at every rate).
            let n = (rate as usize) * 7 / 10;
            let samples: Vec<i16> = (0..n).map(|i| ((i % 50) as i16 - 25) * 400).collect();
            assert_eq!(prod.push_slice(&samples), n);
            src.end_of_stream = true;
            let mut out = vec![0.0f32; 1920];
            let mut frames = 0;
            let mut ticks = 0;
            loop {
                match src.render(&mut out) {
                    Render::Audio(f) => frames += f,
                    Render::Finished => break,
                    Render::Starved => panic!("never starved once the stream ended"),
                }
                ticks += 1;
                assert!(ticks < 100);
            }
            assert!(src.is_played_out());
            assert_eq!(src.played_ms(), 700, "rate {rate}");
            assert_eq!(frames, 700 * 48, "rate {rate}");
        }
    }

    #[test]
    fn starves_until_a_full_frame_is_buffered() {
        let (mut src, mut prod, _) =
            PlaybackSource::create(SourceId(1), SourceSpec::narrator(24_000, 1), 2_000).unwrap();
        let mut out = vec![0.0f32; 1920];
        assert_eq!(src.render(&mut out), Render::Starved);
        prod.push_slice(&[1000; 480]);
        // One 20 ms chunk leaves the resampler's delay unfilled.
        assert_eq!(src.render(&mut out), Render::Starved);
        prod.push_slice(&[1000; 480]);
        assert_eq!(src.render(&mut out), Render::Audio(960));
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(PlaybackSource::create(SourceId(1), SourceSpec::narrator(0, 1), 500).is_err());
        assert!(PlaybackSource::create(SourceId(1), SourceSpec::narrator(24_000, 5), 500).is_err());
        let mut spec = SourceSpec::narrator(24_000, 1);
        spec.gain = f32::INFINITY;
        assert!(PlaybackSource::create(SourceId(1), spec, 500).is_err());
    }
}
