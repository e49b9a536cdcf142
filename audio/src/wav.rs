//! A tolerant WAV reader for the offline tools: any PCM or float WAV, any
//! rate and channel count, unknown chunks (LIST/INFO, fact, …) skipped,
//! streamed files with a placeholder length (e.g. `espeak-ng --stdout`)
//! read to the end. Truncated files, absurd rates and malformed headers are
//! errors, never panics.

use std::io::{self, Read};
use std::path::Path;

use crate::error::AudioError;
use crate::frame::INPUT_SAMPLE_RATE;
use crate::resample::{resample_offline, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// Data-chunk lengths at or above this are placeholders of streamed WAVs.
const STREAMING_LENGTH: u32 = 0x7FFF_0000;
/// Largest fmt chunk accepted.
const MAX_FMT_LEN: u32 = 1_024;
/// Most channels accepted.
const MAX_CHANNELS: u16 = 64;

/// Decoded WAV audio: interleaved samples, full scale = 1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct WavAudio {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// Interleaved samples in [-1, 1].
    pub samples: Vec<f32>,
}

impl WavAudio {
    /// Sample frames (per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.frames() as u64 * 1000 / u64::from(self.sample_rate.max(1))
    }

    /// Averages the channels.
    pub fn to_mono(&self) -> Vec<f32> {
        let channels = usize::from(self.channels.max(1));
        self.samples
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    }

    /// Downmixes and resamples to 16 kHz mono i16, the VAD's format.
    pub fn to_mono_16k(&self) -> Result<Vec<i16>, AudioError> {
        let mono = self.to_mono();
        let resampled = resample_offline(&mono, self.sample_rate, INPUT_SAMPLE_RATE)?;
        Ok(resampled
            .iter()
            .map(|&s| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
            .collect())
    }
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Int,
    Float,
}

#[derive(Debug, Clone, Copy)]
struct Format {
    encoding: Encoding,
    channels: u16,
    sample_rate: u32,
    bytes_per_sample: usize,
}

fn io_err(context: &str) -> impl FnOnce(io::Error) -> AudioError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            AudioError::WavFormat(format!("file ends inside the {context}"))
        } else {
            AudioError::Io {
                context: format!("reading the WAV {context}"),
                source,
            }
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn parse_fmt(b: &[u8]) -> Result<Format, AudioError> {
    if b.len() < 16 {
        return Err(AudioError::WavFormat(format!(
            "fmt chunk is {} bytes, at least 16 expected",
            b.len()
        )));
    }
    let mut tag = u16_at(b, 0);
    let channels = u16_at(b, 2);
    let sample_rate = u32_at(b, 4);
    let block_align = u16_at(b, 12);
    let bits = u16_at(b, 14);
    if tag == 0xFFFE {
        if b.len() < 40 {
            return Err(AudioError::WavFormat(
                "WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes".to_owned(),
            ));
        }
        tag = u16_at(b, 24);
    }
    let encoding = match (tag, bits) {
        (1, 8 | 16 | 24 | 32) => Encoding::Int,
        (3, 32 | 64) => Encoding::Float,
        (1 | 3, _) => {
            return Err(AudioError::WavFormat(format!(
                "{bits}-bit samples are not supported (use 8, 16, 24 or 32-bit PCM, or 32/64-bit float)"
            )))
        }
        _ => {
            return Err(AudioError::WavFormat(format!(
                "format tag {tag:#06x} is not PCM or IEEE float (compressed WAVs are not supported)"
            )))
        }
    };
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(AudioError::UnsupportedChannels {
            channels: u32::from(channels),
            reason: "a WAV file must have between 1 and 64 channels",
        });
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(AudioError::UnsupportedSampleRate {
            rate: sample_rate,
            reason: "must be between 4000 and 384000 Hz",
        });
    }
    let bytes_per_sample = usize::from(bits / 8);
    if usize::from(block_align) != bytes_per_sample * usize::from(channels) {
        return Err(AudioError::WavFormat(format!(
            "block align {block_align} does not match {channels} channels of {bits}-bit samples"
        )));
    }
    Ok(Format {
        encoding,
        channels,
        sample_rate,
        bytes_per_sample,
    })
}

