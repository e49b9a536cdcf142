//! The loopback transport: WAV files in as speakers, the mixed output out
//! as a WAV file (or kept in memory). Used by tests, benches, `replay`, and
//! selected with `worker.transport: loopback`.
//!
//! Input is paced in one of two ways: in real time (a task pushes one 20 ms
//! frame per speaker every 20 ms of wall time — live sessions, benches,
//! `replay --realtime`), or stepped ([`LoopbackTransport::stepped`]): the
//! offline replay's driver pushes one frame per speaker right before each
//! tick of the engine's virtual clock, so what the engine hears at tick `n`
//! never depends on how fast the machine is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use glyphoxa_audio::{
    read_wav_file, OutputPacket, SessionControl, SpeakerId, SpeakerInput, INPUT_FRAME_SAMPLES, OUTPUT_CHANNELS,
    OUTPUT_SAMPLE_RATE,
};
use tokio::task::JoinHandle;

use super::{TransportError, VoiceTransport};

/// One speaker's scripted audio.
#[derive(Debug, Clone)]
pub struct LoopbackSpeaker {
    /// The speaker's id (a Discord user id in real sessions).
    pub id: u64,
    /// 16 kHz mono PCM the speaker "says", from the start of the session.
    pub samples: Vec<i16>,
}

impl LoopbackSpeaker {
    /// Reads any PCM WAV file as a speaker.
    pub fn from_wav(id: u64, path: &Path) -> Result<Self, TransportError> {
        let audio = read_wav_file(path).map_err(|e| TransportError::Io(format!("{}: {e}", path.display())))?;
        let samples = audio
            .to_mono_16k()
            .map_err(|e| TransportError::Io(format!("{}: {e}", path.display())))?;
        Ok(Self { id, samples })
    }
}

/// What the loopback transport heard from the engine: 48 kHz stereo PCM.
#[derive(Debug, Clone, Default)]
pub struct LoopbackOutput {
    /// Interleaved 48 kHz stereo samples, one 20 ms frame per tick.
    pub samples: Vec<i16>,
    /// Output frames that carried audible audio.
    pub audible_frames: u64,
    /// Output frames that carried an Opus packet.
    pub opus_frames: u64,
    /// Voice servers the session was moved to (endpoints, in order).
    pub voice_server_moves: Vec<String>,
}

impl LoopbackOutput {
    /// Length of the output in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / (u64::from(OUTPUT_SAMPLE_RATE) * OUTPUT_CHANNELS as u64)
    }

    /// Root-mean-square level of the output.
    pub fn rms(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        (self.samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / self.samples.len() as f64).sqrt()
    }

    /// Writes the output as a 16-bit 48 kHz stereo WAV file.
    pub fn write_wav(&self, path: &Path) -> Result<(), TransportError> {
        glyphoxa_audio::wav::write_wav_file(path, &self.samples, OUTPUT_SAMPLE_RATE, OUTPUT_CHANNELS as u16)
            .map_err(|e| TransportError::Io(e.to_string()))
    }
}

/// The attached speakers with their audio, shared between a stepped
/// transport (which attaches them when it starts) and its feeder.
type SteppedInputs = Arc<Mutex<Option<Vec<(SpeakerInput, Vec<i16>)>>>>;

/// How a loopback transport paces its input.
enum Pacing {
    /// A task pushes one frame per speaker every 20 ms of wall time.
    Realtime,
    /// A [`LoopbackFeeder`] pushes one frame per speaker per engine tick.
    Stepped(SteppedInputs),
}

/// WAV files in, PCM out, paced in real time or stepped tick by tick.
pub struct LoopbackTransport {
    speakers: Vec<LoopbackSpeaker>,
    output: Arc<Mutex<LoopbackOutput>>,
    out_path: Option<PathBuf>,
    pacing: Pacing,
    feeder: Option<JoinHandle<()>>,
    fed: Arc<AtomicBool>,
}

