//! Resampling of playback audio (TTS, narrator, PlayAudio streams) from its
//! own rate and channel count to the 48 kHz stereo the mixer works in.
//!
//! [`StreamResampler`] wraps rubato's FFT resampler with preallocated buffers
//! (`process_into_buffer`), keeps the filter state across chunks (no clicks at
//! chunk borders), compensates the resampler's delay and buffers its output
//! so the tick can take exactly one 20 ms frame at a time. Nothing allocates
//! after construction. [`resample_offline`] is the allocating variant for
//! whole files (the segmentation tool).

use rubato::{FftFixedInOut, Resampler};

use crate::error::AudioError;
use crate::frame::{OUTPUT_FRAME_LEN, OUTPUT_SAMPLE_RATE};

/// Lowest accepted playback sample rate.
pub const MIN_SAMPLE_RATE: u32 = 4_000;
/// Highest accepted playback sample rate.
pub const MAX_SAMPLE_RATE: u32 = 384_000;

/// Scale from i16 PCM to f32 in [-1, 1).
const I16_SCALE: f32 = 1.0 / 32_768.0;

/// Checks that `rate` can be resampled to `target` with chunks no longer than
/// 40 ms (a prime-ish rate would need enormous FFTs and add latency).
fn check_rate(rate: u32, target: u32) -> Result<(), AudioError> {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        return Err(AudioError::UnsupportedSampleRate {
            rate,
            reason: "must be between 4000 and 384000 Hz",
        });
    }
    let min_chunk = rate / gcd(rate, target);
    if min_chunk > rate / 25 {
        return Err(AudioError::UnsupportedSampleRate {
            rate,
            reason: "no exact resampling ratio to the target rate within 40 ms; use a common rate (8, 16, 22.05, 24, 32, 44.1 or 48 kHz)",
        });
    }
    Ok(())
}

