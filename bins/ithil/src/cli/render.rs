//! Plain aligned columns for people: tables of rows, and field-value lists of one object.

use std::io::Write as _;

use serde_json::Value;

use super::Failure;

/// Columns are separated by this many spaces.
const GAP: usize = 2;

/// A table with a header row; every column is as wide as its widest cell.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; its cells are made printable.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    /// The column widths: each at least `minimum`, else the widest cell of the column.
    pub fn widths(&self, minimum: &[usize]) -> Vec<usize> {
        (0..self.headers.len())
            .map(|i| {
                let cells = self.rows.iter().filter_map(|r| r.get(i));
                cells
                    .map(|c| c.chars().count())
                    .chain([self.headers[i].len(), minimum.get(i).copied().unwrap_or(0)])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The header line, padded to `widths`.
    pub fn header(&self, widths: &[usize]) -> String {
        let cells: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        line(&cells, widths)
    }

    /// The data lines, padded to `widths`.
    pub fn body(&self, widths: &[usize]) -> String {
        self.rows.iter().map(|row| line(row, widths)).collect()
    }

    /// The whole table: header and rows.
    pub fn render(&self) -> String {
        let widths = self.widths(&[]);
        format!("{}{}", self.header(&widths), self.body(&widths))
    }
}

/// One line of cells padded to `widths`, without trailing spaces.
fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(GAP));
        }
        out.push_str(cell);
        let width = widths.get(i).copied().unwrap_or(0);
        out.push_str(&" ".repeat(width.saturating_sub(cell.chars().count())));
    }
    let mut out = out.trim_end().to_owned();
    out.push('\n');
    out
}

/// The fields of one object, one `name  value` line each, names aligned.
pub fn fields<N: AsRef<str>>(pairs: &[(N, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(n, _)| n.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (name, value) in pairs {
        let name = printable(name.as_ref());
        let text = format!("{name:<width$}{}{}", " ".repeat(GAP), printable(value));
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The fields `names` of `object` through `show`, then any others it has (a newer gateway's),
/// in name order through [`cell`].
pub fn object_fields(
    object: &Value,
    names: &[&str],
    show: impl Fn(&str, &Value) -> String,
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = names
        .iter()
        .map(|name| ((*name).to_owned(), show(name, &object[*name])))
        .collect();
    if let Value::Object(map) = object {
        for (name, value) in map {
            if !names.contains(&name.as_str()) {
                pairs.push((name.clone(), cell(value)));
            }
        }
    }
    pairs
}

/// One JSON value as a cell: `-` for null or an empty list, strings as they are, lists joined
/// by commas, anything else as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Text as it may reach a terminal: control characters become `?`, so an answer cannot move
/// the cursor or change colours.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Writes `text` to standard output; a reader that went away (`| head`) is not a failure.
///
/// # Errors
///
/// [`Failure::Output`] when standard output cannot be written for another reason.
pub fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Output(e)),
        _ => Ok(()),
    }
}

/// Writes a line to standard error, for what is not the command's result (hints, expiry).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", printable(text));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["ID", "LABEL", "ACTIVE"]);
        table.row(vec![
            "agt_1".into(),
            "a much longer label".into(),
            "yes".into(),
        ]);
        table.row(vec!["agt_22".into(), "short".into(), "no".into()]);
        assert_eq!(
            table.render(),
            "ID      LABEL                ACTIVE\n\
             agt_1   a much longer label  yes\n\
             agt_22  short                no\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
    }

    #[test]
    fn minimum_widths_keep_later_rows_aligned() {
        let table = Table::new(&["ID", "TIME"]);
        assert_eq!(table.widths(&[6, 3]), vec![6, 4]);
    }

    #[test]
    fn fields_are_aligned_and_control_characters_are_replaced() {
        let text = fields(&[("agentId", "agt_1".into()), ("label", "a\x1b[2Jb".into())]);
        assert_eq!(text, "agentId  agt_1\nlabel    a?[2Jb\n");
    }

    #[test]
    fn unknown_fields_of_an_object_are_shown_after_the_known_ones() {
        let object = json!({"b": 2, "a": 1, "new": [1, 2]});
        let pairs = object_fields(&object, &["b", "a", "gone"], |_, v| cell(v));
        let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a", "gone", "new"]);
        assert_eq!(pairs[2].1, "-");
        assert_eq!(pairs[3].1, "1,2");
    }

    #[test]
    fn cells_show_json_values_plainly() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!([])), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a,b");
        assert_eq!(cell(&json!("text")), "text");
        assert_eq!(cell(&json!(true)), "true");
        assert_eq!(cell(&json!(12.5)), "12.5");
        assert_eq!(cell(&json!({"a": 1})), "{\"a\":1}");
    }
}
