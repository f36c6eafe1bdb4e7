//! The OTTL lexer: splits a condition into tokens with their character offsets.

use super::OttlError;
use super::parse::CmpOp;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Cmp(CmpOp),
    Eof,
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Bytes(_) => "a byte literal".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Cmp(_) => "a comparison operator".into(),
        Tok::Eof => "the end of the condition".into(),
    }
}

pub(super) fn syntax(at: usize, message: impl Into<String>) -> OttlError {
    OttlError::Syntax {
        at,
        message: message.into(),
    }
}

/// Splits a condition into tokens, each with its character offset.
pub(super) fn lex(text: &str) -> Result<Vec<(Tok, usize)>, OttlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let next = chars.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '=' if next == Some('=') => Tok::Cmp(CmpOp::Eq),
            '!' if next == Some('=') => Tok::Cmp(CmpOp::Ne),
            '<' if next == Some('=') => Tok::Cmp(CmpOp::Le),
            '>' if next == Some('=') => Tok::Cmp(CmpOp::Ge),
            '<' => Tok::Cmp(CmpOp::Lt),
            '>' => Tok::Cmp(CmpOp::Gt),
            '"' => {
                let (s, end) = lex_string(&chars, i)?;
                out.push((Tok::Str(s), start));
                i = end;
                continue;
            }
            '0' if matches!(next, Some('x' | 'X')) => {
                let mut j = i + 2;
                while j < chars.len() && chars[j].is_ascii_hexdigit() {
                    j += 1;
                }
                let hex: String = chars[i + 2..j].iter().collect();
                let bytes = crate::data::unhex(&hex)
                    .ok_or_else(|| syntax(start, format!("invalid byte literal 0x{hex}")))?;
                out.push((Tok::Bytes(bytes), start));
                i = j;
                continue;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && next.is_some_and(|n| n.is_ascii_digit() || (n == '.' && c != '.'))) =>
            {
                let (tok, end) = lex_number(&chars, i)?;
                out.push((tok, start));
                i = end;
                continue;
            }
            '.' => Tok::Dot,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                out.push((Tok::Ident(chars[i..j].iter().collect()), start));
                i = j;
                continue;
            }
            '+' | '-' | '*' | '/' => {
                return Err(syntax(
                    start,
                    format!("math expressions (`{c}`) are not supported in weft's OTTL subset"),
                ));
            }
            '{' | '}' => {
                return Err(syntax(
                    start,
                    "map literals are not supported in conditions",
                ));
            }
            '=' => return Err(syntax(start, "`=` is not an operator; use `==` to compare")),
            other => return Err(syntax(start, format!("unexpected character `{other}`"))),
        };
        i += match tok {
            Tok::Cmp(CmpOp::Eq | CmpOp::Ne | CmpOp::Le | CmpOp::Ge) => 2,
            _ => 1,
        };
        out.push((tok, start));
    }
    out.push((Tok::Eof, chars.len()));
    Ok(out)
}

/// A double-quoted string with Go escapes; an unknown escape keeps its backslash, so a
/// regex such as `"\d+"` means what its author wrote.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), OttlError> {
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((s, i + 1)),
            '\\' => {
                let Some(&e) = chars.get(i + 1) else { break };
                let simple = match e {
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    '0' => Some('\0'),
                    _ => None,
                };
                if let Some(ch) = simple {
                    s.push(ch);
                    i += 2;
                    continue;
                }
                let width = match e {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    _ => 0,
                };
                let code = (width > 0 && i + 2 + width <= chars.len())
                    .then(|| chars[i + 2..i + 2 + width].iter().collect::<String>())
                    .and_then(|h| u32::from_str_radix(&h, 16).ok())
                    .and_then(char::from_u32);
                match code {
                    Some(ch) => {
                        s.push(ch);
                        i += 2 + width;
                    }
                    None => {
                        s.push('\\');
                        s.push(e);
                        i += 2;
                    }
                }
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err(syntax(start, "unterminated string (missing closing `\"`)"))
}

fn lex_number(chars: &[char], start: usize) -> Result<(Tok, usize), OttlError> {
    let mut j = start;
    if matches!(chars[j], '-' | '+') {
        j += 1;
    }
    let mut is_float = false;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    if j < chars.len() && chars[j] == '.' && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
        is_float = true;
        j += 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
    }
    if j < chars.len() && matches!(chars[j], 'e' | 'E') {
        let mut k = j + 1;
        if k < chars.len() && matches!(chars[k], '-' | '+') {
            k += 1;
        }
        if chars.get(k).is_some_and(char::is_ascii_digit) {
            is_float = true;
            j = k;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
        }
    }
    let text: String = chars[start..j].iter().collect();
    let tok = if is_float {
        Tok::Float(
            text.parse()
                .map_err(|_| syntax(start, format!("invalid number {text}")))?,
        )
    } else {
        Tok::Int(
            text.trim_start_matches('+')
                .parse()
                .map_err(|_| syntax(start, format!("integer {text} out of range")))?,
        )
    };
    Ok((tok, j))
}
