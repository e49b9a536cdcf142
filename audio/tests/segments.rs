//! Acceptance of the offline segmentation (`glyphoxa audio segments`):
//! generated espeak-ng fixtures, silence, noise, bad files, and the recorded
//! clips when the shared folder is present.

mod common;

use glyphoxa_audio::{segment_samples, segment_wav, segment_wav_file, AudioError, VadSettings};

/// One fixture utterance's true extent, in ms.
struct Truth {
    start_ms: f64,
    end_ms: f64,
}

/// Two sentences 1.5 s apart at espeak's native 22.05 kHz, with 0.5 s of
/// silence around; returns the signal and the true extents.
fn two_utterances() -> (Vec<i16>, u32, Vec<Truth>) {
    let (a, rate) = common::espeak_native("Glyphoxa, roll a perception check for me.");
    let (b, _) = common::espeak_native("Alright, roll initiative now.");
    let mut signal = common::silence_at(500, rate);
    let mut truths = Vec::new();
    for (i, speech) in [a, b].into_iter().enumerate() {
        if i > 0 {
            signal.extend(common::silence_at(1_500, rate));
        }
        let (first, last) = common::voiced_extent(&speech, 200).unwrap();
        let at = signal.len();
        truths.push(Truth {
            start_ms: (at + first) as f64 * 1000.0 / f64::from(rate),
            end_ms: (at + last) as f64 * 1000.0 / f64::from(rate),
        });
        signal.extend(speech);
    }
    signal.extend(common::silence_at(500, rate));
    (signal, rate, truths)
}

fn check_against_truth(label: &str, segments: &glyphoxa_audio::Segmentation, truths: &[Truth], settings: &VadSettings) {
    assert_eq!(
        segments.segments.len(),
        truths.len(),
        "{label}: wrong segment count: {:?}",
        segments.segments
    );
    for (s, t) in segments.segments.iter().zip(truths) {
        let start_err = s.start_ms as f64 - t.start_ms;
        let end_limit = t.end_ms + f64::from(settings.hangover_ms) + 150.0;
        println!(
            "{label}: start {} ms (truth {:.0}, {:+.0}), voice end {} ms (truth {:.0}), end decision {} ms (limit {:.0}), detection delay {:.0} ms from the true end ({} ms from the VAD's last voiced frame)",
            s.start_ms,
            t.start_ms,
            start_err,
            s.voice_end_ms,
            t.end_ms,
            s.end_ms,
            end_limit,
            s.end_ms as f64 - t.end_ms,
            s.detection_delay_ms()
        );
        assert!(start_err.abs() <= 60.0, "{label}: start off by {start_err:.0} ms");
        assert!(
            (s.end_ms as f64) <= end_limit,
            "{label}: end {} ms after {end_limit:.0}",
            s.end_ms
        );
        assert!(s.end_ms as f64 >= t.end_ms, "{label}: ended before the voice did");
        assert!(s.end_ms >= s.voice_end_ms + u64::from(settings.hangover_ms));
    }
}

#[test]
fn two_utterances_one_and_a_half_seconds_apart_give_two_segments() {
    let settings = VadSettings::default();
    let (signal, rate, truths) = two_utterances();
    // Stereo at the native rate with a LIST chunk before the data: exercises
    // the tolerant reader, the downmix and the resampler.
    let stereo: Vec<i16> = signal.iter().flat_map(|&s| [s, s]).collect();
    let wav = common::with_list_chunk(&common::wav_bytes(&stereo, rate, 2));
    let segments = segment_wav(&wav[..], &settings).unwrap();
    check_against_truth("two utterances", &segments, &truths, &settings);
    println!(
        "mean detection delay {} ms",
        segments.mean_detection_delay_ms().unwrap_or(0)
    );

    let json: serde_json::Value = serde_json::from_str(&segments.to_json()).unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 1, "exactly one key: {json}");
    let list = object["segments"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for (item, s) in list.iter().zip(&segments.segments) {
        assert_eq!(item.as_object().unwrap().len(), 2, "{item}");
        assert_eq!(item["start_ms"].as_u64(), Some(s.start_ms));
        assert_eq!(item["end_ms"].as_u64(), Some(s.end_ms));
    }
}

