//! Kubernetes label selectors and field selectors: parsing, canonical printing and matching.
//!
//! This module owns the `labelSelector` / `fieldSelector` query grammars and the
//! `metav1.LabelSelector` object form (`matchLabels` / `matchExpressions`). It is a port of
//! k8s.io/apimachinery `pkg/labels/selector.go`, `pkg/fields/selector.go` and the label
//! validation they call, kept token-for-token close so that orch accepts, rejects, prints and
//! matches exactly what a real API server does, error texts included: clients such as kubectl
//! show those texts to users and tests compare them.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// Why a selector was rejected. The `Display` texts are Kubernetes' own.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SelectorError {
    /// A requirement of a label selector string could not be parsed or validated.
    #[error("unable to parse requirement: {0}")]
    Requirement(Box<SelectorError>),
    /// A token of a label selector string was not one the grammar allows there.
    #[error("found '{found}', expected: {expected}")]
    Unexpected {
        found: String,
        expected: &'static str,
    },
    /// `in` / `notin` not followed by `(`; Kubernetes words this one without a comma.
    #[error("found '{0}' expected: '('")]
    ExpectedOpenParen(String),
    /// Key, value or value-count validation failures, rendered as Kubernetes renders a
    /// `field.ErrorList` aggregate, e.g. `<nil>: Invalid value: "a@": name part must ...`.
    #[error("{0}")]
    Invalid(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists and DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    UnknownOperator(String),
    /// A null `metav1.LabelSelector`. Kubernetes turns it into a selector that matches
    /// nothing, which [`LabelSelector`] cannot express, so callers decide what it means.
    #[error("a null label selector selects nothing")]
    NullSelector,
    /// A `metav1.LabelSelector` whose JSON does not have the object's shape.
    #[error("malformed label selector: {0}")]
    Malformed(String),
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A backslash in a field selector value not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// An unescaped `,` or `=` in a field selector value. Go prints the rune with `%v`,
    /// i.e. as its code point number, so this does too.
    #[error("invalid field selector: unescaped character in value: {}", code_point(.0))]
    UnescapedChar(char),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One clause of a label selector. Parsed `in`/`notin` values are sorted and deduplicated,
/// as Kubernetes keeps them in a string set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// A conjunction of label requirements; no requirements selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax (already URL-decoded); `""` selects everything.
    /// `==` is read as `=`, as the two mean the same.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s).parse()?;
        sort_by_key(&mut requirements);
        Ok(Self { requirements })
    }

    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with these labels (`metadata.labels`) is selected.
    ///
    /// Values are expected to be JSON strings; any other value compares as `""`, which is
    /// what Kubernetes' `map[string]string` decoding makes of `null`.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Converts a `metav1.LabelSelector` in JSON form, as `LabelSelectorAsSelector` does.
    ///
    /// `{}` (or only empty lists/maps) selects everything. `null` yields
    /// [`SelectorError::NullSelector`], since Kubernetes makes it select nothing.
    pub fn from_json(sel: &Value) -> Result<Self, SelectorError> {
        let obj = match sel {
            Value::Null => return Err(SelectorError::NullSelector),
            Value::Object(obj) => obj,
            other => return Err(malformed("the selector", "an object", other)),
        };
        // Decode everything before validating anything: Kubernetes rejects a body that does
        // not decode before it ever looks at keys and operators.
        let mut match_labels = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    match_labels.push((key.clone(), json_string(value, "a matchLabels value")?));
                }
            }
            Some(other) => return Err(malformed("matchLabels", "an object", other)),
        }
        let mut expressions = Vec::new();
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    expressions.push(decode_expression(item)?);
                }
            }
            Some(other) => return Err(malformed("matchExpressions", "an array", other)),
        }

        let mut requirements = Vec::with_capacity(match_labels.len() + expressions.len());
        for (key, value) in match_labels {
            requirements.push(new_requirement(key, Operator::Equals, vec![value])?);
        }
        for (key, operator, values) in expressions {
            let operator = match operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                _ => return Err(SelectorError::UnknownOperator(operator)),
            };
            requirements.push(new_requirement(key, operator, values)?);
        }
        sort_by_key(&mut requirements);
        Ok(Self { requirements })
    }
}

/// Kubernetes' `String()`: requirements by key, multi-valued sets sorted, e.g.
/// `a=b,c!=d,e in (x,y),!f,g`.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut requirements: Vec<&Requirement> = self.requirements.iter().collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        for (i, requirement) in requirements.into_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        f.write_str(match self.operator {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        })?;
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let is_set = matches!(self.operator, Operator::In | Operator::NotIn);
        if is_set {
            f.write_str("(")?;
        }
        f.write_str(&values.join(","))?;
        if is_set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl Requirement {
    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).map(|v| v.as_str().unwrap_or(""));
        match self.operator {
            Operator::In | Operator::Equals => value.is_some_and(|v| self.has_value(v)),
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(|v| self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(actual), Ok(bound)) = (actual.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }
}

