//! The words of a query keyword search looks for (pure).
//!
//! Function words ("the", "of", "unto") match nearly every note; BM25 gives them little
//! weight, but a note matching only them still enters the keyword ranking and, fused,
//! can push out what the query means. So they are dropped from the query, and the
//! remaining words are OR-ed: a note needs any of them, more and rarer ones rank higher.

/// English and King James function words: never searched for.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "art", "as",
    "at", "be", "because", "been", "before", "being", "but", "by", "can", "could", "did", "do",
    "does", "doth", "dost", "for", "from", "had", "has", "hast", "hath", "have", "he", "her",
    "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no",
    "nor", "not", "of", "on", "one", "or", "our", "out", "shall", "shalt", "she", "should", "so",
    "some", "such", "than", "that", "the", "thee", "their", "them", "then", "there", "these",
    "they", "thine", "this", "those", "thou", "thus", "thy", "to", "unto", "up", "upon", "us",
    "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will",
    "with", "would", "ye", "yea", "you", "your",
];

/// At most this many words are searched for (a query is a search, not a document).
const MAX_TERMS: usize = 32;

/// The query's content words: lower-cased runs of letters and digits, function words,
/// single letters (the "s" of "Goliath's") and repeats dropped, in query order.
pub fn content_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
    {
        let letter = word.chars().count() == 1 && !word.chars().all(|c| c.is_numeric());
        if !letter && !STOP_WORDS.contains(&word.as_str()) && !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_TERMS {
            break;
        }
    }
    words
}

/// An FTS5 `MATCH` expression: any of `words`. Each is quoted (a word is letters and
/// digits only, so it cannot close the quote or be read as an operator).
pub fn fts5_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// A `websearch_to_tsquery` text: any of `words` (`or` is its OR operator, and never a
/// word here: it is a function word).
pub fn websearch_query(words: &[String]) -> String {
    words.join(" or ")
}

/// `word` without a common English or King James inflection ("kills", "killed",
/// "killing", "killeth" → "kill"): close enough to the engines' Porter stemming to tell
/// whether a note holds a query word, which is all [`coverage`] needs.
fn light_stem(word: &str) -> &str {
    for suffix in ["ing", "eth", "est", "ed", "es", "s"] {
        // "bless" is a stem; "blesses" and "blessed" come back to it.
        if suffix == "s" && word.ends_with("ss") {
            continue;
        }
        if let Some(stem) = word.strip_suffix(suffix) {
            if stem.chars().count() >= 3 {
                return stem;
            }
        }
    }
    word
}

/// The share of `words` (content words, lower-cased) that `text` holds, 0..=1 (1 when
/// `words` is empty). A note holding every word of the query is a confident keyword
/// match; one holding one word of six shares a word, not a meaning.
pub fn coverage(words: &[String], text: &str) -> f32 {
    if words.is_empty() {
        return 1.0;
    }
    let stems: std::collections::HashSet<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| light_stem(&t.to_lowercase()).to_owned())
        .collect();
    let held = words
        .iter()
        .filter(|w| stems.contains(light_stem(w)))
        .count();
    held as f32 / words.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_words_of_queries() {
        for (query, words) in [
            (
                "boy kills a giant with a sling",
                &["boy", "kills", "giant", "sling"][..],
            ),
            ("John 3:16", &["john", "3", "16"]),
            ("The LORD is my shepherd", &["lord", "shepherd"]),
            ("and the of", &[]),
            ("Goliath GOLIATH goliath's", &["goliath"]),
            ("Psalm 23 v 1", &["psalm", "23", "1"]),
            ("naïve \"café\" OR NEAR", &["naïve", "café", "near"]),
        ] {
            assert_eq!(content_words(query), words, "{query}");
        }
        assert_eq!(content_words(&"wo ".repeat(100)).len(), 1);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(content_words(&many).len(), MAX_TERMS);
    }

    #[test]
    fn engine_queries() {
        let words = content_words("giant sling \"quoted\"");
        assert_eq!(fts5_query(&words), "\"giant\" OR \"sling\" OR \"quoted\"");
        assert_eq!(websearch_query(&words), "giant or sling or quoted");
    }

    #[test]
    fn coverage_counts_the_query_words_a_text_holds() {
        let words = content_words("boy kills a giant with a sling");
        for (text, expected) in [
            (
                "And David killed the giant with his sling; the boy ran.",
                1.0,
            ),
            ("The giants of old", 0.25),
            ("A lad slew the champion", 0.0),
            ("Slings and stones: the killing of a GIANT", 0.75),
        ] {
            assert_eq!(coverage(&words, text), expected, "{text}");
        }
        assert_eq!(coverage(&[], "anything"), 1.0);
        let bless = content_words("bless blessed blesses");
        assert_eq!(coverage(&bless[..1], "he blessed them"), 1.0);
        assert_eq!(coverage(&bless[1..], "bless the LORD"), 1.0);
        assert_eq!(
            coverage(&content_words("John 3:16"), "3:16 For God so loved"),
            2.0 / 3.0
        );
    }
}
