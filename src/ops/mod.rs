//! One module per command, over the core model.

pub mod build;
pub mod fetch;
pub mod guard;
pub mod outdated;
pub mod prepare;
pub mod progress;
pub mod publish;
pub mod pull;
pub mod rootless;
pub mod solve;
pub mod store_fill;
pub mod tree;
pub mod vendor;
pub mod verify;
pub mod why;

/// An error and its causes on one line, as `{:#}` prints them but with each
/// cause left out when the text so far already says it: many error types
/// print their source in their own message *and* report it as `source()`,
/// which `{:#}` would print twice (`X: Y: X: Y`).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("package p: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(Outer { source: inner }).context("building img");
        assert_eq!(
            format!("{e:#}"),
            "building img: package p: disk on fire: disk on fire"
        );
        assert_eq!(
            super::error_text(&e),
            "building img: package p: disk on fire"
        );
        let plain = anyhow::anyhow!("a").context("b");
        assert_eq!(super::error_text(&plain), "b: a");
    }
}
pub mod workspace;
