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
}
