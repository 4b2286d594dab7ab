//! The text and numbers of the demo data: a seeded random generator, the words posts, names and
//! products are made of, and a lexicon whose words occur as often as words in real text.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// SplitMix64: small, fast and the same on every platform.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }

    pub(super) fn word(&mut self, words: &[&'static str]) -> &'static str {
        words[usize::try_from(self.below(words.len() as u64)).unwrap_or(0)]
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A UUID v7-shaped id at `at`, reproducible from the seed.
    pub(super) fn id(&mut self, at: DateTime<Utc>) -> Uuid {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let random = self.next();
        let bits = (u128::from(millis) << 80)
            | (0x7u128 << 76)
            | (u128::from(random & 0x0FFF) << 64)
            | (0b10u128 << 62)
            | u128::from(random >> 2);
        Uuid::from_u128(bits)
    }
}

pub(super) const ADJECTIVES: &[&str] = &[
    "quiet", "bright", "hidden", "patient", "rusty", "curious", "modern", "gentle", "bold",
    "simple", "distant", "careful", "wild", "honest", "tiny", "golden", "open", "lasting",
];
pub(super) const NOUNS: &[&str] = &[
    "garden", "server", "river", "kitchen", "library", "journey", "market", "engine", "letter",
    "harbor", "mountain", "workshop", "forest", "compiler", "teapot", "lantern", "bicycle",
    "notebook", "window", "bridge",
];
pub(super) const WORDS: &[&str] = &[
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "rust",
    "coffee",
    "morning",
    "database",
    "query",
    "bread",
    "window",
    "light",
    "writes",
    "reads",
    "builds",
    "ships",
    "quietly",
    "fast",
    "every",
    "day",
    "small",
    "large",
    "order",
    "stock",
    "price",
    "search",
    "index",
    "cache",
    "garden",
    "tomato",
    "sourdough",
    "river",
    "stone",
    "paper",
    "ink",
    "cart",
    "shop",
    "blog",
    "running",
    "walking",
    "thinking",
    "simple",
    "careful",
    "measure",
    "twice",
    "cut",
    "once",
];
pub(super) const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Radia",
    "Edsger",
    "Frances",
    "Niklaus",
    "Hedy",
    "Tim",
    "Katherine",
    "John",
    "Sophie",
    "Guido",
];
pub(super) const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Perlman",
    "Dijkstra",
    "Allen",
    "Wirth",
    "Lamarr",
    "Berners-Lee",
    "Johnson",
    "Backus",
    "Wilson",
    "van Rossum",
];
pub(super) const TAGS: &[&str] = &[
    "rust",
    "web",
    "databases",
    "cooking",
    "travel",
    "gardening",
    "design",
    "books",
    "music",
    "photography",
    "coffee",
    "hardware",
    "security",
    "performance",
    "testing",
    "writing",
    "bicycles",
    "tea",
    "maps",
    "history",
    "science",
    "open source",
    "startups",
    "ux",
    "sqlite",
    "postgres",
    "search",
    "caching",
    "shipping",
    "pricing",
];

/// The long tail of a post's words: made-up words whose frequencies fall off as in real text
/// (Zipf: the word of rank r is drawn in proportion to 1/r), so that a search for one of them
/// matches a realistic share of the posts, from most of them to a handful.
pub(super) struct Lexicon {
    words: Vec<String>,
    /// Cumulative weights, for drawing by rank.
    cumulative: Vec<u64>,
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "to", "va", "shi", "dor", "bel", "nu", "fa", "ri", "gan", "pe", "sol",
    "ti", "mar", "ve", "lu", "zen",
];
const LEXICON_SIZE: usize = 3_000;

impl Lexicon {
    /// The same lexicon for every seed.
    pub(super) fn new() -> Self {
        let mut rng = Rng(0x001E_61C0);
        let mut seen = std::collections::HashSet::new();
        let mut words = Vec::with_capacity(LEXICON_SIZE);
        while words.len() < LEXICON_SIZE {
            let syllables = 2 + rng.below(2);
            let word: String = (0..syllables).map(|_| rng.word(SYLLABLES)).collect();
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        let mut total = 0;
        let cumulative = (1..=LEXICON_SIZE as u64)
            .map(|rank| {
                total += 1_000_000 / rank;
                total
            })
            .collect();
        Self { words, cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let at = rng.below(total);
        let rank = self.cumulative.partition_point(|&c| c <= at);
        self.words.get(rank).map_or("ink", String::as_str)
    }

    /// Words of middling frequency (ranks 100 to 2,000), to search for.
    pub(super) fn search_terms(&self) -> Vec<String> {
        self.every_100th_from(100)
    }

    /// Rarer words (ranks 1,000 to 2,900): each in about 0.2 to 0.5 % of the posts.
    pub(super) fn rare_search_terms(&self) -> Vec<String> {
        self.every_100th_from(1_000)
    }

    /// Twenty words, one every hundred ranks from `rank` (counted from 1).
    fn every_100th_from(&self, rank: usize) -> Vec<String> {
        self.words
            .iter()
            .skip(rank - 1)
            .step_by(100)
            .take(20)
            .cloned()
            .collect()
    }
}

pub(super) fn sentence(rng: &mut Rng, lexicon: &Lexicon, words: u64) -> String {
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        // Seven words in ten are the common ones, the rest come from the long tail.
        if rng.chance(70) {
            out.push_str(rng.word(WORDS));
        } else {
            out.push_str(lexicon.draw(rng));
        }
    }
    let mut chars = out.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>() + "."
    })
}

pub(super) fn markdown(rng: &mut Rng, lexicon: &Lexicon, title: &str) -> String {
    let mut md = format!("# {title}\n\n");
    for _ in 0..(2 + rng.below(3)) {
        for _ in 0..(3 + rng.below(4)) {
            let words = 6 + rng.below(10);
            md.push_str(&sentence(rng, lexicon, words));
            md.push(' ');
        }
        md.push_str("\n\n");
    }
    let (word, noun) = (rng.word(WORDS), rng.word(NOUNS));
    md.push_str(&format!(
        "Some **{word}** and a [link](https://example.com/{noun}).\n"
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic() {
        let (mut a, mut b) = (Rng(42), Rng(42));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        let at = Utc::now();
        let id = Rng(1).id(at);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(Rng(1).id(at), id);
    }
}
