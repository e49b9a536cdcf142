//! Opus codec helpers: the output encoder used by the tick and a per-speaker
//! decoder for transports and tools that deliver Opus packets.
//!
//! Both use `opus2`, the binding songbird 0.6 uses, so the build links a
//! single libopus. libopus encodes and decodes on the stack: no heap
//! allocation after construction.

use opus2::{Application, Bitrate, Channels, Decoder, Encoder};

use crate::error::AudioError;
use crate::frame::{INPUT_FRAME_SAMPLES, INPUT_SAMPLE_RATE, OUTPUT_FRAME_SAMPLES, OUTPUT_SAMPLE_RATE};
use crate::settings::{OpusApplication, OpusSettings};

/// Largest Opus packet the encoder writes for one 20 ms frame (the Opus
/// specification's maximum frame size is 1275 bytes).
pub const MAX_OPUS_PACKET: usize = 1_275;

/// Longest packet duration Opus allows (120 ms), in 16 kHz mono samples.
const MAX_DECODED_SAMPLES: usize = 6 * INPUT_FRAME_SAMPLES;

/// Encodes 20 ms of 48 kHz interleaved stereo into one Opus packet.
pub struct OpusFrameEncoder {
    encoder: Encoder,
}

impl std::fmt::Debug for OpusFrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusFrameEncoder").finish_non_exhaustive()
    }
}

impl OpusFrameEncoder {
    /// Creates an encoder with the given bitrate, complexity and application.
    pub fn new(settings: &OpusSettings) -> Result<Self, AudioError> {
        settings.validate()?;
        let application = match settings.application {
            OpusApplication::Voip => Application::Voip,
            OpusApplication::Audio => Application::Audio,
            OpusApplication::LowDelay => Application::LowDelay,
        };
        let mut encoder =
            Encoder::new(OUTPUT_SAMPLE_RATE, Channels::Stereo, application).map_err(|source| AudioError::Opus {
                context: "encoder creation",
                source,
            })?;
        // Bounded by validate(): 6 000..=510 000 fits an i32.
        let bitrate = i32::try_from(settings.bitrate_bps).unwrap_or(i32::MAX);
        encoder
            .set_bitrate(Bitrate::Bits(bitrate))
            .map_err(|source| AudioError::Opus {
                context: "setting the bitrate",
                source,
            })?;
        encoder
            .set_complexity(i32::from(settings.complexity))
            .map_err(|source| AudioError::Opus {
                context: "setting the complexity",
                source,
            })?;
        Ok(Self { encoder })
    }

    /// Encodes one output frame (exactly 1920 interleaved samples) into
    /// `packet`, returning the packet length. Does not allocate.
    pub fn encode(&mut self, pcm: &[i16], packet: &mut [u8]) -> Result<usize, AudioError> {
        if pcm.len() != OUTPUT_FRAME_SAMPLES {
            return Err(AudioError::FrameLength {
                what: "output frame",
                expected: OUTPUT_FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        self.encoder.encode(pcm, packet).map_err(|source| AudioError::Opus {
            context: "encoding",
            source,
        })
    }
}

/// Decodes one speaker's Opus packets straight to 16 kHz mono, the format the
/// engine's speaker inputs take. One decoder per speaker (Opus is stateful).
pub struct OpusSpeakerDecoder {
    decoder: Decoder,
    pcm: Box<[i16; MAX_DECODED_SAMPLES]>,
}

impl std::fmt::Debug for OpusSpeakerDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusSpeakerDecoder").finish_non_exhaustive()
    }
}

impl OpusSpeakerDecoder {
    /// Creates a decoder producing 16 kHz mono.
    pub fn new() -> Result<Self, AudioError> {
        let decoder = Decoder::new(INPUT_SAMPLE_RATE, Channels::Mono).map_err(|source| AudioError::Opus {
            context: "decoder creation",
            source,
        })?;
        Ok(Self {
            decoder,
            pcm: Box::new([0; MAX_DECODED_SAMPLES]),
        })
    }

    /// Decodes one packet; returns its samples (320 for a 20 ms packet).
    /// Empty or corrupt packets are errors, never panics.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], AudioError> {
        if packet.is_empty() {
            return Err(AudioError::EmptyFrame { what: "Opus packet" });
        }
        let n = self
            .decoder
            .decode(packet, &mut self.pcm[..], false)
            .map_err(|source| AudioError::Opus {
                context: "decoding",
                source,
            })?;
        Ok(&self.pcm[..n.min(MAX_DECODED_SAMPLES)])
    }

    /// Produces 20 ms of packet-loss concealment after a lost packet.
    pub fn conceal_loss(&mut self) -> Result<&[i16], AudioError> {
        let n = self
            .decoder
            .decode(&[], &mut self.pcm[..INPUT_FRAME_SAMPLES], false)
            .map_err(|source| AudioError::Opus {
                context: "packet-loss concealment",
                source,
            })?;
        Ok(&self.pcm[..n.min(INPUT_FRAME_SAMPLES)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone_frame(phase: &mut f32) -> Vec<i16> {
        let mut v = Vec::with_capacity(OUTPUT_FRAME_SAMPLES);
        for _ in 0..OUTPUT_FRAME_SAMPLES / 2 {
            let s = (phase.sin() * 8_000.0) as i16;
            *phase += 2.0 * std::f32::consts::PI * 440.0 / 48_000.0;
            v.push(s);
            v.push(s);
        }
        v
    }

    #[test]
    fn encode_then_decode_to_sixteen_khz_mono() {
        let mut enc = OpusFrameEncoder::new(&OpusSettings::default()).unwrap();
        let mut dec = OpusSpeakerDecoder::new().unwrap();
        let mut phase = 0.0;
        let mut packet = [0u8; MAX_OPUS_PACKET];
        let mut energy = 0.0f64;
        for _ in 0..10 {
            let pcm = tone_frame(&mut phase);
            let n = enc.encode(&pcm, &mut packet).unwrap();
            assert!(n > 0 && n <= MAX_OPUS_PACKET);
            let out = dec.decode(&packet[..n]).unwrap();
            assert_eq!(out.len(), INPUT_FRAME_SAMPLES);
            energy += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        }
        assert!(energy > 1e6, "decoded tone should not be silent");
        assert_eq!(dec.conceal_loss().unwrap().len(), INPUT_FRAME_SAMPLES);
    }

    #[test]
    fn garbage_and_empty_packets_are_errors() {
        let mut dec = OpusSpeakerDecoder::new().unwrap();
        assert!(matches!(dec.decode(&[]), Err(AudioError::EmptyFrame { .. })));
        // A code-3 packet header claiming 63 frames with no payload is invalid.
        assert!(dec.decode(&[0xff, 0xff]).is_err());
        // Random garbage never panics (it may or may not decode).
        let mut x = 0x1234_5678u32;
        for len in 1..200 {
            let packet: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = dec.decode(&packet);
        }
    }

    #[test]
    fn encoder_rejects_wrong_frame_length() {
        let mut enc = OpusFrameEncoder::new(&OpusSettings::default()).unwrap();
        let mut packet = [0u8; MAX_OPUS_PACKET];
        assert!(enc.encode(&[0; 100], &mut packet).is_err());
        assert!(enc.encode(&[], &mut packet).is_err());
    }
}
