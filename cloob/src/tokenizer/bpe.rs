//! CLIP's byte-level BPE over OpenAI's vocabulary, in `O(n log n)` per word.
//!
//! CLIP's own `bpe()` (and `instant_clip_tokenizer`, which ports it) looks for the lowest-ranked adjacent pair
//! over the whole word, merges every occurrence of it left to right, and starts again: one scan of the word per
//! merge round, so a word of `n` bytes costs `O(n²)` lookups (a 1 M-character word took 11.6 s). Here every
//! mergeable pair waits in a heap ordered by (rank, position) and the word is a linked list, so each merge
//! costs two lookups and a heap push or two. The result is the same: a merge creates a token that only
//! higher-ranked rules use (a rule can name a token only after the rule that made it), so all pairs of one
//! rank are merged, in position order, before any pair a merge creates, and a pair that overlaps one just
//! merged is dropped, as CLIP's left-to-right scan skips it.
//!
//! The vocabulary is `bpe_simple_vocab_16e6.txt.gz` from CLIP (© 2021 OpenAI, MIT licence), the same
//! file open_clip ships; ids are those of CLIP's `SimpleTokenizer`: 256 byte tokens, their 256 end-of-word
//! forms, 48 894 merges in rank order, `<start_of_text>`, `<end_of_text>`.

use flate2::read::GzDecoder;
use regex::Regex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;

use super::{END_OF_TEXT, START_OF_TEXT, VOCAB_SIZE};

/// CLIP's vocabulary file: a version line, then one merge rule (`first second`) per line in rank order.
const VOCABULARY_GZ: &[u8] = include_bytes!("bpe_simple_vocab_16e6.txt.gz");
/// Merge rules CLIP uses: the vocabulary less the 512 byte tokens and the two markers.
const MERGES: usize = VOCAB_SIZE - 512 - 2;
/// First id of a merged token: ids `0..256` are bytes, `256..512` bytes ending a word.
const FIRST_MERGE: u16 = 512;
/// No neighbour in the linked list of a word's tokens.
const NONE: usize = usize::MAX;

/// The merge rules and the pre-tokenizer.
pub(crate) struct Bpe {
    /// Token of each byte (add 256 for the same byte ending a word).
    byte_to_token: [u16; 256],
    /// [`pair`]`(first, second)` → merged token; a merged token's id grows with its rule's rank.
    merges: HashMap<u32, u16, BuildHasherDefault<PairHasher>>,
    /// Bytes of each token below `<start_of_text>`, `</w>` spelt out for the end-of-word ones.
    decoder: Vec<Vec<u8>>,
    /// CLIP's word split: markers, contractions, letter runs, single digits, runs of other non-space.
    word_split: Regex,
}

/// Two tokens as one key of the merge table.
fn pair(first: u16, second: u16) -> u32 {
    u32::from(first) << 16 | u32::from(second)
}

/// Fibonacci hashing of a [`pair`]: the merge table is looked up a few times per byte of text, and the
/// keys are not chosen by anyone who could attack the table.
#[derive(Default)]
struct PairHasher(u64);

