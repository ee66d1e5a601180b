//! Topic name rules, as Kafka has them: 1–249 characters of `[a-zA-Z0-9._-]`, and not
//! `.` or `..` (they would be path components in tooling that maps topics to files).

use crate::error::BrokerError;

pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Prefix reserved for the broker's own topics (for example committed offsets).
pub const INTERNAL_PREFIX: &str = "__";

pub fn validate(name: &str) -> Result<(), BrokerError> {
    let invalid = |reason: String| BrokerError::InvalidTopicName { name: name.into(), reason };
    if name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid(format!("{} characters, the limit is {MAX_TOPIC_NAME_LEN}", name.len())));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed".into()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(invalid(format!("character {c:?} is not allowed (use letters, digits, '.', '_' and '-')")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_names() {
        for ok in ["a", "orders", "orders.v2", "my_topic-1", &"x".repeat(249)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names_with_reason() {
        for (bad, why) in [
            ("", "empty"),
            (".", "not allowed"),
            ("..", "not allowed"),
            ("a/b", "'/'"),
            ("héllo", "'é'"),
            ("has space", "' '"),
        ] {
            let err = validate(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(validate(&"x".repeat(250)).unwrap_err().to_string().contains("250 characters"));
    }
}
