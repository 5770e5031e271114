//! Rendering: every command result is printed as text or as one JSON document.
//! A closed stdout (`adeploy plugins list | head -1`) is not an error.

use std::io::Write;

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
        out.text()
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