fn decode(format: &Format, data: &[u8]) -> Vec<f32> {
    let n = format.bytes_per_sample;
    data.chunks_exact(n)
        .map(|s| match (format.encoding, n) {
            (Encoding::Int, 1) => (f32::from(s[0]) - 128.0) / 128.0,
            (Encoding::Int, 2) => f32::from(i16::from_le_bytes([s[0], s[1]])) / 32_768.0,
            (Encoding::Int, 3) => (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0,
            (Encoding::Int, _) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
            (Encoding::Float, 4) => {
                let v = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            }
            (Encoding::Float, _) => {
                let v = f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
                if v.is_finite() {
                    v.clamp(-1.0, 1.0) as f32
                } else {
                    0.0
                }
            }
        })
        .collect()
}

/// Reads a whole WAV stream.
pub fn read_wav(mut reader: impl Read) -> Result<WavAudio, AudioError> {
    let mut header = [0u8; 12];
    reader.read_exact(&mut header).map_err(io_err("RIFF header"))?;
    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return Err(AudioError::WavFormat(
            "missing RIFF/WAVE header (RF64, RIFX and non-WAV files are not supported)".to_owned(),
        ));
    }
    let mut format = None;
    loop {
        let mut chunk = [0u8; 8];
        reader.read_exact(&mut chunk).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                AudioError::WavFormat("no data chunk found".to_owned())
            } else {
                io_err("chunk header")(e)
            }
        })?;
        let id = [chunk[0], chunk[1], chunk[2], chunk[3]];
        let len = u32_at(&chunk, 4);
        match &id {
            b"fmt " => {
                if len > MAX_FMT_LEN {
                    return Err(AudioError::WavFormat(format!(
                        "fmt chunk of {len} bytes is implausibly large"
                    )));
                }
                let mut body = vec![0u8; len as usize + (len as usize & 1)];
                reader.read_exact(&mut body).map_err(io_err("fmt chunk"))?;
                format = Some(parse_fmt(&body[..len as usize])?);
            }
            b"data" => {
                let Some(format) = format else {
                    return Err(AudioError::WavFormat("data chunk before the fmt chunk".to_owned()));
                };
                let mut data = Vec::new();
                let frame_bytes = format.bytes_per_sample * usize::from(format.channels);
                if len >= STREAMING_LENGTH {
                    reader.read_to_end(&mut data).map_err(io_err("data chunk"))?;
                    data.truncate(data.len() / frame_bytes * frame_bytes);
                } else {
                    reader
                        .by_ref()
                        .take(u64::from(len))
                        .read_to_end(&mut data)
                        .map_err(io_err("data chunk"))?;
                    if data.len() < len as usize {
                        return Err(AudioError::TruncatedWav {
                            declared: u64::from(len),
                            found: data.len() as u64,
                        });
                    }
                    if data.len() % frame_bytes != 0 {
                        return Err(AudioError::WavFormat(format!(
                            "data chunk of {len} bytes is not a whole number of {frame_bytes}-byte sample frames"
                        )));
                    }
                }
                return Ok(WavAudio {
                    sample_rate: format.sample_rate,
                    channels: format.channels,
                    samples: decode(&format, &data),
                });
            }
            _ => {
                let skip = u64::from(len) + u64::from(len & 1);
                let skipped =
                    io::copy(&mut reader.by_ref().take(skip), &mut io::sink()).map_err(io_err("skipped chunk"))?;
                if skipped < skip {
                    return Err(AudioError::WavFormat(format!(
                        "file ends inside the {:?} chunk",
                        String::from_utf8_lossy(&id)
                    )));
                }
            }
        }
    }
}

/// Reads a WAV file.
pub fn read_wav_file(path: &Path) -> Result<WavAudio, AudioError> {
    let file = std::fs::File::open(path).map_err(|source| AudioError::Io {
        context: format!("opening {}", path.display()),
        source,
    })?;
    read_wav(io::BufReader::new(file))
}

