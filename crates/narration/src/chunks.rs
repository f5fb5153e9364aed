//! Splitting long text into pieces a speech engine renders in bounded time, at sentence
//! (or failing that, word) boundaries.

/// Pieces of at most `max_bytes` (longer only when a single word is longer), in order,
/// that together hold every non-blank character of `text`.
pub fn split(text: &str, max_bytes: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for sentence in sentences(text) {
        if !current.is_empty() && current.len() + sentence.len() > max_bytes {
            chunks.push(std::mem::take(&mut current));
        }
        if sentence.len() > max_bytes {
            for word in sentence.split_whitespace() {
                if !current.is_empty() && current.len() + word.len() + 1 > max_bytes {
                    chunks.push(std::mem::take(&mut current));
                }
                if !current.is_empty() {
                    current.push(' ');
                }
                current.push_str(word);
            }
        } else {
            current.push_str(sentence);
        }
    }
    if !current.trim().is_empty() {
        chunks.push(current);
    }
    chunks
        .into_iter()
        .filter(|c| !c.trim().is_empty())
        .collect()
}

/// Sentences with their trailing punctuation and white space.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .find(|(i, c)| {
                matches!(c, '.' | '!' | '?' | '\n')
                    && rest[i + c.len_utf8()..]
                        .chars()
                        .next()
                        .is_none_or(char::is_whitespace)
            })
            .map_or(rest.len(), |(i, c)| {
                let after = i + c.len_utf8();
                after + rest[after..].len() - rest[after..].trim_start().len()
            });
        let (sentence, tail) = rest.split_at(end);
        rest = tail;
        Some(sentence)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(
            split("Hello there. How are you?", 100),
            vec!["Hello there. How are you?"]
        );
    }

    #[test]
    fn long_text_splits_at_sentences_within_the_limit() {
        let text = "One two three. Four five six. Seven eight nine. ".repeat(50);
        let chunks = split(&text, 100);
        assert!(chunks.len() > 10);
        assert!(chunks.iter().all(|c| c.len() <= 100), "{chunks:?}");
        assert!(
            chunks.iter().all(|c| c.trim_end().ends_with('.')),
            "{chunks:?}"
        );
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&chunks.concat()), words(&text));
    }

    #[test]
    fn a_sentence_longer_than_the_limit_splits_at_words() {
        let text = "word ".repeat(100);
        let chunks = split(&text, 42);
        assert!(chunks.iter().all(|c| c.len() <= 42), "{chunks:?}");
        assert_eq!(chunks.join(" ").split_whitespace().count(), 100);
        assert!(split("  \n ", 10).is_empty());
        assert_eq!(split("é".repeat(30).as_str(), 10), vec!["é".repeat(30)]);
    }
}
