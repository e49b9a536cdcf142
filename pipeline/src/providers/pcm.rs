//! PCM audio as providers send and receive it.

use std::io::Cursor;

/// A piece of synthesized speech: interleaved signed 16-bit samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcmChunk {
    /// Interleaved samples (`channels` per frame).
    pub samples: Vec<i16>,
    /// Samples per second per channel, e.g. 24000.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (stereo).
    pub channels: u16,
}

impl PcmChunk {
    /// Length in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        let frames = self.samples.len() as f64 / f64::from(self.channels.max(1));
        frames * 1000.0 / f64::from(self.sample_rate.max(1))
    }
}

/// Turns a byte stream of s16le PCM into whole samples, carrying an odd
/// trailing byte over to the next piece (network chunks split samples).
#[derive(Debug, Default)]
pub struct S16leAssembler {
    carry: Option<u8>,
}

impl S16leAssembler {
    /// Appends the samples completed by `bytes` to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        let mut rest = bytes;
        if let Some(low) = self.carry.take() {
            match rest.split_first() {
                Some((&high, tail)) => {
                    out.push(i16::from_le_bytes([low, high]));
                    rest = tail;
                }
                None => {
                    self.carry = Some(low);
                    return;
                }
            }
        }
        let pairs = rest.chunks_exact(2);
        self.carry = pairs.remainder().first().copied();
        out.extend(pairs.map(|pair| i16::from_le_bytes([pair[0], pair[1]])));
    }

    /// Whether half a sample is still waiting for its second byte.
    pub fn has_partial_sample(&self) -> bool {
        self.carry.is_some()
    }
}

/// Decodes a raw s16le PCM response body into [`PcmChunk`]s.
#[derive(Debug)]
pub struct PcmBodyDecoder {
    assembler: S16leAssembler,
    sample_rate: u32,
    channels: u16,
}

impl PcmBodyDecoder {
    /// A decoder for audio of this rate and channel count.
    pub fn new(sample_rate: u32, channels: u16) -> Self {
        Self {
            assembler: S16leAssembler::default(),
            sample_rate,
            channels,
        }
    }
}

impl super::http::ChunkDecoder for PcmBodyDecoder {
    type Item = PcmChunk;

    fn decode(
        &mut self,
        bytes: &[u8],
        out: &mut std::collections::VecDeque<PcmChunk>,
    ) -> Result<(), super::ProviderError> {
        let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
        self.assembler.push(bytes, &mut samples);
        if !samples.is_empty() {
            out.push_back(PcmChunk {
                samples,
                sample_rate: self.sample_rate,
                channels: self.channels,
            });
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut std::collections::VecDeque<PcmChunk>) -> Result<(), super::ProviderError> {
        // A dangling half sample at the very end carries no audible audio.
        Ok(())
    }

    fn units(item: &PcmChunk) -> u64 {
        item.samples.len() as u64
    }
}

/// Encodes mono 16-bit PCM as a WAV file in memory.
pub fn encode_wav(samples: &[i16], sample_rate: u32) -> Result<Vec<u8>, hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec)?;
        let mut writer16 = writer.get_i16_writer(samples.len() as u32);
        for &sample in samples {
            writer16.write_sample(sample);
        }
        writer16.flush()?;
        writer.finalize()?;
    }
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_joins_samples_split_across_chunks() {
        let samples: Vec<i16> = vec![1, -2, 300, -32768, 32767, 12345];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for split in [1, 3, 5, 7] {
            let mut assembler = S16leAssembler::default();
            let mut out = Vec::new();
            for piece in bytes.chunks(split) {
                assembler.push(piece, &mut out);
            }
            assert_eq!(out, samples, "split {split}");
            assert!(!assembler.has_partial_sample());
        }
        let mut assembler = S16leAssembler::default();
        let mut out = Vec::new();
        assembler.push(&[1], &mut out);
        assembler.push(&[], &mut out);
        assert!(out.is_empty() && assembler.has_partial_sample());
    }

    #[test]
    fn wav_round_trips() {
        let samples: Vec<i16> = (0..1600).map(|i| (i * 7) as i16).collect();
        let wav = encode_wav(&samples, 16000).unwrap();
        let mut reader = hound::WavReader::new(Cursor::new(wav)).unwrap();
        assert_eq!(reader.spec().sample_rate, 16000);
        let back: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(back, samples);
    }

    #[test]
    fn chunk_duration() {
        let chunk = PcmChunk {
            samples: vec![0; 4800],
            sample_rate: 24000,
            channels: 2,
        };
        assert_eq!(chunk.duration_ms(), 100.0);
    }
}