impl LoopbackTransport {
    /// A transport whose speakers say `speakers`' audio from the start, in
    /// real time; the output is kept in memory (see
    /// [`LoopbackTransport::output`]) and, with `out_path`, written as a WAV
    /// file when the transport stops.
    pub fn new(speakers: Vec<LoopbackSpeaker>, out_path: Option<PathBuf>) -> Self {
        Self {
            speakers,
            output: Arc::new(Mutex::new(LoopbackOutput::default())),
            out_path,
            pacing: Pacing::Realtime,
            feeder: None,
            fed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Like [`LoopbackTransport::new`], but nothing is fed by itself: the
    /// returned [`LoopbackFeeder`] pushes each speaker's next frame when
    /// told to, once per tick of a stepped engine clock.
    pub fn stepped(speakers: Vec<LoopbackSpeaker>, out_path: Option<PathBuf>) -> (Self, LoopbackFeeder) {
        let inputs: SteppedInputs = Arc::new(Mutex::new(None));
        let mut transport = Self::new(speakers, out_path);
        transport.pacing = Pacing::Stepped(inputs.clone());
        let feeder = LoopbackFeeder {
            inputs,
            offset: 0,
            fed: transport.fed.clone(),
        };
        (transport, feeder)
    }

    /// A handle to the output collected so far.
    pub fn output(&self) -> Arc<Mutex<LoopbackOutput>> {
        self.output.clone()
    }
}

/// Pushes the input of a [`LoopbackTransport::stepped`] transport, one
/// 20 ms frame per speaker per call.
pub struct LoopbackFeeder {
    inputs: SteppedInputs,
    offset: usize,
    fed: Arc<AtomicBool>,
}

impl LoopbackFeeder {
    /// Pushes every speaker's next frame (speakers whose audio is over get
    /// none: the engine's silence clock takes over). Returns false once no
    /// speaker had a frame left, or before the transport has started.
    pub fn feed_tick(&mut self) -> bool {
        let mut inputs = self.inputs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(inputs) = inputs.as_mut() else {
            return false;
        };
        let offset = self.offset;
        let mut any = false;
        for (input, samples) in inputs.iter_mut() {
            if let Some(frame) = samples.get(offset..offset + INPUT_FRAME_SAMPLES) {
                any = true;
                let _ = input.push_frame(frame);
            }
        }
        if any {
            self.offset += INPUT_FRAME_SAMPLES;
        } else {
            self.fed.store(true, Ordering::Release);
        }
        any
    }

    /// Whether every speaker's audio has been pushed.
    pub fn finished(&self) -> bool {
        self.fed.load(Ordering::Acquire)
    }
}

#[async_trait]
impl VoiceTransport for LoopbackTransport {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn wants_opus(&self) -> bool {
        false
    }

    async fn start(&mut self, control: SessionControl) -> Result<(), TransportError> {
        let mut inputs = Vec::with_capacity(self.speakers.len());
        for speaker in &self.speakers {
            let input = control
                .attach_speaker(SpeakerId(speaker.id))
                .map_err(|e| TransportError::Connection(e.to_string()))?;
            inputs.push((input, speaker.samples.clone()));
        }
        if let Pacing::Stepped(slot) = &self.pacing {
            // The feeder pushes frames tick by tick; the inputs stay attached
            // until the transport stops (the silence clock ends open utterances).
            *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(inputs);
            return Ok(());
        }
        let fed = self.fed.clone();
        // Real-time pacing: one 20 ms frame per speaker per 20 ms.
        self.feeder = Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut offset = 0;
            loop {
                interval.tick().await;
                let mut any = false;
                for (input, samples) in &mut inputs {
                    if let Some(frame) = samples.get(offset..offset + INPUT_FRAME_SAMPLES) {
                        any = true;
                        let _ = input.push_frame(frame);
                    }
                }
                offset += INPUT_FRAME_SAMPLES;
                if !any {
                    break;
                }
            }
            fed.store(true, Ordering::Release);
            // Keep the inputs attached (silence clock ends open utterances).
            std::future::pending::<()>().await;
            drop(inputs);
        }));
        Ok(())
    }

    fn deliver(&mut self, packet: &OutputPacket) {
        if let Ok(mut output) = self.output.lock() {
            output.samples.extend_from_slice(packet.pcm());
            output.audible_frames += u64::from(packet.audible());
            output.opus_frames += u64::from(packet.opus().is_some());
        }
    }

    async fn update_voice_server(
        &mut self,
        _token: &str,
        endpoint: &str,
        _voice_session_id: &str,
    ) -> Result<(), TransportError> {
        let mut output = self
            .output
            .lock()
            .map_err(|_| TransportError::Io("output poisoned".into()))?;
        output.voice_server_moves.push(endpoint.to_string());
        Ok(())
    }

    fn input_finished(&self) -> bool {
        self.fed.load(Ordering::Acquire)
    }

    async fn stop(&mut self) -> Result<(), TransportError> {
        if let Some(feeder) = self.feeder.take() {
            feeder.abort();
        }
        if let Pacing::Stepped(slot) = &self.pacing {
            slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        }
        if let Some(path) = &self.out_path {
            let output = self.output.lock().map(|o| o.clone()).unwrap_or_default();
            output.write_wav(path)?;
        }
        Ok(())
    }
}
