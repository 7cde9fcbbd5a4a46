//! PyTorch's CPU random stream for integers, so the demos can regenerate hflayers' data sets draw for draw.
//!
//! `torch.manual_seed(s)` seeds a standard MT19937 with `s mod 2³²` (ATen's `mt19937`, the same recurrence
//! and tempering as C++'s `std::mt19937`), and `torch.randint(low, high, size)` on the CPU fills the tensor
//! in row-major order with `low + (next_u32() mod (high − low))` for every range below 2³² (ATen's
//! `uniform_int_from_to_distribution`). This module reproduces exactly that; torch itself is not needed.

const N: usize = 624;
const M: usize = 397;

/// MT19937 as `torch.manual_seed` leaves it, with `torch.randint`'s integer transformation.
#[derive(Clone, Debug)]
pub struct TorchRng {
    state: [u32; N],
    next: usize,
}

impl TorchRng {
    /// The generator after `torch.manual_seed(seed)`.
    pub fn manual_seed(seed: u64) -> Self {
        let mut state = [0u32; N];
        state[0] = seed as u32;
        for j in 1..N {
            state[j] = 1_812_433_253u32.wrapping_mul(state[j - 1] ^ (state[j - 1] >> 30)).wrapping_add(j as u32);
        }
        TorchRng { state, next: N }
    }

    /// The next 32-bit output (`generator->random()`).
    pub fn next_u32(&mut self) -> u32 {
        if self.next >= N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[i] = self.state[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    /// One draw of `torch.randint(low, high, ...)` (`high − low` must be in `1..2³²`).
    pub fn randint(&mut self, low: i64, high: i64) -> i64 {
        let range = (high - low) as u64;
        debug_assert!(range > 0 && range < 1 << 32, "randint range {low}..{high}");
        low + (self.next_u32() as u64 % range) as i64
    }

    /// `n` draws of `torch.randint(low, high, (n,))`, in order.
    pub fn randint_vec(&mut self, low: i64, high: i64, n: usize) -> Vec<i64> {
        (0..n).map(|_| self.randint(low, high)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_the_reference_mt19937() {
        // C++11 [rand.predef]: the 10000th output of a default-constructed std::mt19937 (seed 5489).
        let mut g = TorchRng::manual_seed(5489);
        let last = (0..10_000).map(|_| g.next_u32()).last().unwrap();
        assert_eq!(last, 4_123_659_995);
        // The first outputs for seed 5489, from the reference implementation (mt19937ar.c, init_genrand).
        let mut g = TorchRng::manual_seed(5489);
        assert_eq!([g.next_u32(), g.next_u32(), g.next_u32()], [3_499_211_612, 581_869_302, 3_890_346_734]);
        let mut g = TorchRng::manual_seed(5489);
        assert_eq!(g.randint(0, 2), 0); // 3499211612 is even
        assert_eq!(g.randint(3, 13), 3 + (581_869_302 % 10) as i64);
    }
}
