//! Rendering: every command result is printed as text or as one JSON document.
//! A closed stdout (`adeploy plugins list | head -1`) is not an error.
//!
//! Terminal safety: human output passes through `adeploy::terminal` here,
//! at the sinks (the whole text document, every stderr line, the tracing
//! writer, the `error:` line), and each plugin-supplied field is escaped
//! where it is formatted (so a newline inside a field cannot forge a line).
//! `--json` output is written exactly as serialised.

use std::io::Write;

pub use adeploy::terminal::safe;

/// A command's result, printable for humans or machines.
pub trait CommandOutput: serde::Serialize {
    /// The human-readable rendering.
    fn text(&self) -> String;
}

/// Prints `out` as JSON or text.
pub fn emit<T: CommandOutput>(out: &T, json: bool) -> anyhow::Result<()> {
    let rendered = if json {
        serde_json::to_string_pretty(out)? + "\n"
    } else {
        adeploy::terminal::safe_text(&out.text()).into_owned()
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(rendered.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A table with a header row, aligned for a terminal.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_string()));
    for r in rows {
        t.add_row(r);
    }
    let mut s = t.to_string();
    // comfy-table pads the first column with a space on the left; trim each line's end.
    s = s
        .lines()
        .map(|l| l.trim_end().strip_prefix(' ').unwrap_or(l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

/// Prints one line to stderr, made safe for a terminal (newlines inside it
/// escaped: one call, one line).
pub fn say(line: &str) {
    eprintln!("{}", safe(line));
}

/// Prints a rendered block (several lines) to stderr, made safe for a
/// terminal.
pub fn say_block(text: &str) {
    eprint!("{}", adeploy::terminal::safe_text(text));
}

/// The writer of the tracing subscriber: each event is buffered and written
/// to stderr in one call when the event is done, with every control
/// character but newlines escaped, so a plugin's log message or a denied
/// path cannot carry escape sequences to the terminal.
#[derive(Debug, Default)]
pub struct SafeStderr {
    buf: Vec<u8>,
}

impl Write for SafeStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buf);
        let safe = adeploy::terminal::safe_text(&text);
        let result = std::io::stderr().lock().write_all(safe.as_bytes());
        self.buf.clear();
        result
    }
}

impl Drop for SafeStderr {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
