//! The `Range` request header (RFC 9110 §14) for one byte range, resolved against a
//! blob's length: what to send, or why it cannot be satisfied. Several ranges in one
//! header are answered with the whole blob, which the RFC allows.

use std::ops::Range;

/// What to answer to a request for a blob of a known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// No (usable) `Range`: the whole blob, 200.
    Whole,
    /// One satisfiable range: 206 with `Content-Range: bytes START-END/LENGTH`.
    Part(Range<u64>),
    /// A range outside the blob: 416 with `Content-Range: bytes */LENGTH`.
    Unsatisfiable,
}

/// Resolves the `Range` header's value (if any) against `length`.
pub fn resolve(header: Option<&str>, length: u64) -> Resolved {
    let Some(spec) = header.and_then(|value| value.trim().strip_prefix("bytes=")) else {
        // No header, or a unit other than bytes: ignored, as the RFC says.
        return Resolved::Whole;
    };
    if spec.contains(',') {
        return Resolved::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Resolved::Whole;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match end.parse::<u64>() {
            Ok(0) => return Resolved::Unsatisfiable,
            Ok(suffix) => Some(length.saturating_sub(suffix)..length),
            Err(_) => None,
        },
        // `S-`: from S to the end.
        (false, true) => start.parse::<u64>().ok().map(|start| start..length),
        // `S-E`, inclusive; an end past the blob is cut to it.
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(start), Ok(end)) if end >= start => Some(start..length.min(end + 1)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        // A malformed header is ignored.
        None => Resolved::Whole,
        Some(range) if range.start >= length || range.is_empty() => Resolved::Unsatisfiable,
        Some(range) => Resolved::Part(range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let table: [(Option<&str>, Resolved); 14] = [
            (None, Resolved::Whole),
            (Some("bytes=0-3"), Resolved::Part(0..4)),
            (Some("bytes=4-"), Resolved::Part(4..10)),
            (Some("bytes=-3"), Resolved::Part(7..10)),
            (Some("bytes=-30"), Resolved::Part(0..10)),
            (Some("bytes=5-99"), Resolved::Part(5..10)),
            (Some("bytes=9-9"), Resolved::Part(9..10)),
            (Some("bytes=10-"), Resolved::Unsatisfiable),
            (Some("bytes=20-30"), Resolved::Unsatisfiable),
            (Some("bytes=-0"), Resolved::Unsatisfiable),
            (Some("bytes=3-1"), Resolved::Whole),
            (Some("bytes=0-1,4-5"), Resolved::Whole),
            (Some("items=0-1"), Resolved::Whole),
            (Some("bytes=x-"), Resolved::Whole),
        ];
        for (header, want) in table {
            assert_eq!(resolve(header, 10), want, "{header:?}");
        }
        assert_eq!(resolve(Some("bytes=0-"), 0), Resolved::Unsatisfiable);
        assert_eq!(resolve(None, 0), Resolved::Whole);
    }
}
