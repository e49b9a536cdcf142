//! Local text to speech with espeak-ng: no network, no API key — the
//! zero-configuration default voice of every NPC.
//!
//! Each sentence runs one `espeak-ng --stdout` process (a few milliseconds
//! per sentence); its WAV output is streamed as it is produced. Dropping the
//! stream kills the process.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::ProviderError;
use super::http::{decode_bytes, ChunkDecoder};
use super::metrics::{CallMeter, CallObserver, Stage};
use super::pcm::{PcmChunk, S16leAssembler};
use super::policy::CallPolicy;
use super::tts::{PcmStream, TextToSpeech, TtsRequest};

/// Provider name in logs, metrics and errors.
pub const PROVIDER: &str = "espeak";
/// espeak-ng's normal speaking rate in words per minute.
const NORMAL_WPM: f32 = 175.0;
/// What to tell a user whose machine lacks espeak-ng.
const INSTALL_HINT: &str =
    "espeak-ng is not installed: run scripts/setup.sh, or install it (Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng)";

/// Speech synthesis with the espeak-ng command-line program.
#[derive(Clone)]
pub struct EspeakTts {
    program: PathBuf,
    default_voice: String,
    policy: CallPolicy,
    observer: Arc<dyn CallObserver>,
}

impl EspeakTts {
    /// Uses `program` (normally `espeak-ng` from `PATH`) with `default_voice`
    /// (e.g. `en-us`) for NPCs that name none.
    pub fn new(
        program: impl Into<PathBuf>,
        default_voice: impl Into<String>,
        policy: CallPolicy,
        observer: Arc<dyn CallObserver>,
    ) -> Self {
        Self {
            program: program.into(),
            default_voice: default_voice.into(),
            policy,
            observer,
        }
    }

