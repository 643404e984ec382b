//! Presentation helpers shared by commands: tables and units.

pub mod host;
pub mod procs;
pub mod vm;

use comfy_table::{presets::NOTHING, Cell, CellAlignment, Table};

/// A borderless table whose numeric columns (indexes in `right`) are right-aligned.
pub fn table(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(header.iter().map(Cell::new).collect::<Vec<_>>());
    for &i in right {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// `part` as a percentage of `whole`, one decimal.
pub fn percent(part: i128, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}