/// Stable, so requirements on one key keep their written order, as Go's sort does for the
/// short lists selectors are in practice.
fn sort_by_key(requirements: &mut [Requirement]) {
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
}

type Expression = (String, String, Vec<String>);

fn decode_expression(item: &Value) -> Result<Expression, SelectorError> {
    let empty = Map::new();
    let obj = match item {
        // Go decodes a null list element into a zero struct, which then fails on its
        // empty operator.
        Value::Null => &empty,
        Value::Object(obj) => obj,
        other => return Err(malformed("a matchExpressions item", "an object", other)),
    };
    let key = obj
        .get("key")
        .map(|v| json_string(v, "key"))
        .transpose()?
        .unwrap_or_default();
    let operator = obj
        .get("operator")
        .map(|v| json_string(v, "operator"))
        .transpose()?
        .unwrap_or_default();
    let values = match obj.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| json_string(v, "a values item"))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(malformed("values", "an array", other)),
    };
    Ok((key, operator, values))
}

/// Go decodes JSON null into a string as "".
fn json_string(value: &Value, what: &str) -> Result<String, SelectorError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(malformed(what, "a string", other)),
    }
}

fn malformed(what: &str, expected: &str, found: &Value) -> SelectorError {
    SelectorError::Malformed(format!("{what} must be {expected}, not {found}"))
}

// ---------------------------------------------------------------------------------------------
// Requirement validation (labels.NewRequirement and the label key/value checks it calls)
// ---------------------------------------------------------------------------------------------

const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_NAME_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn new_requirement(
    key: String,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    let mut errs = Vec::new();
    if let Some(err) = validate_label_key(&key, "key") {
        errs.push(err);
    }
    let count_detail = match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            Some("for 'in', 'notin' operators, values set can't be empty")
        }
        Operator::Equals | Operator::NotEquals if values.len() != 1 => {
            Some("exact-match compatibility requires one single value")
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            Some("values set must be empty for exists and does not exist")
        }
        Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
            Some("for 'Gt', 'Lt' operators, exactly one value is required")
        }
        _ => None,
    };
    if let Some(detail) = count_detail {
        errs.push(invalid("values", &render_values(&values), detail));
    }
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (i, value) in values.iter().enumerate() {
            if value.parse::<i64>().is_err() {
                errs.push(invalid(
                    &format!("values[{i}]"),
                    &go_quote(value),
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, value) in values.iter().enumerate() {
        let problems = label_value_errors(value);
        if !problems.is_empty() {
            errs.push(invalid(
                &format!("values[{i}][{key}]"),
                &go_quote(value),
                &problems.join("; "),
            ));
        }
    }
    match aggregate(errs) {
        Some(message) => Err(SelectorError::Invalid(message)),
        None => Ok(Requirement {
            key,
            operator,
            values,
        }),
    }
}

/// Renders a bad value list as `field.ErrorBody` does (JSON). Every reachable empty list is
/// Go's nil slice (`append([]string(nil), ...)`), which marshals as `null`.
fn render_values(values: &[String]) -> String {
    if values.is_empty() {
        return "null".to_owned();
    }
    let json = Value::from(values.to_vec()).to_string();
    // Go's encoding/json escapes HTML-significant characters and line separators.
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// `field.Invalid(path, value, detail).Error()`; `path` is `<nil>` where Kubernetes passes a
/// nil `*field.Path`.
fn invalid(path: &str, rendered_value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {rendered_value}: {detail}")
}

/// `field.ErrorList.ToAggregate().Error()`: one message alone, several deduplicated in
/// brackets.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut unique: Vec<String> = Vec::with_capacity(errs.len());
    for err in errs {
        if !unique.contains(&err) {
            unique.push(err);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

fn validate_label_key(key: &str, path: &str) -> Option<String> {
    let problems = label_key_errors(key);
    (!problems.is_empty()).then(|| invalid(path, &go_quote(key), &problems.join("; ")))
}

fn label_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match key.split_once('/') {
        None => key,
        Some((_, name)) if name.contains('/') => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES)
            )];
        }
        Some((prefix, name)) => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            name
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > LABEL_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(LABEL_NAME_MAX)));
    }
    if !is_label_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES)
        ));
    }
    errs
}

fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_NAME_MAX {
        errs.push(max_len_error(LABEL_NAME_MAX));
    }
    if !value.is_empty() && !is_label_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    let is_label = |label: &str| {
        let b = label.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-')
    };
    if !value.split('.').all(is_label) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, anchored.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} bytes")
}

