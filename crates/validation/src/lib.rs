//! Field rules of a note, checked by the API before a command is sent and again by the
//! aggregate (the API is not the only producer of commands).

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body, in bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 100_000;

/// One field that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name (`title`, `body`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Every rule `title` and `body` break (empty when both are fine).
pub fn check_note(title: &str, body: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if title.trim().is_empty() {
        errors.push(FieldError {
            field: "title",
            message: "must not be empty or only white space".into(),
        });
    } else if title.chars().count() > MAX_TITLE_CHARS {
        errors.push(FieldError {
            field: "title",
            message: format!(
                "must be at most {MAX_TITLE_CHARS} characters, got {}",
                title.chars().count()
            ),
        });
    }
    if body.trim().is_empty() {
        errors.push(FieldError {
            field: "body",
            message: "must not be empty or only white space".into(),
        });
    } else if body.len() > MAX_BODY_BYTES {
        errors.push(FieldError {
            field: "body",
            message: format!("must be at most {MAX_BODY_BYTES} bytes, got {}", body.len()),
        });
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("Title", "Body", &[]),
            ("", "Body", &["title"]),
            ("   ", "Body", &["title"]),
            ("Title", " \n", &["body"]),
            ("", "", &["title", "body"]),
            (&"é".repeat(200), "b", &[]),
            (&"é".repeat(201), "b", &["title"]),
        ];
        for (title, body, fields) in cases {
            let got: Vec<_> = check_note(title, body).iter().map(|e| e.field).collect();
            assert_eq!(&got, fields, "title {title:?} body {body:?}");
        }
        assert!(check_note("t", &"x".repeat(MAX_BODY_BYTES)).is_empty());
        assert_eq!(
            check_note("t", &"x".repeat(MAX_BODY_BYTES + 1))[0].field,
            "body"
        );
    }
}
