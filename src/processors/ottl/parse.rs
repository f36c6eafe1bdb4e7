//! Lexer and recursive-descent parser for OTTL conditions. Produces an [`Expr`] whose
//! paths are still unbound (`paths::bind` resolves them against a context).

use regex::Regex;

use super::OttlError;
use super::lex::{Tok, describe, lex, syntax};
use super::paths::Field;

/// The converters weft implements (for messages and suggestions).
pub const FUNCTIONS: &[&str] = &[
    "IsMatch",
    "HasPrefix",
    "HasSuffix",
    "IsString",
    "IsInt",
    "IsDouble",
    "IsBool",
    "IsMap",
    "IsList",
    "IsRootSpan",
    "HasAttrKeyOnDatapoint",
    "HasAttrOnDatapoint",
    "TraceID",
    "SpanID",
];

#[derive(Debug, Clone)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Value, CmpOp, Value),
    /// A value that yields a bool (a literal or a converter).
    Bool(Value),
}

#[derive(Debug, Clone)]
pub enum Value {
    Lit(Lit),
    Path(Path),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Str(String),
    Int(i64),
}

/// A path as written (`span.attributes["k"]`): dot-separated names, then indexes.
#[derive(Debug, Clone)]
pub struct Path {
    pub text: String,
    pub names: Vec<String>,
    pub keys: Vec<Key>,
    /// Filled in by `paths::bind`.
    pub field: Field,
}

#[derive(Debug, Clone, Copy)]
pub enum TypeCheck {
    String,
    Int,
    Double,
    Bool,
    Map,
    List,
}

