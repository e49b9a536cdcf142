//! Output peak limiter: turns the summed f32 bus into i16 PCM without ever
//! exceeding the threshold, so overlapping sources never wrap around.
//!
//! The gain each sample needs comes from a peak envelope with exponential
//! release. Because the tick mixes a whole 20 ms frame before output, the
//! limiter looks ahead inside the frame without adding latency: the needed
//! gain is minimised over the next millisecond and smoothed with a box filter
//! of the same length, so the gain has ramped down by the time a peak
//! arrives (no flat-topped waveforms) and a cut source is gone from the very
//! next frame. At a frame border the look-ahead is shorter, and a final
//! `min` with the needed gain keeps the ceiling exact. Both channels are
//! linked; below the threshold the signal passes unchanged. Fixed-size
//! buffers only: no allocation after construction.

use crate::frame::{OUTPUT_FRAME_LEN, OUTPUT_SAMPLE_RATE};

/// Look-ahead in sample frames (1 ms).
const LOOKAHEAD: usize = (OUTPUT_SAMPLE_RATE / 1000) as usize;

/// A stereo peak limiter with in-frame look-ahead.
#[derive(Debug, Clone)]
pub struct Limiter {
    threshold: f32,
    release: f32,
    envelope: f32,
    target: Box<[f32; OUTPUT_FRAME_LEN]>,
    windowed: Box<[f32; OUTPUT_FRAME_LEN]>,
    /// Monotonic deque of sample indices (sliding minimum).
    deque: [usize; LOOKAHEAD],
    /// Box filter state, carried across frames.
    boxcar: [f32; LOOKAHEAD],
    box_pos: usize,
    box_sum: f64,
    /// The gain is back at unity everywhere (no reduction pending).
    at_rest: bool,
    /// Envelope decay over a whole frame.
    frame_release: f32,
}

impl Limiter {
    /// Creates a limiter with the ceiling in dBFS and the release time.
    pub fn new(threshold_dbfs: f32, release_ms: f32) -> Self {
        let samples = (release_ms.max(0.001) / 1000.0) * OUTPUT_SAMPLE_RATE as f32;
        Self {
            threshold: 10f32.powf(threshold_dbfs.min(0.0) / 20.0),
            release: (-1.0 / samples).exp(),
            envelope: 0.0,
            target: Box::new([1.0; OUTPUT_FRAME_LEN]),
            windowed: Box::new([1.0; OUTPUT_FRAME_LEN]),
            deque: [0; LOOKAHEAD],
            boxcar: [1.0; LOOKAHEAD],
            box_pos: 0,
            box_sum: LOOKAHEAD as f64,
            at_rest: true,
            frame_release: (-(OUTPUT_FRAME_LEN as f32) / samples).exp(),
        }
    }

    /// Outputs one silent frame. Equivalent to [`process`](Self::process)
    /// on an all-zero bus, but free while the limiter is at rest.
    pub fn process_silence(&mut self, out: &mut [i16]) {
        out.fill(0);
        if self.at_rest {
            self.envelope *= self.frame_release;
        } else {
            // Let the gain state settle exactly as a zero frame would.
            let zeros = [0.0f32; 2 * LOOKAHEAD];
            let mut scratch = [0i16; 2 * LOOKAHEAD];
            let mut left = out.len() / 2;
            while left > 0 {
                let n = left.min(LOOKAHEAD);
                self.process(&zeros[..2 * n], &mut scratch[..2 * n]);
                left -= n;
            }
        }
    }

