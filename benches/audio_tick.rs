//! Cost of the realtime audio tick (`glyphoxa-audio`).
//!
//! 1. Per-tick cost of one session with 1, 4 and 8 speakers talking and 0, 1
//!    or 2 playback sources (an NPC line at 24 kHz mono, ambience at
//!    44.1 kHz stereo), Opus output at the default settings, next to the
//!    FLOOR measured in the same run: the bare library calls for the same
//!    audio (VAD per speaker, resampler per source, a plain sum, the Opus
//!    encode). Budget: tick ≤ 1.25 × floor.
//! 2. Throughput: how many 4-speaker sessions with one NPC talking one core
//!    ticks within 20 ms, at Opus complexity 5 and 10. Budget: ≥ 50.
//!
//! The criterion groups give the statistics; the tables printed at the end
//! put each figure next to its budget. Run: `cargo bench --bench audio_tick`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use glyphoxa_audio::{
    output_ring, EngineSettings, EventReceiver, NpcId, OpusFrameEncoder, OpusSettings, OutputCodec, OutputReceiver,
    SessionCore, SourceSpec, SourceWriter, SpeakerId, SpeakerInput, StreamResampler, UtteranceReceiver, VoiceDetector,
    INPUT_FRAME_SAMPLES, MAX_OPUS_PACKET, OUTPUT_FRAME_LEN, OUTPUT_FRAME_SAMPLES,
};

/// Tick budget relative to the floor.
const TICK_BUDGET: f64 = 1.25;
/// Sessions one core must tick within a 20 ms period.
const SESSIONS_BUDGET: f64 = 50.0;

/// Speech-like input: a harmonic buzz (f0 glides 110–190 Hz) with syllabic
/// amplitude modulation, 1.6 s of talking then 0.6 s of pause, so the VAD,
/// the segmenter and the utterance ring all work.
fn speech_like(seconds: usize, seed: usize) -> Vec<i16> {
    let n = seconds * 16_000;
    let mut phase = 0.0f32;
    (0..n)
        .map(|i| {
            let t = i as f32 / 16_000.0 + seed as f32 * 0.37;
            let cycle = t % 2.2;
            if cycle > 1.6 {
                return 0;
            }
            let f0 = 150.0 + 40.0 * (t * 0.9).sin();
            phase += 2.0 * std::f32::consts::PI * f0 / 16_000.0;
            let syllable = 0.55 + 0.45 * (t * 2.0 * std::f32::consts::PI * 4.0).sin();
            let mut s = 0.0;
            for h in 1..10 {
                s += (phase * h as f32).sin() / h as f32;
            }
            (s * syllable * 5_000.0) as i16
        })
        .collect()
}

/// Playback audio: a tone at `rate` with `channels`, 20 ms per chunk.
fn tone_chunk(rate: u32, channels: u16, tick: usize) -> Vec<i16> {
    let frames = (rate / 50) as usize;
    (0..frames)
        .flat_map(|i| {
            let t = (tick * frames + i) as f32 / rate as f32;
            let s = ((2.0 * std::f32::consts::PI * 220.0 * t).sin() * 8_000.0) as i16;
            std::iter::repeat_n(s, usize::from(channels))
        })
        .collect()
}

/// The two playback sources of the matrix.
const SOURCES: [(u32, u16); 2] = [(24_000, 1), (44_100, 2)];

fn settings(complexity: u8) -> EngineSettings {
    let mut s = EngineSettings::default();
    s.output.codec = OutputCodec::Opus(OpusSettings {
        complexity,
        ..OpusSettings::default()
    });
    s
}

/// One session driven tick by tick, with its transport and pipeline sides.
struct Session {
    core: SessionCore,
    events: EventReceiver,
    utterances: UtteranceReceiver,
    out: OutputReceiver,
    inputs: Vec<SpeakerInput>,
    speech: Vec<Vec<i16>>,
    writers: Vec<(SourceWriter, u32, u16)>,
    chunks: Vec<Vec<Vec<i16>>>,
    tick: usize,
}

