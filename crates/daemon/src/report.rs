//! Errors as the log shows them: the whole cause chain on one line, each cause once.

use std::error::Error;
use std::fmt::Write as _;

/// `e` and every source below it, joined with ": " (as anyhow's `{:#}`). A cause whose text
/// the message above already ends with (error types that print their source as well as
/// chaining it) is not repeated.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !text.is_empty() && !out.ends_with(&text) && !out.contains(&format!("{text}: ")) {
            let _ = write!(out, ": {text}");
        }
        cur = src.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading host memory")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("opening /proc/meminfo")]
    struct Middle(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("h.db: append: {0}")]
    struct Prints(#[source] std::io::Error);

    #[test]
    fn the_whole_chain_is_kept_and_each_cause_once() {
        let emfile = || std::io::Error::from_raw_os_error(libc::EMFILE);
        let e = Outer(Middle(emfile()));
        assert_eq!(
            chain(&e),
            format!("reading host memory: opening /proc/meminfo: {}", emfile())
        );
        assert!(chain(&e).contains("Too many open files"), "{}", chain(&e));
        let e = Prints(emfile());
        assert_eq!(chain(&e), format!("h.db: append: {}", emfile()));
    }
}
