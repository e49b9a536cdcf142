//! The real clock and the virtual clock run the same tick code: for the same
//! input, delivered at the same ticks, they produce the same output frames
//! (PCM and Opus bytes) and the same events.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use glyphoxa_audio::{
    output_ring, stagger_phase, Clock, ClockStopper, EngineEvent, EngineSettings, NpcId, RealClock, SessionControl,
    SessionEngine, SourceSpec, SourceWriter, SpeakerId, SpeakerInput, VirtualClock, INPUT_FRAME_SAMPLES,
};

const TICKS: u64 = 150;

/// What the transport and the pipeline do, scripted per tick.
struct Script {
    control: SessionControl,
    inputs: Vec<(SpeakerInput, Vec<i16>)>,
    npc: Option<SourceWriter>,
}

impl Script {
    fn before(&mut self, tick: u64) {
        let t = tick as usize;
        for (input, speech) in &mut self.inputs {
            if let Some(frame) = speech.chunks_exact(INPUT_FRAME_SAMPLES).nth(t) {
                input.push_frame(frame).unwrap();
            }
        }
        match tick {
            10 => {
                let mut w = self.control.open_source(SourceSpec::npc(NpcId(1), 24_000, 1)).unwrap();
                let line: Vec<i16> = (0..36_000)
                    .map(|i| ((i as f32 * 0.05).sin() * 9_000.0) as i16)
                    .collect();
                w.write(&line);
                self.npc = Some(w);
            }
            40 => {
                let mut w = self.control.open_source(SourceSpec::narrator(44_100, 2)).unwrap();
                let line: Vec<i16> = (0..2 * 13_230)
                    .map(|i| ((i as f32 * 0.02).sin() * 7_000.0) as i16)
                    .collect();
                w.write(&line);
                self.control.finish_source(w).unwrap();
            }
            90 => self.control.cut_npc(NpcId(1)).unwrap(),
            _ => {}
        }
    }
}

/// Runs the script on the engine thread right before each tick, after the
/// inner clock's wait: the input timing is the same whatever the clock.
struct ScriptedClock<C> {
    inner: C,
    script: Option<Script>,
    rx: mpsc::Receiver<Script>,
}

impl<C: Clock> Clock for ScriptedClock<C> {
    fn stopper(&self) -> ClockStopper {
        self.inner.stopper()
    }

    fn wait_for_tick(&mut self, tick: u64) -> bool {
        if tick >= TICKS || !self.inner.wait_for_tick(tick) {
            return false;
        }
        if self.script.is_none() {
            match self.rx.recv() {
                Ok(script) => self.script = Some(script),
                Err(_) => return false,
            }
        }
        if let Some(script) = self.script.as_mut() {
            script.before(tick);
        }
        true
    }
}

struct Run {
    pcm: Vec<i16>,
    opus: Vec<Option<Vec<u8>>>,
    events: Vec<EngineEvent>,
    elapsed: Duration,
}

fn run(clock: impl Clock + 'static) -> Run {
    let (tx, rx) = mpsc::channel();
    let (sink, mut out) = output_ring(TICKS as usize + 10);
    let start = Instant::now();
    let (engine, mut h) = SessionEngine::spawn(
        "equivalence",
        &EngineSettings::default(),
        Box::new(sink),
        ScriptedClock {
            inner: clock,
            script: None,
            rx,
        },
    )
    .unwrap();
    let speech = [common::espeak_16k("Grimble, what do you know about the caves?"), {
        let mut s = common::silence(800);
        s.extend(common::espeak_16k("Careful, something moves."));
        s
    }];
    let inputs = speech
        .into_iter()
        .enumerate()
        .map(|(i, s)| (h.control.attach_speaker(SpeakerId(i as u64 + 1)).unwrap(), s))
        .collect();
    tx.send(Script {
        control: h.control.clone(),
        inputs,
        npc: None,
    })
    .unwrap();
    let ticks = engine.join();
    let elapsed = start.elapsed();
    assert_eq!(ticks, TICKS);
    let mut pcm = Vec::new();
    let mut opus = Vec::new();
    while let Some(frame) = out.try_recv() {
        pcm.extend_from_slice(frame.pcm());
        opus.push(frame.opus().map(<[u8]>::to_vec));
    }
    assert_eq!(opus.len(), TICKS as usize);
    Run {
        pcm,
        opus,
        events: h.events.drain(),
        elapsed,
    }
}

#[test]
fn real_and_virtual_clocks_produce_identical_output() {
    let real_clock = RealClock::new(stagger_phase(3));
    let stats = real_clock.stats();
    let real = run(real_clock);
    let virt = run(VirtualClock::free_running());
    println!(
        "real clock: {:?} for {TICKS} ticks ({:?}); virtual clock: {:?}",
        real.elapsed,
        stats.snapshot(),
        virt.elapsed
    );
    assert!(
        real.elapsed >= Duration::from_millis(20 * (TICKS - 1)),
        "paced in real time"
    );
    assert!(virt.elapsed < real.elapsed / 2, "virtual runs as fast as it can");
    assert!(real.pcm.iter().any(|&s| s != 0), "there was audio");
    assert!(real.events.iter().any(|e| matches!(e, EngineEvent::SpeechEnded(_))));
    assert!(real
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::SourceFinished(r) if r.cut)));
    assert_eq!(real.events, virt.events);
    assert_eq!(real.opus, virt.opus);
    assert!(real.pcm == virt.pcm, "PCM differs");
}
