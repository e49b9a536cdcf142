//! Realtime discipline: a busy tick — several speakers talking (one with
//! jitter, one detached and re-attached), two sources mixing, commands
//! arriving (start, finish, cut, mute, bot id) — must not touch the heap.
//!
//! A counting global allocator records every allocation, reallocation and
//! deallocation made while the current thread is "armed". The tick is armed;
//! the test's own async-side work between ticks is not.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use glyphoxa_audio::{
    output_ring, Clock, EngineEvent, EngineSettings, NpcId, OutputReceiver, SessionControl, SessionCore, SessionEngine,
    SourceSpec, SourceWriter, SpeakerId, SpeakerInput, VirtualClock, INPUT_FRAME_SAMPLES,
};

struct CountingAllocator;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Allocations made by this thread while armed (per thread, so tests
    /// running in parallel cannot see each other's allocations).
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

fn thread_count() -> u64 {
    COUNT.with(Cell::get)
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count();
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn arm(on: bool) {
    ARMED.with(|a| a.set(on));
}

/// Counts the allocations `f` makes on this thread.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = thread_count();
    arm(true);
    let r = f();
    arm(false);
    (r, thread_count() - before)
}

/// The async side of a busy session, driven tick by tick.
struct BusySide {
    control: SessionControl,
    speakers: Vec<Option<SpeakerInput>>,
    speech: Vec<Vec<i16>>,
    noise: Vec<i16>,
    npc: Option<SourceWriter>,
    ambience: Option<SourceWriter>,
    events: Vec<EngineEvent>,
}

impl BusySide {
    fn new(control: SessionControl) -> Self {
        let speech = [
            "Grimble, pour me another ale and tell me the news.",
            "Wait, what was that noise outside the window?",
            "I cast detect magic on the old chest.",
        ]
        .iter()
        .map(|t| {
            let mut s = common::espeak_16k(t);
            s.extend(common::silence(600));
            s
        })
        .collect();
        let speakers = (1..=4)
            .map(|i| Some(control.attach_speaker(SpeakerId(i)).unwrap()))
            .collect();
        Self {
            noise: common::noise(16_000, 400.0, 3),
            control,
            speakers,
            speech,
            npc: None,
            ambience: None,
            events: Vec::new(),
        }
    }

    fn frame(samples: &[i16], tick: usize) -> &[i16] {
        let frames = samples.len() / INPUT_FRAME_SAMPLES;
        let f = tick % frames;
        &samples[f * INPUT_FRAME_SAMPLES..(f + 1) * INPUT_FRAME_SAMPLES]
    }

    /// Everything the transport and the pipeline do between two ticks.
    fn before_tick(&mut self, tick: usize) {
        for (i, slot) in self.speakers.iter_mut().enumerate() {
            let Some(input) = slot.as_mut() else { continue };
            let frame = if i < 3 {
                Self::frame(&self.speech[i], tick)
            } else {
                Self::frame(&self.noise, tick)
            };
            // Speaker 1's packets stop for a while: the silence clock runs.
            if i == 0 && (200..260).contains(&tick) {
                continue;
            }
            // Speaker 2 has jitter: a frame late every 9th tick.
            if i == 1 && tick % 9 == 4 {
                continue;
            }
            let _ = input.push_frame(frame);
            if i == 1 && tick % 9 == 5 {
                let _ = input.push_frame(frame);
            }
        }
        // Speaker 3 leaves and comes back.
        if tick == 120 {
            self.speakers[2] = None;
        }
        if tick == 160 {
            self.speakers[2] = Some(self.control.attach_speaker(SpeakerId(3)).unwrap());
        }
        // Two sources mixing: an NPC line (24 kHz mono) over ambience (44.1 kHz stereo).
        if tick % 100 == 2 {
            let mut w = self.control.open_source(SourceSpec::npc(NpcId(1), 24_000, 1)).unwrap();
            let line: Vec<i16> = (0..24_000 * 3 / 2)
                .map(|i| ((i as f32 * 0.07).sin() * 9_000.0) as i16)
                .collect();
            w.write(&line);
            self.npc = Some(w);
        }
        if tick % 100 == 60 {
            if let Some(w) = self.npc.take() {
                self.control.finish_source(w).unwrap();
            }
        }
        if tick == 5 || tick == 150 {
            self.ambience = Some(self.control.open_source(SourceSpec::ambience(44_100, 2)).unwrap());
        }
        if let Some(amb) = self.ambience.as_mut() {
            let chunk: Vec<i16> = (0..1_764).map(|i| ((i as f32 * 0.01).sin() * 5_000.0) as i16).collect();
            amb.write(&chunk);
        }
        // Commands arriving.
        match tick {
            140 => self.control.cut_all().unwrap(),
            180 => self.control.set_npc_muted(NpcId(1), true).unwrap(),
            190 => self.control.set_npc_muted(NpcId(1), false).unwrap(),
            230 => self.control.cut_npc(NpcId(1)).unwrap(),
            250 => self.control.set_bot_speaker(Some(SpeakerId(4))).unwrap(),
            _ => {}
        }
    }

    fn after_tick(
        &mut self,
        events: &mut glyphoxa_audio::EventReceiver,
        utterances: &mut glyphoxa_audio::UtteranceReceiver,
        out: &mut OutputReceiver,
    ) -> (bool, bool) {
        self.events.extend(events.drain());
        while utterances.try_recv().is_some() {}
        let mut audible = false;
        let mut opus = false;
        while let Some(frame) = out.try_recv() {
            audible |= frame.audible();
            opus |= frame.opus().is_some();
        }
        (audible, opus)
    }

    fn check_exercised(&self, audible_frames: usize, opus_frames: usize) {
        let has = |f: &dyn Fn(&EngineEvent) -> bool| self.events.iter().any(f);
        assert!(has(&|e| matches!(e, EngineEvent::SpeechStarted { .. })));
        assert!(has(&|e| matches!(e, EngineEvent::VoicingStopped { .. })));
        assert!(has(&|e| matches!(e, EngineEvent::SpeechEnded(_))));
        assert!(has(&|e| matches!(e, EngineEvent::SourceStarted { .. })));
        assert!(has(&|e| matches!(e, EngineEvent::SourceFinished(r) if r.cut)));
        assert!(has(
            &|e| matches!(e, EngineEvent::SourceFinished(r) if !r.cut && r.played_ms > 0)
        ));
        assert!(audible_frames > 100, "{audible_frames}");
        assert!(opus_frames > 100, "{opus_frames}");
        let stats = self.control.stats();
        assert!(stats.synthetic_frames > 0 && stats.own_frames_ignored > 0, "{stats:?}");
    }
}

const TICKS: usize = 300;

#[test]
fn a_busy_tick_never_touches_the_heap() {
    let (sink, mut out) = output_ring(64);
    let (mut core, mut h) = SessionCore::new(&EngineSettings::default(), Box::new(sink)).unwrap();
    let mut side = BusySide::new(h.control.clone());
    let (mut audible, mut opus, mut total) = (0, 0, 0);
    for tick in 0..TICKS {
        side.before_tick(tick);
        let (_, n) = allocations_in(|| core.tick());
        total += n;
        assert_eq!(n, 0, "tick {tick} allocated {n} times");
        let (a, o) = side.after_tick(&mut h.events, &mut h.utterances, &mut out);
        audible += usize::from(a);
        opus += usize::from(o);
    }
    assert_eq!(total, 0);
    side.check_exercised(audible, opus);
    // The guard works: an allocation while armed is counted.
    let (_, n) = allocations_in(|| drop(std::hint::black_box(Box::new(1u8))));
    assert_eq!(n, 2, "allocation and deallocation are counted");
}

/// A stepped virtual clock that arms the allocation counter on the engine
/// thread for exactly the tick that follows each wait.
struct ArmingClock(VirtualClock);

impl Clock for ArmingClock {
    fn stopper(&self) -> glyphoxa_audio::ClockStopper {
        self.0.stopper()
    }

    fn wait_for_tick(&mut self, tick: u64) -> bool {
        arm(false);
        // Publish what the engine thread allocated during the tick just run.
        ENGINE_ALLOCATIONS.store(thread_count(), Ordering::Relaxed);
        let go = self.0.wait_for_tick(tick);
        ARMED_TICKS.fetch_add(u64::from(go), Ordering::Relaxed);
        arm(go);
        go
    }
}

static ARMED_TICKS: AtomicU64 = AtomicU64::new(0);
/// Allocations of the engine thread while armed (written by that thread only).
static ENGINE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[test]
fn the_engine_thread_never_touches_the_heap_while_ticking() {
    let (clock, stepper) = VirtualClock::stepped();
    let (sink, mut out) = output_ring(64);
    let (engine, mut h) = SessionEngine::spawn(
        "alloc-test",
        &EngineSettings::default(),
        Box::new(sink),
        ArmingClock(clock),
    )
    .unwrap();
    let mut side = BusySide::new(h.control.clone());
    let (mut audible, mut opus) = (0, 0);
    for tick in 0..TICKS {
        side.before_tick(tick);
        assert_eq!(stepper.run(1, Duration::from_secs(10)), tick as u64 + 1);
        let (a, o) = side.after_tick(&mut h.events, &mut h.utterances, &mut out);
        audible += usize::from(a);
        opus += usize::from(o);
    }
    side.check_exercised(audible, opus);
    drop(side);
    stepper.stop();
    // Joining the engine thread makes sure it published its last tick's count.
    engine.stop();
    let allocated = ENGINE_ALLOCATIONS.load(Ordering::Relaxed);
    assert!(ARMED_TICKS.load(Ordering::Relaxed) >= TICKS as u64);
    assert_eq!(
        allocated, 0,
        "the engine thread allocated {allocated} times while ticking"
    );
}