    /// The ceiling as a linear amplitude (1.0 = full scale).
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Limits one frame: `bus` is interleaved stereo (full scale = 1.0, at
    /// most 960 frames), `out` receives the same number of samples.
    pub fn process(&mut self, bus: &[f32], out: &mut [i16]) {
        let frames = (bus.len() / 2).min(out.len() / 2).min(OUTPUT_FRAME_LEN);
        let clean = |x: f32| if x.is_finite() { x } else { 0.0 };
        // 1. The gain each sample needs.
        let mut reduced = false;
        for n in 0..frames {
            let peak = clean(bus[2 * n]).abs().max(clean(bus[2 * n + 1]).abs());
            self.envelope = peak.max(self.envelope * self.release);
            self.target[n] = if self.envelope > self.threshold {
                reduced = true;
                self.threshold / self.envelope
            } else {
                1.0
            };
        }
        // At rest once a whole look-ahead window of unity gain has passed.
        self.at_rest = !reduced && frames >= LOOKAHEAD;
        // 2. Its minimum over the next LOOKAHEAD samples (within the frame).
        let (mut head, mut len) = (0usize, 0usize);
        for n in (0..frames).rev() {
            while len > 0 {
                let back = self.deque[(head + len - 1) % LOOKAHEAD];
                if self.target[back] >= self.target[n] {
                    len -= 1;
                } else {
                    break;
                }
            }
            if len > 0 && self.deque[head] >= n + LOOKAHEAD {
                head = (head + 1) % LOOKAHEAD;
                len -= 1;
            }
            self.deque[(head + len) % LOOKAHEAD] = n;
            len += 1;
            self.windowed[n] = self.target[self.deque[head]];
        }
        // 3. Box-smoothed, never above the needed gain.
        for n in 0..frames {
            self.box_sum += f64::from(self.windowed[n]) - f64::from(self.boxcar[self.box_pos]);
            self.boxcar[self.box_pos] = self.windowed[n];
            self.box_pos = (self.box_pos + 1) % LOOKAHEAD;
            let gain = ((self.box_sum / LOOKAHEAD as f64) as f32).min(self.target[n]);
            for c in 0..2 {
                let x = clean(bus[2 * n + c]);
                out[2 * n + c] = (x * gain * 32_767.0).round().clamp(-32_767.0, 32_767.0) as i16;
            }
        }
        // Re-anchor the running sum now and then against float drift.
        if self.box_pos == 0 {
            self.box_sum = self.boxcar.iter().map(|&g| f64::from(g)).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lim: &mut Limiter, bus: &[f32]) -> Vec<i16> {
        bus.chunks(1920)
            .flat_map(|frame| {
                let mut out = vec![0i16; frame.len()];
                lim.process(frame, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn below_threshold_passes_unchanged() {
        let mut lim = Limiter::new(-1.0, 80.0);
        let bus: Vec<f32> = (0..3840).map(|i| ((i / 2) as f32 * 0.01).sin() * 0.5).collect();
        let out = run(&mut lim, &bus);
        for (x, y) in bus.iter().zip(&out) {
            assert!((x * 32_767.0 - f32::from(*y)).abs() <= 0.5);
        }
    }

    /// Best-fit scale of `out` to `x` and the residual relative to `x`.
    fn residual(x: &[f32], out: &[i16]) -> f32 {
        let y: Vec<f32> = out.iter().map(|&s| f32::from(s) / 32_767.0).collect();
        let g = x.iter().zip(&y).map(|(a, b)| a * b).sum::<f32>() / x.iter().map(|a| a * a).sum::<f32>();
        let err = x.iter().zip(&y).map(|(a, b)| (b - g * a).powi(2)).sum::<f32>();
        (err / y.iter().map(|b| b * b).sum::<f32>()).sqrt()
    }

    #[test]
    fn loud_input_never_exceeds_the_ceiling_nor_wraps_and_is_not_flattened() {
        let mut lim = Limiter::new(-1.0, 80.0);
        let ceiling = lim.threshold() * 32_767.0;
        // A sudden loud burst after silence: the worst case for the attack.
        let mut bus = vec![0.0f32; 1920];
        bus.extend((0..19_200).map(|i| ((i / 2) as f32 * 0.05).sin() * 3.0));
        let out = run(&mut lim, &bus);
        for (x, y) in bus.iter().zip(&out) {
            assert!(f32::from(y.abs()) <= ceiling + 0.5);
            if x.abs() > 0.01 {
                assert_eq!(x.signum() as i16, y.signum(), "no wrap-around");
            }
        }
        // After the attack the output is a scaled copy of the input; a hard
        // clipper at the same ceiling distorts by ~20 %.
        let steady = 1920 * 3..bus.len();
        let r = residual(&bus[steady.clone()], &out[steady.clone()]);
        let clipped: Vec<i16> = bus[steady.clone()]
            .iter()
            .map(|x| (x.clamp(-0.89, 0.89) * 32_767.0) as i16)
            .collect();
        let r_clip = residual(&bus[steady], &clipped);
        assert!(r < 0.01, "limiter residual {r}");
        assert!(r_clip > 0.1, "hard clip residual {r_clip}");
        let nan = vec![f32::NAN; 1920];
        assert!(run(&mut lim, &nan).iter().all(|&s| s == 0));
    }

    #[test]
    fn silence_fast_path_matches_processing_zeros() {
        let loud: Vec<f32> = (0..1920).map(|i| ((i / 2) as f32 * 0.05).sin() * 2.0).collect();
        let mut a = Limiter::new(-1.0, 80.0);
        let mut b = Limiter::new(-1.0, 80.0);
        let mut out_a = vec![0i16; 1920];
        let mut out_b = vec![0i16; 1920];
        for round in 0..12 {
            // Loud, then silence (reduction still pending), then loud again.
            let silent = (3..9).contains(&round);
            if silent {
                a.process(&[0.0; 1920], &mut out_a);
                b.process_silence(&mut out_b);
            } else {
                a.process(&loud, &mut out_a);
                b.process(&loud, &mut out_b);
            }
            assert_eq!(out_a, out_b, "round {round}");
        }
        assert!(!a.at_rest);
    }
}