impl Session {
    fn new(speakers: usize, sources: usize, complexity: u8) -> Self {
        let (sink, out) = output_ring(8);
        let (core, h) = SessionCore::new(&settings(complexity), Box::new(sink)).expect("session");
        let inputs = (0..speakers)
            .map(|i| h.control.attach_speaker(SpeakerId(i as u64 + 1)).expect("speaker"))
            .collect();
        let speech = (0..speakers).map(|i| speech_like(11, i)).collect();
        let mut writers = Vec::new();
        let mut chunks = Vec::new();
        for &(rate, channels) in SOURCES.iter().take(sources) {
            let spec = if writers.is_empty() {
                SourceSpec::npc(NpcId(1), rate, channels)
            } else {
                SourceSpec::ambience(rate, channels)
            };
            let mut w = h.control.open_source(spec).expect("source");
            let c: Vec<Vec<i16>> = (0..50).map(|t| tone_chunk(rate, channels, t)).collect();
            for chunk in c.iter().take(5) {
                w.write(chunk);
            }
            writers.push((w, rate, channels));
            chunks.push(c);
        }
        Self {
            core,
            events: h.events,
            utterances: h.utterances,
            out,
            inputs,
            speech,
            writers,
            chunks,
            tick: 0,
        }
    }

    /// The transport and the pipeline between two ticks (not timed).
    fn feed(&mut self) {
        let frames = self.speech[0].len() / INPUT_FRAME_SAMPLES;
        let f = self.tick % frames;
        for (input, speech) in self.inputs.iter_mut().zip(&self.speech) {
            let _ = input.push_frame(&speech[f * INPUT_FRAME_SAMPLES..(f + 1) * INPUT_FRAME_SAMPLES]);
        }
        for ((w, _, _), c) in self.writers.iter_mut().zip(&self.chunks) {
            w.write(&c[self.tick % c.len()]);
        }
        self.tick += 1;
    }

    fn drain(&mut self) {
        while self.events.try_recv().is_some() {}
        while self.utterances.try_recv().is_some() {}
        while self.out.try_recv().is_some() {}
    }

    fn timed_tick(&mut self) -> Duration {
        self.feed();
        let start = Instant::now();
        black_box(self.core.tick());
        let elapsed = start.elapsed();
        self.drain();
        elapsed
    }
}

/// The floor: the same audio through the bare library calls.
struct Floor {
    vads: Vec<VoiceDetector>,
    speech: Vec<Vec<i16>>,
    resamplers: Vec<StreamResampler>,
    chunks: Vec<Vec<Vec<i16>>>,
    encoder: OpusFrameEncoder,
    bus: Vec<f32>,
    frame: Vec<f32>,
    pcm: Vec<i16>,
    packet: Vec<u8>,
    tick: usize,
}

impl Floor {
    fn new(speakers: usize, sources: usize, complexity: u8) -> Self {
        let mut resamplers = Vec::new();
        let mut chunks = Vec::new();
        for &(rate, channels) in SOURCES.iter().take(sources) {
            resamplers.push(StreamResampler::new(rate, channels).expect("resampler"));
            chunks.push((0..50).map(|t| tone_chunk(rate, channels, t)).collect());
        }
        Self {
            vads: (0..speakers).map(|_| VoiceDetector::new(2).expect("vad")).collect(),
            speech: (0..speakers).map(|i| speech_like(11, i)).collect(),
            resamplers,
            chunks,
            encoder: OpusFrameEncoder::new(&OpusSettings {
                complexity,
                ..OpusSettings::default()
            })
            .expect("encoder"),
            bus: vec![0.0; OUTPUT_FRAME_SAMPLES],
            frame: vec![0.0; OUTPUT_FRAME_SAMPLES],
            pcm: vec![0; OUTPUT_FRAME_SAMPLES],
            packet: vec![0; MAX_OPUS_PACKET],
            tick: 0,
        }
    }

