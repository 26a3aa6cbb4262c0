//! One line for an error and everything under it, for logs and answers.

/// An error and its causes on one line: hyper's own message ("error from
/// user's Body stream") says little without the backend's reason under it.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