/// The FFT resampler's true delay in output frames: half its input block
/// (rounded down) scaled to the output rate, rounded to the nearest frame.
/// (rubato's `output_delay` assumes an even block and is a frame off for
/// odd ones such as 441 samples of 22.05 kHz.)
fn fft_delay(chunk_in: usize, chunk_out: usize) -> usize {
    ((chunk_in / 2) * chunk_out * 2 + chunk_in) / (chunk_in * 2)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resamples a stream of interleaved i16 PCM (mono or stereo, any common
/// rate) to 48 kHz interleaved stereo f32, 20 ms at a time.
pub struct StreamResampler {
    channels: usize,
    inner: Option<FftFixedInOut<f32>>,
    chunk_in: usize,
    in_buf: Vec<Vec<f32>>,
    out_buf: Vec<Vec<f32>>,
    /// Interleaved stereo output waiting to be taken; `fifo[read..write]`.
    fifo: Vec<f32>,
    read: usize,
    write: usize,
    /// Output frames still to drop (the resampler's delay).
    skip: usize,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("channels", &self.channels)
            .field("chunk_in", &self.chunk_in)
            .field("resampling", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// Creates a resampler from `rate` Hz with `channels` (1 or 2) to 48 kHz stereo.
    pub fn new(rate: u32, channels: u16) -> Result<Self, AudioError> {
        if !(1..=2).contains(&channels) {
            return Err(AudioError::UnsupportedChannels {
                channels: u32::from(channels),
                reason: "playback sources must be mono or stereo",
            });
        }
        check_rate(rate, OUTPUT_SAMPLE_RATE)?;
        let channels = usize::from(channels);
        let (inner, chunk_in, chunk_out, skip) = if rate == OUTPUT_SAMPLE_RATE {
            (None, OUTPUT_FRAME_LEN, OUTPUT_FRAME_LEN, 0)
        } else {
            let wanted = (rate as usize).div_ceil(50);
            let r = FftFixedInOut::<f32>::new(rate as usize, OUTPUT_SAMPLE_RATE as usize, wanted, channels).map_err(
                |e| AudioError::Resampler {
                    context: "construction",
                    message: e.to_string(),
                },
            )?;
            let (ci, co) = (r.input_frames_max(), r.output_frames_max());
            (Some(r), ci, co, fft_delay(ci, co))
        };
        let fifo_frames = chunk_out + OUTPUT_FRAME_LEN;
        Ok(Self {
            channels,
            inner,
            chunk_in,
            in_buf: vec![vec![0.0; chunk_in]; channels],
            out_buf: vec![vec![0.0; chunk_out]; channels],
            fifo: vec![0.0; fifo_frames * 2],
            read: 0,
            write: 0,
            skip,
        })
    }

    /// Source frames (per channel) consumed by one [`push_chunk`](Self::push_chunk).
    pub fn chunk_frames(&self) -> usize {
        self.chunk_in
    }

    /// Channels of the source (1 or 2).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Output frames (per channel) ready to be taken.
    pub fn buffered_frames(&self) -> usize {
        (self.write - self.read) / 2
    }

    /// True while fewer than 20 ms of output are buffered.
    pub fn wants_input(&self) -> bool {
        self.buffered_frames() < OUTPUT_FRAME_LEN
    }

    /// Resamples one chunk: `input` holds up to `chunk_frames() × channels`
    /// interleaved samples; a shorter input (end of stream) is zero-padded.
    /// Call only while [`wants_input`](Self::wants_input) is true, or the
    /// output buffer would overflow (then an error is returned).
    pub fn push_chunk(&mut self, input: &[i16]) -> Result<(), AudioError> {
        let frames = input.len() / self.channels;
        if frames > self.chunk_in {
            return Err(AudioError::FrameLength {
                what: "resampler chunk",
                expected: self.chunk_in * self.channels,
                got: input.len(),
            });
        }
        if !self.wants_input() {
            return Err(AudioError::Resampler {
                context: "push",
                message: "output buffer full: take a frame first".to_owned(),
            });
        }
        for (c, buf) in self.in_buf.iter_mut().enumerate() {
            for (i, s) in buf.iter_mut().enumerate() {
                *s = if i < frames {
                    f32::from(input[i * self.channels + c]) * I16_SCALE
                } else {
                    0.0
                };
            }
        }
        self.compact();
        let produced = match self.inner.as_mut() {
            None => {
                for (c, out) in self.out_buf.iter_mut().enumerate() {
                    out.copy_from_slice(&self.in_buf[c]);
                }
                self.chunk_in
            }
            Some(r) => {
                let (_, produced) = r
                    .process_into_buffer(&self.in_buf, &mut self.out_buf, None)
                    .map_err(|e| AudioError::Resampler {
                        context: "processing",
                        message: e.to_string(),
                    })?;
                produced
            }
        };
        let start = self.skip.min(produced);
        self.skip -= start;
        for i in start..produced {
            let l = self.out_buf[0][i];
            let r = if self.channels == 2 { self.out_buf[1][i] } else { l };
            self.fifo[self.write] = l;
            self.fifo[self.write + 1] = r;
            self.write += 2;
        }
        Ok(())
    }

    /// Moves up to one output frame (960 stereo frames) into `out`
    /// (interleaved, at least 1920 long); returns the frames written.
    pub fn take_frame(&mut self, out: &mut [f32]) -> usize {
        let frames = self.buffered_frames().min(OUTPUT_FRAME_LEN).min(out.len() / 2);
        let n = frames * 2;
        out[..n].copy_from_slice(&self.fifo[self.read..self.read + n]);
        self.read += n;
        frames
    }

    /// Forgets buffered output and filter state (for reuse from the start of
    /// a new stream).
    pub fn reset(&mut self) {
        self.read = 0;
        self.write = 0;
        if let Some(r) = self.inner.as_mut() {
            r.reset();
            self.skip = fft_delay(r.input_frames_max(), r.output_frames_max());
        }
    }

    fn compact(&mut self) {
        if self.read > 0 {
            self.fifo.copy_within(self.read..self.write, 0);
            self.write -= self.read;
            self.read = 0;
        }
    }
}

/// Resamples a whole mono signal from `from` Hz to `to` Hz (allocating; for
/// offline tools). The output is aligned with the input (delay removed) and
/// has `len × to / from` samples.
pub fn resample_offline(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to {
        return Ok(input.to_vec());
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&from) {
        return Err(AudioError::UnsupportedSampleRate {
            rate: from,
            reason: "must be between 4000 and 384000 Hz",
        });
    }
    let wanted = (from as usize).div_ceil(10);
    let mut r =
        FftFixedInOut::<f32>::new(from as usize, to as usize, wanted, 1).map_err(|e| AudioError::Resampler {
            context: "construction",
            message: e.to_string(),
        })?;
    let chunk_in = r.input_frames_max();
    let delay = fft_delay(chunk_in, r.output_frames_max());
    let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let mut out = Vec::with_capacity(expected + r.output_frames_max() * 2);
    let mut in_buf = vec![vec![0.0f32; chunk_in]];
    let mut out_buf = vec![vec![0.0f32; r.output_frames_max()]];
    let mut pos = 0;
    while out.len() < expected + delay {
        let n = input.len().saturating_sub(pos).min(chunk_in);
        in_buf[0][..n].copy_from_slice(&input[pos..pos + n]);
        in_buf[0][n..].fill(0.0);
        pos += n;
        let (_, produced) = r
            .process_into_buffer(&in_buf, &mut out_buf, None)
            .map_err(|e| AudioError::Resampler {
                context: "processing",
                message: e.to_string(),
            })?;
        out.extend_from_slice(&out_buf[0][..produced]);
    }
    out.drain(..delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f32, n: usize, channels: usize) -> Vec<i16> {
        let mut v = Vec::with_capacity(n * channels);
        for i in 0..n {
            let s = (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 16_000.0;
            for _ in 0..channels {
                v.push(s as i16);
            }
        }
        v
    }

    /// Feeds a sine through the resampler chunk by chunk and checks that the
    /// output is the same sine at 48 kHz everywhere, chunk borders included.
    fn check_continuity(rate: u32, channels: u16) {
        let freq = 440.0;
        let mut r = StreamResampler::new(rate, channels).unwrap();
        let ch = usize::from(channels);
        let input = sine(rate, freq, rate as usize, ch); // one second
        let mut out = Vec::new();
        let mut frame = [0.0f32; 2 * OUTPUT_FRAME_LEN];
        let mut pos = 0;
        let chunk = r.chunk_frames() * ch;
        while pos < input.len() {
            while r.wants_input() && pos < input.len() {
                let end = (pos + chunk).min(input.len());
                r.push_chunk(&input[pos..end]).unwrap();
                pos = end;
            }
            let n = r.take_frame(&mut frame);
            out.extend_from_slice(&frame[..n * 2]);
        }
        // Skip the filter's settling at the very start and the zero padding at the end.
        let mut max_err = 0.0f32;
        let mut max_step = 0.0f32;
        let mut max_kink = 0.0f32;
        for i in 480..out.len() / 2 - 960 {
            let t = i as f32 / 48_000.0;
            let ideal = (2.0 * std::f32::consts::PI * freq * t).sin() * 16_000.0 / 32_768.0;
            let l = out[2 * i];
            assert_eq!(l, out[2 * i + 1], "left and right must match");
            max_err = max_err.max((l - ideal).abs());
            max_step = max_step.max((l - out[2 * i - 2]).abs());
            max_kink = max_kink.max((l - 2.0 * out[2 * i - 2] + out[2 * i - 4]).abs());
        }
        // A 440 Hz sine at amplitude 0.49 moves at most 0.028 per sample at
        // 48 kHz: the output is aligned within half a sample and a chunk
        // border glitch would show as a step or a kink.
        assert!(max_err < 0.015, "rate {rate}: error {max_err}");
        assert!(max_step < 0.03, "rate {rate}: discontinuity {max_step}");
        assert!(max_kink < 0.003, "rate {rate}: kink {max_kink}");
    }

    #[test]
    fn no_discontinuity_at_chunk_borders_for_common_rates() {
        for rate in [8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000] {
            check_continuity(rate, 1);
        }
        check_continuity(24_000, 2);
        check_continuity(44_100, 2);
    }

    #[test]
    fn absurd_rates_and_channels_are_errors() {
        assert!(StreamResampler::new(0, 1).is_err());
        assert!(StreamResampler::new(1, 1).is_err());
        assert!(StreamResampler::new(10_000_000, 1).is_err());
        assert!(StreamResampler::new(44_101, 1).is_err());
        assert!(StreamResampler::new(24_000, 0).is_err());
        assert!(StreamResampler::new(24_000, 3).is_err());
        assert!(resample_offline(&[0.0; 10], 1, 16_000).is_err());
    }

    #[test]
    fn offline_resampling_keeps_length_and_alignment() {
        let input: Vec<f32> = sine(22_050, 300.0, 22_050, 1)
            .iter()
            .map(|&s| f32::from(s) / 32_768.0)
            .collect();
        let out = resample_offline(&input, 22_050, 16_000).unwrap();
        assert_eq!(out.len(), 16_000);
        for (i, &s) in out.iter().enumerate().take(15_000).skip(1_000) {
            let ideal = (2.0 * std::f32::consts::PI * 300.0 * i as f32 / 16_000.0).sin() * 0.488;
            // Aligned within half a sample (300 Hz moves 0.058 per sample).
            assert!((s - ideal).abs() < 0.03, "sample {i}: {s} vs {ideal}");
        }
    }
}
