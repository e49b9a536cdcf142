//! Speech fixtures for tests and benches (feature `fixtures`): spoken
//! sentences generated on the fly with espeak-ng (installed by
//! `scripts/setup.sh`), as the 16 kHz mono PCM the engine listens to.
//! Nothing recorded is committed. These helpers panic with a clear message
//! when espeak-ng is missing or fails: they are for tests.

use std::process::Command;

use crate::wav::read_wav;

/// `text` spoken by espeak-ng (160 words per minute), as 16 kHz mono.
pub fn espeak_16k(text: &str) -> Vec<i16> {
    let out = Command::new("espeak-ng")
        .args(["--stdout", "-s", "160", text])
        .output()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "espeak-ng failed on {text:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audio = read_wav(&out.stdout[..]).expect("espeak-ng writes a WAV");
    audio.to_mono_16k().expect("espeak-ng's WAV resamples to 16 kHz")
}

/// `ms` of digital silence at 16 kHz.
pub fn silence_16k(ms: usize) -> Vec<i16> {
    vec![0; ms * 16]
}

/// `text` spoken with `lead_ms` of silence before and `tail_ms` after
/// (16 kHz mono): a player's turn as a loopback speaker plays it.
pub fn spoken(text: &str, lead_ms: usize, tail_ms: usize) -> Vec<i16> {
    let mut samples = silence_16k(lead_ms);
    samples.extend(espeak_16k(text));
    samples.extend(silence_16k(tail_ms));
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoken_speech_is_audible_between_its_silences() {
        let samples = spoken("Grimble, an ale please.", 300, 500);
        let speech = &samples[300 * 16..samples.len() - 500 * 16];
        assert!(samples[..300 * 16].iter().all(|&s| s == 0));
        assert!(samples[samples.len() - 500 * 16..].iter().all(|&s| s == 0));
        assert!(speech.len() > 16_000 / 2, "at least half a second of speech");
        assert!(speech.iter().any(|s| s.unsigned_abs() > 3000), "audible");
    }
}