    fn timed_tick(&mut self) -> Duration {
        let frames = self.speech[0].len() / INPUT_FRAME_SAMPLES;
        let f = self.tick % frames;
        self.tick += 1;
        let start = Instant::now();
        for (vad, speech) in self.vads.iter_mut().zip(&self.speech) {
            black_box(
                vad.is_voiced(&speech[f * INPUT_FRAME_SAMPLES..(f + 1) * INPUT_FRAME_SAMPLES])
                    .ok(),
            );
        }
        if !self.resamplers.is_empty() {
            self.bus.fill(0.0);
            for (r, c) in self.resamplers.iter_mut().zip(&self.chunks) {
                let mut k = self.tick;
                while r.buffered_frames() < OUTPUT_FRAME_LEN {
                    let _ = r.push_chunk(&c[k % c.len()]);
                    k += 1;
                }
                r.take_frame(&mut self.frame);
                for (b, s) in self.bus.iter_mut().zip(&self.frame) {
                    *b += s;
                }
            }
            for (p, b) in self.pcm.iter_mut().zip(&self.bus) {
                *p = (b * 32_767.0).clamp(-32_767.0, 32_767.0) as i16;
            }
            black_box(self.encoder.encode(&self.pcm, &mut self.packet).ok());
        }
        start.elapsed()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Per-tick cost next to the floor, for every configuration.
fn tick_vs_floor(c: &mut Criterion) {
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("audio_tick");
    for speakers in [1usize, 4, 8] {
        for sources in [0usize, 1, 2] {
            let label = format!("{speakers}spk_{sources}src");
            let mut session = Session::new(speakers, sources, 10);
            group.bench_function(format!("tick/{label}"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| session.timed_tick()).sum())
            });
            let mut floor = Floor::new(speakers, sources, 10);
            group.bench_function(format!("floor/{label}"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| floor.timed_tick()).sum())
            });
            // Interleaved in one loop, so both see the same machine state.
            let (mut ticks, mut floors) = (Vec::new(), Vec::new());
            for _ in 0..3_000 {
                ticks.push(session.timed_tick());
                floors.push(floor.timed_tick());
            }
            rows.push((speakers, sources, median(ticks), median(floors)));
        }
    }
    group.finish();
    println!();
    println!("per-tick cost (median, Opus complexity 10) vs the floor measured in the same run");
    println!("speakers  sources   tick µs  floor µs   ratio  budget  verdict");
    for (speakers, sources, tick, floor) in rows {
        let ratio = micros(tick) / micros(floor).max(1e-3);
        println!(
            "{speakers:>8} {sources:>8} {:>9.1} {:>9.1} {ratio:>7.2} {:>7.2}  {}",
            micros(tick),
            micros(floor),
            TICK_BUDGET,
            if ratio <= TICK_BUDGET { "ok" } else { "OVER BUDGET" }
        );
    }
}

/// Sessions (4 speakers, one NPC talking) one core ticks within 20 ms.
fn throughput(c: &mut Criterion) {
    const SESSIONS: usize = 50;
    let mut rows = Vec::new();
    let mut group = c.benchmark_group("audio_throughput");
    for complexity in [5u8, 10] {
        let mut sessions: Vec<Session> = (0..SESSIONS).map(|_| Session::new(4, 1, complexity)).collect();
        let mut round = || -> Duration { sessions.iter_mut().map(Session::timed_tick).sum() };
        group.bench_function(format!("{SESSIONS}_sessions/complexity_{complexity}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| round()).sum())
        });
        let rounds: Vec<Duration> = (0..200).map(|_| round()).collect();
        let per_round = median(rounds);
        let per_session = per_round / SESSIONS as u32;
        let capacity = 20_000.0 / micros(per_session);
        rows.push((complexity, per_round, per_session, capacity));
    }
    group.finish();
    println!();
    println!("throughput: 4-speaker sessions with one NPC talking, ticked round-robin on one core");
    println!("complexity  {SESSIONS} ticks µs  per session µs  sessions/core  budget  verdict");
    for (complexity, per_round, per_session, capacity) in rows {
        println!(
            "{complexity:>10} {:>14.0} {:>15.1} {capacity:>14.0} {:>7.0}  {}",
            micros(per_round),
            micros(per_session),
            SESSIONS_BUDGET,
            if capacity >= SESSIONS_BUDGET {
                "ok"
            } else {
                "UNDER BUDGET"
            }
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = tick_vs_floor, throughput
}
criterion_main!(benches);
