//! Behaviour of the tick: speakers, VAD events, the silence clock, the
//! self-hearing guard, the mixer (summing, priorities, ducking, cuts, gaps,
//! reports) and the output codec. Runs `SessionCore` directly on the test
//! thread, one tick at a time (the engine thread runs the same code).

mod common;

use glyphoxa_audio::{
    output_ring, AudioError, ChunkKind, EndReason, EngineEvent, EngineSettings, NpcId, OpusSpeakerDecoder, OutputCodec,
    OutputPacket, OutputReceiver, SessionCore, SessionHandles, SourceReport, SourceSpec, SpeakerId, SpeechEnd,
    UtteranceAssembler, INPUT_FRAME_SAMPLES,
};

struct Harness {
    core: SessionCore,
    h: SessionHandles,
    out: OutputReceiver,
    events: Vec<EngineEvent>,
}

impl Harness {
    fn new(settings: EngineSettings) -> Self {
        let (sink, out) = output_ring(10_000);
        let (core, h) = SessionCore::new(&settings, Box::new(sink)).unwrap();
        Self {
            core,
            h,
            out,
            events: Vec::new(),
        }
    }

    fn pcm() -> EngineSettings {
        let mut s = EngineSettings::default();
        s.output.codec = OutputCodec::Pcm;
        s
    }

    /// Runs one tick and returns its output frame.
    fn tick(&mut self) -> OutputPacket {
        self.core.tick();
        self.events.extend(self.h.events.drain());
        self.out.try_recv().expect("one frame per tick")
    }

    fn ticks(&mut self, n: usize) -> Vec<OutputPacket> {
        (0..n).map(|_| self.tick()).collect()
    }

    fn speech_ends(&self) -> Vec<SpeechEnd> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::SpeechEnded(end) => Some(*end),
                _ => None,
            })
            .collect()
    }

    fn reports(&self) -> Vec<SourceReport> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::SourceFinished(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    fn started_tick(&self, source: glyphoxa_audio::SourceId) -> Option<u64> {
        self.events.iter().find_map(|e| match e {
            EngineEvent::SourceStarted { source: s, tick } if *s == source => Some(*tick),
            _ => None,
        })
    }
}

/// A 48 kHz stereo sine, `ms` long.
fn tone48(freq: f32, amplitude: f32, ms: u32) -> Vec<i16> {
    let n = (ms * 48) as usize;
    (0..n)
        .flat_map(|i| {
            let s = (2.0 * std::f32::consts::PI * freq * i as f32 / 48_000.0).sin() * amplitude * 32_767.0;
            [s as i16, s as i16]
        })
        .collect()
}

fn peak(frame: &OutputPacket) -> i16 {
    frame.pcm().iter().map(|s| s.saturating_abs()).max().unwrap_or(0)
}

fn rms(frame: &OutputPacket) -> f32 {
    common::rms(frame.pcm())
}

fn frames(samples: &[i16]) -> impl Iterator<Item = &[i16]> {
    samples.chunks_exact(INPUT_FRAME_SAMPLES)
}

// ---------------------------------------------------------------- speakers

#[test]
fn speech_is_segmented_and_its_audio_streamed_with_preroll() {
    let mut t = Harness::new(Harness::pcm());
    let mut alice = t.h.control.attach_speaker(SpeakerId(7)).unwrap();
    let mut input = common::silence(400);
    input.extend(common::espeak_16k("Where is the blacksmith?"));
    let frame_count = input.len() / INPUT_FRAME_SAMPLES;
    for f in frames(&input) {
        alice.push_frame(f).unwrap();
        t.tick();
    }
    let last_packet_tick = t.core.current_tick();
    // Packets stop (Discord sends nothing in silence): the silence clock ends it.
    t.ticks(40);
    let ends = t.speech_ends();
    assert_eq!(ends.len(), 1, "{:?}", t.events);
    let end = ends[0];
    assert_eq!(end.speaker, SpeakerId(7));
    assert_eq!(end.reason, EndReason::Hangover);
    assert!((380..=460).contains(&end.start_ms), "start {}", end.start_ms);
    // Decided within grace (60) + hangover (300) + the VAD's own overhang of the stream's end.
    let decided_after_last_packet = (end.tick - last_packet_tick) * 20;
    println!("end decided {decided_after_last_packet} ms after the last packet; {end:?}");
    assert!(
        decided_after_last_packet <= 60 + 300 + 40,
        "{decided_after_last_packet}"
    );
    assert!(matches!(t.events[0], EngineEvent::SpeechStarted { start_ms, .. } if start_ms == end.start_ms));

    let mut assembler = UtteranceAssembler::new();
    let mut utterance = None;
    while let Some(chunk) = t.h.utterances.try_recv() {
        if let Some(u) = assembler.push(&chunk) {
            utterance = Some(u);
        }
    }
    let utterance = utterance.expect("end marker");
    assert_eq!(utterance.id, end.utterance);
    // Pre-roll (240 ms) + first voiced frame .. end decision.
    let expected_ms = 240 + end.end_ms - end.start_ms;
    assert_eq!(utterance.samples.len() as u64, expected_ms * 16);
    let from = ((end.start_ms - 240) * 16) as usize;
    let real = frame_count * INPUT_FRAME_SAMPLES - from;
    assert_eq!(
        &utterance.samples[..real],
        &input[from..from + real],
        "the speaker's audio, in order"
    );
    assert!(
        utterance.samples[real..].iter().all(|&s| s == 0),
        "synthetic silence after the packets stopped"
    );
    let stats = t.h.control.stats();
    assert_eq!(stats.input_frames, frame_count as u64);
    assert!(stats.synthetic_frames > 0);
}