#[derive(Debug, Clone)]
pub enum Call {
    IsMatch(Box<Value>, Regex),
    HasPrefix(Box<Value>, String),
    HasSuffix(Box<Value>, String),
    Is(Box<Value>, TypeCheck),
    IsRootSpan,
    HasAttrKeyOnDatapoint(String),
    HasAttrOnDatapoint(String, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

struct Parser<'t> {
    text: &'t str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

/// Parses one condition. Paths are left unbound.
pub fn parse(text: &str) -> Result<Expr, OttlError> {
    let mut p = Parser {
        text,
        toks: lex(text)?,
        pos: 0,
    };
    if p.peek() == &Tok::Eof {
        return Err(syntax(0, "empty condition"));
    }
    let e = p.or_expr()?;
    match p.peek() {
        Tok::Eof => Ok(e),
        Tok::Ident(w) if w == "where" => Err(syntax(
            p.at(),
            "`where` belongs to statements; a condition is only the boolean expression",
        )),
        t => Err(syntax(p.at(), format!("unexpected {}", describe(t)))),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }
    fn at(&self) -> usize {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn keyword(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), OttlError> {
        if *self.peek() == t {
            self.bump();
            Ok(())
        } else {
            Err(syntax(
                self.at(),
                format!("expected {what}, found {}", describe(self.peek())),
            ))
        }
    }

    fn or_expr(&mut self) -> Result<Expr, OttlError> {
        let mut items = vec![self.and_expr()?];
        while self.keyword("or") {
            self.bump();
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, OttlError> {
        let mut items = vec![self.not_expr()?];
        while self.keyword("and") {
            self.bump();
            items.push(self.not_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn not_expr(&mut self) -> Result<Expr, OttlError> {
        if self.keyword("not") {
            self.bump();
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.term()
    }

    fn term(&mut self) -> Result<Expr, OttlError> {
        if *self.peek() == Tok::LParen {
            self.bump();
            let e = self.or_expr()?;
            self.expect(Tok::RParen, "`)`")?;
            return Ok(e);
        }
        let start = self.at();
        let left = self.value()?;
        if let Tok::Cmp(op) = *self.peek() {
            self.bump();
            let right = self.value()?;
            return Ok(Expr::Cmp(left, op, right));
        }
        match &left {
            Value::Lit(Lit::Bool(_)) | Value::Call(_) => Ok(Expr::Bool(left)),
            _ => {
                let end = self.at();
                let written: String = self.text.chars().skip(start).take(end - start).collect();
                Err(syntax(
                    start,
                    format!(
                        "`{}` is not a condition: compare it with ==, !=, <, <=, > or >=",
                        written.trim()
                    ),
                ))
            }
        }
    }

    fn value(&mut self) -> Result<Value, OttlError> {
        let at = self.at();
        match self.bump() {
            Tok::Str(s) => Ok(Value::Lit(Lit::Str(s))),
            Tok::Int(i) => Ok(Value::Lit(Lit::Int(i))),
            Tok::Float(f) => Ok(Value::Lit(Lit::Float(f))),
            Tok::Bytes(b) => Ok(Value::Lit(Lit::Bytes(b))),
            Tok::LBracket => Err(syntax(at, "list literals are not supported in conditions")),
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(Value::Lit(Lit::Bool(true))),
                "false" => Ok(Value::Lit(Lit::Bool(false))),
                "nil" => Ok(Value::Lit(Lit::Nil)),
                "and" | "or" | "not" => {
                    Err(syntax(at, format!("expected a value, found `{name}`")))
                }
                _ if *self.peek() == Tok::LParen => self.call(name),
                _ if name.starts_with(|c: char| c.is_ascii_uppercase()) => {
                    super::paths::enum_value(&name).map(|i| Value::Lit(Lit::Int(i)))
                }
                _ => self.path(name, at),
            },
            t => Err(syntax(
                at,
                format!("expected a value, found {}", describe(&t)),
            )),
        }
    }

    fn path(&mut self, first: String, at: usize) -> Result<Value, OttlError> {
        let mut names = vec![first];
        while *self.peek() == Tok::Dot {
            self.bump();
            match self.bump() {
                Tok::Ident(n) => names.push(n),
                t => {
                    return Err(syntax(
                        self.at(),
                        format!("expected a field name after `.`, found {}", describe(&t)),
                    ));
                }
            }
        }
        let mut keys = Vec::new();
        while *self.peek() == Tok::LBracket {
            self.bump();
            let k = match self.bump() {
                Tok::Str(s) => Key::Str(s),
                Tok::Int(i) => Key::Int(i),
                t => {
                    return Err(syntax(
                        self.at(),
                        format!(
                            "expected a \"string\" or integer key, found {}",
                            describe(&t)
                        ),
                    ));
                }
            };
            self.expect(Tok::RBracket, "`]`")?;
            keys.push(k);
        }
        if *self.peek() == Tok::Dot {
            return Err(syntax(
                self.at(),
                "a `.field` after an index is not supported",
            ));
        }
        let end = self.at();
        let text: String = self.text.chars().skip(at).take(end - at).collect();
        Ok(Value::Path(Path {
            text: text.trim().to_string(),
            names,
            keys,
            field: Field::Unbound,
        }))
    }

    fn call(&mut self, name: String) -> Result<Value, OttlError> {
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Err(OttlError::Invalid(format!(
                "{name}() is an editor; a condition can only call converters (capitalised, \
                 such as IsMatch)"
            )));
        }
        self.expect(Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                args.push(self.value()?);
                if *self.peek() == Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect(Tok::RParen, "`)` or `,`")?;
        if *self.peek() == Tok::LBracket {
            return Err(syntax(
                self.at(),
                format!("indexing the result of {name}() is not supported"),
            ));
        }
        build_call(name, args)
    }
}

fn arity(name: &str, got: usize, n: usize) -> Result<(), OttlError> {
    if got == n {
        Ok(())
    } else {
        Err(OttlError::Invalid(format!(
            "{name}() takes {n} argument{}, got {}",
            if n == 1 { "" } else { "s" },
            got
        )))
    }
}

fn string_literal(name: &str, what: &str, v: Value) -> Result<String, OttlError> {
    match v {
        Value::Lit(Lit::Str(s)) => Ok(s),
        _ => Err(OttlError::Invalid(format!(
            "{name}(): the {what} must be a string literal"
        ))),
    }
}

fn build_call(name: String, args: Vec<Value>) -> Result<Value, OttlError> {
    let n = name.as_str();
    let count = args.len();
    let mut it = args.into_iter();
    let mut arg = || it.next().unwrap_or(Value::Lit(Lit::Nil));
    let call = match n {
        "IsMatch" => {
            arity(n, count, 2)?;
            let target = arg();
            let pattern = string_literal(n, "pattern", arg())?;
            let re = Regex::new(&pattern).map_err(|e| OttlError::BadRegex {
                function: name.clone(),
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
            Call::IsMatch(Box::new(target), re)
        }
        "HasPrefix" | "HasSuffix" => {
            arity(n, count, 2)?;
            let target = Box::new(arg());
            let affix =
                string_literal(n, if n == "HasPrefix" { "prefix" } else { "suffix" }, arg())?;
            if n == "HasPrefix" {
                Call::HasPrefix(target, affix)
            } else {
                Call::HasSuffix(target, affix)
            }
        }
        "IsString" | "IsInt" | "IsDouble" | "IsBool" | "IsMap" | "IsList" => {
            arity(n, count, 1)?;
            let check = match n {
                "IsString" => TypeCheck::String,
                "IsInt" => TypeCheck::Int,
                "IsDouble" => TypeCheck::Double,
                "IsBool" => TypeCheck::Bool,
                "IsMap" => TypeCheck::Map,
                _ => TypeCheck::List,
            };
            Call::Is(Box::new(arg()), check)
        }
        "IsRootSpan" => {
            arity(n, count, 0)?;
            Call::IsRootSpan
        }
        "HasAttrKeyOnDatapoint" => {
            arity(n, count, 1)?;
            Call::HasAttrKeyOnDatapoint(string_literal(n, "key", arg())?)
        }
        "HasAttrOnDatapoint" => {
            arity(n, count, 2)?;
            let k = string_literal(n, "key", arg())?;
            let v = string_literal(n, "value", arg())?;
            Call::HasAttrOnDatapoint(k, v)
        }
        "TraceID" | "SpanID" => {
            arity(n, count, 1)?;
            let want = if n == "TraceID" { 16 } else { 8 };
            return match arg() {
                Value::Lit(Lit::Bytes(b)) if b.len() == want => Ok(Value::Lit(Lit::Bytes(b))),
                _ => Err(OttlError::Invalid(format!(
                    "{n}() takes a {want}-byte literal such as 0x{}",
                    "00".repeat(want)
                ))),
            };
        }
        _ => {
            return Err(OttlError::UnknownFunction {
                suggestion: crate::config::suggest(n, FUNCTIONS.iter().copied()),
                name,
            });
        }
    };
    Ok(Value::Call(call))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> OttlError {
        parse(text).expect_err(text)
    }

    #[test]
    fn precedence_not_and_or() {
        // a or (b and (not c))
        let e = parse("true or false and not true").unwrap();
        let Expr::Or(items) = e else { panic!("{e:?}") };
        assert_eq!(items.len(), 2);
        let Expr::And(inner) = &items[1] else {
            panic!()
        };
        assert!(matches!(inner[1], Expr::Not(_)));
    }

    #[test]
    fn parentheses_group() {
        let e = parse("(true or false) and true").unwrap();
        let Expr::And(items) = e else { panic!("{e:?}") };
        assert!(matches!(items[0], Expr::Or(_)));
    }

    #[test]
    fn literals() {
        for (text, lit) in [
            ("name == \"a\\\"b\"", Lit::Str("a\"b".into())),
            ("x == -12", Lit::Int(-12)),
            ("x == +3", Lit::Int(3)),
            ("x == 1.5", Lit::Float(1.5)),
            ("x == -.5", Lit::Float(-0.5)),
            ("x == 2e3", Lit::Float(2000.0)),
            ("x == nil", Lit::Nil),
            ("x == false", Lit::Bool(false)),
            ("x == 0x0aff", Lit::Bytes(vec![0x0a, 0xff])),
            ("x == SPAN_KIND_SERVER", Lit::Int(2)),
            ("x == \"\\d+\"", Lit::Str("\\d+".into())),
        ] {
            let Expr::Cmp(_, CmpOp::Eq, Value::Lit(l)) = parse(text).unwrap() else {
                panic!("{text}")
            };
            assert_eq!(l, lit, "{text}");
        }
    }

    #[test]
    fn operators() {
        for (text, op) in [
            ("a == 1", CmpOp::Eq),
            ("a != 1", CmpOp::Ne),
            ("a < 1", CmpOp::Lt),
            ("a <= 1", CmpOp::Le),
            ("a > 1", CmpOp::Gt),
            ("a >= 1", CmpOp::Ge),
        ] {
            let Expr::Cmp(_, got, _) = parse(text).unwrap() else {
                panic!()
            };
            assert_eq!(got, op, "{text}");
        }
    }

    #[test]
    fn paths_with_keys() {
        let Expr::Cmp(Value::Path(p), _, _) =
            parse(r#"resource.attributes["a.b"][0] == 1"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(p.names, vec!["resource", "attributes"]);
        assert_eq!(p.keys, vec![Key::Str("a.b".into()), Key::Int(0)]);
        assert_eq!(p.text, r#"resource.attributes["a.b"][0]"#);
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        let cases = [
            ("name ==", "expected a value"),
            ("name = \"x\"", "use `==`"),
            ("(name == \"x\"", "expected `)`"),
            ("name == \"x", "unterminated string"),
            ("attributes[\"a\"]", "is not a condition"),
            ("1 + 1 == 2", "math expressions"),
            ("name == \"x\" where true", "`where`"),
            ("", "empty condition"),
            ("name == \"a\" \"b\"", "unexpected string"),
        ];
        for (text, want) in cases {
            let e = err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_function_is_named_with_suggestion() {
        let e = err(r#"IsMach(name, "x")"#);
        assert!(e.to_string().contains("IsMach()"), "{e}");
        assert_eq!(e.suggestion(), Some("IsMatch"));
        assert!(
            err(r#"Concat(["a"], "")"#)
                .to_string()
                .contains("list literals")
        );
        assert!(err(r#"set(name, "x")"#).to_string().contains("editor"));
    }

    #[test]
    fn bad_regex_is_named() {
        let e = err(r#"IsMatch(name, "(unclosed")"#);
        assert!(matches!(e, OttlError::BadRegex { .. }));
        assert!(e.to_string().contains("(unclosed"), "{e}");
    }

    #[test]
    fn function_arguments_are_checked() {
        assert!(
            err(r#"IsMatch(name)"#)
                .to_string()
                .contains("takes 2 arguments")
        );
        assert!(
            err(r#"IsMatch(name, attributes["re"])"#)
                .to_string()
                .contains("string literal")
        );
        assert!(
            err("TraceID(0x01) == trace_id")
                .to_string()
                .contains("16-byte")
        );
        assert!(parse("trace_id == TraceID(0x0102030405060708090a0b0c0d0e0f10)").is_ok());
    }

    #[test]
    fn unknown_enum_is_named() {
        let e = err("kind == SPAN_KIND_SERVR");
        assert!(e.to_string().contains("SPAN_KIND_SERVR"), "{e}");
        assert_eq!(e.suggestion(), Some("SPAN_KIND_SERVER"));
    }
}