/// Writes 16-bit PCM (interleaved when `channels` > 1) as a WAV file.
pub fn write_wav_file(path: &Path, samples: &[i16], sample_rate: u32, channels: u16) -> Result<(), AudioError> {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let io = |e: hound::Error| AudioError::WavFormat(format!("writing {}: {e}", path.display()));
    let mut writer = hound::WavWriter::create(path, spec).map_err(io)?;
    let mut pcm = writer.get_i16_writer(samples.len() as u32);
    for &sample in samples {
        pcm.write_sample(sample);
    }
    pcm.flush().map_err(io)?;
    writer.finalize().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_unchanged() {
        let dir = std::env::temp_dir().join(format!("glyphoxa-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stereo.wav");
        let samples: Vec<i16> = (0..960).map(|i| (i * 31 % 2000 - 1000) as i16).collect();
        write_wav_file(&path, &samples, 48_000, 2).unwrap();
        let audio = read_wav_file(&path).unwrap();
        assert_eq!((audio.sample_rate, audio.channels, audio.frames()), (48_000, 2, 480));
        let missing = write_wav_file(&dir.join("no/such/dir.wav"), &samples, 48_000, 2).unwrap_err();
        assert!(missing.to_string().contains("no/such/dir.wav"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn wav(fmt: &[u8], extra: &[u8], data: &[u8], data_len: u32) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        v.extend_from_slice(fmt);
        v.extend_from_slice(extra);
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * bits / 8;
        let mut f = Vec::new();
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    #[test]
    fn skips_odd_sized_unknown_chunks_and_decodes_stereo() {
        // LIST chunk of odd length 3 plus its pad byte.
        let extra = b"LIST\x03\0\0\0abc\0";
        let data: Vec<u8> = [16_384i16, -16_384, 0, 32_767]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let bytes = wav(&fmt(1, 2, 44_100, 16), extra, &data, data.len() as u32);
        let audio = read_wav(&bytes[..]).unwrap();
        assert_eq!(audio.channels, 2);
        assert_eq!(audio.sample_rate, 44_100);
        assert_eq!(audio.samples, vec![0.5, -0.5, 0.0, 32_767.0 / 32_768.0]);
        assert_eq!(audio.to_mono(), vec![0.0, 32_767.0 / 65_536.0]);
    }

    #[test]
    fn decodes_8_24_32_bit_and_float() {
        let a = read_wav(&wav(&fmt(1, 1, 8_000, 8), &[], &[0, 128, 255, 0], 4)[..]).unwrap();
        assert_eq!(a.samples[..3], [-1.0, 0.0, 127.0 / 128.0]);
        let a = read_wav(&wav(&fmt(1, 1, 8_000, 24), &[], &[0, 0, 0x40, 0, 0, 0xc0], 6)[..]).unwrap();
        assert_eq!(a.samples, vec![0.5, -0.5]);
        let a = read_wav(&wav(&fmt(1, 1, 8_000, 32), &[], &i32::MIN.to_le_bytes(), 4)[..]).unwrap();
        assert_eq!(a.samples, vec![-1.0]);
        let a = read_wav(&wav(&fmt(3, 1, 8_000, 32), &[], &0.25f32.to_le_bytes(), 4)[..]).unwrap();
        assert_eq!(a.samples, vec![0.25]);
    }

    #[test]
    fn streamed_length_reads_to_the_end() {
        let bytes = wav(&fmt(1, 1, 16_000, 16), &[], &[1, 0, 2, 0, 3], 0x7fff_f000);
        let audio = read_wav(&bytes[..]).unwrap();
        assert_eq!(audio.samples.len(), 2);
    }

    #[test]
    fn bad_files_are_errors() {
        let good = wav(&fmt(1, 1, 16_000, 16), &[], &[0; 100], 100);
        // Truncated data.
        let err = read_wav(&good[..good.len() - 10]).unwrap_err();
        assert!(
            matches!(
                err,
                AudioError::TruncatedWav {
                    declared: 100,
                    found: 90
                }
            ),
            "{err}"
        );
        // Truncated everywhere else: never a panic.
        for cut in 0..44 {
            assert!(read_wav(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Absurd sample rates.
        for rate in [0, 1, 3_999, 10_000_000] {
            let bytes = wav(&fmt(1, 1, rate, 16), &[], &[0; 4], 4);
            assert!(matches!(
                read_wav(&bytes[..]),
                Err(AudioError::UnsupportedSampleRate { .. })
            ));
        }
        // Zero channels, compressed, odd bit depth, not RIFF, huge fmt.
        assert!(read_wav(&wav(&fmt(1, 0, 16_000, 16), &[], &[], 0)[..]).is_err());
        assert!(read_wav(&wav(&fmt(2, 1, 16_000, 16), &[], &[0; 4], 4)[..]).is_err());
        assert!(read_wav(&wav(&fmt(1, 1, 16_000, 12), &[], &[0; 4], 4)[..]).is_err());
        assert!(read_wav(&b"OggS\0\0\0\0WAVE"[..]).is_err());
        let mut huge = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_wav(&huge[..]).is_err());
        // A data chunk that is not a whole number of frames.
        assert!(read_wav(&wav(&fmt(1, 2, 16_000, 16), &[], &[0; 6], 6)[..]).is_err());
        // Unknown chunk running past the end.
        let mut v = b"RIFF\0\0\0\0WAVEJUNK\xff\0\0\0abc".to_vec();
        v.extend_from_slice(&[0; 4]);
        assert!(read_wav(&v[..]).is_err());
    }
}