#[test]
fn network_jitter_does_not_split_a_turn() {
    let speech = common::espeak_16k("I would like a room for the night, and a warm meal please.");
    let run = |pattern: &dyn Fn(usize) -> usize| {
        let mut t = Harness::new(Harness::pcm());
        let mut bob = t.h.control.attach_speaker(SpeakerId(1)).unwrap();
        let all: Vec<&[i16]> = frames(&speech).collect();
        let mut sent = 0;
        let mut tick = 0;
        while sent < all.len() {
            // `pattern` says how many frames arrive at this tick (0 = late).
            for _ in 0..pattern(tick).min(all.len() - sent) {
                bob.push_frame(all[sent]).unwrap();
                sent += 1;
            }
            t.tick();
            tick += 1;
        }
        t.ticks(50);
        t.speech_ends()
    };
    let steady = run(&|_| 1);
    // Every 7th tick nothing arrives; the next tick brings two (or 3 late after a 2-tick hole).
    let jittery = run(&|t| match t % 7 {
        5 => 0,
        6 => 2,
        _ => 1,
    });
    let bursty = run(&|t| match t % 13 {
        9 | 10 => 0,
        11 => 3,
        _ => 1,
    });
    assert_eq!(steady.len(), 1, "{steady:?}");
    assert_eq!(jittery.len(), 1, "{jittery:?}");
    assert_eq!(bursty.len(), 1, "{bursty:?}");
    for other in [&jittery[0], &bursty[0]] {
        assert_eq!(other.start_ms, steady[0].start_ms);
        assert_eq!(other.voice_end_ms, steady[0].voice_end_ms);
        assert_eq!(other.end_ms, steady[0].end_ms, "same stream timeline despite jitter");
    }
}

#[test]
fn lost_packets_inside_speech_do_not_split_it() {
    let speech = common::espeak_16k("Roll for initiative, all of you, right now.");
    let mut t = Harness::new(Harness::pcm());
    let mut bob = t.h.control.attach_speaker(SpeakerId(1)).unwrap();
    for (i, f) in frames(&speech).enumerate() {
        // Four packets in a row lost for good, twice.
        if !(40..44).contains(&i) && !(80..84).contains(&i) {
            bob.push_frame(f).unwrap();
        }
        t.tick();
    }
    t.ticks(50);
    assert_eq!(t.speech_ends().len(), 1, "{:?}", t.speech_ends());
}

#[test]
fn the_bot_never_hears_itself() {
    let mut settings = Harness::pcm();
    settings.bot_speaker = Some(SpeakerId(99));
    let mut t = Harness::new(settings);
    assert!(matches!(
        t.h.control.attach_speaker(SpeakerId(99)),
        Err(AudioError::OwnSpeaker(SpeakerId(99)))
    ));
    // A speaker later identified as the bot is ignored from the next tick on.
    let mut other = t.h.control.attach_speaker(SpeakerId(5)).unwrap();
    t.h.control.set_bot_speaker(Some(SpeakerId(5))).unwrap();
    for f in frames(&common::espeak_16k("I am the bot talking")) {
        other.push_frame(f).unwrap();
        t.tick();
    }
    t.ticks(30);
    assert!(t.events.is_empty(), "{:?}", t.events);
    assert!(t.h.control.stats().own_frames_ignored > 50);
}

