//! Randomized gaps between consecutive lines of one queue, from a small
//! deterministic PRNG (the same seed gives the same output).

/// Draws gap lengths uniformly from a range of frames.
#[derive(Debug, Clone)]
pub struct GapRandomizer {
    state: u64,
    min_frames: u64,
    max_frames: u64,
}

impl GapRandomizer {
    /// A randomizer over `[min_frames, max_frames]` seeded with `seed`.
    pub fn new(seed: u64, min_frames: u64, max_frames: u64) -> Self {
        Self {
            state: seed | 1,
            min_frames,
            max_frames: max_frames.max(min_frames),
        }
    }

    /// The next gap, in frames.
    pub fn next_gap(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let span = self.max_frames - self.min_frames + 1;
        self.min_frames + (r >> 32) % span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_stay_in_range_and_vary() {
        let mut g = GapRandomizer::new(42, 8, 20);
        let gaps: Vec<u64> = (0..200).map(|_| g.next_gap()).collect();
        assert!(gaps.iter().all(|&x| (8..=20).contains(&x)));
        assert!(gaps.contains(&8) && gaps.contains(&20));
        let mut same = GapRandomizer::new(42, 8, 20);
        assert_eq!(same.next_gap(), gaps[0]);
        let mut fixed = GapRandomizer::new(1, 5, 5);
        assert_eq!(fixed.next_gap(), 5);
    }
}
