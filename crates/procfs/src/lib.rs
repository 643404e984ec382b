//! Parsers for the kernel's memory files, and the one reader that opens them.
