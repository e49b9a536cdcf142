//! The tick: everything one session's realtime thread does every 20 ms.
//!
//! [`SessionCore`] owns all realtime state. It is built on the thread that
//! will run it (the VADs are not `Send`), preallocates every buffer, and its
//! [`tick`](SessionCore::tick) then
//! 1. applies the queued commands (effective in this very frame),
//! 2. feeds each attached speaker's frames — or synthetic silence from the
//!    silence clock — to its VAD and segmenter, pushing events and
//!    utterance audio into their rings,
//! 3. mixes the playback sources,
//! 4. encodes (Opus) and hands the frame to the output sink.
//!
//! It never allocates, locks, logs or blocks; the engine thread and the
//! virtual-clock tools run exactly this code.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::control::{Command, SessionControl, Shared};
use crate::error::AudioError;
use crate::events::{ChunkKind, EngineEvent, EventReceiver, SpeechEnd, UtteranceChunk, UtteranceReceiver};
use crate::frame::{
    frames_to_ms, InputFrame, SourceId, SpeakerId, UtteranceId, FRAME_MS, INPUT_FRAME_SAMPLES, INPUT_SAMPLE_RATE,
    OUTPUT_FRAME_SAMPLES, SILENT_INPUT_FRAME,
};
use crate::mixer::source::PlaybackSource;
use crate::mixer::{Mixer, MixerReports, SourceReport};
use crate::opus::{OpusFrameEncoder, MAX_OPUS_PACKET};
use crate::output::{OutputFrame, OutputSink};
use crate::segmenter::SegmenterEvent;
use crate::settings::{EngineSettings, OutputCodec};
use crate::silence_clock::SilenceClock;
use crate::speaker::{SpeakerTrack, TrackOutput};
use crate::stats::EngineStats;

/// Whether the engine loop should go on after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// Keep ticking.
    Continue,
    /// A shutdown command was applied: stop the loop.
    Stop,
}

/// The async side's handles of a session, returned when it is created.
#[derive(Debug)]
pub struct SessionHandles {
    /// Speakers, sources and commands.
    pub control: SessionControl,
    /// VAD events, source reports, latency stamps.
    pub events: EventReceiver,
    /// Utterance audio for STT.
    pub utterances: UtteranceReceiver,
}

/// One speaker slot: input ring, VAD track and silence clock.
struct SpeakerSlot {
    speaker: Option<SpeakerId>,
    input: HeapCons<i16>,
    track: SpeakerTrack,
    silence: SilenceClock,
    dropped: u32,
}

/// The rings and counters the tick writes to.
struct Outputs {
    events: HeapProd<EngineEvent>,
    utterances: HeapProd<UtteranceChunk>,
    disposal: Arc<ArrayQueue<Box<PlaybackSource>>>,
    shared: Arc<Shared>,
    next_utterance: u64,
}

impl Outputs {
    fn event(&mut self, event: EngineEvent) {
        if self.events.try_push(event).is_err() {
            EngineStats::add(&self.shared.stats.events_dropped, 1);
        }
    }
}

/// The [`TrackOutput`] of one speaker during one tick.
struct SlotOutput<'a> {
    out: &'a mut Outputs,
    speaker: SpeakerId,
    tick: u64,
    dropped: &'a mut u32,
}

impl TrackOutput for SlotOutput<'_> {
    fn new_utterance(&mut self) -> UtteranceId {
        self.out.next_utterance += 1;
        *self.dropped = 0;
        UtteranceId(self.out.next_utterance)
    }

    fn on_event(&mut self, utterance: UtteranceId, event: SegmenterEvent) {
        let speaker = self.speaker;
        let tick = self.tick;
        let event = match event {
            SegmenterEvent::SpeechStarted { first_voiced } => EngineEvent::SpeechStarted {
                speaker,
                utterance,
                tick,
                start_ms: frames_to_ms(first_voiced),
            },
            SegmenterEvent::VoicingStopped { last_voiced } => EngineEvent::VoicingStopped {
                speaker,
                utterance,
                tick,
                voice_end_ms: frames_to_ms(last_voiced + 1),
            },
            SegmenterEvent::VoicingResumed => EngineEvent::VoicingResumed {
                speaker,
                utterance,
                tick,
            },
            SegmenterEvent::SpeechEnded {
                first_voiced,
                last_voiced,
                decided,
                reason,
            } => {
                let end = UtteranceChunk {
                    speaker,
                    utterance,
                    kind: ChunkKind::End,
                    samples: SILENT_INPUT_FRAME,
                };
                if self.out.utterances.try_push(end).is_err() {
                    EngineStats::add(&self.out.shared.stats.utterance_frames_dropped, 1);
                }
                EngineEvent::SpeechEnded(SpeechEnd {
                    speaker,
                    utterance,
                    tick,
                    start_ms: frames_to_ms(first_voiced),
                    voice_end_ms: frames_to_ms(last_voiced + 1),
                    end_ms: frames_to_ms(decided + 1),
                    reason,
                    frames_dropped: *self.dropped,
                })
            }
        };
        self.out.event(event);
    }

    fn on_audio(&mut self, utterance: UtteranceId, frame: &InputFrame) {
        let chunk = UtteranceChunk {
            speaker: self.speaker,
            utterance,
            kind: ChunkKind::Audio,
            samples: *frame,
        };
        if self.out.utterances.try_push(chunk).is_err() {
            *self.dropped += 1;
            EngineStats::add(&self.out.shared.stats.utterance_frames_dropped, 1);
        }
    }
}