#[test]
fn bad_frames_are_errors() {
    let mut settings = Harness::pcm();
    settings.input_ring_ms = 100; // five frames
    let mut t = Harness::new(settings);
    let mut a = t.h.control.attach_speaker(SpeakerId(1)).unwrap();
    assert!(matches!(a.push_frame(&[]), Err(AudioError::EmptyFrame { .. })));
    assert!(matches!(a.push_samples(&[]), Err(AudioError::EmptyFrame { .. })));
    assert!(matches!(
        a.push_frame(&[0; 100]),
        Err(AudioError::FrameLength {
            expected: 320,
            got: 100,
            ..
        })
    ));
    for _ in 0..5 {
        a.push_frame(&[0; 320]).unwrap();
    }
    assert!(matches!(
        a.push_frame(&[0; 320]),
        Err(AudioError::InputFull(SpeakerId(1)))
    ));
    assert_eq!(t.h.control.stats().input_overflows, 1);
    // 10 ms packets are fine too.
    t.tick();
    assert_eq!(a.push_samples(&[0; 160]).unwrap(), 160);
}

#[test]
fn speaker_slots_are_reused_and_detaching_ends_the_utterance() {
    let mut settings = Harness::pcm();
    settings.max_speakers = 2;
    let mut t = Harness::new(settings);
    let mut a = t.h.control.attach_speaker(SpeakerId(1)).unwrap();
    let _b = t.h.control.attach_speaker(SpeakerId(2)).unwrap();
    assert!(matches!(
        t.h.control.attach_speaker(SpeakerId(1)),
        Err(AudioError::SpeakerAlreadyAttached(_))
    ));
    assert!(matches!(
        t.h.control.attach_speaker(SpeakerId(3)),
        Err(AudioError::NoFreeSpeakerSlot { max: 2 })
    ));
    let speech = common::espeak_16k("Hello there, friend.");
    for f in frames(&speech).take(40) {
        a.push_frame(f).unwrap();
        t.tick();
    }
    drop(a); // leaves mid-sentence
    t.tick();
    let ends = t.speech_ends();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].reason, EndReason::EndOfInput);
    // The slot is free again, with a fresh stream clock.
    let mut c = t.h.control.attach_speaker(SpeakerId(3)).unwrap();
    for f in frames(&speech) {
        c.push_frame(f).unwrap();
        t.tick();
    }
    t.ticks(40);
    let ends = t.speech_ends();
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[1].speaker, SpeakerId(3));
    assert!(ends[1].start_ms < 200, "stream time restarts: {:?}", ends[1]);
    let mut kinds = Vec::new();
    while let Some(chunk) = t.h.utterances.try_recv() {
        if chunk.kind == ChunkKind::End {
            kinds.push(chunk.speaker);
        }
    }
    assert_eq!(kinds, vec![SpeakerId(1), SpeakerId(3)]);
}

#[test]
fn max_utterance_length_is_enforced() {
    let mut settings = Harness::pcm();
    settings.vad.max_utterance_ms = 1_000;
    let mut t = Harness::new(settings);
    let mut a = t.h.control.attach_speaker(SpeakerId(1)).unwrap();
    let speech = common::espeak_16k("This is a very long monologue that goes on and on without any pause at all");
    for f in frames(&speech) {
        a.push_frame(f).unwrap();
        t.tick();
    }
    t.ticks(40);
    let ends = t.speech_ends();
    assert!(ends.iter().any(|e| e.reason == EndReason::MaxLength), "{ends:?}");
    assert!(ends.iter().all(|e| e.end_ms - e.start_ms <= 1_000), "{ends:?}");
}

// ---------------------------------------------------------------- mixer