/// Kubernetes' `RegexError`, including its doubled space after each example but the last
/// one ("'MyName',  or 'my.name', ").
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(re);
    out.push_str("')");
    out
}

/// Go's `strconv.Quote` (`%q`). Exact for ASCII; beyond it only control and space characters
/// are escaped, where Go's full Unicode printability tables would also escape a few rarer
/// format characters.
pub(crate) fn go_quote(s: &str) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if !c.is_ascii() && (c.is_control() || c.is_whitespace()) => {
                let _ = if u32::from(c) < 0x10000 {
                    write!(out, "\\u{:04x}", u32::from(c))
                } else {
                    write!(out, "\\U{:08x}", u32::from(c))
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn code_point(c: &char) -> u32 {
    u32::from(*c)
}

// ---------------------------------------------------------------------------------------------
// Label selector lexer and parser (a port of labels.Lexer / labels.Parser)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// `in` and `notin` are operators after a key but ordinary words where a key or value is
/// expected, so `in in (in)` is a valid selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// The single-byte tokens. Go's `ErrorToken` never arises, because every special symbol is a
/// token on its own.
fn symbol_token(ch: u8) -> Option<Token> {
    Some(match ch {
        b')' => Token::ClosedPar,
        b',' => Token::Comma,
        b'!' => Token::DoesNotExist,
        b'=' => Token::Equals,
        b'>' => Token::GreaterThan,
        b'<' => Token::LessThan,
        b'(' => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

/// Works on bytes like Go's lexer. Its `read` yields 0 both at the end and for a NUL byte in
/// the input, and that quirk is kept: where a token may start, a NUL ends the selector.
struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn read(&mut self) -> u8 {
        match self.s.as_bytes().get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos -= 1;
    }

    fn lex(&mut self) -> (Token, &'a str) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, "");
        }
        let start = self.pos - 1;
        match symbol_token(ch) {
            Some(token) => self.scan_special_symbol(start, token),
            None => self.scan_id_or_keyword(start),
        }
    }

    /// Extends the symbol at `start` while that still spells a token (`!=`, `==`).
    fn scan_special_symbol(&mut self, start: usize, mut token: Token) -> (Token, &'a str) {
        let mut end = self.pos;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if symbol_token(ch).is_none() {
                self.unread();
                break;
            }
            token = match &self.s[start..self.pos] {
                "!=" => Token::NotEquals,
                "==" => Token::DoubleEquals,
                _ => {
                    self.unread();
                    break;
                }
            };
            end = self.pos;
        }
        (token, &self.s[start..end])
    }

    /// Everything up to whitespace or a special symbol is one word; `start` is its first byte,
    /// already read. Words end only at ASCII bytes, so the slices fall on char boundaries.
    fn scan_id_or_keyword(&mut self, start: usize) -> (Token, &'a str) {
        let end = loop {
            let here = self.pos;
            let ch = self.read();
            if ch == 0 {
                break here;
            }
            if symbol_token(ch).is_some() || is_whitespace(ch) {
                self.unread();
                break here;
            }
        };
        let literal = &self.s[start..end];
        let token = match literal {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        (token, literal)
    }
}

struct Parser<'a> {
    items: Vec<(Token, &'a str)>,
    pos: usize,
}

fn unexpected(found: &str, expected: &'static str) -> SelectorError {
    SelectorError::Unexpected {
        found: found.to_owned(),
        expected,
    }
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        let mut lexer = Lexer { s, pos: 0 };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            items.push(item);
            if item.0 == Token::EndOfString {
                break;
            }
        }
        Self { items, pos: 0 }
    }

    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        // The grammar never reads past the final EndOfString; clamping keeps that a
        // guarantee rather than an index panic.
        let (token, literal) = self.items[self.pos.min(self.items.len() - 1)];
        match token {
            Token::In | Token::NotIn if context == Context::Values => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.lookahead(context);
        self.pos += 1;
        item
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|e| SelectorError::Requirement(Box::new(e)))?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(unexpected(literal, "identifier after ','"));
                            }
                        }
                        _ => return Err(unexpected(literal, "',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => return Err(unexpected(literal, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, unary) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = unary {
            return new_requirement(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, operator, values)
    }

    /// Returns the key and, for `!key` and a bare `key`, the unary operator. `!key` stays
    /// DoesNotExist even when an operator follows, which then fails as trailing input.
    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(String, Option<Operator>), SelectorError> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(unexpected(literal, "identifier"));
        }
        if let Some(err) = validate_label_key(literal, "<nil>") {
            return Err(SelectorError::Invalid(err));
        }
        let (next, _) = self.lookahead(Context::Values);
        if operator.is_none() && matches!(next, Token::EndOfString | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((literal.to_owned(), operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(unexpected(literal, "in, notin, =, ==, !=, gt, lt")),
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(SelectorError::ExpectedOpenParen(literal.to_owned()));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                // The list only returns with `)` next, so this consumes it.
                self.consume(Context::Values);
                Ok(values.into_iter().collect())
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(unexpected(literal, "',', ')' or identifier")),
        }
    }

    /// Empty entries (`(,a)`, `(a,,b)`, `(a,)`) stand for the empty value.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal.to_owned());
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(unexpected(literal, "',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::ClosedPar => {
                            values.insert(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(unexpected(literal, "',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(vec![literal.to_owned()])
        } else {
            Err(unexpected(literal, "identifier"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors (fields.ParseSelector)
// ---------------------------------------------------------------------------------------------

/// A conjunction of field terms; no terms selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// `field=value` (`equal`) or `field!=value`; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

impl FieldSelector {
    /// Parses `a=b,c==d,e!=f` (already URL-decoded). In values `\\`, `\,` and `\=` escape
    /// those characters; any other escape, and a bare `,` or `=`, is an error. Field names
    /// are neither unescaped, trimmed nor checked here: which fields exist is per resource.
    /// Terms come out sorted by their raw text, as Kubernetes orders them.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = split_terms(s);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let (field, equal, raw_value) =
                split_term(term).ok_or_else(|| SelectorError::FieldTerm {
                    selector: s.to_owned(),
                    term: term.to_owned(),
                })?;
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                value: unescape_value(raw_value)?,
                equal,
            });
        }
        Ok(Self { requirements })
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// `get` yields a field's value for the object; an unknown or absent field (`None`)
    /// compares as `""`.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| (get(&r.field).unwrap_or_default() == r.value) == r.equal)
    }

    /// The value the first `=`/`==` term on `field` pins it to, for index fast paths.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equal && r.field == field)
            .map(|r| r.value.as_str())
    }
}

/// Splits on commas that are not backslash-escaped, leaving escapes in place.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; `!=` and `==` are tried before `=` at each position so that
/// neither leaves a stray `=` in the value.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        if let Some(value) = rest.strip_prefix("!=") {
            Some((&term[..i], false, value))
        } else if let Some(value) = rest.strip_prefix("==") {
            Some((&term[..i], true, value))
        } else {
            rest.strip_prefix('=')
                .map(|value| (&term[..i], true, value))
        }
    })
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
                Some(other) => return Err(SelectorError::InvalidEscape(format!("\\{other}"))),
                None => return Err(SelectorError::InvalidEscape("\\".to_owned())),
            },
            ',' | '=' => return Err(SelectorError::UnescapedChar(c)),
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("labels must be an object"),
        }
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn parse_err(s: &str) -> String {
        LabelSelector::parse(s)
            .expect_err(&format!("{s:?} should not parse"))
            .to_string()
    }

    const NAME_REGEX_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_REGEX_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn parses_every_operator() {
        use Operator::*;
        let cases: &[(&str, Requirement)] = &[
            ("a=b", req("a", Equals, &["b"])),
            ("a==b", req("a", Equals, &["b"])),
            ("a!=b", req("a", NotEquals, &["b"])),
            ("a in (y,x,y)", req("a", In, &["x", "y"])),
            ("a notin (x)", req("a", NotIn, &["x"])),
            ("a", req("a", Exists, &[])),
            ("!a", req("a", DoesNotExist, &[])),
            ("a>5", req("a", GreaterThan, &["5"])),
            ("a<05", req("a", LessThan, &["05"])),
            ("a=", req("a", Equals, &[""])),
            ("a!=", req("a", NotEquals, &[""])),
            ("a in ()", req("a", In, &[""])),
            ("a in (,)", req("a", In, &[""])),
            ("a in (,b)", req("a", In, &["", "b"])),
            ("a in (b,)", req("a", In, &["", "b"])),
            ("a in (b,,c)", req("a", In, &["", "b", "c"])),
            (
                "example.com/a-b_c.d=v",
                req("example.com/a-b_c.d", Equals, &["v"]),
            ),
            ("in in (in,notin)", req("in", In, &["in", "notin"])),
            ("notin=in", req("notin", Equals, &["in"])),
            ("!in", req("in", DoesNotExist, &[])),
            ("a in(x)", req("a", In, &["x"])),
        ];
        for (input, want) in cases {
            let got = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.requirements, vec![want.clone()], "{input:?}");
        }
    }

    #[test]
    fn tolerates_whitespace_and_sorts_by_key() {
        let got = LabelSelector::parse(" z = 1 ,\t!y ,\n x  in ( b , a ) , w\r").unwrap();
        assert_eq!(
            got.requirements,
            vec![
                req("w", Operator::Exists, &[]),
                req("x", Operator::In, &["a", "b"]),
                req("y", Operator::DoesNotExist, &[]),
                req("z", Operator::Equals, &["1"]),
            ]
        );
        assert_eq!(got.to_string(), "w,x in (a,b),!y,z=1");
    }

    #[test]
    fn empty_and_blank_select_everything() {
        for input in ["", "   ", "\t\n"] {
            let sel = LabelSelector::parse(input).unwrap();
            assert!(sel.is_everything());
            assert_eq!(sel, LabelSelector::everything());
            assert!(sel.matches(&Map::new()));
            assert_eq!(sel.to_string(), "");
        }
        assert!(!LabelSelector::parse("a").unwrap().is_everything());
    }

    #[test]
    fn a_nul_byte_ends_the_selector_like_go() {
        assert_eq!(
            LabelSelector::parse("a=b, \0junk !!")
                .unwrap_err()
                .to_string(),
            "found '', expected: identifier after ','"
        );
        // Go's symbol scan swallows a NUL right after a symbol and lexing goes on.
        assert_eq!(
            LabelSelector::parse("a=b,\0c").unwrap(),
            LabelSelector::parse("a=b,c").unwrap()
        );
        assert_eq!(
            LabelSelector::parse("a=b \0 ((").unwrap(),
            LabelSelector::parse("a=b").unwrap()
        );
    }

    #[test]
    fn syntax_errors_match_kubernetes() {
        let cases: &[(&str, &str)] = &[
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in (a b)",
                "unable to parse requirement: found 'b', expected: ',' or ')'",
            ),
            (
                "x in (a,",
                "unable to parse requirement: found '', expected: ',', or identifier",
            ),
            (
                "x in (a,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
            (
                "x in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "x notin",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "=b",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                ",a",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            ("a=b,", "found '', expected: identifier after ','"),
            ("a=b,,c", "found ',', expected: identifier after ','"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a)",
                "unable to parse requirement: found ')', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "a===b",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "!!a",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            (
                "a gt 5",
                "unable to parse requirement: found 'gt', expected: in, notin, =, ==, !=, gt, lt",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_err(input), *want, "{input:?}");
        }
    }

    #[test]
    fn validation_errors_match_kubernetes() {
        let long = "a".repeat(64);
        let cases: Vec<(String, String)> = vec![
            (
                "app:monolith".into(),
                format!("unable to parse requirement: <nil>: Invalid value: \"app:monolith\": name part {NAME_REGEX_ERR}"),
            ),
            (
                "-a=b".into(),
                format!("unable to parse requirement: <nil>: Invalid value: \"-a\": name part {NAME_REGEX_ERR}"),
            ),
            (
                format!("{long}=b"),
                format!("unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 bytes"),
            ),
            (
                "/a".into(),
                "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty".into(),
            ),
            (
                "a/".into(),
                format!("unable to parse requirement: <nil>: Invalid value: \"a/\": name part must be non-empty; name part {NAME_REGEX_ERR}"),
            ),
            (
                "Ex.com/a".into(),
                "unable to parse requirement: <nil>: Invalid value: \"Ex.com/a\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
            ),
            (
                "a/b/c".into(),
                format!("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a valid label key {NAME_REGEX_ERR} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
            ),
            (
                format!("a={long}"),
                format!("unable to parse requirement: values[0][a]: Invalid value: \"{long}\": must be no more than 63 bytes"),
            ),
            (
                "a=b.".into(),
                format!("unable to parse requirement: values[0][a]: Invalid value: \"b.\": {VALUE_REGEX_ERR}"),
            ),
            (
                "a in (-x,y.)".into(),
                format!("unable to parse requirement: [values[0][a]: Invalid value: \"-x\": {VALUE_REGEX_ERR}, values[1][a]: Invalid value: \"y.\": {VALUE_REGEX_ERR}]"),
            ),
            (
                "a>x".into(),
                "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
            ),
            (
                "a<".into(),
                "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
            ),
            (
                "a>99999999999999999999".into(),
                "unable to parse requirement: values[0]: Invalid value: \"99999999999999999999\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
            ),
            (
                // Negative bounds cannot be written: '-' may not start a label value.
                "a>-1".into(),
                format!("unable to parse requirement: values[0][a]: Invalid value: \"-1\": {VALUE_REGEX_ERR}"),
            ),
            (
                "é=1".into(),
                format!("unable to parse requirement: <nil>: Invalid value: \"é\": name part {NAME_REGEX_ERR}"),
            ),
        ];
        for (input, want) in &cases {
            assert_eq!(&parse_err(input), want, "{input:?}");
        }
    }

    #[test]
    fn kubernetes_cannot_reparse_three_empty_values() {
        let sel = LabelSelector {
            requirements: vec![req("a", Operator::In, &["", "", ""])],
        };
        assert_eq!(sel.to_string(), "a in (,,)");
        assert_eq!(
            parse_err("a in (,,)"),
            "unable to parse requirement: found ')', expected: ',', or identifier"
        );
        assert_eq!(
            LabelSelector::parse("a in (,,,)").unwrap().requirements,
            vec![req("a", Operator::In, &[""])]
        );
    }

    #[test]
    fn errors_nest_the_cause() {
        let err = LabelSelector::parse("x in (a").unwrap_err();
        assert_eq!(
            err,
            SelectorError::Requirement(Box::new(SelectorError::Unexpected {
                found: String::new(),
                expected: "',' or ')'",
            }))
        );
    }

    #[test]
    fn matching_follows_kubernetes() {
        let l = labels(
            json!({"env": "prod", "tier": "web", "n": "10", "neg": "-3", "txt": "ten", "empty": ""}),
        );
        let cases: &[(&str, bool)] = &[
            ("env=prod", true),
            ("env==prod", true),
            ("env=dev", false),
            ("missing=x", false),
            ("env!=dev", true),
            ("env!=prod", false),
            ("missing!=x", true),
            ("env in (dev,prod)", true),
            ("env in (dev)", false),
            ("missing in (x)", false),
            ("env notin (dev)", true),
            ("env notin (prod)", false),
            ("missing notin (x)", true),
            ("env", true),
            ("missing", false),
            ("!env", false),
            ("!missing", true),
            ("n>9", true),
            ("n>10", false),
            ("n<11", true),
            ("n<10", false),
            ("neg<0", true),
            ("neg>0", false),
            ("txt>0", false),
            ("txt<0", false),
            ("missing>0", false),
            ("missing<0", false),
            ("empty=", true),
            ("empty in ()", true),
            ("empty", true),
            ("missing=", false),
            ("env=prod,tier=web", true),
            ("env=prod,tier=db", false),
            ("env=prod,!tier", false),
        ];
        for (input, want) in cases {
            let sel = LabelSelector::parse(input).unwrap();
            assert_eq!(sel.matches(&l), *want, "{input:?}");
        }
        assert!(LabelSelector::parse("missing notin (x),!missing")
            .unwrap()
            .matches(&Map::new()));
    }

    #[test]
    fn null_and_non_string_label_values_compare_as_empty() {
        let l = labels(json!({"a": null, "b": 5}));
        for input in ["a=", "b=", "a", "b", "a in ()", "b!=5"] {
            assert!(
                LabelSelector::parse(input).unwrap().matches(&l),
                "{input:?}"
            );
        }
        assert!(!LabelSelector::parse("b=5").unwrap().matches(&l));
    }

    #[test]
    fn greater_than_needs_exactly_one_bound() {
        let sel = LabelSelector {
            requirements: vec![req("n", Operator::GreaterThan, &["1", "2"])],
        };
        assert!(!sel.matches(&labels(json!({"n": "5"}))));
    }

    #[test]
    fn display_is_canonical() {
        let sel = LabelSelector {
            requirements: vec![
                req("g", Operator::Exists, &[]),
                req("e", Operator::In, &["y", "x"]),
                req("a", Operator::Equals, &["b"]),
                req("f", Operator::DoesNotExist, &[]),
                req("c", Operator::NotEquals, &["d"]),
                req("h", Operator::NotIn, &["", "z"]),
                req("i", Operator::GreaterThan, &["1"]),
                req("j", Operator::LessThan, &["2"]),
            ],
        };
        assert_eq!(
            sel.to_string(),
            "a=b,c!=d,e in (x,y),!f,g,h notin (,z),i>1,j<2"
        );
        assert_eq!(LabelSelector::parse("a==b").unwrap().to_string(), "a=b");
    }

    #[test]
    fn from_json_cases() {
        let ok: &[(Value, &str)] = &[
            (json!({}), ""),
            (json!({"matchLabels": {}, "matchExpressions": []}), ""),
            (json!({"matchLabels": null, "matchExpressions": null}), ""),
            (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
            (json!({"matchLabels": {"a": ""}}), "a="),
            (json!({"matchLabels": {"a": null}}), "a="),
            (
                json!({"matchLabels": {"z": "1"}, "matchExpressions": [
                    {"key": "k", "operator": "In", "values": ["y", "x"]},
                    {"key": "n", "operator": "NotIn", "values": ["v"]},
                    {"key": "e", "operator": "Exists"},
                    {"key": "d", "operator": "DoesNotExist", "values": []},
                ]}),
                "!d,e,k in (x,y),n notin (v),z=1",
            ),
            (json!({"unknownField": 1}), ""),
        ];
        for (input, want) in ok {
            let sel = LabelSelector::from_json(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.to_string(), *want, "{input}");
            assert_eq!(sel.is_everything(), want.is_empty(), "{input}");
        }

        let sel = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        assert!(sel.matches(&labels(json!({"app": "web"}))));
        assert!(sel.matches(&labels(json!({"app": "web", "tier": "fe"}))));
        assert!(!sel.matches(&labels(json!({"app": "web", "tier": "db"}))));
        assert!(!sel.matches(&labels(json!({"tier": "fe"}))));

        let err = |v: Value| LabelSelector::from_json(&v).unwrap_err().to_string();
        assert_eq!(
            LabelSelector::from_json(&Value::Null),
            Err(SelectorError::NullSelector)
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
            "\"Gt\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a"}]})),
            "\"\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]})),
            "\"in\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "name", "operator": "In", "values": []}]})),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "name", "operator": "NotIn"}]})),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["<x>"]}]})),
            format!("[values: Invalid value: [\"\\u003cx\\u003e\"]: values set must be empty for exists and does not exist, values[0][a]: Invalid value: \"<x>\": {VALUE_REGEX_ERR}]")
        );
        assert_eq!(
            err(json!({"matchLabels": {"a b": "x"}})),
            format!("key: Invalid value: \"a b\": name part {NAME_REGEX_ERR}")
        );
        assert_eq!(
            err(json!({"matchLabels": {"a": "x y"}})),
            format!("values[0][a]: Invalid value: \"x y\": {VALUE_REGEX_ERR}")
        );
        assert_eq!(
            err(json!({"matchLabels": {"a": 1}})),
            "malformed label selector: a matchLabels value must be a string, not 1"
        );
        assert_eq!(
            err(json!({"matchExpressions": {"key": "a"}})),
            "malformed label selector: matchExpressions must be an array, not {\"key\":\"a\"}"
        );
        assert_eq!(
            err(json!("a=b")),
            "malformed label selector: the selector must be an object, not \"a=b\""
        );
        // Shape errors win over validation errors, as decoding precedes validation.
        assert!(matches!(
            LabelSelector::from_json(
                &json!({"matchLabels": {"bad key": "x"}, "matchExpressions": [{"values": [1]}]})
            ),
            Err(SelectorError::Malformed(_))
        ));
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\t\n\r\x07\x08\x0b\x0c"), r#""\t\n\r\a\b\v\f""#);
        assert_eq!(go_quote("\x01\x7f"), r#""\x01\x7f""#);
        assert_eq!(go_quote("é\u{a0}\u{85}"), r#""é\u00a0\u0085""#);
    }

    #[test]
    fn field_selectors_parse_like_kubernetes() {
        let f = |field: &str, value: &str, equal: bool| FieldRequirement {
            field: field.to_owned(),
            value: value.to_owned(),
            equal,
        };
        let cases: &[(&str, Vec<FieldRequirement>)] = &[
            ("", vec![]),
            (",", vec![]),
            ("a=b", vec![f("a", "b", true)]),
            ("a==b", vec![f("a", "b", true)]),
            ("a!=b", vec![f("a", "b", false)]),
            ("c=d,a!=b", vec![f("a", "b", false), f("c", "d", true)]),
            (
                "involvedObject.namespace=",
                vec![f("involvedObject.namespace", "", true)],
            ),
            ("a=b!c", vec![f("a", "b!c", true)]),
            ("a=!b", vec![f("a", "!b", true)]),
            (r"a=x\,y", vec![f("a", "x,y", true)]),
            (r"a=x\=y", vec![f("a", "x=y", true)]),
            (r"a=x\\y", vec![f("a", r"x\y", true)]),
            (r"a=x\\,b=y", vec![f("a", r"x\", true), f("b", "y", true)]),
            (r"a=\,,b=\=", vec![f("a", ",", true), f("b", "=", true)]),
            ("=b", vec![f("", "b", true)]),
            (" a = b ", vec![f(" a ", " b ", true)]),
            ("a=é", vec![f("a", "é", true)]),
        ];
        for (input, want) in cases {
            let got = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(&got.requirements, want, "{input:?}");
            assert_eq!(got.is_everything(), want.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn field_selector_errors_match_kubernetes() {
        let cases: &[(&str, &str)] = &[
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a===b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a!==b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                r"a=x\!",
                r"invalid field selector: invalid escape sequence: \!",
            ),
            (
                r"a=x\n",
                r"invalid field selector: invalid escape sequence: \n",
            ),
            (
                r"a=x\",
                r"invalid field selector: invalid escape sequence: \",
            ),
        ];
        for (input, want) in cases {
            let err = FieldSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), *want, "{input:?}");
        }
        assert_eq!(
            FieldSelector::parse("a=,").unwrap().requirements.len(),
            1,
            "a trailing comma leaves an empty term, which is skipped"
        );
    }

    #[test]
    fn field_selector_matching_and_exact_values() {
        let object = |field: &str| match field {
            "metadata.name" => Some("web-1".to_owned()),
            "status.phase" => Some("Running".to_owned()),
            _ => None,
        };
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name=web-2", false),
            ("metadata.name!=web-2", true),
            ("metadata.name!=web-1", false),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
            ("spec.nodeName=n1", false),
            ("spec.nodeName!=n1", true),
            ("metadata.name=web-1,status.phase!=Running", false),
            ("metadata.name=web-1,status.phase=Running", true),
        ];
        for (input, want) in cases {
            let sel = FieldSelector::parse(input).unwrap();
            assert_eq!(sel.matches(object), *want, "{input:?}");
        }

        let sel = FieldSelector::parse(
            "metadata.name!=x,metadata.namespace=ns,metadata.name=b,metadata.name=a",
        )
        .unwrap();
        assert_eq!(sel.exact_value("metadata.name"), Some("a"));
        assert_eq!(sel.exact_value("metadata.namespace"), Some("ns"));
        assert_eq!(sel.exact_value("status.phase"), None);
        let sel = FieldSelector::parse("metadata.name!=x").unwrap();
        assert_eq!(sel.exact_value("metadata.name"), None);
        let sel = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(sel.exact_value("metadata.name"), Some("a,b"));
    }

    fn label_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9]",
            "[A-Za-z0-9][-A-Za-z0-9_.]{0,12}[A-Za-z0-9]",
            Just("in".to_owned()),
            Just("notin".to_owned()),
        ]
    }

    fn label_key() -> impl Strategy<Value = String> {
        (
            prop::option::of(prop::collection::vec(
                "[a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?",
                1..4,
            )),
            label_name(),
        )
            .prop_map(|(prefix, name)| match prefix {
                Some(labels) => format!("{}/{name}", labels.join(".")),
                None => name,
            })
    }

    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), label_name()]
    }

    /// Distinct values in any order, as parsed or written by a client. Duplicates are left
    /// out because Kubernetes' own printing of them does not always re-parse (see
    /// `kubernetes_cannot_reparse_three_empty_values`).
    fn value_set() -> impl Strategy<Value = Vec<String>> {
        (
            prop::collection::btree_set(label_value(), 1..5),
            any::<bool>(),
        )
            .prop_map(|(set, reversed)| {
                let mut values: Vec<String> = set.into_iter().collect();
                if reversed {
                    values.reverse();
                }
                values
            })
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let op = prop_oneof![
            label_value().prop_map(|v| (Operator::Equals, vec![v])),
            label_value().prop_map(|v| (Operator::NotEquals, vec![v])),
            value_set().prop_map(|v| (Operator::In, v)),
            value_set().prop_map(|v| (Operator::NotIn, v)),
            Just((Operator::Exists, vec![])),
            Just((Operator::DoesNotExist, vec![])),
            any::<u32>().prop_map(|n| (Operator::GreaterThan, vec![n.to_string()])),
            any::<u32>().prop_map(|n| (Operator::LessThan, vec![n.to_string()])),
        ];
        (label_key(), op).prop_map(|(key, (operator, values))| Requirement {
            key,
            operator,
            values,
        })
    }

    fn escape_field_value(v: &str) -> String {
        v.replace('\\', r"\\")
            .replace(',', r"\,")
            .replace('=', r"\=")
    }

    proptest! {
        #[test]
        fn display_round_trips(requirements in prop::collection::vec(requirement(), 0..6)) {
            let sel = LabelSelector { requirements };
            let mut canonical = sel.clone();
            sort_by_key(&mut canonical.requirements);
            for r in &mut canonical.requirements {
                if matches!(r.operator, Operator::In | Operator::NotIn) {
                    r.values.sort();
                    r.values.dedup();
                }
            }
            let printed = sel.to_string();
            let parsed = LabelSelector::parse(&printed);
            prop_assert_eq!(parsed.as_ref(), Ok(&canonical), "printed as {:?}", printed);
            prop_assert_eq!(parsed.unwrap().to_string(), canonical.to_string());
        }

        #[test]
        fn escaped_field_values_round_trip(value in "[a-z=,\\\\!. ]{0,12}") {
            let sel = FieldSelector::parse(&format!("f={}", escape_field_value(&value))).unwrap();
            prop_assert_eq!(sel.exact_value("f"), Some(value.as_str()));
            prop_assert!(sel.matches(|_| Some(value.clone())));
        }
    }
}
