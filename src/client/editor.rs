//! The line being typed, as data: the text, the cursor, the edits keys
//! make, and which part of it fits on one terminal row. Pure; the terminal
//! module turns keys into [`Edit`]s and draws what [`window`] says.

use super::session::measure_text_width;

/// What a key does to the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Insert(char),
    Backspace,
    Delete,
    Left,
    Right,
    Home,
    End,
    /// Ctrl-U: everything before the cursor.
    KillToStart,
    /// Ctrl-K: everything from the cursor on.
    KillToEnd,
    /// Ctrl-W: the word before the cursor.
    KillWord,
}

/// A line of text with a cursor, counted in characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineBuffer {
    chars: Vec<char>,
    cursor: usize,
}

impl LineBuffer {
    pub fn new() -> LineBuffer {
        LineBuffer::default()
    }

    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Empties the line and returns what it held.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.chars).into_iter().collect()
    }

    pub fn set(&mut self, text: &str) {
        self.chars = text.chars().collect();
        self.cursor = self.chars.len();
    }

    pub fn apply(&mut self, edit: Edit) {
        match edit {
            Edit::Insert(c) => {
                // A tab or newline would break the one-row drawing.
                let c = if c.is_control() { ' ' } else { c };
                self.chars.insert(self.cursor, c);
                self.cursor += 1;
            }
            Edit::Backspace => {
                if self.cursor > 0 {
                    self.cursor -= 1;
                    self.chars.remove(self.cursor);
                }
            }
            Edit::Delete => {
                if self.cursor < self.chars.len() {
                    self.chars.remove(self.cursor);
                }
            }
            Edit::Left => self.cursor = self.cursor.saturating_sub(1),
            Edit::Right => self.cursor = (self.cursor + 1).min(self.chars.len()),
            Edit::Home => self.cursor = 0,
            Edit::End => self.cursor = self.chars.len(),
            Edit::KillToStart => {
                self.chars.drain(..self.cursor);
                self.cursor = 0;
            }
            Edit::KillToEnd => self.chars.truncate(self.cursor),
            Edit::KillWord => {
                let mut start = self.cursor;
                while start > 0 && self.chars[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.chars[start - 1] != ' ' {
                    start -= 1;
                }
                self.chars.drain(start..self.cursor);
                self.cursor = start;
            }
        }
    }

    /// The slice to draw in `columns` terminal columns, and where the
    /// cursor goes (in columns from the slice's start).
    pub fn window(&self, columns: usize) -> (String, usize) {
        let widths: Vec<usize> = self.chars.iter().map(|&c| char_width(c)).collect();
        let (start, end, col) = window(&widths, self.cursor, columns);
        (self.chars[start..end].iter().collect(), col)
    }
}

fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    measure_text_width(c.encode_utf8(&mut buf))
}

/// Which characters (`start..end`) of a line whose characters have these
/// display widths to show in `columns` columns so that the cursor (a
/// character index, possibly one past the end) is visible, keeping one
/// column free for the cursor itself; and the cursor's column.
pub fn window(widths: &[usize], cursor: usize, columns: usize) -> (usize, usize, usize) {
    let room = columns.saturating_sub(1).max(1);
    // Start as far left as possible while the cursor still fits.
    let mut start = 0;
    let mut before: usize = widths[..cursor].iter().sum();
    while before > room && start < cursor {
        before -= widths[start];
        start += 1;
    }
    let mut end = start;
    let mut used = 0;
    while end < widths.len() && used + widths[end] <= room {
        used += widths[end];
        end += 1;
    }
    (start, end.max(cursor.min(widths.len())), before)
}

/// Which of `count` entries to show in `visible` rows so that `selected`
/// is among them, scrolling as little as possible from the top.
pub fn scroll_window(count: usize, selected: usize, visible: usize) -> std::ops::Range<usize> {
    let visible = visible.max(1);
    if count <= visible {
        return 0..count;
    }
    let start = (selected + 1).saturating_sub(visible).min(count - visible);
    start..start + visible
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> LineBuffer {
        let mut b = LineBuffer::new();
        for c in text.chars() {
            b.apply(Edit::Insert(c));
        }
        b
    }

    #[test]
    fn typing_and_moving_edits_in_place() {
        let mut b = typed("helo");
        b.apply(Edit::Left);
        b.apply(Edit::Insert('l'));
        assert_eq!((b.text().as_str(), b.cursor()), ("hello", 4));
        b.apply(Edit::Home);
        b.apply(Edit::Delete);
        b.apply(Edit::End);
        b.apply(Edit::Backspace);
        assert_eq!(b.text(), "ell");
    }

    #[test]
    fn kills() {
        let mut b = typed("one two  three");
        b.apply(Edit::KillWord);
        assert_eq!(b.text(), "one two  ");
        b.apply(Edit::KillWord);
        assert_eq!(b.text(), "one ");
        b.apply(Edit::Home);
        b.apply(Edit::Right);
        b.apply(Edit::KillToEnd);
        assert_eq!(b.text(), "o");
        b.apply(Edit::KillToStart);
        assert!(b.is_empty());
    }

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(typed("a\tb").text(), "a b");
    }

    #[test]
    fn a_short_line_is_shown_whole() {
        let b = typed("hello");
        assert_eq!(b.window(20), ("hello".to_string(), 5));
    }

    #[test]
    fn a_long_line_scrolls_to_keep_the_cursor_visible() {
        let mut b = typed("abcdefghij");
        assert_eq!(b.window(5), ("ghij".to_string(), 4));
        b.apply(Edit::Home);
        assert_eq!(b.window(5), ("abcd".to_string(), 0));
    }

    #[test]
    fn a_long_menu_scrolls_to_the_selected_entry() {
        assert_eq!(scroll_window(5, 4, 10), 0..5);
        assert_eq!(scroll_window(100, 0, 10), 0..10);
        assert_eq!(scroll_window(100, 9, 10), 0..10);
        assert_eq!(scroll_window(100, 10, 10), 1..11);
        assert_eq!(scroll_window(100, 99, 10), 90..100);
    }

    #[test]
    fn wide_characters_count_two_columns() {
        let b = typed("日本語");
        let (shown, col) = b.window(5);
        assert_eq!((shown.as_str(), col), ("本語", 4));
    }
}
