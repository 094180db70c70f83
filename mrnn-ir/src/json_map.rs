//! Source map for JSON documents: one linear pass over the text records where every value (and
//! every member's key) starts, indexed by JSON pointer, so a diagnostic that names
//! `/recurrent_connections/3/src_region` can be shown at its line and column.
//!
//! `serde_json` parses the document (and reports syntax errors with positions); this map is only
//! built for text that already parsed, and only when a diagnostic has to be rendered.

use std::collections::HashMap;

use crate::diag::escape_pointer_segment;

/// How deeply the map follows nested values: deeper than `serde_json`'s own limit (128), which a
/// document must have passed to have diagnostics worth locating. The scanner recurses once per
/// level, so text that never went through `serde_json` stops here instead of overflowing the stack.
const MAX_DEPTH: usize = 256;

/// Byte offsets of every value and key in a JSON document.
#[derive(Debug, Default)]
pub struct JsonMap {
    values: HashMap<String, usize>,
    keys: HashMap<String, usize>,
}

impl JsonMap {
    /// Indexes `text`. Text that is not valid JSON yields a partial map (never a panic).
    #[must_use]
    pub fn build(text: &str) -> JsonMap {
        let mut scanner =
            Scanner { bytes: text.as_bytes(), pos: 0, depth: 0, map: JsonMap::default() };
        scanner.value(String::new());
        scanner.map
    }

    /// Byte offset of the value at `pointer`, or of its member key when `key` is set. Falls back to
    /// the closest enclosing value that exists (a missing key points at its object).
    #[must_use]
    pub fn offset(&self, pointer: &str, key: bool) -> Option<usize> {
        if key && let Some(&o) = self.keys.get(pointer) {
            return Some(o);
        }
        let mut p = pointer;
        loop {
            if let Some(&o) = self.values.get(p) {
                return Some(o);
            }
            let cut = p.rfind('/')?;
            p = &p[..cut];
        }
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    map: JsonMap,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, pointer: String) {
        if self.depth >= MAX_DEPTH {
            // Stop the whole scan: the map keeps what it found above this depth.
            self.pos = self.bytes.len();
            return;
        }
        self.depth += 1;
        self.value_at_depth(pointer);
        self.depth -= 1;
    }

    fn value_at_depth(&mut self, pointer: String) {
        self.skip_ws();
        let start = self.pos;
        let nested = pointer.clone();
        self.map.values.insert(pointer, start);
        let pointer = nested;
        match self.peek() {
            Some(b'{') => self.object(&pointer),
            Some(b'[') => self.array(&pointer),
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                // Number, true, false, null: everything up to a delimiter.
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace() {
                        break;
                    }
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    fn object(&mut self, pointer: &str) {
        self.pos += 1; // '{'
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => self.pos += 1,
                Some(b'"') => {
                    let key_start = self.pos;
                    let key = self.string();
                    let member = format!("{pointer}/{}", escape_pointer_segment(&key));
                    self.map.keys.insert(member.clone(), key_start);
                    self.skip_ws();
                    if self.peek() == Some(b':') {
                        self.pos += 1;
                    }
                    self.value(member);
                }
                _ => return, // not JSON: stop quietly
            }
        }
    }

    fn array(&mut self, pointer: &str) {
        self.pos += 1; // '['
        let mut index = 0usize;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => self.pos += 1,
                Some(_) => {
                    let before = self.pos;
                    self.value(format!("{pointer}/{index}"));
                    index += 1;
                    if self.pos == before {
                        return; // no progress: not JSON
                    }
                }
                None => return,
            }
        }
    }

    /// Reads a string starting at `"` and returns its unescaped contents.
    fn string(&mut self) -> String {
        self.pos += 1; // opening quote
        let mut raw = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(e) = self.peek() {
                        self.pos += 1;
                        match e {
                            b'n' => raw.push(b'\n'),
                            b't' => raw.push(b'\t'),
                            b'r' => raw.push(b'\r'),
                            b'b' => raw.push(8),
                            b'f' => raw.push(12),
                            b'u' => {
                                let hex = self.bytes.get(self.pos..self.pos + 4).unwrap_or(&[]);
                                self.pos = (self.pos + 4).min(self.bytes.len());
                                let code = std::str::from_utf8(hex)
                                    .ok()
                                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                                    .and_then(char::from_u32)
                                    .unwrap_or('\u{fffd}');
                                let mut buf = [0; 4];
                                raw.extend_from_slice(code.encode_utf8(&mut buf).as_bytes());
                            }
                            other => raw.push(other),
                        }
                    }
                }
                other => raw.push(other),
            }
        }
        String::from_utf8_lossy(&raw).into_owned()
    }
}

/// 1-based line and column (in characters) of a byte offset.
#[must_use]
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "recurrent_regions": [
    {"name": "a", "num_units": 3},
    {"name": "b\"x", "num_units": 4}
  ],
  "model": {"dt": 1}
}"#;

    #[test]
    fn finds_values_and_keys() {
        let map = JsonMap::build(DOC);
        let at = |p: &str, key: bool| line_column(DOC, map.offset(p, key).unwrap());
        assert_eq!(at("/recurrent_regions/1/num_units", false), (4, 35));
        assert_eq!(at("/recurrent_regions/1/num_units", true), (4, 22));
        assert_eq!(at("/model/dt", false), (6, 19));
        assert_eq!(at("", false), (1, 1));
        // A missing member points at its object.
        assert_eq!(at("/recurrent_regions/0/sign", false), (3, 5));
    }

    #[test]
    fn escaped_keys_are_indexed_by_their_unescaped_name() {
        let map = JsonMap::build(r#"{"a/b": {"c": 1}}"#);
        assert_eq!(map.offset("/a~1b/c", false), Some(14));
    }

    #[test]
    fn deep_text_stops_at_the_depth_limit() {
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let map = JsonMap::build(&deep);
        assert!(map.values.len() <= MAX_DEPTH, "{} values", map.values.len());
        assert_eq!(map.offset("/0/0", false), Some(2));
        assert_eq!(
            map.offset(&"/0".repeat(MAX_DEPTH + 10), false),
            map.offset(&"/0".repeat(MAX_DEPTH - 1), false)
        );
    }

    #[test]
    fn garbage_never_panics() {
        for text in ["", "{", "[1,", "{\"a\"", "\"\\u12", "{]}", "[[[[", "é\"", "{\"x\":\"\\"] {
            let map = JsonMap::build(text);
            let _ = map.offset("/a/0", true);
        }
    }
}
