//! Test fixtures generated on the fly: espeak-ng speech, silence, noise.
//! Nothing is committed; the recorded clips are only read from
//! `../shared/voice-clips` when present.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Speech synthesized by espeak-ng at its native rate (22.05 kHz mono).
pub fn espeak_native(text: &str) -> (Vec<i16>, u32) {
    let out = Command::new("espeak-ng")
        .args(["--stdout", "-s", "160", text])
        .output()
        .expect("espeak-ng must be installed to generate speech fixtures");
    assert!(out.status.success(), "espeak-ng failed: {out:?}");
    let audio = glyphoxa_audio::read_wav(&out.stdout[..]).expect("espeak-ng WAV");
    assert_eq!(audio.channels, 1);
    let samples = audio
        .samples
        .iter()
        .map(|&s| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect();
    (samples, audio.sample_rate)
}

/// Speech synthesized by espeak-ng, as 16 kHz mono (through the crate's own
/// WAV reader and resampler).
pub use glyphoxa_audio::fixtures::espeak_16k;

/// `ms` of digital silence at 16 kHz.
pub fn silence(ms: u32) -> Vec<i16> {
    silence_at(ms, 16_000)
}

/// `ms` of digital silence at `rate`.
pub fn silence_at(ms: u32, rate: u32) -> Vec<i16> {
    vec![0; (u64::from(ms) * u64::from(rate) / 1000) as usize]
}

/// First and last sample index above `threshold` (the speech's true extent).
pub fn voiced_extent(samples: &[i16], threshold: i16) -> Option<(usize, usize)> {
    let first = samples.iter().position(|s| s.abs() > threshold)?;
    let last = samples.iter().rposition(|s| s.abs() > threshold)?;
    Some((first, last + 1))
}

/// Deterministic white noise with the given RMS (in i16 units).
pub fn noise(len: usize, rms: f32, seed: u64) -> Vec<i16> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            // Sum of uniforms ≈ Gaussian with unit variance.
            let g: f64 = (0..12).map(|_| next()).sum::<f64>() - 6.0;
            (g as f32 * rms).clamp(-32_768.0, 32_767.0) as i16
        })
        .collect()
}

/// Sample-wise saturating sum.
pub fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = i32::from(*a.get(i).unwrap_or(&0)) + i32::from(*b.get(i).unwrap_or(&0));
            x.clamp(-32_768, 32_767) as i16
        })
        .collect()
}

/// RMS of a signal.
pub fn rms(s: &[i16]) -> f32 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt() as f32
}

/// Writes 16-bit PCM WAV bytes.
pub fn wav_bytes(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }
    cursor.into_inner()
}

/// Inserts a LIST/INFO chunk (odd-sized, padded) between a canonical
/// 44-byte WAV header's fmt and data chunks, as ffmpeg-written files have.
pub fn with_list_chunk(wav: &[u8]) -> Vec<u8> {
    assert_eq!(&wav[36..40], b"data");
    let mut out = wav[..36].to_vec();
    out.extend_from_slice(b"LIST");
    out.extend_from_slice(&17u32.to_le_bytes());
    out.extend_from_slice(b"INFOISFT\x05\0\0\0Lavf\0");
    out.push(0); // pad byte of the odd-sized chunk
    out.extend_from_slice(&wav[36..]);
    out
}

/// The shared recorded clips, if this checkout has them.
pub fn voice_clips() -> Option<PathBuf> {
    let dir = std::env::var_os("GLYPHOXA_VOICE_CLIPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/voice-clips"));
    dir.is_dir().then_some(dir)
}