impl MixerReports for Outputs {
    fn source_started(&mut self, source: SourceId, tick: u64) {
        self.event(EngineEvent::SourceStarted { source, tick });
    }

    fn source_finished(&mut self, report: SourceReport) {
        self.event(EngineEvent::SourceFinished(report));
    }

    fn dispose(&mut self, source: Box<PlaybackSource>) {
        if let Err(source) = self.disposal.push(source) {
            // Cannot happen (see Shared::new); never free on this thread.
            std::mem::forget(source);
            EngineStats::add(&self.shared.stats.disposal_leaks, 1);
        }
    }
}

/// All realtime state of one session. Not `Send`: build it on the thread that
/// runs it.
pub struct SessionCore {
    shared: Arc<Shared>,
    slots: Vec<SpeakerSlot>,
    mixer: Mixer,
    encoder: Option<OpusFrameEncoder>,
    sink: Box<dyn OutputSink>,
    out: Outputs,
    pcm: Vec<i16>,
    packet: Vec<u8>,
    frame: InputFrame,
    tick: u64,
    bot: Option<SpeakerId>,
    tail_frames: u32,
    tail_left: u32,
    stopped: bool,
}

impl std::fmt::Debug for SessionCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCore")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl SessionCore {
    /// Validates the settings and preallocates everything (VAD pool
    /// included) on the calling thread.
    pub fn new(settings: &EngineSettings, sink: Box<dyn OutputSink>) -> Result<(Self, SessionHandles), AudioError> {
        settings.validate()?;
        let ring_samples = (INPUT_SAMPLE_RATE as usize) * settings.input_ring_ms as usize / 1000;
        let mut slots = Vec::with_capacity(settings.max_speakers);
        let mut producers = Vec::with_capacity(settings.max_speakers);
        for _ in 0..settings.max_speakers {
            let (prod, cons) = HeapRb::<i16>::new(ring_samples.max(INPUT_FRAME_SAMPLES)).split();
            producers.push(prod);
            slots.push(SpeakerSlot {
                speaker: None,
                input: cons,
                track: SpeakerTrack::new(&settings.vad)?,
                silence: SilenceClock::new(&settings.silence),
                dropped: 0,
            });
        }
        let shared = Arc::new(Shared::new(
            settings.command_capacity,
            settings.max_sources,
            producers,
            settings.bot_speaker,
            settings.mixer.source_ring_ms,
        ));
        let (events_prod, events_cons) = HeapRb::new(settings.event_capacity).split();
        let utterance_frames = (settings.utterance_ring_ms / FRAME_MS) as usize;
        let (utt_prod, utt_cons) = HeapRb::new(utterance_frames.max(1)).split();
        let encoder = match &settings.output.codec {
            OutputCodec::Opus(opus) => Some(OpusFrameEncoder::new(opus)?),
            OutputCodec::Pcm => None,
        };
        let disposal = Arc::clone(&shared.disposal);
        let core = Self {
            shared: Arc::clone(&shared),
            slots,
            mixer: Mixer::new(&settings.mixer, settings.max_sources),
            encoder,
            sink,
            out: Outputs {
                events: events_prod,
                utterances: utt_prod,
                disposal: Arc::clone(&disposal),
                shared: Arc::clone(&shared),
                next_utterance: 0,
            },
            pcm: vec![0; OUTPUT_FRAME_SAMPLES],
            packet: vec![0; MAX_OPUS_PACKET],
            frame: SILENT_INPUT_FRAME,
            tick: 0,
            bot: settings.bot_speaker,
            tail_frames: settings.output.tail_frames,
            tail_left: 0,
            stopped: false,
        };
        let handles = SessionHandles {
            control: SessionControl { shared },
            events: EventReceiver {
                cons: events_cons,
                disposal,
            },
            utterances: UtteranceReceiver { cons: utt_cons },
        };
        Ok((core, handles))
    }

    /// The index of the next tick to run.
    pub fn current_tick(&self) -> u64 {
        self.tick
    }

    /// Playback sources currently open in the mixer.
    pub fn open_sources(&self) -> usize {
        self.mixer.open_sources()
    }

    /// Runs one 20 ms tick. Never allocates, locks or blocks.
    pub fn tick(&mut self) -> TickOutcome {
        if self.stopped {
            return TickOutcome::Stop;
        }
        let tick = self.tick;
        self.apply_commands(tick);
        if self.stopped {
            self.shared.stopped.store(true, Ordering::Release);
            return TickOutcome::Stop;
        }
        self.run_speakers(tick);
        let audible = self.mixer.mix(tick, &mut self.pcm, &mut self.out);
        self.deliver(tick, audible);
        let stats = &self.shared.stats;
        EngineStats::add(&stats.ticks, 1);
        if self.mixer.overflows > 0 {
            EngineStats::add(&stats.source_overflows, self.mixer.overflows);
            self.mixer.overflows = 0;
        }
        self.tick += 1;
        TickOutcome::Continue
    }

    fn apply_commands(&mut self, tick: u64) {
        while let Some(command) = self.shared.commands.pop() {
            match command {
                Command::AttachSpeaker { slot, speaker } => {
                    if let Some(s) = self.slots.get_mut(slot) {
                        s.speaker = Some(speaker);
                        s.track.reset();
                        s.silence.reset();
                        s.dropped = 0;
                    }
                }
                Command::DetachSpeaker { slot } => {
                    if let Some(s) = self.slots.get_mut(slot) {
                        if let Some(speaker) = s.speaker.take() {
                            let mut out = SlotOutput {
                                out: &mut self.out,
                                speaker,
                                tick,
                                dropped: &mut s.dropped,
                            };
                            s.track.finish(&mut out);
                        }
                        s.input.clear();
                        s.track.reset();
                        s.silence.reset();
                        let _ = self.shared.free_slots.push(slot);
                    }
                }
                Command::StartSource(source) => self.mixer.add(source, tick, &mut self.out),
                Command::FinishSource(id) => self.mixer.end_of_stream(id),
                Command::Cut(target) => self.mixer.cut(target, tick, &mut self.out),
                Command::SetNpcMuted(npc, muted) => {
                    self.mixer.set_npc_muted(npc, muted, tick, &mut self.out);
                }
                Command::SetBotSpeaker(bot) => self.bot = bot,
                Command::Shutdown => self.stopped = true,
            }
        }
    }

    fn run_speakers(&mut self, tick: u64) {
        let stats = &self.shared.stats;
        for slot in &mut self.slots {
            let Some(speaker) = slot.speaker else {
                continue;
            };
            if self.bot == Some(speaker) {
                let n = slot.input.clear();
                EngineStats::add(&stats.own_frames_ignored, (n / INPUT_FRAME_SAMPLES) as u64);
                continue;
            }
            let available = slot.input.occupied_len() / INPUT_FRAME_SAMPLES;
            let plan = slot.silence.plan(available);
            let mut out = SlotOutput {
                out: &mut self.out,
                speaker,
                tick,
                dropped: &mut slot.dropped,
            };
            for _ in 0..plan.real {
                let n = slot.input.pop_slice(&mut self.frame);
                if n < INPUT_FRAME_SAMPLES {
                    break;
                }
                if slot.track.process(&self.frame, &mut out).is_err() {
                    EngineStats::add(&stats.vad_errors, 1);
                }
            }
            for _ in 0..plan.silence {
                if slot.track.process(&SILENT_INPUT_FRAME, &mut out).is_err() {
                    EngineStats::add(&stats.vad_errors, 1);
                }
            }
            EngineStats::add(&stats.input_frames, u64::from(plan.real));
            EngineStats::add(&stats.synthetic_frames, u64::from(plan.silence));
        }
    }

    fn deliver(&mut self, tick: u64, audible: bool) {
        let stats = &self.shared.stats;
        if audible {
            self.tail_left = self.tail_frames;
            EngineStats::add(&stats.audible_frames, 1);
        }
        let mut opus_len = None;
        if let Some(encoder) = self.encoder.as_mut() {
            let encode = if audible {
                true
            } else if self.tail_left > 0 {
                self.tail_left -= 1;
                true
            } else {
                false
            };
            if encode {
                match encoder.encode(&self.pcm, &mut self.packet) {
                    Ok(n) => opus_len = Some(n),
                    Err(_) => EngineStats::add(&stats.encode_errors, 1),
                }
            }
        }
        let frame = OutputFrame {
            tick,
            pcm: &self.pcm,
            opus: opus_len.map(|n| &self.packet[..n]),
            audible,
        };
        self.sink.deliver(&frame);
        EngineStats::add(&stats.output_frames, 1);
    }
}