#[test]
fn overlapping_sources_are_summed_without_clipping_artefacts() {
    let mut t = Harness::new(Harness::pcm());
    let c = t.h.control.clone();
    // Quiet: the output is the exact sum.
    let a = tone48(440.0, 0.3, 200);
    let b = tone48(660.0, 0.3, 200);
    for samples in [&a, &b] {
        let mut w = c.open_source(SourceSpec::narrator(48_000, 2)).unwrap();
        assert_eq!(w.write(samples), samples.len());
        c.finish_source(w).unwrap();
    }
    let out = t.ticks(10);
    for (k, frame) in out.iter().enumerate() {
        for (i, &s) in frame.pcm().iter().enumerate() {
            let sum = i32::from(a[k * 1920 + i]) + i32::from(b[k * 1920 + i]);
            assert!((i32::from(s) - sum).abs() <= 1, "frame {k} sample {i}: {s} vs {sum}");
        }
    }
    // Loud: the limiter keeps the sum under the ceiling without wrap-around.
    let a = tone48(440.0, 0.8, 400);
    let b = tone48(440.0, 0.8, 400);
    for samples in [&a, &b] {
        let mut w = c.open_source(SourceSpec::narrator(48_000, 2)).unwrap();
        w.write(samples);
        c.finish_source(w).unwrap();
    }
    let out = t.ticks(20);
    let ceiling = (10f32.powf(-1.0 / 20.0) * 32_767.0).ceil() as i16;
    let (mut fit, mut energy, mut err) = (0f64, 0f64, 0f64);
    let (a_ref, b_ref) = (&a, &b);
    let steady: Vec<(f64, f64)> = out[2..]
        .iter()
        .enumerate()
        .flat_map(|(k, frame)| {
            let k = k + 2;
            frame.pcm().iter().enumerate().map(move |(i, &s)| {
                let sum = f64::from(a_ref[k * 1920 + i]) + f64::from(b_ref[k * 1920 + i]);
                (sum, f64::from(s))
            })
        })
        .collect();
    for (k, frame) in out.iter().enumerate() {
        for (i, &s) in frame.pcm().iter().enumerate() {
            let sum = i32::from(a[k * 1920 + i]) + i32::from(b[k * 1920 + i]);
            assert!(s.abs() <= ceiling);
            if sum.abs() > 300 {
                assert_eq!(
                    sum.signum(),
                    i32::from(s.signum()),
                    "no wrap-around at frame {k} sample {i}"
                );
            }
        }
    }
    for (x, y) in &steady {
        fit += x * y;
        energy += x * x;
    }
    let g = fit / energy;
    for (x, y) in &steady {
        err += (y - g * x).powi(2);
    }
    let residual = (err / steady.iter().map(|(_, y)| y * y).sum::<f64>()).sqrt();
    // A hard clipper at the ceiling would leave a ~20 % residual.
    assert!(
        residual < 0.01,
        "the limited sum is a scaled copy of the sum: residual {residual}"
    );
    assert!(peak(&out[10]) > ceiling - 200, "loud stays loud");
}

#[test]
fn the_narrator_preempts_npc_speech_which_resumes_afterwards() {
    let mut t = Harness::new(Harness::pcm());
    let c = t.h.control.clone();
    let mut npc = c.open_source(SourceSpec::npc(NpcId(1), 48_000, 2)).unwrap();
    npc.write(&tone48(300.0, 0.3, 1_000));
    let npc_id = npc.id();
    c.finish_source(npc).unwrap();
    t.ticks(10); // 200 ms of NPC
    let mut narrator = c.open_source(SourceSpec::narrator(48_000, 2)).unwrap();
    let narration = tone48(500.0, 0.3, 300);
    narrator.write(&narration);
    let narrator_id = narrator.id();
    c.finish_source(narrator).unwrap();
    let during = t.ticks(15);
    for (k, frame) in during.iter().enumerate() {
        assert_eq!(
            frame.pcm(),
            &narration[k * 1920..(k + 1) * 1920],
            "narrator alone in frame {k}"
        );
    }
    let after = t.ticks(45);
    assert!(after.iter().take(40).all(|f| rms(f) > 1_000.0), "NPC resumes");
    let reports = t.reports();
    let npc_report = reports.iter().find(|r| r.source == npc_id).unwrap();
    assert!(!npc_report.cut);
    assert_eq!(npc_report.played_ms, 1_000, "all of it was heard, around the narration");
    assert_eq!(t.started_tick(narrator_id), Some(10));
}

