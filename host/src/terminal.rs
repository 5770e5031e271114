//! Making text safe for a terminal: the one place that decides which
//! characters a human-readable rendering may carry.
//!
//! Why one function: strings from plugins (manifest and describe text, plan
//! notes, evidence, hook messages, rollback reasons, panic messages), from
//! config files and from the machine end up in tables, event lines, reports
//! and the `error:` line. A single escape sequence there can recolour,
//! retitle or rewrite the operator's terminal (ESC/CSI/OSC, C1 controls), a
//! bidi override can make `rollback` read as something else, and a newline
//! can forge a line of output. Every human renderer passes each such string
//! through [`safe`] (one line) or a whole document through [`safe_text`]
//! (lines kept); `--json` output is never touched, so machines get the exact
//! value.
//!
//! What is escaped: every control character (C0, DEL, C1), the Unicode
//! format characters that change how text is displayed or hide text (bidi
//! embeddings, overrides and isolates, zero-width characters, the byte-order
//! mark, interlinear annotations, tag characters) and the line and paragraph
//! separators. They are written as Rust escapes (`\u{1b}`, `\n`), so the
//! operator still sees that something was there.
//!
//! ```
//! use adeploy::terminal::{safe, safe_text};
//! assert_eq!(safe("ok\u{1b}[2J"), "ok\\u{1b}[2J");
//! assert_eq!(safe("a\nb"), "a\\nb");
//! assert_eq!(safe_text("line 1\nline 2\u{202e}\n"), "line 1\nline 2\\u{202e}\n");
//! assert_eq!(safe("plain text, accents é, CJK 漢字"), "plain text, accents é, CJK 漢字");
//! ```

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is.
pub fn is_unsafe(c: char) -> bool {
    if c.is_control() {
        // C0, DEL and C1 (U+0080..=U+009F).
        return true;
    }
    matches!(
        c,
        // Soft hyphen, Arabic letter mark, Mongolian vowel separator.
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        // Zero-width space/joiners, LRM/RLM.
        | '\u{200B}'..='\u{200F}'
        // Line and paragraph separators; bidi embeddings and overrides.
        | '\u{2028}'..='\u{202E}'
        // Word joiner, invisible operators, bidi isolates, deprecated formats.
        | '\u{2060}'..='\u{206F}'
        // Byte-order mark / zero-width no-break space.
        | '\u{FEFF}'
        // Interlinear annotation characters.
        | '\u{FFF9}'..='\u{FFFB}'
        // Tag characters (invisible ASCII look-alikes).
        | '\u{E0000}'..='\u{E007F}'
    )
}

/// `text` as one line a terminal shows literally: every unsafe character,
/// newlines included, escaped.
pub fn safe(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// `text` with its line structure kept (`\n` and `\t` pass) and every other
/// unsafe character escaped: for whole rendered documents.
pub fn safe_text(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) && !keep(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_class() {
        for (raw, shown) in [
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("\u{9b}2J", "\\u{9b}2J"),
            ("\u{1b}]0;title\u{7}", "\\u{1b}]0;title\\u{7}"),
            ("a\rb", "a\\rb"),
            ("x\u{7f}", "x\\u{7f}"),
            ("evil\u{202e}gnp.exe", "evil\\u{202e}gnp.exe"),
            ("\u{2066}iso\u{2069}", "\\u{2066}iso\\u{2069}"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("\u{feff}bom", "\\u{feff}bom"),
            ("l\u{2028}s", "l\\u{2028}s"),
        ] {
            assert_eq!(safe(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn text_keeps_lines_and_tabs_only() {
        assert_eq!(safe_text("a\tb\nc\r\n"), "a\tb\nc\\r\n");
        assert!(matches!(safe_text("plain\n"), Cow::Borrowed(_)));
        assert!(matches!(safe("plain"), Cow::Borrowed(_)));
    }
}
