//! Character cursor for the parser: tracks line:col, skips whitespace and `//`
//! comments, and describes "what was found" for error messages. Works on chars,
//! never slices inside a UTF-8 sequence, so arbitrary input cannot panic it.

use crate::error::{IrError, Loc};

pub(crate) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    line: u32,
    col: u32,
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '-')
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Cursor {
            src,
            pos: 0,
            line: 1,
            col: 1,
        }
    }

    pub(crate) fn loc(&self) -> Loc {
        Loc {
            line: self.line,
            col: self.col,
        }
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        // Saturating: a line or column past u32::MAX (a 4 GiB input) must not overflow.
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    /// Skips whitespace and `//` comments.
    /// Consumes and returns the longest prefix whose chars satisfy `keep` (maybe empty).
    pub(crate) fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|&c| keep(c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    pub(crate) fn skip_trivia(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('/') if self.rest().starts_with("//") => {
                    self.take_while(|c| c != '\n');
                }
                _ => return,
            }
        }
    }

    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_trivia();
        self.peek().is_none()
    }

    pub(crate) fn error<T>(&self, loc: Loc, message: impl Into<String>) -> Result<T, IrError> {
        Err(IrError::Parse {
            loc,
            message: message.into(),
        })
    }

    /// Describes the next token for "found ..." messages: `'{'`, `'func.func'`, `end of input`.
    pub(crate) fn found(&mut self) -> String {
        self.skip_trivia();
        let rest = self.rest();
        let Some(first) = rest.chars().next() else {
            return "end of input".to_string();
        };
        let word: String = if is_ident_char(first) || first == '%' || first == '@' {
            std::iter::once(first)
                .chain(rest.chars().skip(1).take_while(|&c| is_ident_char(c)))
                .take(40)
                .collect()
        } else {
            first.to_string()
        };
        format!("'{}'", word.escape_debug())
    }

    /// Consumes `c` (after trivia) if it is next.
    pub(crate) fn eat(&mut self, c: char) -> bool {
        self.skip_trivia();
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    pub(crate) fn eat_str(&mut self, s: &str) -> bool {
        self.skip_trivia();
        if self.rest().starts_with(s) {
            for _ in s.chars() {
                self.bump();
            }
            true
        } else {
            false
        }
    }

    /// Consumes `c` or fails with "expected 'c' <context>, found ...".
    pub(crate) fn expect(&mut self, c: char, context: &str) -> Result<(), IrError> {
        if self.eat(c) {
            return Ok(());
        }
        let loc = self.loc();
        let found = self.found();
        self.error(loc, format!("expected '{c}' {context}, found {found}"))
    }

    /// An identifier-like word (op names, attribute keys, `true`); no trivia skipped.
    pub(crate) fn word(&mut self) -> Option<String> {
        let first = self.peek()?;
        if !is_ident_start(first) {
            return None;
        }
        Some(self.take_while(is_ident_char))
    }

    /// A name after a sigil (`%x`, `@f`): identifier chars, at least one.
    pub(crate) fn sigil_name(&mut self, sigil: char, what: &str) -> Result<String, IrError> {
        self.skip_trivia();
        let loc = self.loc();
        if self.peek() != Some(sigil) {
            let found = self.found();
            return self.error(loc, format!("expected {what}, found {found}"));
        }
        self.bump();
        let s = self.take_while(is_ident_char);
        if s.is_empty() {
            return self.error(loc, format!("expected a name after '{sigil}'"));
        }
        Ok(s)
    }

    /// Decimal digits as u64 (no sign); overflow is an error, not a wrap.
    pub(crate) fn unsigned(&mut self, what: &str) -> Result<u64, IrError> {
        let loc = self.loc();
        let digits = self.take_while(|c| c.is_ascii_digit());
        if digits.is_empty() {
            let found = self.found();
            return self.error(loc, format!("expected {what}, found {found}"));
        }
        match digits.parse::<u64>() {
            Ok(v) if v <= i64::MAX as u64 => Ok(v),
            _ => self.error(loc, format!("{what} '{digits}' is too large")),
        }
    }
}