#[test]
fn ambience_is_ducked_under_speech() {
    let mut t = Harness::new(Harness::pcm());
    let c = t.h.control.clone();
    let mut amb = c.open_source(SourceSpec::ambience(48_000, 2)).unwrap();
    amb.write(&tone48(200.0, 0.4, 1_500));
    t.ticks(10);
    let alone = rms(&t.tick());
    let mut npc = c.open_source(SourceSpec::npc(NpcId(3), 48_000, 2)).unwrap();
    let speech = tone48(900.0, 0.0001, 400); // near-silent speech: measure the ambience
    npc.write(&speech);
    c.finish_source(npc).unwrap();
    let ducked: Vec<f32> = t.ticks(15).iter().map(rms).collect();
    let expected = alone * 10f32.powf(-12.0 / 20.0);
    // First frame ramps down; afterwards the ambience sits 12 dB lower.
    for level in &ducked[2..15] {
        assert!((level - expected).abs() < expected * 0.1, "{level} vs {expected}");
    }
    // Five more frames of speech, one frame ramping back up, then full level.
    let restored: Vec<f32> = t.ticks(10).iter().map(rms).collect();
    assert!(
        (restored[4] - expected).abs() < expected * 0.1,
        "{} vs {expected}",
        restored[4]
    );
    assert!((restored[7] - alone).abs() < alone * 0.05, "{} vs {alone}", restored[7]);
}

#[test]
fn a_cut_takes_effect_in_the_very_next_frame_and_reports_what_was_played() {
    for cut in ["source", "npc", "all", "mute"] {
        let mut t = Harness::new(Harness::pcm());
        let c = t.h.control.clone();
        let mut w = c.open_source(SourceSpec::npc(NpcId(4), 24_000, 1)).unwrap();
        let id = w.id();
        let samples: Vec<i16> = (0..24_000).map(|i| ((i as f32 * 0.1).sin() * 8_000.0) as i16).collect();
        w.write(&samples);
        let mut queued = c.open_source(SourceSpec::npc(NpcId(4), 24_000, 1)).unwrap();
        queued.write(&samples[..4_800]);
        let played = t.ticks(7);
        assert!(played.iter().all(|f| f.audible() && rms(f) > 1_000.0));
        match cut {
            "source" => c.cut_source(id).unwrap(),
            "npc" => c.cut_npc(NpcId(4)).unwrap(),
            "all" => c.cut_all().unwrap(),
            _ => c.set_npc_muted(NpcId(4), true).unwrap(),
        }
        let next = t.tick();
        let silent = cut != "source";
        if silent {
            assert!(
                !next.audible() && next.pcm().iter().all(|&s| s == 0),
                "{cut}: silent at once"
            );
        }
        let report = t.reports().into_iter().find(|r| r.source == id).unwrap();
        assert!(report.cut, "{cut}");
        assert_eq!(report.played_ms, 140, "{cut}: seven frames were heard");
        assert!(w.is_cut());
        assert_eq!(w.write(&samples), 0, "a cut source takes no more audio");
    }
}

#[test]
fn a_muted_npc_stays_silent_until_unmuted() {
    let mut t = Harness::new(Harness::pcm());
    let c = t.h.control.clone();
    c.set_npc_muted(NpcId(8), true).unwrap();
    t.tick();
    let mut w = c.open_source(SourceSpec::npc(NpcId(8), 48_000, 2)).unwrap();
    w.write(&tone48(300.0, 0.5, 100));
    let id = w.id();
    assert!(t.ticks(5).iter().all(|f| !f.audible()));
    let r = t.reports().into_iter().find(|r| r.source == id).unwrap();
    assert!(r.cut && r.played_ms == 0);
    c.set_npc_muted(NpcId(8), false).unwrap();
    let mut w = c.open_source(SourceSpec::npc(NpcId(8), 48_000, 2)).unwrap();
    w.write(&tone48(300.0, 0.5, 100));
    assert!(t.ticks(3).iter().any(|f| f.audible()));
}