#[test]
fn pure_silence_gives_no_segment() {
    let wav = common::wav_bytes(&common::silence(3_000), 16_000, 1);
    let segments = segment_wav(&wav[..], &VadSettings::default()).unwrap();
    assert_eq!(segments.to_json(), r#"{"segments":[]}"#);
    // An empty data chunk is empty audio, not an error.
    let wav = common::wav_bytes(&[], 48_000, 2);
    assert!(segment_wav(&wav[..], &VadSettings::default())
        .unwrap()
        .segments
        .is_empty());
}

#[test]
fn speech_under_moderate_noise_gives_the_right_count() {
    let settings = VadSettings::default();
    let (signal, rate, truths) = two_utterances();
    let speech_rms = common::rms(&signal[..]);
    for (label, noise_rms) in [("noise -18 dB", 250.0), ("noise -12 dB", 500.0)] {
        let noise = common::noise(signal.len(), noise_rms, 11);
        let noisy = common::mix(&signal, &noise);
        println!("{label}: speech rms {speech_rms:.0}, noise rms {noise_rms}");
        let wav = common::wav_bytes(&noisy, rate, 1);
        let segments = segment_wav(&wav[..], &settings).unwrap();
        check_against_truth(label, &segments, &truths, &settings);
    }
}

#[test]
fn an_utterance_at_the_very_end_is_closed() {
    // The input stops mid-speech: the tool appends silence like the silence clock.
    let speech = common::espeak_16k("The long clips end in the middle of a sentence");
    let cut = &speech[..speech.len() * 2 / 3];
    let segments = segment_samples(cut, &VadSettings::default()).unwrap();
    assert_eq!(segments.segments.len(), 1, "{:?}", segments.segments);
    assert!(segments.segments[0].end_ms > segments.duration_ms);
}

#[test]
fn bad_files_are_errors_not_panics() {
    let speech = common::espeak_16k("truncated");
    let wav = common::wav_bytes(&speech, 16_000, 1);
    let truncated = &wav[..wav.len() / 2];
    assert!(matches!(
        segment_wav(truncated, &VadSettings::default()),
        Err(AudioError::TruncatedWav { .. })
    ));
    for cut in [0, 3, 11, 20, 35, 43] {
        assert!(segment_wav(&wav[..cut], &VadSettings::default()).is_err());
    }
    // Absurd sample rate in an otherwise valid header.
    let mut absurd = wav.clone();
    absurd[24..28].copy_from_slice(&3_000_000u32.to_le_bytes());
    assert!(matches!(
        segment_wav(&absurd[..], &VadSettings::default()),
        Err(AudioError::UnsupportedSampleRate { .. })
    ));
    // Garbage.
    assert!(segment_wav(&b"not a wav file at all"[..], &VadSettings::default()).is_err());
    // Invalid settings are reported before reading.
    let bad = VadSettings {
        hangover_ms: 0,
        ..VadSettings::default()
    };
    let err = segment_wav(&wav[..], &bad).unwrap_err();
    assert!(err.to_string().contains("vad.hangover_ms"), "{err}");
    // A missing file names the path.
    let err = segment_wav_file(std::path::Path::new("/nonexistent/x.wav"), &VadSettings::default()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.wav"), "{err}");
}

#[test]
fn recorded_clips() {
    let Some(dir) = common::voice_clips() else {
        println!("SKIPPED: ../shared/voice-clips not found (set GLYPHOXA_VOICE_CLIPS to run on the recorded clips)");
        return;
    };
    let settings = VadSettings::default();
    let count = |clip: &str| {
        let s = segment_wav_file(&dir.join(clip).join("audio.wav"), &settings).unwrap();
        let delays: Vec<u64> = s.segments.iter().map(|x| x.detection_delay_ms()).collect();
        println!("{clip}: {} detection delays {delays:?}", s.to_json());
        s.segments.len()
    };
    assert_eq!(count("two-utterance-test"), 2);
    assert_eq!(count("silence-test"), 0);
    for clip in ["hello-test", "bart-test", "ttrpg-intro-en", "ttrpg-intro-de"] {
        assert!(count(clip) >= 1, "{clip} has speech");
    }
}
