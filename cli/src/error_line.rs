//! Turns an error and its causes into the one line the CLI prints: `error: <message>`.
//!
//! People read this line and scripts grep it, so it is always a single line, and a
//! cause whose text already appears in the line (errors that embed their source in
//! their own message) is not repeated, nor is a part repeated right after itself.

/// The causes of `err`, outermost first, joined with ": " on one line.
pub fn render(err: &anyhow::Error) -> String {
    join(err.chain().map(ToString::to_string))
}

fn join(messages: impl IntoIterator<Item = String>) -> String {
    let mut line = String::new();
    for message in messages {
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        if message.is_empty() || line.contains(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&message);
    }
    if line.is_empty() {
        return "unknown error".to_string();
    }
    // Some causes repeat their own source ("tcp connect error: tcp connect error: ..."):
    // say each part once.
    let mut parts: Vec<&str> = line.split(": ").collect();
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn joins_context_and_causes_on_one_line() {
        let io = std::io::Error::other("disk on fire\nreally");
        let err = Err::<(), _>(io).context("cannot read stdin").unwrap_err();
        assert_eq!(render(&err), "cannot read stdin: disk on fire really");
    }

    #[test]
    fn does_not_repeat_embedded_causes() {
        let line = join(["cannot connect to broker at x: refused".to_string(), "refused".to_string()]);
        assert_eq!(line, "cannot connect to broker at x: refused");
    }

    #[test]
    fn collapses_repeated_parts() {
        let line = join(["transport error: tcp connect error: tcp connect error: refused".to_string()]);
        assert_eq!(line, "transport error: tcp connect error: refused");
    }

    #[test]
    fn never_empty() {
        assert_eq!(join([String::new()]), "unknown error");
    }
}