#[test]
fn lines_of_one_queue_play_in_order_with_a_randomized_gap() {
    let mut settings = Harness::pcm();
    settings.mixer.gap_min_ms = 200;
    settings.mixer.gap_max_ms = 400;
    let mut t = Harness::new(settings);
    let c = t.h.control.clone();
    let mut gaps = Vec::new();
    for round in 0..4 {
        let first = c.open_source(SourceSpec::npc(NpcId(1), 48_000, 2)).unwrap();
        let mut second = c.open_source(SourceSpec::npc(NpcId(1), 48_000, 2)).unwrap();
        let mut first = first;
        first.write(&tone48(300.0, 0.3, 200));
        second.write(&tone48(300.0, 0.3, 200));
        // A following sentence of the same line: no gap.
        let mut spec = SourceSpec::npc(NpcId(1), 48_000, 2);
        spec.gap_before = false;
        let mut third = c.open_source(spec).unwrap();
        third.write(&tone48(300.0, 0.3, 100));
        for w in [first, second, third] {
            c.finish_source(w).unwrap();
        }
        let out = t.ticks(60);
        let audible: Vec<bool> = out.iter().map(|f| f.audible()).collect();
        let first_end = audible.iter().position(|a| !a).unwrap();
        let second_start = first_end + audible[first_end..].iter().position(|a| *a).unwrap();
        let gap_ms = (second_start - first_end) * 20;
        assert!((200..=420).contains(&gap_ms), "round {round}: gap {gap_ms} ms");
        // second (10 frames) and third (5 frames) back to back.
        assert!(
            audible[second_start..second_start + 15].iter().all(|a| *a),
            "round {round}"
        );
        assert!(!audible[second_start + 15]);
        gaps.push(gap_ms);
        t.ticks(30);
    }
    assert!(gaps.iter().any(|g| *g != gaps[0]), "randomized: {gaps:?}");
}

#[test]
fn completion_reports_and_latency_stamps() {
    let mut t = Harness::new(Harness::pcm());
    let c = t.h.control.clone();
    t.ticks(3);
    let mut w = c.open_source(SourceSpec::narrator(22_050, 1)).unwrap();
    let id = w.id();
    let samples: Vec<i16> = (0..15_435)
        .map(|i| ((i as f32 * 0.05).sin() * 6_000.0) as i16)
        .collect(); // 700 ms
    assert_eq!(w.write(&samples), samples.len());
    c.finish_source(w).unwrap();
    let out = t.ticks(40);
    assert_eq!(t.started_tick(id), Some(3), "first audio in the very next frame");
    let r = t.reports().into_iter().find(|r| r.source == id).unwrap();
    assert_eq!((r.played_ms, r.cut, r.underruns), (700, false, 0));
    assert_eq!(out.iter().filter(|f| f.audible()).count(), 35);
    assert_eq!(r.tick, 3 + 34);
}

#[test]
fn a_slow_writer_underruns_without_losing_audio() {
    let mut t = Harness::new(Harness::pcm());
    let c = t.h.control.clone();
    let mut w = c.open_source(SourceSpec::npc(NpcId(2), 24_000, 1)).unwrap();
    let id = w.id();
    // 40 ms of audio every other tick: the source starves half the time.
    let chunk = vec![3_000i16; 960];
    for _ in 0..10 {
        w.write(&chunk);
        t.ticks(2);
    }
    c.finish_source(w).unwrap();
    t.ticks(40);
    let r = t.reports().into_iter().find(|r| r.source == id).unwrap();
    assert_eq!(r.played_ms, 400);
    assert!(!r.cut);
}

#[test]
fn opus_output_encodes_audible_frames_and_a_short_tail() {
    let mut t = Harness::new(EngineSettings::default());
    let c = t.h.control.clone();
    let silent = t.tick();
    assert!(silent.opus().is_none(), "nothing to encode while silent");
    let mut w = c.open_source(SourceSpec::narrator(48_000, 2)).unwrap();
    w.write(&tone48(440.0, 0.5, 200));
    c.finish_source(w).unwrap();
    let out = t.ticks(20);
    let mut decoder = OpusSpeakerDecoder::new().unwrap();
    for f in &out[..10] {
        assert!(f.audible());
        let decoded = decoder.decode(f.opus().expect("encoded")).unwrap();
        assert_eq!(decoded.len(), INPUT_FRAME_SAMPLES);
    }
    assert!(
        out[10..15].iter().all(|f| !f.audible() && f.opus().is_some()),
        "tail of five"
    );
    assert!(out[15..].iter().all(|f| f.opus().is_none()));
    assert_eq!(t.h.control.stats().encode_errors, 0);
}

#[test]
fn sources_beyond_capacity_are_reported_cut() {
    let mut settings = Harness::pcm();
    settings.max_sources = 2;
    let mut t = Harness::new(settings);
    let c = t.h.control.clone();
    let writers: Vec<_> = (0..3)
        .map(|_| c.open_source(SourceSpec::ambience(48_000, 2)).unwrap())
        .collect();
    t.tick();
    let r = t.reports();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].source, writers[2].id());
    assert!(r[0].cut);
    assert_eq!(t.h.control.stats().source_overflows, 1);
}