    /// Checks that the program runs; the error says how to install it.
    pub async fn check(&self) -> Result<String, ProviderError> {
        let output = Command::new(&self.program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| self.spawn_error(&e))?;
        if !output.status.success() {
            return Err(ProviderError::Unavailable {
                provider: PROVIDER,
                message: format!(
                    "{} --version failed: {}",
                    self.program.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn spawn_error(&self, error: &std::io::Error) -> ProviderError {
        if error.kind() == std::io::ErrorKind::NotFound {
            ProviderError::Unavailable {
                provider: PROVIDER,
                message: format!("{} not found. {INSTALL_HINT}", self.program.display()),
            }
        } else {
            ProviderError::Unavailable {
                provider: PROVIDER,
                message: format!("cannot run {}: {error}", self.program.display()),
            }
        }
    }

    /// The espeak-ng arguments for `request`: voice, rate (words per minute) and pitch (0–99).
    pub fn arguments(&self, request: &TtsRequest) -> Vec<String> {
        let voice = request
            .voice
            .voice_id
            .clone()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| self.default_voice.clone());
        let speed = if request.voice.speed.is_finite() {
            request.voice.speed
        } else {
            1.0
        };
        let wpm = (NORMAL_WPM * speed).clamp(80.0, 450.0).round() as u32;
        let pitch = (50 + request.voice.pitch.clamp(-100, 100) / 2).clamp(0, 99);
        vec![
            "--stdout".into(),
            "--stdin".into(),
            "-v".into(),
            voice,
            "-s".into(),
            wpm.to_string(),
            "-p".into(),
            pitch.to_string(),
        ]
    }
}

#[async_trait]
impl TextToSpeech for EspeakTts {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        let meter = CallMeter::start(self.observer.clone(), PROVIDER, Stage::Tts);
        let deadline = self.policy.call_deadline(request.deadline);
        let mut child = Command::new(&self.program)
            .args(self.arguments(&request))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.spawn_error(&e))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| ProviderError::protocol(PROVIDER, "no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ProviderError::protocol(PROVIDER, "no stdout"))?;
        // One line of text; espeak-ng reads until end of input.
        let text = request.text.replace(['\n', '\r'], " ");
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| ProviderError::protocol(PROVIDER, format!("cannot pass text to espeak-ng: {e}")))?;
        drop(stdin);

        let audio = tokio_util::io::ReaderStream::new(stdout).map(|chunk| {
            chunk.map_err(|e| ProviderError::protocol(PROVIDER, format!("cannot read espeak-ng output: {e}")))
        });
        // After the audio: the exit status (a failing voice name shows up here).
        let exit = stream::once(async move {
            let output = child.wait_with_output().await;
            match output {
                Ok(output) if output.status.success() => None,
                Ok(output) => Some(Err(ProviderError::Unavailable {
                    provider: PROVIDER,
                    message: format!(
                        "espeak-ng failed ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                })),
                Err(e) => Some(Err(ProviderError::protocol(
                    PROVIDER,
                    format!("espeak-ng did not finish: {e}"),
                ))),
            }
        })
        .filter_map(|item| async move { item });
        let body: BoxStream<'static, Result<Bytes, ProviderError>> = audio.chain(exit).boxed();
        Ok(decode_bytes(
            PROVIDER,
            &self.policy,
            body,
            WavStreamDecoder::default(),
            meter,
            deadline,
        ))
    }
}

/// Decodes a WAV file as it streams: the header first, then PCM chunks.
#[derive(Debug, Default)]
pub struct WavStreamDecoder {
    header: Vec<u8>,
    format: Option<(u32, u16)>,
    assembler: S16leAssembler,
}

impl WavStreamDecoder {
    /// Parses the header once enough bytes are there; returns where the data starts.
    fn parse_header(&self) -> Result<Option<(u32, u16, usize)>, ProviderError> {
        let h = &self.header;
        if h.len() < 12 {
            return Ok(None);
        }
        if &h[0..4] != b"RIFF" || &h[8..12] != b"WAVE" {
            return Err(ProviderError::protocol(PROVIDER, "output is not a WAV file"));
        }
        let mut pos = 12;
        let mut format = None;
        while pos + 8 <= h.len() {
            let id = &h[pos..pos + 4];
            let size = u32::from_le_bytes([h[pos + 4], h[pos + 5], h[pos + 6], h[pos + 7]]) as usize;
            let body = pos + 8;
            if id == b"data" {
                let (rate, channels) =
                    format.ok_or_else(|| ProviderError::protocol(PROVIDER, "WAV data before its format"))?;
                return Ok(Some((rate, channels, body)));
            }
            if body + size > h.len() {
                return Ok(None);
            }
            if id == b"fmt " {
                if size < 16 {
                    return Err(ProviderError::protocol(PROVIDER, "WAV format chunk too short"));
                }
                let tag = u16::from_le_bytes([h[body], h[body + 1]]);
                let channels = u16::from_le_bytes([h[body + 2], h[body + 3]]);
                let rate = u32::from_le_bytes([h[body + 4], h[body + 5], h[body + 6], h[body + 7]]);
                let bits = u16::from_le_bytes([h[body + 14], h[body + 15]]);
                if tag != 1 || bits != 16 || channels == 0 || rate == 0 {
                    return Err(ProviderError::protocol(
                        PROVIDER,
                        format!("unsupported WAV format (tag {tag}, {bits} bits, {channels} channels, {rate} Hz)"),
                    ));
                }
                format = Some((rate, channels));
            }
            pos = body + size + (size & 1);
        }
        if h.len() > 4096 {
            return Err(ProviderError::protocol(PROVIDER, "WAV header too long"));
        }
        Ok(None)
    }
}

impl ChunkDecoder for WavStreamDecoder {
    type Item = PcmChunk;

    fn decode(&mut self, bytes: &[u8], out: &mut VecDeque<PcmChunk>) -> Result<(), ProviderError> {
        let mut samples = Vec::new();
        match self.format {
            Some(_) => self.assembler.push(bytes, &mut samples),
            None => {
                self.header.extend_from_slice(bytes);
                if let Some((rate, channels, data_start)) = self.parse_header()? {
                    self.format = Some((rate, channels));
                    let rest = self.header.split_off(data_start);
                    self.assembler.push(&rest, &mut samples);
                }
            }
        }
        if let (Some((sample_rate, channels)), false) = (self.format, samples.is_empty()) {
            out.push_back(PcmChunk {
                samples,
                sample_rate,
                channels,
            });
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut VecDeque<PcmChunk>) -> Result<(), ProviderError> {
        if self.format.is_none() {
            return Err(ProviderError::protocol(PROVIDER, "espeak-ng produced no audio"));
        }
        Ok(())
    }

    fn units(item: &PcmChunk) -> u64 {
        item.samples.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::VoiceSpec;
    use crate::providers::{CallLog, CallOutcome};

    fn request(text: &str) -> TtsRequest {
        TtsRequest {
            text: text.into(),
            voice: VoiceSpec::default(),
            deadline: None,
        }
    }

    fn espeak(log: Arc<CallLog>) -> EspeakTts {
        EspeakTts::new("espeak-ng", "en-us", CallPolicy::default(), log)
    }

    #[test]
    fn voice_speed_and_pitch_map_to_arguments() {
        let tts = espeak(Arc::default());
        let mut req = request("hi");
        req.voice = VoiceSpec {
            provider: None,
            voice_id: Some("en-gb+f3".into()),
            speed: 2.0,
            pitch: -100,
        };
        assert_eq!(
            tts.arguments(&req),
            ["--stdout", "--stdin", "-v", "en-gb+f3", "-s", "350", "-p", "0"]
        );
        assert_eq!(tts.arguments(&request("hi"))[3..], ["en-us", "-s", "175", "-p", "50"]);
    }

    #[tokio::test]
    async fn speaks_a_sentence_as_audible_pcm_of_plausible_length() {
        let log = Arc::new(CallLog::default());
        let tts = espeak(log.clone());
        let mut stream = tts
            .synthesize(request("Welcome to the Sleeping Giant, traveller."))
            .await
            .unwrap();
        let mut samples = Vec::new();
        let mut rate = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            rate = chunk.sample_rate;
            assert_eq!(chunk.channels, 1);
            samples.extend(chunk.samples);
        }
        drop(stream);
        assert!(rate >= 16_000, "rate {rate}");
        let seconds = samples.len() as f64 / f64::from(rate);
        assert!((1.0..6.0).contains(&seconds), "{seconds} s for a seven-word sentence");
        let rms = (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
        assert!(rms > 500.0, "speech is audible (rms {rms})");
        let records = log.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].outcome, CallOutcome::Ok);
        assert_eq!(records[0].units, samples.len() as u64);
        assert!(records[0].first_byte.is_some());
    }

    #[tokio::test]
    async fn missing_program_says_how_to_install() {
        let tts = EspeakTts::new(
            "/nonexistent/espeak-ng",
            "en",
            CallPolicy::default(),
            Arc::new(CallLog::default()),
        );
        let err = match tts.synthesize(request("hello")).await {
            Ok(_) => panic!("synthesized without a program"),
            Err(err) => err,
        };
        assert!(matches!(err, ProviderError::Unavailable { .. }));
        assert!(err.to_string().contains("apt-get install espeak-ng"), "{err}");
        assert!(tts.check().await.is_err());
    }

    #[tokio::test]
    async fn check_reports_the_version() {
        let version = espeak(Arc::default()).check().await.unwrap();
        assert!(version.to_lowercase().contains("espeak"), "{version}");
    }

    #[test]
    fn wav_decoder_handles_split_headers_and_rejects_garbage() {
        let samples: Vec<i16> = (0..100).collect();
        let wav = crate::providers::pcm::encode_wav(&samples, 22_050).unwrap();
        for piece in [1, 5, 43, 44, 45, 1000] {
            let mut decoder = WavStreamDecoder::default();
            let mut out = VecDeque::new();
            for chunk in wav.chunks(piece) {
                decoder.decode(chunk, &mut out).unwrap();
            }
            decoder.finish(&mut out).unwrap();
            let got: Vec<i16> = out.iter().flat_map(|c| c.samples.clone()).collect();
            assert_eq!(got, samples, "piece {piece}");
            assert!(out.iter().all(|c| c.sample_rate == 22_050));
        }
        let mut decoder = WavStreamDecoder::default();
        assert!(decoder
            .decode(b"this is not a wav file at all", &mut VecDeque::new())
            .is_err());
        let mut decoder = WavStreamDecoder::default();
        decoder.decode(b"RIFF", &mut VecDeque::new()).unwrap();
        assert!(decoder.finish(&mut VecDeque::new()).is_err(), "no audio is an error");
    }
}
