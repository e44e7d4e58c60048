//! Terminal-safe text: nothing from a file, a path or a command line reaches the terminal as a
//! control character or escape sequence.

use std::borrow::Cow;

/// Replaces control characters, and the invisible characters that reorder or hide text, with
/// visible escapes such as `\x1b` or `\u{202e}`.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// Like [`sanitize`], for lossily decoded bytes such as paths.
pub fn sanitize_lossy(text: impl AsRef<std::ffi::OsStr>) -> String {
    sanitize(&text.as_ref().to_string_lossy()).into_owned()
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // bidirectional overrides and isolates, zero-width and line/paragraph separators
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            sanitize("shared/zccache@1.11.20"),
            Cow::Borrowed(_)
        ));
        assert_eq!(sanitize("naïve ✓"), "naïve ✓");
    }

    #[test]
    fn controls_and_escapes_become_visible() {
        assert_eq!(sanitize("a\x1b[31mred\x07"), "a\\x1b[31mred\\x07");
        assert_eq!(sanitize("tab\tnl\n\r"), "tab\\x09nl\\x0a\\x0d");
        assert_eq!(sanitize("\u{9b}c1\u{7f}"), "\\x9bc1\\x7f");
        assert_eq!(sanitize("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