impl Hasher for PairHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u32(u32::from(b)));
    }
    fn write_u32(&mut self, key: u32) {
        self.0 = (self.0 ^ u64::from(key)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The buffers of [`Bpe::merge_word`], kept across the words of a text.
#[derive(Default)]
struct Scratch {
    tokens: Vec<u16>,
    next: Vec<usize>,
    prev: Vec<usize>,
    alive: Vec<bool>,
    heap: Pairs,
}

/// Mergeable pairs of a word: (merged token, left position, right position, right token), the lowest rank
/// first, then the leftmost.
type Pairs = BinaryHeap<Reverse<(u16, usize, usize, u16)>>;

/// What [`Bpe::encode_word`] did, to bound its work in tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WordWork {
    /// Merge-table lookups.
    pub lookups: usize,
    /// Heap pops (valid or stale pairs).
    pub pops: usize,
}

impl Bpe {
    /// Parse the embedded vocabulary (about 50 ms; done once per process by the tokenizer).
    pub(crate) fn new() -> Bpe {
        let mut text = String::new();
        GzDecoder::new(VOCABULARY_GZ).read_to_string(&mut text).expect("the embedded vocabulary is valid gzip UTF-8");
        Bpe::from_rules(&text).expect("the embedded vocabulary is valid")
    }

    /// Build from the text of a CLIP vocabulary file; the error names the first bad line.
    fn from_rules(text: &str) -> Result<Bpe, String> {
        // CLIP's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others are shifted to
        // U+0100 and up, in byte order, after them.
        let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        let mut order: Vec<(u8, char)> = (0..=255u8).filter(|&b| printable(b)).map(|b| (b, char::from(b))).collect();
        let shifted = (0..=255u8).filter(|&b| !printable(b));
        order.extend(shifted.enumerate().map(|(i, b)| (b, char::from_u32(256 + i as u32).expect("below U+0200"))));
        let mut byte_to_token = [0u16; 256];
        let mut byte_of_char = HashMap::new();
        let mut string_to_token = HashMap::new();
        let mut decoder = vec![Vec::new(); usize::from(FIRST_MERGE)];
        for (token, &(byte, ch)) in order.iter().enumerate() {
            let token = token as u16;
            byte_to_token[usize::from(byte)] = token;
            byte_of_char.insert(ch, byte);
            string_to_token.insert(ch.to_string(), token);
            string_to_token.insert(format!("{ch}</w>"), token + 256);
            decoder[usize::from(token)] = vec![byte];
            decoder[usize::from(token) + 256] = [&[byte][..], b"</w>"].concat();
        }
        let mut merges = HashMap::with_capacity_and_hasher(MERGES, Default::default());
        for (i, line) in text.lines().skip(1).take(MERGES).enumerate() {
            let bad = || format!("vocabulary line {}: {line:?} is not a merge of two known tokens", i + 2);
            let mut parts = line.split_whitespace();
            let (Some(first), Some(second)) = (parts.next(), parts.next()) else { return Err(bad()) };
            let (Some(&a), Some(&b)) = (string_to_token.get(first), string_to_token.get(second)) else {
                return Err(bad());
            };
            let merged = FIRST_MERGE + i as u16;
            merges.insert(pair(a, b), merged);
            string_to_token.insert(format!("{first}{second}"), merged);
            decoder.push([&decoder[usize::from(a)][..], &decoder[usize::from(b)][..]].concat());
        }
        if merges.len() != MERGES {
            return Err(format!("vocabulary has {} merge rules, CLIP uses {MERGES}", merges.len()));
        }
        let word_split =
            Regex::new(r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
                .expect("the word pattern is valid");
        Ok(Bpe { byte_to_token, merges, decoder, word_split })
    }

    /// Append the ids of `text` (lowercased, split into words, each merged) to `out`, stopping after the
    /// word that brings `out` to `limit` ids: words are merged independently, so the ids before the limit
    /// are those of the whole text.
    pub(crate) fn encode(&self, text: &str, limit: usize, out: &mut Vec<u32>) {
        let text = text.to_lowercase();
        let mut scratch = Scratch::default();
        for word in self.word_split.find_iter(&text) {
            if out.len() >= limit {
                return;
            }
            match word.as_str() {
                "<start_of_text>" => out.push(START_OF_TEXT),
                "<end_of_text>" => out.push(END_OF_TEXT),
                w => {
                    self.merge_word(w.as_bytes(), out, &mut scratch);
                }
            }
        }
    }

    /// Append the BPE ids of one word's bytes to `out`.
    #[cfg(test)]
    fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) -> WordWork {
        self.merge_word(word, out, &mut Scratch::default())
    }

    /// Append the BPE ids of one word's bytes to `out`, with `s`'s buffers.
    fn merge_word(&self, word: &[u8], out: &mut Vec<u32>, s: &mut Scratch) -> WordWork {
        let mut work = WordWork::default();
        let n = word.len();
        if n == 0 {
            return work;
        }
        let Scratch { tokens, next, prev, alive, heap } = s;
        tokens.clear();
        tokens.extend(word.iter().map(|&b| self.byte_to_token[usize::from(b)]));
        tokens[n - 1] += 256;
        // Doubly linked list over the positions still heading a token; `next[i] == NONE` ends the word.
        next.clear();
        next.extend((1..=n).map(|i| if i < n { i } else { NONE }));
        prev.clear();
        prev.extend((0..n).map(|i| if i > 0 { i - 1 } else { NONE }));
        alive.clear();
        alive.resize(n, true);
        heap.clear();
        let push = |heap: &mut Pairs, work: &mut WordWork, left: usize, right: usize, t: &[u16]| {
            work.lookups += 1;
            if let Some(&merged) = self.merges.get(&pair(t[left], t[right])) {
                heap.push(Reverse((merged, left, right, t[right])));
            }
        };
        for i in 0..n - 1 {
            push(heap, &mut work, i, i + 1, tokens);
        }
        while let Some(Reverse((merged, left, right, right_token))) = heap.pop() {
            work.pops += 1;
            // Stale when either side was merged since the pair was pushed: the left one with its right
            // neighbour (which then is another one, and a left token only changes so), or the right one with
            // its own (its token changed).
            if !alive[left] || next[left] != right || tokens[right] != right_token {
                continue;
            }
            tokens[left] = merged;
            alive[right] = false;
            next[left] = next[right];
            if next[left] != NONE {
                prev[next[left]] = left;
            }
            if prev[left] != NONE {
                push(heap, &mut work, prev[left], left, tokens);
            }
            if next[left] != NONE {
                push(heap, &mut work, left, next[left], tokens);
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(u32::from(tokens[i]));
            i = next[i];
        }
        work
    }

    /// Text of ids: each token's bytes, `</w>` read as a space, the markers spelt out, ids past the
    /// vocabulary left out; invalid UTF-8 is replaced.
    pub(crate) fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            match id {
                START_OF_TEXT => bytes.extend_from_slice(b"<start_of_text>"),
                END_OF_TEXT => bytes.extend_from_slice(b"<end_of_text>"),
                id => bytes.extend_from_slice(self.decoder.get(id as usize).map_or(&[][..], |b| &b[..])),
            }
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CLIP's `bpe()` as written (and as `instant_clip_tokenizer` ports it): find the lowest-ranked pair
    /// over the whole word, merge all its occurrences left to right, repeat. Returns ids and lookups.
    fn reference_word(bpe: &Bpe, word: &[u8]) -> (Vec<u32>, usize) {
        let mut tokens: Vec<u16> = word.iter().map(|&b| bpe.byte_to_token[usize::from(b)]).collect();
        let mut lookups = 0;
        if let Some(last) = tokens.last_mut() {
            *last += 256;
        }
        loop {
            let best = tokens
                .windows(2)
                .filter_map(|p| {
                    lookups += 1;
                    bpe.merges.get(&pair(p[0], p[1])).map(|&m| (m, p[0], p[1]))
                })
                .min();
            let Some((merged, first, second)) = best else { break };
            let mut i = 0;
            while i + 1 < tokens.len() {
                if tokens[i] == first && tokens[i + 1] == second {
                    tokens[i] = merged;
                    tokens.remove(i + 1);
                }
                i += 1;
            }
        }
        (tokens.into_iter().map(u32::from).collect(), lookups)
    }

    /// Words made to stress the merge order: runs of one letter (overlapping pairs), repeated syllables,
    /// long words, multi-byte letters, pseudo-random letter strings.
    fn words() -> Vec<Vec<u8>> {
        let mut words: Vec<Vec<u8>> = ["a", "aa", "aaa", "aaaaaaa", "ab", "banana", "mississippi", "ℌello"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        for n in [2, 3, 4, 5, 8, 13, 31, 64, 100] {
            words.push(b"a".repeat(n));
            words.push(b"ab".repeat(n));
            words.push("hopfield".repeat(n).into_bytes());
            words.push("Ⓐß東ü".repeat(n).into_bytes());
        }
        words.extend((1..200).map(|len| random_letters(len, len as u64)));
        words
    }

    /// `len` pseudo-random letters (xorshift), some of them multi-byte.
    fn random_letters(len: usize, seed: u64) -> Vec<u8> {
        let letters: Vec<char> = "etaoinshrdlucmfwypvbgkjqxzéüß東京".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64 ^ seed;
        let word: String = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                letters[(state % letters.len() as u64) as usize]
            })
            .collect();
        word.into_bytes()
    }

    #[test]
    fn heap_merges_equal_clips_rounds() {
        let bpe = Bpe::new();
        for word in words() {
            let mut ids = Vec::new();
            bpe.encode_word(&word, &mut ids);
            assert_eq!(ids, reference_word(&bpe, &word).0, "{:?}", String::from_utf8_lossy(&word));
        }
    }

    #[test]
    fn work_per_word_is_linear_in_its_length() {
        // Every merge removes a token and pushes at most two pairs: at most 3n lookups and 3n pops.
        let bpe = Bpe::new();
        let random = random_letters(30_000, 7);
        for word in [random.clone(), b"a".repeat(30_000), "東京タワー".repeat(2_000).into_bytes()] {
            let n = word.len();
            let mut ids = Vec::new();
            let work = bpe.encode_word(&word, &mut ids);
            assert!(work.lookups <= 3 * n && work.pops <= 3 * n, "{n} bytes: {work:?}");
        }
        // CLIP's rounds scan the whole word once per rule merged: on letters, the square of the length.
        let mut ids = Vec::new();
        let prefix = random_letters(3000, 7);
        let (reference, lookups) = reference_word(&bpe, &prefix);
        bpe.encode_word(&prefix, &mut ids);
        assert_eq!(ids, reference);
        assert!(lookups > 100 * 3000, "{lookups}");
    }

    #[test]
    fn encode_stops_at_the_limit_with_the_same_ids() {
        let bpe = Bpe::new();
        let text = "a photo of a cat ".repeat(1000);
        let mut all = Vec::new();
        bpe.encode(&text, usize::MAX, &mut all);
        assert_eq!(all.len(), 5000);
        let mut cut = Vec::new();
        bpe.encode(&text, 76, &mut cut);
        assert_eq!(cut.len(), 76);
        assert_eq!(cut[..], all[..76]);
    }

    #[test]
    fn bad_vocabulary_lines_are_named() {
        let err = Bpe::from_rules("#version: 0.2\ni n\nzz qq\n").err().unwrap();
        assert!(err.contains("line 3") && err.contains("zz qq"), "{err}");
        assert!(Bpe::from_rules("#version: 0.2\ni n\n").err().unwrap().contains("1 merge rules"));
    }
}
