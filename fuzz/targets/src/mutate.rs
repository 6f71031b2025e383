//! Byte mutations for the built-in engine: a small seeded PRNG and the classic operators.
//!
//! Operators: flip a bit, set a byte (random or "interesting": NUL, CR, LF, 0x7f, 0xff, a UTF-8
//! lead byte, quotes, separators), insert random bytes, delete a range, duplicate a range many
//! times (long lines, huge numbers), splice in part of another corpus entry, insert or overwrite
//! with a dictionary token, replace a run of digits with an extreme number, truncate. One
//! mutation applies 1 to 8 of them. Everything is deterministic for a given seed, so a failure
//! found in CI reproduces with the seed it printed.

/// xorshift64*: small, fast, good enough to pick mutations; never seeded with 0.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING: &[u8] = b"\x00\r\n\t \x7f\xff\xc3\xe2\x80:=\"'\\[]%$()#;,-+0";

const NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"2147483647",
    b"2147483648",
    b"4294967296",
    b"9223372036854775807",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"1e309",
    b"NaN",
    b"-0",
    b"+5",
    b"0x10",
    b"1.5",
];

/// Largest input the engine builds (past the parsers' own limits, so limits get tested).
pub const MAX_LEN: usize = 1 << 16;

/// Mutate `input` in place with 1 to 8 stacked operators.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]]) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        apply_one(rng, input, corpus, dictionary);
    }
    input.truncate(MAX_LEN);
}

fn apply_one(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]]) {
    let len = input.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = if rng.chance(2) {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.next_u64() as u8
            };
        }
        2 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.chance(2) {
                        INTERESTING[rng.below(INTERESTING.len())]
                    } else {
                        rng.next_u64() as u8
                    }
                })
                .collect();
            input.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            input.drain(at..at + n);
        }
        4 if len > 0 => {
            // Repeat a chunk: long header lines, many headers, huge numbers.
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(32));
            let chunk = input[at..at + n].to_vec();
            let times = if rng.chance(8) {
                rng.below(4096)
            } else {
                1 + rng.below(16)
            };
            let mut repeated = Vec::with_capacity(n * times);
            for _ in 0..times {
                repeated.extend_from_slice(&chunk);
                if repeated.len() > MAX_LEN {
                    break;
                }
            }
            input.splice(at..at, repeated);
        }
        5 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            if !other.is_empty() {
                let from = rng.below(other.len());
                let n = 1 + rng.below(other.len() - from);
                let at = rng.below(len + 1);
                let cut = if rng.chance(2) { len } else { at };
                input.truncate(cut.max(at));
                let piece = other[from..from + n].to_vec();
                input.splice(at..at, piece);
            }
        }
        6 | 7 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())];
            let at = rng.below(len + 1);
            if rng.chance(2) || at == len {
                input.splice(at..at, token.iter().copied());
            } else {
                let end = (at + token.len()).min(len);
                input.splice(at..end, token.iter().copied());
            }
        }
        8 => {
            // Replace a run of digits (or insert at random) with an extreme number.
            let number = NUMBERS[rng.below(NUMBERS.len())];
            let digits: Vec<usize> = (0..len).filter(|&i| input[i].is_ascii_digit()).collect();
            if digits.is_empty() {
                let at = rng.below(len + 1);
                input.splice(at..at, number.iter().copied());
            } else {
                let start = digits[rng.below(digits.len())];
                let mut end = start;
                while end < len && input[end].is_ascii_digit() {
                    end += 1;
                }
                input.splice(start..end, number.iter().copied());
            }
        }
        9 if len > 0 => input.truncate(rng.below(len)),
        _ => {
            let at = rng.below(len + 1);
            input.insert(at, rng.next_u64() as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutations() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut v = b"GET / HTTP/1.1\r\n\r\n".to_vec();
            for _ in 0..100 {
                mutate(&mut rng, &mut v, &[b"abc".to_vec()], &[b"tok"]);
            }
            v
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn never_exceeds_the_length_cap() {
        let mut rng = Rng::new(1);
        let mut v = vec![b'x'; MAX_LEN];
        for _ in 0..200 {
            mutate(&mut rng, &mut v, &[vec![b'y'; MAX_LEN]], &[b"tok"]);
            assert!(v.len() <= MAX_LEN);
        }
    }
}
