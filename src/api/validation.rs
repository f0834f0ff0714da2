//! Object validation on create and update, reported as Kubernetes field errors.
//!
//! This module owns the per-kind rules of kubernetes/kubernetes `pkg/apis/*/validation` (and the
//! apimachinery helpers they call) for every kind orch serves, applied to objects as they are
//! stored: JSON, already defaulted. Field paths, error types and message texts follow Kubernetes
//! 1.34, because clients print them and tests compare them. Kinds without rules of their own get
//! the metadata checks every Kubernetes registry applies to any object.
//!
//! Deliberately not here: registry behaviour (cluster IP and node port allocation, Job selector
//! generation), admission plugins, and status-subresource rules. The caller cannot tell a status
//! update from a main one, so an update that leaves `spec` as it was is not checked again against
//! the create rules of that spec; metadata and the update (immutability) rules always apply.

use super::selector::go_quote;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

use crate::api::quantity::{parse_quantity, Quantity};
use crate::api::selector::{LabelSelector, SelectorError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
    TooMany,
    NotFound,
}

impl ErrorType {
    fn label(&self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::TooLong => "Too long",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooMany => "Too many",
            ErrorType::NotFound => "Not found",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub error_type: ErrorType,
    pub field: String,
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    /// `field.Error.Error()`: `<field>: <type>[: <value>][: <detail>]`. A `None` value is
    /// Kubernetes' omitted value; a JSON `null` prints as Go's nil.
    pub fn message(&self) -> String {
        let mut out = format!("{}: {}", self.field, self.error_type.label());
        let shows_value = !matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong
        );
        if let Some(value) = self.value.as_ref().filter(|_| shows_value) {
            out.push_str(": ");
            out.push_str(&render_value(&self.field, value));
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }

    pub fn reason(&self) -> &'static str {
        match self.error_type {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rendering bad values the way Go's field errors print them

/// Fields whose Go type is `intstr.IntOrString`, which Go prints as a struct (`%#v`).
const INT_OR_STRING_FIELDS: &[&str] = &["maxUnavailable", "maxSurge", "minAvailable"];

/// Go prints simple values with `%v`, strings with `%q` and everything else with `%#v`, which
/// shows the Go type. JSON has lost that type, so the typed renderings clients commonly see
/// (label maps, label selectors, int-or-string, service port keys) are recognised from the field
/// the value belongs to; other composite values print as JSON.
fn render_value(field: &str, value: &Value) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    let last = last.split('[').next().unwrap_or(last);
    match value {
        Value::Null if last == "labels" => "map[string]string(nil)".into(),
        Value::Null => "null".into(),
        v @ (Value::String(_) | Value::Number(_)) if INT_OR_STRING_FIELDS.contains(&last) => {
            go_int_or_string(v)
        }
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        v @ Value::Object(m)
            if last.ends_with("elector")
                && m.keys()
                    .all(|k| k == "matchLabels" || k == "matchExpressions") =>
        {
            go_label_selector(v)
        }
        Value::Object(m)
            if last == "ports"
                && m.len() == 2
                && m.contains_key("port")
                && m.contains_key("protocol") =>
        {
            format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_quote(m.get("protocol").and_then(Value::as_str).unwrap_or_default()),
                m["port"]
            )
        }
        v => go_composite(v),
    }
}

fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
        other => format!("intstr.IntOrString{{Type:0, IntVal:{other}, StrVal:\"\"}}"),
    }
}

fn go_label_selector(sel: &Value) -> String {
    let labels = match sel.get("matchLabels") {
        Some(Value::Object(m)) => go_string_map(m),
        _ => "map[string]string(nil)".into(),
    };
    let expressions = match sel.get("matchExpressions") {
        Some(Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|e| {
                    let values = match e.get("values") {
                        Some(Value::Array(v)) => go_string_slice(v),
                        _ => "[]string(nil)".into(),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        go_quote(str_of(e, "key")),
                        go_quote(str_of(e, "operator"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
        _ => "[]v1.LabelSelectorRequirement(nil)".into(),
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}")
}

/// `map[string]string` and `[]string` values as `%#v` prints them; anything else as JSON.
fn go_composite(v: &Value) -> String {
    match v {
        Value::Object(m) if m.values().all(Value::is_string) => go_string_map(m),
        Value::Array(items) if items.iter().all(Value::is_string) => go_string_slice(items),
        other => other.to_string(),
    }
}

fn go_string_map(m: &Map<String, Value>) -> String {
    // Go's fmt prints maps sorted by key.
    let sorted: BTreeMap<&String, &Value> = m.iter().collect();
    let parts: Vec<String> = sorted
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                go_quote(k),
                go_quote(v.as_str().unwrap_or_default())
            )
        })
        .collect();
    format!("map[string]string{{{}}}", parts.join(", "))
}

fn go_string_slice(items: &[Value]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|v| go_quote(v.as_str().unwrap_or_default()))
        .collect();
    format!("[]string{{{}}}", parts.join(", "))
}

// ---------------------------------------------------------------------------------------
// Field paths and error constructors

/// A field path in Kubernetes notation: `spec.containers[0].image`, `data[key]`.
#[derive(Clone, Debug)]
struct Path(String);

impl Path {
    fn new(root: &str) -> Self {
        Path(root.to_string())
    }

    /// A child field; `name` may itself be dotted (`template.spec`).
    fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }

    fn key(&self, k: &str) -> Self {
        Path(format!("{}[{k}]", self.0))
    }
}

type Errs = Vec<FieldError>;

fn field_error(
    error_type: ErrorType,
    path: &Path,
    value: Option<Value>,
    detail: &str,
) -> FieldError {
    FieldError {
        error_type,
        field: path.0.clone(),
        value,
        detail: detail.to_string(),
    }
}

fn required(path: &Path, detail: &str) -> FieldError {
    field_error(ErrorType::Required, path, None, detail)
}

fn invalid(path: &Path, value: impl Into<Value>, detail: &str) -> FieldError {
    field_error(ErrorType::Invalid, path, Some(value.into()), detail)
}

fn not_supported(path: &Path, value: impl Into<Value>, valid: &[&str]) -> FieldError {
    let detail = if valid.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    field_error(ErrorType::NotSupported, path, Some(value.into()), &detail)
}

fn duplicate(path: &Path, value: impl Into<Value>) -> FieldError {
    field_error(ErrorType::Duplicate, path, Some(value.into()), "")
}

fn not_found(path: &Path, value: impl Into<Value>) -> FieldError {
    field_error(ErrorType::NotFound, path, Some(value.into()), "")
}

fn forbidden(path: &Path, detail: &str) -> FieldError {
    field_error(ErrorType::Forbidden, path, None, detail)
}

fn too_long(path: &Path, max: usize) -> FieldError {
    field_error(
        ErrorType::TooLong,
        path,
        None,
        &format!("may not be more than {max} bytes"),
    )
}

fn too_many(path: &Path, actual: usize, max: usize) -> FieldError {
    field_error(
        ErrorType::TooMany,
        path,
        Some(Value::from(actual)),
        &format!("must have at most {max} items"),
    )
}

const IMMUTABLE: &str = "field is immutable";
const NEGATIVE: &str = "must be greater than or equal to 0";

/// `ValidateNonnegativeField`.
fn non_negative(v: &Value, key: &str, path: &Path, errs: &mut Errs) {
    if let Some(n) = int_of(v, key) {
        if n < 0 {
            errs.push(invalid(&path.child(key), n, NEGATIVE));
        }
    }
}

/// `ValidateImmutableField`, comparing semantically.
fn immutable(new: &Value, old: &Value, path: &Path, errs: &mut Errs) {
    if !semantic_eq(new, old) {
        errs.push(invalid(path, new.clone(), IMMUTABLE));
    }
}

fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

// ---------------------------------------------------------------------------------------
// JSON access

static NULL: Value = Value::Null;

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn opt_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn is_set(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn is_true(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool) == Some(true)
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn map_of<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn strings<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    items(v, key).iter().filter_map(Value::as_str).collect()
}

/// A zero value (`""`, `0`, `false`, `null`, `[]`, `{}`) stands for an absent field: Go decodes
/// both to the same struct, so `apiequality.Semantic.DeepEqual` cannot tell them apart either.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Equality as `apiequality.Semantic.DeepEqual` sees decoded objects.
fn semantic_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .all(|k| semantic_eq(x.get(k).unwrap_or(&NULL), y.get(k).unwrap_or(&NULL))),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| semantic_eq(p, q))
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ if is_zero(a) && is_zero(b) => true,
        _ => a == b,
    }
}

/// Up to ten differing leaves, one per line, standing in for the `cmp.Diff` Kubernetes appends
/// to some Forbidden messages.
fn diff_lines(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if out.len() >= 10 || semantic_eq(old, new) {
        return;
    }
    match (old, new) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().collect();
            keys.extend(y.keys().filter(|k| !x.contains_key(*k)));
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_lines(get(old, k), get(new, k), &p, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_lines(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(format!("  {path}: {old} -> {new}")),
    }
}

// ---------------------------------------------------------------------------------------
// String formats (k8s.io/apimachinery/pkg/util/validation): each returns the messages Kubernetes
// gives for a bad value, empty when the value is fine.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_UNDERSCORE_FMT: &str =
    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} bytes")
}

/// `RegexError`, including its doubled space between examples ("'MyName',  or 'my.name', ").
fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut out = msg.to_string();
    if examples.is_empty() {
        let _ = write!(out, " (regex used for validation is '{re}')");
        return out;
    }
    out.push_str(" (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        let _ = write!(out, "'{example}', ");
    }
    let _ = write!(out, "regex used for validation is '{re}')");
    out
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, optionally with `_` inside and one leading `_`.
fn is_dns_label_chars(s: &str, underscore: bool) -> bool {
    let s = if underscore {
        s.strip_prefix('_').unwrap_or(s)
    } else {
        s
    };
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter()
            .all(|c| edge(c) || *c == b'-' || (underscore && *c == b'_'))
}

fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !is_dns_label_chars(s, false) {
        if s.split('.').all(|l| is_dns_label_chars(l, false)) {
            errs.push("must not contain dots".into());
        } else {
            errs.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !s.split('.').all(|l| is_dns_label_chars(l, false)) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn dns1123_subdomain_with_underscore(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !s.split('.').all(|l| is_dns_label_chars(l, true)) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_UNDERSCORE_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    let b = s.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn wildcard_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = s
        .strip_prefix("*.")
        .is_some_and(|rest| rest.split('.').all(|l| is_dns_label_chars(l, false)));
    if !ok {
        errs.push(regex_error(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character",
            &format!("\\*\\.{DNS1123_SUBDOMAIN_FMT}"),
            &["*.example.com"],
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

/// `IsQualifiedName`: a label key, `[prefix/]name`.
fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".into());
            } else {
                errs.extend(dns1123_subdomain(prefix).into_iter().map(|e| format!("prefix part {e}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !is_label_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_ERR,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !s.is_empty() && !is_label_name(s) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// `hasChDirPrefix`.
fn chdir_prefix(s: &str) -> Option<String> {
    match s {
        "." => Some("must not be '.'".into()),
        ".." => Some("must not be '..'".into()),
        _ if s.starts_with("..") => Some("must not start with '..'".into()),
        _ => None,
    }
}

fn config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if !ok {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(chdir_prefix(s));
    errs
}

/// `IsValidPortName` (an IANA service name).
fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len_error(15));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

fn port_number(n: i64) -> Vec<String> {
    if (1..=65535).contains(&n) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// `IsValidPercent`: the value as a percentage, or the error.
fn percent(s: &str) -> Result<i64, String> {
    s.strip_suffix('%')
        .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
        .map(|d| d.parse().unwrap_or(i64::MAX))
        .ok_or_else(|| {
            regex_error(
                "a valid percent string must be a numeric string followed by an ending '%'",
                "[0-9]+%",
                &["1%", "93%"],
            )
        })
}

/// `IsRelaxedEnvVarName`, the 1.34 rule: printable ASCII other than `=`.
fn env_var_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.is_empty() {
        errs.push("environment variable name must be non-empty".into());
    }
    if s.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push("a valid environment variable name must consist only of printable ASCII characters other than '='".into());
    }
    errs
}

fn http_header_name(s: &str) -> Vec<String> {
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        Vec::new()
    } else {
        vec![regex_error(
            "a valid HTTP header must consist of alphanumeric characters or '-'",
            "[-A-Za-z0-9]+",
            &["X-Header-Name"],
        )]
    }
}

/// `IsValidPathSegmentName` / `IsValidPathSegmentPrefix`.
fn path_segment_name(s: &str, prefix: bool) -> Vec<String> {
    if !prefix && (s == "." || s == "..") {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| s.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// `IsDomainPrefixedPath`, e.g. `example.com/ingress-controller`.
fn domain_prefixed_path(path: &Path, s: &str, errs: &mut Errs) {
    if s.is_empty() {
        errs.push(required(path, ""));
        return;
    }
    let Some((host, rest)) = s
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        errs.push(invalid(
            path,
            s,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    for msg in dns1123_subdomain(host) {
        errs.push(invalid(path, host, &msg));
    }
    let ok = rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
    if !ok {
        errs.push(invalid(
            path,
            rest,
            &regex_error("Invalid path", "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+", &[]),
        ));
    }
}

/// `netutils.ParseIPSloppy`: IPv4 octets may carry leading zeros.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = s.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut bytes = [0u8; 4];
    for (b, o) in bytes.iter_mut().zip(&octets) {
        if o.is_empty() || o.len() > 3 || !o.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *b = o.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(bytes)))
}

/// `netutils.ParseCIDRSloppy`: the network address and prefix length.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip = parse_ip(ip)?;
    if bits.is_empty() || !bits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn cidr_contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    match (net.0, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(net.1)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(net.1)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

const IP_ERROR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const CIDR_ERROR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

fn valid_ip(path: &Path, s: &str, errs: &mut Errs) -> bool {
    let ok = parse_ip(s).is_some();
    if !ok {
        errs.push(invalid(path, s, IP_ERROR));
    }
    ok
}

fn valid_cidr(path: &Path, s: &str, errs: &mut Errs) {
    if parse_cidr(s).is_none() {
        errs.push(invalid(path, s, CIDR_ERROR));
    }
}

/// `ValidateNonSpecialIP`: endpoints and external IPs may not be loopback, link-local or
/// unspecified addresses.
fn non_special_ip(path: &Path, s: &str, errs: &mut Errs) {
    let Some(ip) = parse_ip(s) else {
        errs.push(invalid(path, s, "must be a valid IP address"));
        return;
    };
    let (unspecified, loopback, link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_unspecified(),
            v4.is_loopback(),
            v4.is_link_local(),
            v4.octets()[..3] == [224, 0, 0],
        ),
        IpAddr::V6(v6) => {
            let seg = v6.segments()[0];
            (
                v6 == Ipv6Addr::UNSPECIFIED,
                v6 == Ipv6Addr::LOCALHOST,
                seg & 0xffc0 == 0xfe80,
                seg & 0xff0f == 0xff02,
            )
        }
    };
    if unspecified {
        errs.push(invalid(path, s, &format!("may not be unspecified ({s})")));
    }
    if loopback {
        errs.push(invalid(
            path,
            s,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if link_local {
        errs.push(invalid(
            path,
            s,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(invalid(
            path,
            s,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

/// Which Kubernetes name function applies to `metadata.name` of a kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

impl NameRule {
    /// `prefix` is set for `generateName`, whose trailing dash the random suffix will follow.
    fn check(self, name: &str, prefix: bool) -> Vec<String> {
        if self == NameRule::PathSegment {
            return path_segment_name(name, prefix);
        }
        let masked;
        let name = if prefix && name.ends_with('-') {
            // maskTrailingDash drops two bytes, not one; kept for identical results.
            let cut = (0..=name.len().saturating_sub(2))
                .rev()
                .find(|i| name.is_char_boundary(*i))
                .unwrap_or(0);
            masked = format!("{}a", &name[..cut]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Label => dns1123_label(name),
            NameRule::Dns1035 => dns1035_label(name),
            _ => dns1123_subdomain(name),
        }
    }
}

/// Name checks on a referenced object's name (`for _, msg := range nameFn(name, false)`).
fn check_name(rule: NameRule, path: &Path, name: &str, errs: &mut Errs) {
    for msg in rule.check(name, false) {
        errs.push(invalid(path, name, &msg));
    }
}

fn check_label(path: &Path, s: &str, errs: &mut Errs) {
    check_name(NameRule::Label, path, s, errs);
}

fn check_qualified(path: &Path, s: &str, errs: &mut Errs) {
    for msg in qualified_name(s) {
        errs.push(invalid(path, s, &msg));
    }
}

// ---------------------------------------------------------------------------------------
// Object metadata

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// `ValidateObjectMeta`: `check_name` is off where Kubernetes skips the name on update.
fn validate_object_meta(
    obj: &Value,
    namespaced: bool,
    rule: NameRule,
    check_name: bool,
    errs: &mut Errs,
) {
    let meta = get(obj, "metadata");
    let path = Path::new("metadata");
    let generate_name = str_of(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(invalid(&path.child("generateName"), generate_name, &msg));
        }
    }
    let name = str_of(meta, "name");
    if name.is_empty() {
        errs.push(required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else if check_name {
        for msg in rule.check(name, false) {
            errs.push(invalid(&path.child("name"), name, &msg));
        }
    }
    let namespace = str_of(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(required(&path.child("namespace"), ""));
        } else {
            check_label(&path.child("namespace"), namespace, errs);
        }
    } else if !namespace.is_empty() {
        errs.push(forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    non_negative(meta, "generation", &path, errs);
    validate_labels(get(meta, "labels"), &path.child("labels"), errs);
    validate_annotations(get(meta, "annotations"), &path.child("annotations"), errs);
    validate_owner_references(
        items(meta, "ownerReferences"),
        &path.child("ownerReferences"),
        errs,
    );
    validate_finalizers(get(meta, "finalizers"), &path.child("finalizers"), errs);
}

/// `ValidateObjectMetaUpdate`, less the label and annotation checks the create rules repeat.
fn validate_object_meta_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (meta, old_meta) = (get(new, "metadata"), get(old, "metadata"));
    let path = Path::new("metadata");
    if is_set(old_meta, "deletionTimestamp") {
        let old_finalizers = strings(old_meta, "finalizers");
        let mut extra: Vec<&str> = strings(meta, "finalizers")
            .into_iter()
            .filter(|f| !old_finalizers.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| go_quote(f)).collect();
            errs.push(forbidden(
                &path.child("finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    let generation = int_of(meta, "generation").unwrap_or(0);
    if generation < int_of(old_meta, "generation").unwrap_or(0) {
        errs.push(invalid(
            &path.child("generation"),
            generation,
            "must not be decremented",
        ));
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        immutable(
            get(meta, field),
            get(old_meta, field),
            &path.child(field),
            errs,
        );
    }
}

fn validate_labels(labels: &Value, path: &Path, errs: &mut Errs) {
    let Some(labels) = labels.as_object() else {
        return;
    };
    for (key, value) in labels {
        check_qualified(path, key, errs);
        let value = value.as_str().unwrap_or_default();
        for msg in label_value(value) {
            errs.push(invalid(path, value, &msg));
        }
    }
}

fn validate_annotations(annotations: &Value, path: &Path, errs: &mut Errs) {
    let Some(annotations) = annotations.as_object() else {
        return;
    };
    let mut size = 0;
    for (key, value) in annotations {
        // Annotation keys are qualified names in any letter case.
        for msg in qualified_name(&key.to_lowercase()) {
            errs.push(invalid(path, key.as_str(), &msg));
        }
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(refs: &[Value], path: &Path, errs: &mut Errs) {
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_of(r, "apiVersion");
        // schema.ParseGroupVersion: "v1", "group/version"; anything else has no version.
        let version = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => *v,
            [_, v] => *v,
            _ => "",
        };
        if version.is_empty() {
            errs.push(invalid(
                &path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for field in ["kind", "name", "uid"] {
            if str_of(r, field).is_empty() {
                errs.push(invalid(
                    &path.child(field),
                    str_of(r, field),
                    "must not be empty",
                ));
            }
        }
        if api_version == "v1" && str_of(r, "kind") == "Event" {
            errs.push(invalid(
                path,
                r.clone(),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if is_true(r, "controller") {
            let current = format!("{}/{}", str_of(r, "kind"), str_of(r, "name"));
            match &first_controller {
                Some(first) => errs.push(invalid(
                    path,
                    Value::from(refs.to_vec()),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

fn validate_finalizers(finalizers: &Value, path: &Path, errs: &mut Errs) {
    let list: Vec<&str> = finalizers
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for f in &list {
        check_qualified(path, f, errs);
    }
    if list.contains(&"orphan") && list.contains(&"foregroundDeletion") {
        errs.push(invalid(
            path,
            finalizers.clone(),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    for (i, f) in list.iter().enumerate() {
        kube_finalizer_name(&path.index(i), f, errs);
    }
}

/// `validateKubeFinalizerName`: an unqualified finalizer must be one Kubernetes defines.
fn kube_finalizer_name(path: &Path, f: &str, errs: &mut Errs) {
    if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
        errs.push(invalid(
            path,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// Metadata of an embedded template (pod templates, claim templates): only labels and
/// annotations are checked there.
fn validate_template_meta(template: &Value, path: &Path, errs: &mut Errs) {
    let meta = get(template, "metadata");
    validate_labels(get(meta, "labels"), &path.child("labels"), errs);
    validate_annotations(get(meta, "annotations"), &path.child("annotations"), errs);
}

// ---------------------------------------------------------------------------------------
// Label selectors

/// `ValidateLabelSelector` with invalid label values rejected.
fn validate_label_selector(sel: &Value, path: &Path, errs: &mut Errs) {
    if sel.is_null() {
        return;
    }
    validate_labels(get(sel, "matchLabels"), &path.child("matchLabels"), errs);
    for (i, expr) in items(sel, "matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = strings(expr, "values");
        match str_of(expr, "operator") {
            "In" | "NotIn" if values.is_empty() => errs.push(required(
                &p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        check_qualified(&p.child("key"), str_of(expr, "key"), errs);
        for (j, value) in values.iter().enumerate() {
            for msg in label_value(value) {
                errs.push(invalid(&p.child("values").index(j), *value, &msg));
            }
        }
    }
}

/// How a `metav1.LabelSelector` relates to a set of labels, as `LabelSelectorAsSelector` sees it.
enum SelectorMatch {
    /// `{}`: selects everything (`selector.Empty()`).
    Everything,
    Matches(bool),
    /// The selector does not convert; the caller reports it.
    Unusable,
}

fn selector_match(sel: &Value, labels: &Value) -> SelectorMatch {
    let empty = Map::new();
    let labels = labels.as_object().unwrap_or(&empty);
    match LabelSelector::from_json(sel) {
        Ok(s) if s.is_everything() => SelectorMatch::Everything,
        Ok(s) => SelectorMatch::Matches(s.matches(labels)),
        // A null selector converts to one that selects nothing.
        Err(SelectorError::NullSelector) => SelectorMatch::Matches(false),
        Err(_) => SelectorMatch::Unusable,
    }
}

fn selector_is_empty(sel: &Value) -> bool {
    items(sel, "matchExpressions").is_empty()
        && map_of(sel, "matchLabels").is_none_or(Map::is_empty)
}

// ---------------------------------------------------------------------------------------
// Resource names and quantities

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];
const STANDARD_QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "services.nodeports",
    "services.loadbalancers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
];
const MAX_SECRET_SIZE: usize = 1024 * 1024;

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

fn is_integer_resource(name: &str) -> bool {
    INTEGER_RESOURCES.contains(&name) || is_extended_resource(name)
}

/// `validateResourceName`: a qualified name, and a standard one when unprefixed.
fn resource_name(name: &str, path: &Path, errs: &mut Errs) -> bool {
    let before = errs.len();
    check_qualified(path, name, errs);
    if errs.len() > before {
        return false;
    }
    let standard = STANDARD_RESOURCES.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-");
    if !name.contains('/') && !standard {
        errs.push(invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
        return false;
    }
    true
}

fn container_resource_name(name: &str, path: &Path, errs: &mut Errs) {
    resource_name(name, path, errs);
    if !name.contains('/') {
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !is_hugepages(name) {
            errs.push(invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

/// Parses a quantity, reporting one that does not parse.
fn quantity(v: &Value, path: &Path, errs: &mut Errs) -> Option<Quantity> {
    match Quantity::try_from(v) {
        Ok(q) => Some(q),
        Err(e) => {
            errs.push(invalid(path, v.clone(), &e.to_string()));
            None
        }
    }
}

/// `ValidateResourceQuantityValue`.
fn resource_quantity_value(name: &str, q: &Quantity, path: &Path, errs: &mut Errs) {
    if q.is_negative() {
        errs.push(invalid(path, q.to_string(), NEGATIVE));
    }
    if is_integer_resource(name) && q.to_millis() % 1000 != 0 {
        errs.push(invalid(path, q.to_string(), "must be an integer"));
    }
}

/// `validateResourceRequirements` for a container (or pod overhead/pod-level resources).
fn validate_resource_requirements(res: &Value, path: &Path, pod_level: bool, errs: &mut Errs) {
    let (lim_path, req_path) = (path.child("limits"), path.child("requests"));
    let limits = map_of(res, "limits");
    let mut limits_parsed: HashMap<&str, Quantity> = HashMap::new();
    let (mut cpu_mem, mut huge) = (false, false);
    let check_name = |name: &str, p: &Path, errs: &mut Errs| {
        if pod_level {
            if resource_name(name, p, errs)
                && !["cpu", "memory"].contains(&name)
                && !is_hugepages(name)
            {
                errs.push(not_supported(p, name, &["cpu", "memory"]));
            }
        } else {
            container_resource_name(name, p, errs);
        }
    };
    for (name, value) in limits.into_iter().flatten() {
        let p = lim_path.key(name);
        check_name(name, &p, errs);
        if let Some(q) = quantity(value, &p, errs) {
            resource_quantity_value(name, &q, &p, errs);
            if is_hugepages(name) {
                huge = true;
                hugepage_value(name, &q, &p, errs);
            }
            limits_parsed.insert(name, q);
        }
        cpu_mem |= name == "cpu" || name == "memory";
    }
    for (name, value) in map_of(res, "requests").into_iter().flatten() {
        let p = req_path.key(name);
        check_name(name, &p, errs);
        let Some(q) = quantity(value, &p, errs) else {
            continue;
        };
        resource_quantity_value(name, &q, &p, errs);
        match limits_parsed.get(name.as_str()) {
            Some(limit) if q != *limit && !is_overcommit_allowed(name) => errs.push(invalid(
                &req_path,
                q.to_string(),
                &format!("must be equal to {name} limit of {limit}"),
            )),
            Some(limit) if q > *limit => errs.push(invalid(
                &req_path,
                q.to_string(),
                &format!("must be less than or equal to {name} limit of {limit}"),
            )),
            None if !is_overcommit_allowed(name)
                && !limits.is_some_and(|l| l.contains_key(name)) =>
            {
                errs.push(required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ))
            }
            _ => {}
        }
        if is_hugepages(name) {
            huge = true;
            hugepage_value(name, &q, &p, errs);
        }
        cpu_mem |= name == "cpu" || name == "memory";
    }
    if huge && !cpu_mem {
        errs.push(forbidden(path, "HugePages require cpu or memory"));
    }
    if pod_level && is_set(res, "claims") {
        errs.push(forbidden(
            &path.child("claims"),
            "claims cannot be set for Resources at pod-level",
        ));
    }
}

/// Huge pages come in whole pages of the size the resource name gives.
fn hugepage_value(name: &str, q: &Quantity, path: &Path, errs: &mut Errs) {
    let divisible = parse_quantity(&name["hugepages-".len()..])
        .ok()
        .filter(|size| !size.is_negative() && !size.is_zero() && size.to_millis() % 1000 == 0)
        .is_some_and(|size| q.to_bytes() % size.to_bytes() == 0);
    if !divisible {
        errs.push(invalid(
            path,
            q.to_string(),
            &format!("{q} is not positive integer multiple of {name}"),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Pod specs

/// What a pod spec is embedded in: a Pod itself is held to a few rules that templates are not
/// (`PodValidationOptions.ResourceIsPod`), and knows its name.
#[derive(Clone, Copy)]
struct PodContext<'a> {
    is_pod: bool,
    pod_name: &'a str,
}

/// (JSON key, path Kubernetes reports when the source is one too many). The order is the order
/// of `validateVolumeSource`: the first source set counts, later ones are extra. Two paths carry
/// Kubernetes' own spellings.
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodSpec`.
fn validate_pod_spec(spec: &Value, path: &Path, ctx: PodContext, errs: &mut Errs) {
    if !is_set(spec, "terminationGracePeriodSeconds") {
        errs.push(required(&path.child("terminationGracePeriodSeconds"), ""));
    }
    let grace = int_of(spec, "terminationGracePeriodSeconds");
    let volumes = validate_volumes(items(spec, "volumes"), &path.child("volumes"), ctx, errs);
    for (i, claim) in items(spec, "resourceClaims").iter().enumerate() {
        let p = path.child("resourceClaims").index(i);
        match str_of(claim, "name") {
            "" => errs.push(required(&p.child("name"), "")),
            name => check_label(&p.child("name"), name, errs),
        }
    }
    let restart_policy = str_of(spec, "restartPolicy");
    validate_containers(spec, &volumes, grace, restart_policy, path, errs);
    validate_init_containers(spec, &volumes, grace, restart_policy, path, errs);
    validate_ephemeral_containers(spec, &volumes, restart_policy, path, errs);
    if is_set(spec, "resources") {
        validate_resource_requirements(
            get(spec, "resources"),
            &path.child("resources"),
            true,
            errs,
        );
    }
    if is_true(spec, "hostNetwork") {
        for (i, c) in items(spec, "containers").iter().enumerate() {
            for (j, port) in items(c, "ports").iter().enumerate() {
                let (hp, cp) = (
                    int_of(port, "hostPort").unwrap_or(0),
                    int_of(port, "containerPort").unwrap_or(0),
                );
                if (ctx.is_pod || hp != 0) && hp != cp {
                    errs.push(invalid(
                        &path
                            .child("containers")
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(required(&path.child("restartPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policies = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    match str_of(spec, "dnsPolicy") {
        "" => errs.push(required(&path.child("dnsPolicy"), "")),
        p if dns_policies.contains(&p) => {}
        other => errs.push(not_supported(
            &path.child("dnsPolicy"),
            other,
            &dns_policies,
        )),
    }
    validate_labels(get(spec, "nodeSelector"), &path.child("nodeSelector"), errs);
    validate_pod_security_context(spec, &path.child("securityContext"), errs);
    for (i, secret) in items(spec, "imagePullSecrets").iter().enumerate() {
        if secret
            .as_object()
            .is_some_and(|m| m.iter().any(|(k, v)| k != "name" && !v.is_null()))
        {
            errs.push(invalid(
                &path.child("imagePullSecrets").index(i),
                secret.clone(),
                "only name may be set",
            ));
        }
    }
    validate_affinity(get(spec, "affinity"), &path.child("affinity"), errs);
    validate_dns_config(spec, &path.child("dnsConfig"), errs);
    for (i, gate) in items(spec, "readinessGates").iter().enumerate() {
        check_qualified(
            &path.child("readinessGates").index(i).child("conditionType"),
            str_of(gate, "conditionType"),
            errs,
        );
    }
    let mut gates = HashSet::new();
    for (i, gate) in items(spec, "schedulingGates").iter().enumerate() {
        let p = path.child("schedulingGates").index(i);
        let name = str_of(gate, "name");
        check_qualified(&p, name, errs);
        if !gates.insert(name) {
            errs.push(duplicate(&p, name));
        }
    }
    validate_topology_spread(
        items(spec, "topologySpreadConstraints"),
        &path.child("topologySpreadConstraints"),
        errs,
    );
    if spec.get("hostUsers") == Some(&Value::Bool(false)) {
        // Kubernetes spells two of these paths with capitals.
        for (field, reported) in [
            ("hostNetwork", "hostNetwork"),
            ("hostPID", "HostPID"),
            ("hostIPC", "HostIPC"),
        ] {
            if is_true(spec, field) {
                errs.push(forbidden(
                    &path.child(reported),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    for (field, rule) in [
        ("serviceAccountName", NameRule::Subdomain),
        ("nodeName", NameRule::Subdomain),
        ("priorityClassName", NameRule::Subdomain),
    ] {
        let value = str_of(spec, field);
        if !value.is_empty() {
            check_name(rule, &path.child(field), value, errs);
        }
    }
    if let Some(deadline) = int_of(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&deadline) {
            errs.push(invalid(
                &path.child("activeDeadlineSeconds"),
                deadline,
                &inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    for field in ["hostname", "subdomain"] {
        let value = str_of(spec, field);
        if !value.is_empty() {
            check_label(&path.child(field), value, errs);
        }
    }
    validate_tolerations(items(spec, "tolerations"), &path.child("tolerations"), errs);
    for (i, alias) in items(spec, "hostAliases").iter().enumerate() {
        let p = path.child("hostAliases").index(i);
        valid_ip(&p.child("ip"), str_of(alias, "ip"), errs);
        for (j, host) in strings(alias, "hostnames").iter().enumerate() {
            check_name(
                NameRule::Subdomain,
                &p.child("hostnames").index(j),
                host,
                errs,
            );
        }
    }
    if let Some(runtime_class) = opt_str(spec, "runtimeClassName") {
        check_name(
            NameRule::Subdomain,
            &path.child("runtimeClassName"),
            runtime_class,
            errs,
        );
    }
    if let Some(policy) = opt_str(spec, "preemptionPolicy") {
        preemption_policy(policy, &path.child("preemptionPolicy"), errs);
    }
    if let Some(overhead) = spec.get("overhead").filter(|o| !o.is_null()) {
        validate_resource_requirements(
            &serde_json::json!({ "limits": overhead }),
            &path.child("overhead"),
            false,
            errs,
        );
    }
    if let Some(os) = spec.get("os").filter(|o| !o.is_null()) {
        match str_of(os, "name") {
            "" => errs.push(required(&path.child("os").child("name"), "cannot be empty")),
            "linux" | "windows" => {}
            other => errs.push(not_supported(
                &path.child("os"),
                other,
                &["linux", "windows"],
            )),
        }
    }
}

fn preemption_policy(policy: &str, path: &Path, errs: &mut Errs) {
    match policy {
        "PreemptLowerPriority" | "Never" => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(
            path,
            other,
            &["PreemptLowerPriority", "Never"],
        )),
    }
}

/// `ValidateVolumes`: the names of the volumes that validated, with their definitions.
fn validate_volumes<'a>(
    volumes: &'a [Value],
    path: &Path,
    ctx: PodContext,
    errs: &mut Errs,
) -> HashMap<&'a str, &'a Value> {
    let mut valid = HashMap::new();
    for (i, vol) in volumes.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(vol, "name");
        let mut vol_errs = Vec::new();
        validate_volume_source(vol, &p, name, ctx, &mut vol_errs);
        if name.is_empty() {
            vol_errs.push(required(&p.child("name"), ""));
        } else {
            check_label(&p.child("name"), name, &mut vol_errs);
        }
        if valid.contains_key(name) {
            vol_errs.push(duplicate(&p.child("name"), name));
        }
        if vol_errs.is_empty() {
            valid.insert(name, vol);
        }
        errs.extend(vol_errs);
    }
    valid
}

fn validate_volume_source(
    vol: &Value,
    path: &Path,
    vol_name: &str,
    ctx: PodContext,
    errs: &mut Errs,
) {
    let mut count = 0;
    for (key, extra_path) in VOLUME_SOURCES {
        let Some(src) = vol.get(*key).filter(|s| !s.is_null()) else {
            continue;
        };
        if count > 0 {
            errs.push(forbidden(
                &path.child(extra_path),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let p = path.child(key);
        match *key {
            "emptyDir" => {
                if let Some(limit) = src.get("sizeLimit").filter(|l| !l.is_null()) {
                    if Quantity::try_from(limit).is_ok_and(|q| q.is_negative()) {
                        errs.push(forbidden(
                            &p.child("sizeLimit"),
                            "SizeLimit field must be a valid resource quantity",
                        ));
                    }
                }
            }
            "hostPath" => host_path_source(src, &p, errs),
            "gitRepo" => {
                if str_of(src, "repository").is_empty() {
                    errs.push(required(&p.child("repository"), ""));
                }
                local_descending_path(str_of(src, "directory"), &p.child("directory"), errs);
            }
            "secret" => {
                if str_of(src, "secretName").is_empty() {
                    errs.push(required(&p.child("secretName"), ""));
                }
                file_mode(src, "defaultMode", &p, errs);
                key_to_paths(src, &p, errs);
            }
            "configMap" => {
                if str_of(src, "name").is_empty() {
                    errs.push(required(&p.child("name"), ""));
                }
                file_mode(src, "defaultMode", &p, errs);
                key_to_paths(src, &p, errs);
            }
            "persistentVolumeClaim" if str_of(src, "claimName").is_empty() => {
                errs.push(required(&p.child("claimName"), ""));
            }
            "nfs" => {
                for field in ["server", "path"] {
                    if str_of(src, field).is_empty() {
                        errs.push(required(&p.child(field), ""));
                    }
                }
                if !str_of(src, "path").starts_with('/') {
                    errs.push(invalid(
                        &p.child("path"),
                        str_of(src, "path"),
                        "must be an absolute path",
                    ));
                }
            }
            "downwardAPI" => {
                file_mode(src, "defaultMode", &p, errs);
                for file in items(src, "items") {
                    downward_api_file(file, &p, errs);
                }
            }
            "projected" => projected_source(src, &p, errs),
            "csi" => {
                csi_driver_name(str_of(src, "driver"), &p.child("driver"), errs);
                if let Some(secret) = src.get("nodePublishSecretRef").filter(|s| !s.is_null()) {
                    match str_of(secret, "name") {
                        "" => {
                            errs.push(required(&p.child("nodePublishSecretRef").child("name"), ""))
                        }
                        name => check_name(NameRule::Subdomain, &p.child("name"), name, errs),
                    }
                }
            }
            "ephemeral" => {
                let template = get(src, "volumeClaimTemplate");
                if template.is_null() {
                    errs.push(required(&p.child("volumeClaimTemplate"), ""));
                } else {
                    let tp = p.child("volumeClaimTemplate");
                    validate_template_meta(template, &tp.child("metadata"), errs);
                    forbid_meta_beyond_labels(
                        template,
                        &tp.child("metadata"),
                        "cannot be set",
                        errs,
                    );
                    validate_pvc_spec(get(template, "spec"), &tp.child("spec"), errs);
                    if !ctx.pod_name.is_empty() && !vol_name.is_empty() {
                        let pvc = format!("{}-{vol_name}", ctx.pod_name);
                        for msg in dns1123_subdomain(&pvc) {
                            errs.push(invalid(
                                &p.child("name"),
                                vol_name,
                                &format!("PVC name {}: {msg}", go_quote(&pvc)),
                            ));
                        }
                    }
                }
            }
            "image" => {
                if ctx.is_pod && str_of(src, "reference").is_empty() {
                    errs.push(required(&p.child("reference"), ""));
                }
                pull_policy(str_of(src, "pullPolicy"), &p.child("pullPolicy"), errs);
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required(path, "must specify a volume type"));
    }
}

/// Only `labels` and `annotations` may be set on embedded template metadata.
fn forbid_meta_beyond_labels(template: &Value, path: &Path, detail: &str, errs: &mut Errs) {
    for (key, value) in map_of(template, "metadata").into_iter().flatten() {
        if key != "labels" && key != "annotations" && !is_zero(value) {
            errs.push(forbidden(&path.child(key), detail));
        }
    }
}

fn host_path_source(src: &Value, p: &Path, errs: &mut Errs) {
    let host_path = str_of(src, "path");
    if host_path.is_empty() {
        errs.push(required(&p.child("path"), ""));
        return;
    }
    path_no_backsteps(host_path, &p.child("path"), errs);
    if let Some(t) = opt_str(src, "type") {
        let types = [
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !types.contains(&t) {
            errs.push(not_supported(&p.child("type"), t, &types));
        }
    }
}

fn csi_driver_name(driver: &str, path: &Path, errs: &mut Errs) {
    if driver.is_empty() {
        errs.push(required(path, ""));
    }
    if driver.len() > 63 {
        errs.push(too_long(path, 63));
    }
    for msg in dns1123_subdomain(&driver.to_lowercase()) {
        errs.push(invalid(path, driver, &msg));
    }
}

fn file_mode(v: &Value, key: &str, path: &Path, errs: &mut Errs) {
    if let Some(mode) = int_of(v, key) {
        if !(0..=0o777).contains(&mode) {
            errs.push(invalid(&path.child(key), mode, FILE_MODE_ERROR));
        }
    }
}

fn key_to_paths(src: &Value, path: &Path, errs: &mut Errs) {
    for (i, kp) in items(src, "items").iter().enumerate() {
        key_to_path(kp, &path.child("items").index(i), errs);
    }
}

fn key_to_path(kp: &Value, path: &Path, errs: &mut Errs) {
    if str_of(kp, "key").is_empty() {
        errs.push(required(&path.child("key"), ""));
    }
    if str_of(kp, "path").is_empty() {
        errs.push(required(&path.child("path"), ""));
    }
    local_non_reserved_path(str_of(kp, "path"), &path.child("path"), errs);
    file_mode(kp, "mode", path, errs);
}

fn path_no_backsteps(target: &str, path: &Path, errs: &mut Errs) {
    if target.split(['/', '\\']).any(|part| part == "..") {
        errs.push(invalid(path, target, "must not contain '..'"));
    }
}

fn local_descending_path(target: &str, path: &Path, errs: &mut Errs) {
    if target.starts_with('/') {
        errs.push(invalid(path, target, "must be a relative path"));
    }
    path_no_backsteps(target, path, errs);
}

fn local_non_reserved_path(target: &str, path: &Path, errs: &mut Errs) {
    local_descending_path(target, path, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(invalid(path, target, "must not start with '..'"));
    }
}

const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
/// Fields `ConvertDownwardAPIFieldLabel` knows for v1 pods.
const DOWNWARD_FIELDS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn downward_api_file(file: &Value, path: &Path, errs: &mut Errs) {
    if str_of(file, "path").is_empty() {
        errs.push(required(&path.child("path"), ""));
    }
    local_non_reserved_path(str_of(file, "path"), &path.child("path"), errs);
    if is_set(file, "fieldRef") {
        object_field_selector(
            get(file, "fieldRef"),
            VOLUME_FIELD_PATHS,
            &path.child("fieldRef"),
            errs,
        );
        if is_set(file, "resourceFieldRef") {
            errs.push(invalid(
                path,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if is_set(file, "resourceFieldRef") {
        resource_field_selector(
            get(file, "resourceFieldRef"),
            true,
            &path.child("resourceFieldRef"),
            errs,
        );
    } else {
        errs.push(required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    file_mode(file, "mode", path, errs);
}

fn projected_source(src: &Value, path: &Path, errs: &mut Errs) {
    file_mode(src, "defaultMode", path, errs);
    let mut paths = HashSet::new();
    let mut conflict = |p: &str, value: &str, errs: &mut Errs| {
        if !p.is_empty() && !paths.insert(p.to_string()) {
            errs.push(invalid(path, value, "conflicting duplicate paths"));
        }
    };
    for (i, source) in items(src, "sources").iter().enumerate() {
        let sp = path.child("sources").index(i);
        let mut count = 0;
        for kind in ["secret", "configMap"] {
            let Some(s) = source.get(kind).filter(|s| !s.is_null()) else {
                continue;
            };
            count += 1;
            let kp = sp.child(kind);
            if str_of(s, "name").is_empty() {
                errs.push(required(&kp.child("name"), ""));
            }
            for (j, item) in items(s, "items").iter().enumerate() {
                key_to_path(item, &kp.child("items").index(j), errs);
                conflict(str_of(item, "path"), str_of(s, "name"), errs);
            }
        }
        if let Some(d) = source.get("downwardAPI").filter(|s| !s.is_null()) {
            count += 1;
            for file in items(d, "items") {
                downward_api_file(file, &sp.child("downwardAPI"), errs);
                conflict(str_of(file, "path"), str_of(file, "path"), errs);
            }
        }
        if let Some(token) = source.get("serviceAccountToken").filter(|s| !s.is_null()) {
            count += 1;
            let tp = sp.child("serviceAccountToken").child("expirationSeconds");
            let expiration = int_of(token, "expirationSeconds").unwrap_or(0);
            if expiration < 600 {
                errs.push(invalid(
                    &tp,
                    expiration,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if expiration > 1 << 32 {
                errs.push(invalid(
                    &tp,
                    expiration,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            match str_of(token, "path") {
                "" => errs.push(required(&path.child("path"), "")),
                p => local_non_reserved_path(p, &path.child("path"), errs),
            }
        }
        if let Some(bundle) = source.get("clusterTrustBundle").filter(|s| !s.is_null()) {
            count += 1;
            let bp = sp.child("clusterTrustBundle");
            match (is_set(bundle, "name"), is_set(bundle, "signerName")) {
                (true, true) => errs.push(invalid(
                    &bp,
                    bundle.clone(),
                    "only one of name and signerName may be used",
                )),
                (false, false) => {
                    errs.push(required(&bp, "either name or signerName must be specified"))
                }
                _ => {}
            }
            if str_of(bundle, "path").is_empty() {
                errs.push(required(&bp.child("path"), ""));
            }
            local_non_reserved_path(str_of(bundle, "path"), &bp.child("path"), errs);
            conflict(str_of(bundle, "path"), str_of(bundle, "path"), errs);
        }
        if count > 1 {
            errs.push(forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

/// `validateObjectFieldSelector` (downward API `fieldRef`).
fn object_field_selector(fs: &Value, allowed: &[&str], path: &Path, errs: &mut Errs) {
    let api_version = str_of(fs, "apiVersion");
    if api_version.is_empty() {
        errs.push(required(&path.child("apiVersion"), ""));
        return;
    }
    let field_path = str_of(fs, "fieldPath");
    if field_path.is_empty() {
        errs.push(required(&path.child("fieldPath"), ""));
        return;
    }
    // `metadata.labels['key']` names one label or annotation.
    let (base, subscript) = match field_path.split_once("['") {
        Some((base, rest)) if rest.ends_with("']") => (base, Some(&rest[..rest.len() - 2])),
        _ => (field_path, None),
    };
    let conversion_error = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else if !DOWNWARD_FIELDS.contains(&base)
        || (subscript.is_some() && !matches!(base, "metadata.annotations" | "metadata.labels"))
    {
        Some(format!("field label not supported: {field_path}"))
    } else {
        None
    };
    if let Some(e) = conversion_error {
        errs.push(invalid(
            &path.child("fieldPath"),
            field_path,
            &format!("error converting fieldPath: {e}"),
        ));
        return;
    }
    match subscript {
        Some(key) if base == "metadata.annotations" => {
            check_qualified(path, &key.to_lowercase(), errs)
        }
        Some(key) => check_qualified(path, key, errs),
        None if !allowed.contains(&base) => {
            errs.push(not_supported(&path.child("fieldPath"), base, allowed))
        }
        None => {}
    }
}

fn resource_field_selector(fs: &Value, volume: bool, path: &Path, errs: &mut Errs) {
    let resource = str_of(fs, "resource");
    if volume && str_of(fs, "containerName").is_empty() {
        errs.push(required(&path.child("containerName"), ""));
    } else if resource.is_empty() {
        errs.push(required(&path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(not_supported(
            &path.child("resource"),
            resource,
            RESOURCE_FIELD_PATHS,
        ));
    }
    let Some(divisor) = fs.get("divisor").and_then(|d| Quantity::try_from(d).ok()) else {
        return;
    };
    if divisor.is_zero() {
        return;
    }
    let memory_like = [
        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
    ];
    let shown = divisor.to_string();
    let problem = match resource {
        "limits.cpu" | "requests.cpu" if !["1m", "1"].contains(&shown.as_str()) => {
            Some("only divisor's values 1m and 1 are supported with the cpu resource")
        }
        "limits.memory" | "requests.memory" if !memory_like.contains(&shown.as_str()) => {
            Some("only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource")
        }
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !memory_like.contains(&shown.as_str()) => {
            Some("only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource")
        }
        r if (r.starts_with("requests.hugepages-") || r.starts_with("limits.hugepages-")) && !memory_like.contains(&shown.as_str()) => {
            Some("only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the hugepages resource")
        }
        _ => None,
    };
    if let Some(msg) = problem {
        errs.push(invalid(&path.child("divisor"), resource, msg));
    }
}

/// Init and regular containers; names are unique across both.
fn validate_containers(
    spec: &Value,
    volumes: &HashMap<&str, &Value>,
    grace: Option<i64>,
    restart_policy: &str,
    path: &Path,
    errs: &mut Errs,
) {
    let containers = items(spec, "containers");
    let cpath = path.child("containers");
    if containers.is_empty() {
        errs.push(required(&cpath, ""));
        return;
    }
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = cpath.index(i);
        validate_container_common(c, volumes, restart_policy, &p, errs);
        let name = str_of(c, "name");
        if !names.insert(name) {
            errs.push(duplicate(&p.child("name"), name));
        }
        validate_lifecycle_and_probes(c, grace, &p, errs);
        if is_set(c, "restartPolicy") {
            errs.push(forbidden(
                &p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    host_port_conflicts(containers, &cpath, 0..containers.len(), errs);
}

fn validate_init_containers(
    spec: &Value,
    volumes: &HashMap<&str, &Value>,
    grace: Option<i64>,
    restart_policy: &str,
    path: &Path,
    errs: &mut Errs,
) {
    let inits = items(spec, "initContainers");
    let ipath = path.child("initContainers");
    let mut names: HashSet<&str> = items(spec, "containers")
        .iter()
        .map(|c| str_of(c, "name"))
        .collect();
    for (i, c) in inits.iter().enumerate() {
        let p = ipath.index(i);
        validate_container_common(c, volumes, restart_policy, &p, errs);
        let sidecar = match opt_str(c, "restartPolicy") {
            Some("Always") => true,
            Some(other) => {
                errs.push(not_supported(&p.child("restartPolicy"), other, &["Always"]));
                false
            }
            None => false,
        };
        let name = str_of(c, "name");
        if names.contains(name) {
            errs.push(duplicate(&p.child("name"), name));
        } else if !name.is_empty() {
            names.insert(name);
        }
        // Init containers run one at a time, so only ports within one can conflict.
        host_port_conflicts(inits, &ipath, i..i + 1, errs);
        if sidecar {
            validate_lifecycle_and_probes(c, grace, &p, errs);
        } else {
            for field in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if is_set(c, field) {
                    errs.push(forbidden(
                        &p.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

/// The container fields that would make an ephemeral container part of the workload
/// (`allowedEphemeralContainerFields` lists the others).
const NOT_FOR_EPHEMERAL_CONTAINERS: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "lifecycle",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
];

/// `validateEphemeralContainers`: names unique among all the pod's containers, a target among its
/// regular and init containers, nothing that makes a container part of the workload, and no subPath
/// (its bind mounts would outlive the container).
fn validate_ephemeral_containers(
    spec: &Value,
    volumes: &HashMap<&str, &Value>,
    restart_policy: &str,
    path: &Path,
    errs: &mut Errs,
) {
    let ephemeral = items(spec, "ephemeralContainers");
    let epath = path.child("ephemeralContainers");
    let others: HashSet<&str> = items(spec, "containers")
        .iter()
        .chain(items(spec, "initContainers"))
        .map(|c| str_of(c, "name"))
        .collect();
    let mut names = others.clone();
    let set = |c: &Value, field: &str| {
        c.get(field).is_some_and(|v| match v {
            Value::Null => false,
            Value::Object(o) => !o.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        })
    };
    for (i, c) in ephemeral.iter().enumerate() {
        let p = epath.index(i);
        validate_container_common(c, volumes, restart_policy, &p, errs);
        let name = str_of(c, "name");
        if !names.insert(name) {
            errs.push(duplicate(&p.child("name"), name));
        }
        let target = str_of(c, "targetContainerName");
        if !target.is_empty() && !others.contains(target) {
            errs.push(not_found(&p.child("targetContainerName"), target));
        }
        for field in NOT_FOR_EPHEMERAL_CONTAINERS {
            if set(c, field) {
                errs.push(forbidden(
                    &p.child(field),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, mount) in items(c, "volumeMounts").iter().enumerate() {
            for field in ["subPath", "subPathExpr"] {
                if !str_of(mount, field).is_empty() {
                    errs.push(forbidden(
                        &p.child("volumeMounts").index(j).child(field),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

fn host_port_conflicts(
    containers: &[Value],
    path: &Path,
    range: std::ops::Range<usize>,
    errs: &mut Errs,
) {
    let mut seen = HashSet::new();
    for ci in range {
        for (pi, port) in items(&containers[ci], "ports").iter().enumerate() {
            let host_port = int_of(port, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host_port}",
                str_of(port, "protocol"),
                str_of(port, "hostIP")
            );
            if !seen.insert(key.clone()) {
                errs.push(duplicate(
                    &path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

/// `validateContainerCommon`.
fn validate_container_common(
    c: &Value,
    volumes: &HashMap<&str, &Value>,
    restart_policy: &str,
    path: &Path,
    errs: &mut Errs,
) {
    match str_of(c, "name") {
        "" => errs.push(required(&path.child("name"), "")),
        name => check_label(&path.child("name"), name, errs),
    }
    if str_of(c, "image").is_empty() {
        errs.push(required(&path.child("image"), ""));
    }
    match str_of(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(&path.child("terminationMessagePolicy"), "")),
        other => errs.push(not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_container_ports(items(c, "ports"), &path.child("ports"), errs);
    validate_env(items(c, "env"), &path.child("env"), errs);
    validate_env_from(items(c, "envFrom"), &path.child("envFrom"), errs);
    validate_volume_mounts(c, volumes, path, errs);
    validate_volume_devices(c, volumes, path, errs);
    pull_policy(
        str_of(c, "imagePullPolicy"),
        &path.child("imagePullPolicy"),
        errs,
    );
    validate_resource_requirements(get(c, "resources"), &path.child("resources"), false, errs);
    validate_resize_policy(
        items(c, "resizePolicy"),
        &path.child("resizePolicy"),
        restart_policy,
        errs,
    );
    validate_security_context(
        get(c, "securityContext"),
        &path.child("securityContext"),
        errs,
    );
}

fn pull_policy(policy: &str, path: &Path, errs: &mut Errs) {
    match policy {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(
            path,
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
}

fn validate_container_ports(ports: &[Value], path: &Path, errs: &mut Errs) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid(&p.child("name"), name, &msg));
                }
            } else if !names.insert(name) {
                errs.push(duplicate(&p.child("name"), name));
            }
        }
        match int_of(port, "containerPort").unwrap_or(0) {
            0 => errs.push(required(&p.child("containerPort"), "")),
            n => {
                for msg in port_number(n) {
                    errs.push(invalid(&p.child("containerPort"), n, &msg));
                }
            }
        }
        let host_port = int_of(port, "hostPort").unwrap_or(0);
        if host_port != 0 {
            for msg in port_number(host_port) {
                errs.push(invalid(&p.child("hostPort"), host_port, &msg));
            }
        }
        protocol(str_of(port, "protocol"), &p.child("protocol"), errs);
    }
}

fn protocol(value: &str, path: &Path, errs: &mut Errs) {
    match value {
        "SCTP" | "TCP" | "UDP" => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(path, other, &["SCTP", "TCP", "UDP"])),
    }
}

fn validate_env(env: &[Value], path: &Path, errs: &mut Errs) {
    for (i, var) in env.iter().enumerate() {
        let p = path.index(i);
        match str_of(var, "name") {
            "" => errs.push(required(&p.child("name"), "")),
            name => {
                for msg in env_var_name(name) {
                    errs.push(invalid(&p.child("name"), name, &msg));
                }
            }
        }
        let Some(from) = var.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let vp = p.child("valueFrom");
        let mut sources = 0;
        if is_set(from, "fieldRef") {
            sources += 1;
            object_field_selector(
                get(from, "fieldRef"),
                ENV_FIELD_PATHS,
                &vp.child("fieldRef"),
                errs,
            );
        }
        if is_set(from, "resourceFieldRef") {
            sources += 1;
            resource_field_selector(
                get(from, "resourceFieldRef"),
                false,
                &vp.child("resourceFieldRef"),
                errs,
            );
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            let Some(sel) = from.get(kind).filter(|s| !s.is_null()) else {
                continue;
            };
            sources += 1;
            let kp = vp.child(kind);
            check_name(
                NameRule::Subdomain,
                &kp.child("name"),
                str_of(sel, "name"),
                errs,
            );
            match str_of(sel, "key") {
                "" => errs.push(required(&kp.child("key"), "")),
                key => {
                    for msg in config_map_key(key) {
                        errs.push(invalid(&kp.child("key"), key, &msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(invalid(&vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
        } else if !str_of(var, "value").is_empty() {
            errs.push(invalid(
                &vp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(invalid(
                &vp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_env_from(sources: &[Value], path: &Path, errs: &mut Errs) {
    for (i, source) in sources.iter().enumerate() {
        let p = path.index(i);
        let prefix = str_of(source, "prefix");
        if !prefix.is_empty() {
            for msg in env_var_name(prefix) {
                errs.push(invalid(&p.child("prefix"), prefix, &msg));
            }
        }
        let mut count = 0;
        for kind in ["configMapRef", "secretRef"] {
            let Some(r) = source.get(kind).filter(|s| !s.is_null()) else {
                continue;
            };
            count += 1;
            match str_of(r, "name") {
                "" => errs.push(required(&p.child(kind).child("name"), "")),
                name => {
                    for msg in NameRule::Subdomain.check(name, true) {
                        errs.push(invalid(&p.child(kind).child("name"), name, &msg));
                    }
                }
            }
        }
        match count {
            0 => errs.push(invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => errs.push(invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            )),
        }
    }
}

fn validate_volume_mounts(
    c: &Value,
    volumes: &HashMap<&str, &Value>,
    path: &Path,
    errs: &mut Errs,
) {
    let list = path.child("volumeMounts");
    let devices: HashMap<&str, &str> = items(c, "volumeDevices")
        .iter()
        .map(|d| (str_of(d, "name"), str_of(d, "devicePath")))
        .collect();
    let privileged = is_true(get(c, "securityContext"), "privileged");
    let mut mount_paths = HashSet::new();
    for (i, m) in items(c, "volumeMounts").iter().enumerate() {
        let p = list.index(i);
        let (name, mount_path) = (str_of(m, "name"), str_of(m, "mountPath"));
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        if !volumes.contains_key(name) {
            errs.push(not_found(&p.child("name"), name));
        }
        if mount_path.is_empty() {
            errs.push(required(&p.child("mountPath"), ""));
        }
        if !mount_paths.insert(mount_path) {
            errs.push(invalid(&p.child("mountPath"), mount_path, "must be unique"));
        }
        if devices.contains_key(name) {
            errs.push(invalid(
                &p.child("name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.values().any(|d| *d == mount_path) {
            errs.push(invalid(
                &p.child("mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let (sub_path, sub_path_expr) = (str_of(m, "subPath"), str_of(m, "subPathExpr"));
        if volumes.get(name).is_some_and(|v| is_set(v, "image")) {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &p.child("subPath"),
                    sub_path,
                    "not allowed in image volume sources",
                ));
            }
            if !sub_path_expr.is_empty() {
                errs.push(invalid(
                    &p.child("subPathExpr"),
                    sub_path_expr,
                    "not allowed in image volume sources",
                ));
            }
        }
        // Kubernetes reports these against the list, not the entry.
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &list.child("subPath"), errs);
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &p.child("subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending_path(sub_path_expr, &list.child("subPathExpr"), errs);
        }
        let propagation = opt_str(m, "mountPropagation");
        if let Some(mode) = propagation {
            let pp = list.child("mountPropagation");
            if !["Bidirectional", "HostToContainer", "None"].contains(&mode) {
                errs.push(not_supported(
                    &pp,
                    mode,
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            }
            if mode == "Bidirectional" && !privileged {
                errs.push(forbidden(
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        match opt_str(m, "recursiveReadOnly") {
            None | Some("Disabled") => {}
            Some("Enabled" | "IfPossible") => {
                let rp = list.child("recursiveReadOnly");
                if !is_true(m, "readOnly") {
                    errs.push(forbidden(
                        &rp,
                        "may only be specified when readOnly is true",
                    ));
                }
                if propagation.is_some_and(|mode| mode != "None") {
                    errs.push(forbidden(
                        &rp,
                        "may only be specified when mountPropagation is None or not specified",
                    ));
                }
            }
            Some(other) => errs.push(not_supported(
                &list.child("recursiveReadOnly"),
                other,
                &["Disabled", "Enabled", "IfPossible"],
            )),
        }
    }
}

fn validate_volume_devices(
    c: &Value,
    volumes: &HashMap<&str, &Value>,
    path: &Path,
    errs: &mut Errs,
) {
    let list = path.child("volumeDevices");
    let mounts: HashMap<&str, &str> = items(c, "volumeMounts")
        .iter()
        .map(|m| (str_of(m, "name"), str_of(m, "mountPath")))
        .collect();
    let (mut names, mut paths) = (HashSet::new(), HashSet::new());
    for (i, d) in items(c, "volumeDevices").iter().enumerate() {
        let p = list.index(i);
        let (name, device_path) = (str_of(d, "name"), str_of(d, "devicePath"));
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        if names.contains(name) {
            errs.push(invalid(&p.child("name"), name, "must be unique"));
        }
        match volumes.get(name) {
            Some(v) if !is_set(v, "persistentVolumeClaim") && !is_set(v, "ephemeral") => errs.push(invalid(
                &p.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            Some(_) => {}
            None => errs.push(not_found(&p.child("name"), name)),
        }
        if device_path.is_empty() {
            errs.push(required(&p.child("devicePath"), ""));
        }
        if paths.contains(device_path) {
            errs.push(invalid(
                &p.child("devicePath"),
                device_path,
                "must be unique",
            ));
        }
        if device_path.split('/').any(|part| part == "..") {
            errs.push(invalid(
                &p.child("devicePath"),
                device_path,
                "can not contain backsteps ('..')",
            ));
        } else {
            paths.insert(device_path);
        }
        if mounts.contains_key(name) {
            errs.push(invalid(
                &p.child("name"),
                name,
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.values().any(|m| *m == device_path) {
            errs.push(invalid(
                &p.child("devicePath"),
                device_path,
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
}

fn validate_resize_policy(policies: &[Value], path: &Path, restart_policy: &str, errs: &mut Errs) {
    let mut seen = HashSet::new();
    for (i, policy) in policies.iter().enumerate() {
        let name = str_of(policy, "resourceName");
        if !seen.insert(name) {
            errs.push(duplicate(&path.index(i), name));
        }
        match name {
            "cpu" | "memory" => {}
            "" => errs.push(required(path, "")),
            other => errs.push(not_supported(path, other, &["cpu", "memory"])),
        }
        let restart = str_of(policy, "restartPolicy");
        match restart {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(required(path, "")),
            other => errs.push(not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if restart_policy == "Never" && restart != "NotRequired" {
            errs.push(invalid(
                path,
                restart,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

fn validate_lifecycle_and_probes(c: &Value, grace: Option<i64>, path: &Path, errs: &mut Errs) {
    if let Some(lifecycle) = c.get("lifecycle").filter(|l| !l.is_null()) {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = lifecycle.get(hook).filter(|h| !h.is_null()) {
                validate_handler(
                    handler,
                    &["exec", "httpGet", "tcpSocket", "sleep"],
                    grace,
                    &path.child("lifecycle").child(hook),
                    errs,
                );
            }
        }
    }
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = c.get(kind).filter(|p| !p.is_null()) else {
            continue;
        };
        let p = path.child(kind);
        validate_handler(
            probe,
            &["exec", "httpGet", "tcpSocket", "grpc"],
            grace,
            &p,
            errs,
        );
        for field in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            non_negative(probe, field, &p, errs);
        }
        if let Some(tg) = int_of(probe, "terminationGracePeriodSeconds") {
            if tg <= 0 {
                errs.push(invalid(
                    &p.child("terminationGracePeriodSeconds"),
                    tg,
                    "must be greater than 0",
                ));
            }
        }
        if kind == "readinessProbe" {
            if let Some(tg) = probe
                .get("terminationGracePeriodSeconds")
                .filter(|t| !t.is_null())
            {
                errs.push(invalid(
                    &p.child("terminationGracePeriodSeconds"),
                    tg.clone(),
                    "must not be set for readinessProbes",
                ));
            }
        } else {
            let success = int_of(probe, "successThreshold").unwrap_or(0);
            if success != 1 {
                errs.push(invalid(&p.child("successThreshold"), success, "must be 1"));
            }
        }
    }
}

/// `validateHandler`: exactly one of the handler kinds, checked in Kubernetes' order.
fn validate_handler(
    handler: &Value,
    kinds: &[&str],
    grace: Option<i64>,
    path: &Path,
    errs: &mut Errs,
) {
    let mut count = 0;
    for kind in kinds {
        let Some(h) = handler.get(*kind).filter(|h| !h.is_null()) else {
            continue;
        };
        let p = path.child(kind);
        if count > 0 {
            errs.push(forbidden(&p, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match *kind {
            "exec" => {
                if items(h, "command").is_empty() {
                    errs.push(required(&p.child("command"), ""));
                }
            }
            "httpGet" => {
                if str_of(h, "path").is_empty() {
                    errs.push(required(&p.child("path"), ""));
                }
                port_num_or_name(get(h, "port"), &p.child("port"), errs);
                let scheme = str_of(h, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(not_supported(
                        &p.child("scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in items(h, "httpHeaders") {
                    for msg in http_header_name(str_of(header, "name")) {
                        errs.push(invalid(
                            &p.child("httpHeaders"),
                            str_of(header, "name"),
                            &msg,
                        ));
                    }
                }
            }
            "tcpSocket" => port_num_or_name(get(h, "port"), &p.child("port"), errs),
            "grpc" => {
                let port = int_of(h, "port").unwrap_or(0);
                for msg in port_number(port) {
                    errs.push(invalid(&p.child("port"), port, &msg));
                }
            }
            _ => {
                let seconds = int_of(h, "seconds").unwrap_or(0);
                if let Some(grace) = grace {
                    if seconds < 0 || seconds > grace {
                        errs.push(invalid(&p, seconds, &format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})")));
                    }
                }
            }
        }
    }
    if count == 0 {
        errs.push(required(path, "must specify a handler type"));
    }
}

/// `ValidatePortNumOrName` for an int-or-string port.
fn port_num_or_name(port: &Value, path: &Path, errs: &mut Errs) {
    match port {
        Value::String(name) => {
            for msg in port_name(name) {
                errs.push(invalid(path, name.as_str(), &msg));
            }
        }
        other => {
            let n = other.as_i64().unwrap_or(0);
            for msg in port_number(n) {
                errs.push(invalid(path, n, &msg));
            }
        }
    }
}

fn id_range(v: &Value, key: &str, path: &Path, errs: &mut Errs) {
    if let Some(id) = int_of(v, key) {
        if !(0..=0xffff_ffff).contains(&id) {
            errs.push(invalid(
                &path.child(key),
                id,
                &inclusive_range_error(0, 0xffff_ffff),
            ));
        }
    }
}

fn seccomp_profile(profile: &Value, path: &Path, errs: &mut Errs) {
    if profile.is_null() {
        return;
    }
    let kind = str_of(profile, "type");
    match kind {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(required(
            &path.child("type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    match (kind, opt_str(profile, "localhostProfile")) {
        ("Localhost", None) => errs.push(required(
            &path.child("localhostProfile"),
            "must be set when seccomp type is Localhost",
        )),
        ("Localhost", Some(p)) => local_descending_path(p, &path.child("localhostProfile"), errs),
        (_, Some(_)) => errs.push(invalid(
            &path.child("localhostProfile"),
            profile.clone(),
            "can only be set when seccomp type is Localhost",
        )),
        _ => {}
    }
}

fn app_armor_profile(profile: &Value, path: &Path, errs: &mut Errs) {
    if profile.is_null() {
        return;
    }
    let localhost = opt_str(profile, "localhostProfile");
    match str_of(profile, "type") {
        "Localhost" => match localhost {
            None => errs.push(required(
                &path.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(p) if p.trim() != p => errs.push(invalid(
                &path.child("localhostProfile"),
                p,
                "must not be padded with whitespace",
            )),
            Some("") => errs.push(required(
                &path.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(p) if p.len() > 4095 => errs.push(too_long(&path.child("localhostProfile"), 4095)),
            Some(_) => {}
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(p) = localhost {
                errs.push(invalid(
                    &path.child("localhostProfile"),
                    p,
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => errs.push(required(
            &path.child("type"),
            "type is required when appArmorProfile is set",
        )),
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

/// Container `securityContext` (`ValidateSecurityContext`).
fn validate_security_context(sc: &Value, path: &Path, errs: &mut Errs) {
    if sc.is_null() {
        return;
    }
    id_range(sc, "runAsUser", path, errs);
    id_range(sc, "runAsGroup", path, errs);
    if let Some(proc_mount) = opt_str(sc, "procMount") {
        if proc_mount != "Default" && proc_mount != "Unmasked" {
            errs.push(not_supported(
                &path.child("procMount"),
                proc_mount,
                &["Default", "Unmasked"],
            ));
        }
    }
    seccomp_profile(
        get(sc, "seccompProfile"),
        &path.child("seccompProfile"),
        errs,
    );
    if get(sc, "allowPrivilegeEscalation") == &Value::Bool(false) {
        if is_true(sc, "privileged") {
            errs.push(invalid(
                path,
                sc.clone(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if strings(get(sc, "capabilities"), "add").contains(&"CAP_SYS_ADMIN") {
            errs.push(invalid(path, sc.clone(), "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"));
        }
    }
    app_armor_profile(
        get(sc, "appArmorProfile"),
        &path.child("appArmorProfile"),
        errs,
    );
}

/// Pod `securityContext`; in v1 a few of its internal fields live on the spec itself.
fn validate_pod_security_context(spec: &Value, path: &Path, errs: &mut Errs) {
    let sc = get(spec, "securityContext");
    if sc.is_null() {
        return;
    }
    for field in ["fsGroup", "runAsUser", "runAsGroup"] {
        id_range(sc, field, path, errs);
    }
    for (i, gid) in items(sc, "supplementalGroups").iter().enumerate() {
        let gid = gid.as_i64().unwrap_or(0);
        if !(0..=0xffff_ffff).contains(&gid) {
            errs.push(invalid(
                &path.child("supplementalGroups").index(i),
                gid,
                &inclusive_range_error(0, 0xffff_ffff),
            ));
        }
    }
    if is_true(spec, "shareProcessNamespace") && is_true(spec, "hostPID") {
        errs.push(invalid(
            &path.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut sysctls = HashSet::new();
    for (i, sysctl) in items(sc, "sysctls").iter().enumerate() {
        let p = path.child("sysctls").index(i).child("name");
        let name = str_of(sysctl, "name");
        if name.is_empty() {
            errs.push(required(&p, ""));
        } else if !is_sysctl_name(name) {
            errs.push(invalid(&p, name, "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"));
        } else if sysctls.contains(name) {
            errs.push(duplicate(&p, name));
        }
        if is_true(spec, "hostNetwork") && (name.starts_with("net.") || name.starts_with("net/")) {
            errs.push(invalid(
                &p,
                name,
                "may not be specified when 'hostNetwork' is true",
            ));
        } else if is_true(spec, "hostIPC")
            && (name.starts_with("kernel.shm")
                || name.starts_with("kernel.msg")
                || name.starts_with("kernel.sem")
                || name.starts_with("fs.mqueue."))
        {
            errs.push(invalid(
                &p,
                name,
                "may not be specified when 'hostIPC' is true",
            ));
        }
        sysctls.insert(name);
    }
    for (field, valid) in [
        ("fsGroupChangePolicy", &["Always", "OnRootMismatch"][..]),
        ("supplementalGroupsPolicy", &["Merge", "Strict"][..]),
        ("seLinuxChangePolicy", &["MountOption", "Recursive"][..]),
    ] {
        if let Some(value) = opt_str(sc, field) {
            if !valid.contains(&value) {
                errs.push(not_supported(&path.child(field), value, valid));
            }
        }
    }
    seccomp_profile(
        get(sc, "seccompProfile"),
        &path.child("seccompProfile"),
        errs,
    );
    app_armor_profile(
        get(sc, "appArmorProfile"),
        &path.child("appArmorProfile"),
        errs,
    );
}

/// `IsValidSysctlName`: dot- or slash-separated segments, at most 253 bytes.
fn is_sysctl_name(name: &str) -> bool {
    name.len() <= 253
        && name.split(['.', '/']).all(|seg| {
            let b = seg.as_bytes();
            let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            b.first().is_some_and(edge)
                && b.last().is_some_and(edge)
                && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
        })
}

fn validate_tolerations(tolerations: &[Value], path: &Path, errs: &mut Errs) {
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let (key, operator, effect) =
            (str_of(t, "key"), str_of(t, "operator"), str_of(t, "effect"));
        if !key.is_empty() {
            check_qualified(&p.child("key"), key, errs);
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(invalid(
                &p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if is_set(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.push(invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = str_of(t, "value");
        match operator {
            "Equal" | "" => {
                let msgs = label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid(&p.child("operator"), value, &msgs.join(";")));
                }
            }
            "Exists" if !value.is_empty() => {
                errs.push(invalid(
                    &p.child("operator"),
                    value,
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
            "Exists" => {}
            other => errs.push(not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            taint_effect(effect, &p.child("effect"), errs);
        }
    }
}

fn taint_effect(effect: &str, path: &Path, errs: &mut Errs) {
    let valid = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
    if !valid.contains(&effect) {
        errs.push(not_supported(path, effect, &valid));
    }
}

fn validate_affinity(affinity: &Value, path: &Path, errs: &mut Errs) {
    if affinity.is_null() {
        return;
    }
    if let Some(node) = affinity.get("nodeAffinity").filter(|n| !n.is_null()) {
        let np = path.child("nodeAffinity");
        if let Some(required_terms) = node
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .filter(|r| !r.is_null())
        {
            node_selector(
                required_terms,
                false,
                &np.child("requiredDuringSchedulingIgnoredDuringExecution"),
                errs,
            );
        }
        for (i, term) in items(node, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let p = np
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            weight(term, &p, errs);
            node_selector_term(get(term, "preference"), true, &p.child("preference"), errs);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pod) = affinity.get(kind).filter(|n| !n.is_null()) else {
            continue;
        };
        let kp = path.child(kind);
        for (i, term) in items(pod, "requiredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            pod_affinity_term(
                term,
                &kp.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
                errs,
            );
        }
        for (i, term) in items(pod, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let p = kp
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            weight(term, &p, errs);
            pod_affinity_term(
                get(term, "podAffinityTerm"),
                &p.child("podAffinityTerm"),
                errs,
            );
        }
    }
}

fn weight(term: &Value, path: &Path, errs: &mut Errs) {
    let w = int_of(term, "weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        errs.push(invalid(
            &path.child("weight"),
            w,
            "must be in the range 1-100",
        ));
    }
}

fn node_selector(sel: &Value, allow_invalid_values: bool, path: &Path, errs: &mut Errs) {
    let terms = items(sel, "nodeSelectorTerms");
    let tp = path.child("nodeSelectorTerms");
    if terms.is_empty() {
        errs.push(required(&tp, "must have at least one node selector term"));
        return;
    }
    for (i, term) in terms.iter().enumerate() {
        node_selector_term(term, allow_invalid_values, &tp.index(i), errs);
    }
}

fn node_selector_term(term: &Value, allow_invalid_values: bool, path: &Path, errs: &mut Errs) {
    for (j, req) in items(term, "matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let values = strings(req, "values");
        match str_of(req, "operator") {
            "In" | "NotIn" if values.is_empty() => errs.push(required(
                &p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Gt" | "Lt" if values.len() != 1 => errs.push(required(
                &p.child("values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            other => errs.push(invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        check_qualified(&p.child("key"), str_of(req, "key"), errs);
        if !allow_invalid_values {
            for (k, value) in values.iter().enumerate() {
                for msg in label_value(value) {
                    errs.push(invalid(&p.child("values").index(k), *value, &msg));
                }
            }
        }
    }
    for (j, req) in items(term, "matchFields").iter().enumerate() {
        let p = path.child("matchFields").index(j);
        let values = strings(req, "values");
        match str_of(req, "operator") {
            "In" | "NotIn" if values.len() != 1 => errs.push(required(
                &p.child("values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            )),
            "In" | "NotIn" => {}
            other => errs.push(invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        if str_of(req, "key") != "metadata.name" {
            errs.push(invalid(
                &p.child("key"),
                str_of(req, "key"),
                "not a valid field selector key",
            ));
        } else {
            for (k, value) in values.iter().enumerate() {
                check_name(
                    NameRule::Subdomain,
                    &p.child("values").index(k),
                    value,
                    errs,
                );
            }
        }
    }
}

fn pod_affinity_term(term: &Value, path: &Path, errs: &mut Errs) {
    validate_label_selector(
        get(term, "labelSelector"),
        &path.child("labelSelector"),
        errs,
    );
    validate_label_selector(
        get(term, "namespaceSelector"),
        &path.child("namespaceSelector"),
        errs,
    );
    for ns in strings(term, "namespaces") {
        check_label(&path.child("namespace"), ns, errs);
    }
    let selector = get(term, "labelSelector");
    for field in ["matchLabelKeys", "mismatchLabelKeys"] {
        let keys = strings(term, field);
        if keys.is_empty() {
            continue;
        }
        if selector.is_null() {
            errs.push(forbidden(
                &path.child(field),
                "must not be specified when labelSelector is not set",
            ));
            continue;
        }
        for (i, key) in keys.iter().enumerate() {
            check_qualified(&path.child(field).index(i), key, errs);
        }
    }
    let mismatch = strings(term, "mismatchLabelKeys");
    for (i, key) in strings(term, "matchLabelKeys").iter().enumerate() {
        if mismatch.contains(key) {
            errs.push(invalid(
                &path.child("matchLabelKeys").index(i),
                *key,
                "exists in both matchLabelKeys and mismatchLabelKeys",
            ));
        }
    }
    let topology_key = str_of(term, "topologyKey");
    if topology_key.is_empty() {
        errs.push(required(&path.child("topologyKey"), "can not be empty"));
    }
    check_qualified(&path.child("topologyKey"), topology_key, errs);
}

fn validate_dns_config(spec: &Value, path: &Path, errs: &mut Errs) {
    let config = get(spec, "dnsConfig");
    if str_of(spec, "dnsPolicy") == "None" {
        if config.is_null() {
            errs.push(required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if items(config, "nameservers").is_empty() {
            errs.push(required(
                &path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    if config.is_null() {
        return;
    }
    let nameservers = items(config, "nameservers");
    if nameservers.len() > 3 {
        errs.push(invalid(
            &path.child("nameservers"),
            get(config, "nameservers").clone(),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        valid_ip(
            &path.child("nameservers").index(i),
            ns.as_str().unwrap_or_default(),
            errs,
        );
    }
    let searches = strings(config, "searches");
    if searches.len() > 32 {
        errs.push(invalid(
            &path.child("searches"),
            get(config, "searches").clone(),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(invalid(
            &path.child("searches"),
            get(config, "searches").clone(),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        if *search != "." {
            let trimmed = search.strip_suffix('.').unwrap_or(search);
            for msg in dns1123_subdomain_with_underscore(trimmed) {
                errs.push(invalid(&path.child("searches").index(i), trimmed, &msg));
            }
        }
    }
    for (i, option) in items(config, "options").iter().enumerate() {
        if str_of(option, "name").is_empty() {
            errs.push(required(
                &path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}

fn validate_topology_spread(constraints: &[Value], path: &Path, errs: &mut Errs) {
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        let max_skew = int_of(c, "maxSkew").unwrap_or(0);
        if max_skew <= 0 {
            errs.push(invalid(
                &p.child("maxSkew"),
                max_skew,
                "must be greater than zero",
            ));
        }
        if str_of(c, "topologyKey").is_empty() {
            errs.push(required(&p.child("topologyKey"), "can not be empty"));
        }
        let action = str_of(c, "whenUnsatisfiable");
        if action != "DoNotSchedule" && action != "ScheduleAnyway" {
            errs.push(not_supported(
                &p.child("whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        let repeated = constraints[i + 1..].iter().any(|o| {
            str_of(o, "topologyKey") == str_of(c, "topologyKey")
                && str_of(o, "whenUnsatisfiable") == action
        });
        if repeated {
            errs.push(duplicate(
                &p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{}, {action}}}", str_of(c, "topologyKey")),
            ));
        }
        if let Some(min_domains) = int_of(c, "minDomains") {
            if min_domains <= 0 {
                errs.push(invalid(
                    &p.child("minDomains"),
                    min_domains,
                    "must be greater than zero",
                ));
            }
            if action != "DoNotSchedule" {
                errs.push(invalid(
                    &p.child("minDomains"),
                    min_domains,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                    ),
                ));
            }
        }
        for field in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(policy) = opt_str(c, field) {
                if policy != "Honor" && policy != "Ignore" {
                    errs.push(not_supported(&p.child(field), policy, &["Honor", "Ignore"]));
                }
            }
        }
        let selector = get(c, "labelSelector");
        let keys = strings(c, "matchLabelKeys");
        if !keys.is_empty() && selector.is_null() {
            errs.push(forbidden(
                &p.child("matchLabelKeys"),
                "must not be specified when labelSelector is not set",
            ));
        }
        let selector_keys: HashSet<&str> = map_of(selector, "matchLabels")
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
            .chain(
                items(selector, "matchExpressions")
                    .iter()
                    .map(|e| str_of(e, "key")),
            )
            .collect();
        for (j, key) in keys.iter().enumerate() {
            let kp = p.child("matchLabelKeys").index(j);
            check_qualified(&kp, key, errs);
            if selector_keys.contains(key) {
                errs.push(invalid(
                    &kp,
                    *key,
                    "exists in both matchLabelKeys and labelSelector",
                ));
            }
        }
        validate_label_selector(selector, &p.child("labelSelector"), errs);
    }
}

/// `ValidatePodTemplateSpec` for a template at `path` (`spec.template`).
fn validate_pod_template(template: &Value, path: &Path, errs: &mut Errs) {
    validate_template_meta(template, path, errs);
    let annotations = get(get(template, "metadata"), "annotations");
    pod_specific_annotations(
        annotations,
        get(template, "spec"),
        &path.child("annotations"),
        errs,
    );
    let spec = get(template, "spec");
    validate_pod_spec(
        spec,
        &path.child("spec"),
        PodContext {
            is_pod: false,
            pod_name: "",
        },
        errs,
    );
    if !items(spec, "ephemeralContainers").is_empty() {
        errs.push(forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

fn pod_specific_annotations(annotations: &Value, spec: &Value, path: &Path, errs: &mut Errs) {
    if let Some(mirror) = opt_str(annotations, "kubernetes.io/config.mirror") {
        if str_of(spec, "nodeName").is_empty() {
            errs.push(invalid(
                &path.key("kubernetes.io/config.mirror"),
                mirror,
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
    }
    if let Some(cost) = opt_str(annotations, "controller.kubernetes.io/pod-deletion-cost") {
        if cost.parse::<i32>().is_err() {
            errs.push(invalid(
                &path.key("controller.kubernetes.io/pod-deletion-cost"),
                cost,
                "must be a 32bit integer",
            ));
        }
    }
}

fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    let ctx = PodContext {
        is_pod: true,
        pod_name: str_of(get(obj, "metadata"), "name"),
    };
    pod_specific_annotations(
        get(get(obj, "metadata"), "annotations"),
        spec,
        &Path::new("metadata.annotations"),
        errs,
    );
    if old.is_none_or(|old| !semantic_eq(spec, get(old, "spec"))) {
        validate_pod_spec(spec, &sp, ctx, errs);
        for list in ["containers", "initContainers"] {
            for (i, c) in items(spec, list).iter().enumerate() {
                let image = str_of(c, "image");
                if image.trim() != image {
                    errs.push(invalid(
                        &sp.child(list).index(i).child("image"),
                        image,
                        "must not have leading or trailing whitespace",
                    ));
                }
            }
        }
    }
    let Some(old) = old else {
        if !items(spec, "ephemeralContainers").is_empty() {
            errs.push(forbidden(
                &sp.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
        if !str_of(spec, "nodeName").is_empty() && !items(spec, "schedulingGates").is_empty() {
            errs.push(forbidden(
                &sp.child("nodeName"),
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
        return;
    };
    validate_pod_update(obj, old, errs);
}

/// `ValidatePodUpdate`: a pod's spec is fixed once created but for images, a shorter
/// deadline, added tolerations and removed scheduling gates.
fn validate_pod_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (spec, old_spec) = (get(new, "spec"), get(old, "spec"));
    let sp = Path::new("spec");
    let mirror = "kubernetes.io/config.mirror";
    let (ann, old_ann) = (
        get(get(new, "metadata"), "annotations"),
        get(get(old, "metadata"), "annotations"),
    );
    match (opt_str(ann, mirror), opt_str(old_ann, mirror)) {
        (Some(_), None) => errs.push(forbidden(
            &Path::new("metadata.annotations").key(mirror),
            "may not add mirror pod annotation",
        )),
        (n, Some(o)) if n != Some(o) => errs.push(forbidden(
            &Path::new("metadata.annotations").key(mirror),
            "may not remove or update mirror pod annotation",
        )),
        _ => {}
    }
    for list in ["containers", "initContainers"] {
        let (now, before) = (items(spec, list), items(old_spec, list));
        if now.len() != before.len() {
            errs.push(forbidden(
                &sp.child(list),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in now.iter().enumerate() {
            if str_of(c, "image").is_empty() {
                errs.push(required(&sp.child(list).index(i).child("image"), ""));
            }
        }
    }
    match (
        int_of(spec, "activeDeadlineSeconds"),
        int_of(old_spec, "activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(invalid(
                &sp.child("activeDeadlineSeconds"),
                n,
                &inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid(
                &sp.child("activeDeadlineSeconds"),
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(invalid(
            &sp.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    let tolerations = items(spec, "tolerations");
    let kept = items(old_spec, "tolerations").iter().all(|o| {
        tolerations.iter().any(|n| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.insert(
                    "tolerationSeconds".into(),
                    get(n, "tolerationSeconds").clone(),
                );
            }
            semantic_eq(&o, n)
        })
    });
    if !kept {
        errs.push(forbidden(
            &sp.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    let old_gates: Vec<&str> = items(old_spec, "schedulingGates")
        .iter()
        .map(|g| str_of(g, "name"))
        .collect();
    for (i, gate) in items(spec, "schedulingGates").iter().enumerate() {
        let name = str_of(gate, "name");
        if !old_gates.contains(&name) {
            errs.push(forbidden(
                &sp.child("schedulingGates").index(i).child("name"),
                &format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    // Compare with every updatable field put back to its old value.
    let mut munged = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(containers) = munged.get_mut(list).and_then(Value::as_array_mut) {
            for (c, o) in containers.iter_mut().zip(items(old_spec, list)) {
                c["image"] = get(o, "image").clone();
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        for field in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            m.insert(field.into(), get(old_spec, field).clone());
        }
        let old_grace = int_of(old_spec, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0)
            && int_of(spec, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert(
                "terminationGracePeriodSeconds".into(),
                get(old_spec, "terminationGracePeriodSeconds").clone(),
            );
        }
        // Gated pods may still gain node selectors and node affinity before scheduling.
        if !old_gates.is_empty() {
            let old_selector = map_of(old_spec, "nodeSelector");
            let new_selector = map_of(spec, "nodeSelector");
            let only_added = old_selector
                .into_iter()
                .flatten()
                .all(|(k, v)| new_selector.and_then(|n| n.get(k)) == Some(v));
            if !only_added {
                errs.push(invalid(
                    &sp.child("nodeSelector"),
                    get(spec, "nodeSelector").clone(),
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                ));
            }
            m.insert("nodeSelector".into(), get(old_spec, "nodeSelector").clone());
            let mut affinity = get(spec, "affinity").clone();
            if let Some(a) = affinity.as_object_mut() {
                a.insert(
                    "nodeAffinity".into(),
                    get(get(old_spec, "affinity"), "nodeAffinity").clone(),
                );
            }
            m.insert("affinity".into(), affinity);
        }
    }
    if !semantic_eq(&munged, old_spec) {
        let mut diff = Vec::new();
        diff_lines(old_spec, &munged, "spec", &mut diff);
        errs.push(forbidden(
            &sp,
            &format!(
                "pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n{}",
                diff.join("\n")
            ),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Workloads

/// The selector rules shared by ReplicaSets, Deployments and StatefulSets; returns how the
/// selector relates to the template's labels.
fn workload_selector(spec: &Value, kind: &str, path: &Path, errs: &mut Errs) -> SelectorMatch {
    let sel = get(spec, "selector");
    let sp = path.child("selector");
    if sel.is_null() {
        errs.push(required(&sp, ""));
    } else {
        validate_label_selector(sel, &sp, errs);
        if selector_is_empty(sel) {
            errs.push(invalid(
                &sp,
                sel.clone(),
                &format!("empty selector is invalid for {kind}"),
            ));
        }
    }
    selector_match(sel, get(get(get(spec, "template"), "metadata"), "labels"))
}

fn template_labels_mismatch(spec: &Value, path: &Path, errs: &mut Errs) {
    errs.push(invalid(
        &path.child("template.metadata.labels"),
        get(get(get(spec, "template"), "metadata"), "labels").clone(),
        "`selector` does not match template `labels`",
    ));
}

/// `ValidatePodTemplateSpecForReplicaSet` and friends: restart policy Always, no deadline.
fn long_running_template(spec: &Value, kind: &str, path: &Path, errs: &mut Errs) {
    let template_spec = get(get(spec, "template"), "spec");
    let restart = str_of(template_spec, "restartPolicy");
    if restart != "Always" {
        errs.push(not_supported(
            &path.child("template.spec.restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if is_set(template_spec, "activeDeadlineSeconds") {
        errs.push(forbidden(
            &path.child("template.spec.activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// ReplicaSets and Deployments: replicas, selector, and a template the selector matches.
/// Kubernetes words both "empty selector is invalid for deployment" and speaks of ReplicaSets
/// in the deadline message, for either kind.
fn replica_set_like(spec: &Value, path: &Path, errs: &mut Errs) {
    match workload_selector(spec, "deployment", path, errs) {
        SelectorMatch::Unusable => errs.push(invalid(
            &path.child("selector"),
            get(spec, "selector").clone(),
            "invalid label selector",
        )),
        m => {
            if let SelectorMatch::Matches(false) = m {
                template_labels_mismatch(spec, path, errs);
            }
            validate_pod_template(get(spec, "template"), &path.child("template"), errs);
            long_running_template(spec, "ReplicaSet", path, errs);
        }
    }
}

fn validate_replica_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    if spec_changed(obj, old) {
        non_negative(spec, "replicas", &sp, errs);
        non_negative(spec, "minReadySeconds", &sp, errs);
        replica_set_like(spec, &sp, errs);
    }
    if let Some(old) = old {
        immutable(
            get(spec, "selector"),
            get(get(old, "spec"), "selector"),
            &sp.child("selector"),
            errs,
        );
    }
}

fn validate_deployment(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    if spec_changed(obj, old) {
        non_negative(spec, "replicas", &sp, errs);
        replica_set_like(spec, &sp, errs);
        let strategy = get(spec, "strategy");
        let stp = sp.child("strategy");
        match str_of(strategy, "type") {
            "Recreate" => {
                if is_set(strategy, "rollingUpdate") {
                    errs.push(forbidden(
                        &stp.child("rollingUpdate"),
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => match strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
                None => errs.push(required(
                    &stp.child("rollingUpdate"),
                    "this should be defaulted and never be nil",
                )),
                Some(rolling) => {
                    let rp = stp.child("rollingUpdate");
                    let (unavailable, surge) =
                        (get(rolling, "maxUnavailable"), get(rolling, "maxSurge"));
                    positive_int_or_percent(unavailable, &rp.child("maxUnavailable"), errs);
                    positive_int_or_percent(surge, &rp.child("maxSurge"), errs);
                    if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
                        errs.push(invalid(
                            &rp.child("maxUnavailable"),
                            unavailable.clone(),
                            "may not be 0 when `maxSurge` is 0",
                        ));
                    }
                    not_more_than_100_percent(unavailable, &rp.child("maxUnavailable"), errs);
                }
            },
            _ => errs.push(not_supported(
                &stp,
                strategy.clone(),
                &["Recreate", "RollingUpdate"],
            )),
        }
        non_negative(spec, "minReadySeconds", &sp, errs);
        non_negative(spec, "revisionHistoryLimit", &sp, errs);
        if let Some(deadline) = int_of(spec, "progressDeadlineSeconds") {
            non_negative(spec, "progressDeadlineSeconds", &sp, errs);
            if deadline <= int_of(spec, "minReadySeconds").unwrap_or(0) {
                errs.push(invalid(
                    &sp.child("progressDeadlineSeconds"),
                    deadline,
                    "must be greater than minReadySeconds",
                ));
            }
        }
    }
    if let Some(old) = old {
        immutable(
            get(spec, "selector"),
            get(get(old, "spec"), "selector"),
            &sp.child("selector"),
            errs,
        );
    }
}

fn int_or_percent_value(v: &Value) -> i64 {
    match v {
        Value::String(s) => percent(s).unwrap_or(0),
        other => other.as_i64().unwrap_or(0),
    }
}

/// `ValidatePositiveIntOrPercent`.
fn positive_int_or_percent(v: &Value, path: &Path, errs: &mut Errs) {
    match v {
        Value::String(s) => {
            if let Err(msg) = percent(s) {
                errs.push(invalid(path, v.clone(), &msg));
            }
        }
        Value::Number(n) if n.as_i64().unwrap_or(0) < 0 => {
            errs.push(invalid(path, n.as_i64().unwrap_or(0), NEGATIVE));
        }
        _ => {}
    }
}

fn not_more_than_100_percent(v: &Value, path: &Path, errs: &mut Errs) {
    if let Value::String(s) = v {
        if percent(s).is_ok_and(|p| p > 100) {
            errs.push(invalid(path, v.clone(), "must not be greater than 100%"));
        }
    }
}

fn validate_daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    if spec_changed(obj, old) {
        let sel = get(spec, "selector");
        validate_label_selector(sel, &sp.child("selector"), errs);
        if let SelectorMatch::Matches(false) =
            selector_match(sel, get(get(get(spec, "template"), "metadata"), "labels"))
        {
            template_labels_mismatch(spec, &sp, errs);
        }
        if !sel.is_null() && selector_is_empty(sel) {
            errs.push(invalid(
                &sp.child("selector"),
                sel.clone(),
                "empty selector is invalid for daemonset",
            ));
        }
        validate_pod_template(get(spec, "template"), &sp.child("template"), errs);
        long_running_template(spec, "DaemonSet", &sp, errs);
        non_negative(spec, "minReadySeconds", &sp, errs);
        let strategy = get(spec, "updateStrategy");
        let stp = sp.child("updateStrategy");
        match str_of(strategy, "type") {
            "OnDelete" => {}
            "RollingUpdate" => match strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
                None => errs.push(required(&stp.child("rollingUpdate"), "")),
                Some(rolling) => {
                    let rp = stp.child("rollingUpdate");
                    let (unavailable, surge) =
                        (get(rolling, "maxUnavailable"), get(rolling, "maxSurge"));
                    positive_int_or_percent(unavailable, &rp.child("maxUnavailable"), errs);
                    positive_int_or_percent(surge, &rp.child("maxSurge"), errs);
                    not_more_than_100_percent(unavailable, &rp.child("maxUnavailable"), errs);
                    not_more_than_100_percent(surge, &rp.child("maxSurge"), errs);
                    match (
                        int_or_percent_value(unavailable) != 0,
                        int_or_percent_value(surge) != 0,
                    ) {
                        (true, true) => errs.push(invalid(
                            &rp.child("maxSurge"),
                            surge.clone(),
                            "may not be set when maxUnavailable is non-zero",
                        )),
                        (false, false) => errs.push(required(
                            &rp.child("maxUnavailable"),
                            "cannot be 0 when maxSurge is 0",
                        )),
                        _ => {}
                    }
                }
            },
            _ => errs.push(not_supported(
                &stp,
                strategy.clone(),
                &["RollingUpdate", "OnDelete"],
            )),
        }
        non_negative(spec, "revisionHistoryLimit", &sp, errs);
    }
    if let Some(old) = old {
        immutable(
            get(spec, "selector"),
            get(get(old, "spec"), "selector"),
            &sp.child("selector"),
            errs,
        );
    }
}

/// StatefulSets: Kubernetes checks only the template's labels and annotations, not its pod spec;
/// the controller's pod creation reports the rest.
fn validate_stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    if spec_changed(obj, old) {
        match str_of(spec, "podManagementPolicy") {
            "" => errs.push(required(&sp.child("podManagementPolicy"), "")),
            "OrderedReady" | "Parallel" => {}
            other => errs.push(invalid(
                &sp.child("podManagementPolicy"),
                other,
                "must be 'OrderedReady' or 'Parallel'",
            )),
        }
        let strategy = get(spec, "updateStrategy");
        let stp = sp.child("updateStrategy");
        match str_of(strategy, "type") {
            "" => errs.push(required(&stp, "")),
            "OnDelete" => {
                if let Some(rolling) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
                    errs.push(invalid(
                        &stp.child("rollingUpdate"),
                        rolling.clone(),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(rolling) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
                    let rp = stp.child("rollingUpdate");
                    non_negative(rolling, "partition", &rp, errs);
                    if let Some(unavailable) =
                        rolling.get("maxUnavailable").filter(|u| !u.is_null())
                    {
                        let up = rp.child("maxUnavailable");
                        positive_int_or_percent(unavailable, &up, errs);
                        if int_or_percent_value(unavailable) == 0 {
                            errs.push(invalid(&up, unavailable.clone(), "cannot be 0"));
                        }
                        not_more_than_100_percent(unavailable, &up, errs);
                    }
                }
            }
            _ => errs.push(invalid(
                &stp,
                strategy.clone(),
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
        let retention = get(spec, "persistentVolumeClaimRetentionPolicy");
        for field in ["whenDeleted", "whenScaled"] {
            if let Some(policy) = opt_str(retention, field) {
                if policy != "Retain" && policy != "Delete" {
                    errs.push(not_supported(
                        &sp.child("persistentVolumeClaimRetentionPolicy")
                            .child(field),
                        policy,
                        &["Retain", "Delete"],
                    ));
                }
            }
        }
        non_negative(spec, "replicas", &sp, errs);
        non_negative(spec, "minReadySeconds", &sp, errs);
        if let Some(start) = int_of(get(spec, "ordinals"), "start") {
            if start < 0 {
                errs.push(invalid(&sp.child("ordinals.start"), start, NEGATIVE));
            }
        }
        match workload_selector(spec, "statefulset", &sp, errs) {
            SelectorMatch::Unusable => errs.push(invalid(
                &sp.child("selector"),
                get(spec, "selector").clone(),
                "",
            )),
            m => {
                if let SelectorMatch::Matches(false) = m {
                    template_labels_mismatch(spec, &sp, errs);
                }
                let template = get(spec, "template");
                let tp = sp.child("template");
                validate_template_meta(template, &tp, errs);
                pod_specific_annotations(
                    get(get(template, "metadata"), "annotations"),
                    get(template, "spec"),
                    &tp.child("annotations"),
                    errs,
                );
            }
        }
        let template_spec = get(get(spec, "template"), "spec");
        let restart = str_of(template_spec, "restartPolicy");
        if restart != "Always" {
            errs.push(not_supported(
                &sp.child("template.spec.restartPolicy"),
                restart,
                &["Always"],
            ));
        }
        if is_set(template_spec, "activeDeadlineSeconds") {
            errs.push(forbidden(
                &sp.child("template.spec.activeDeadlineSeconds"),
                "activeDeadlineSeconds in StatefulSet is not Supported",
            ));
        }
    }
    if let Some(old) = old {
        let old_spec = get(old, "spec");
        let mut clone = spec.clone();
        if let Some(m) = clone.as_object_mut() {
            for field in [
                "replicas",
                "template",
                "updateStrategy",
                "minReadySeconds",
                "ordinals",
                "persistentVolumeClaimRetentionPolicy",
            ] {
                m.insert(field.into(), get(old_spec, field).clone());
            }
        }
        if !semantic_eq(&clone, old_spec) {
            errs.push(forbidden(
                &sp,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

fn validate_controller_revision(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if !is_set(obj, "data") {
        errs.push(required(&Path::new("data"), "data is mandatory"));
    }
    non_negative(obj, "revision", &Path::new(""), errs);
    if let Some(old) = old {
        immutable(get(obj, "data"), get(old, "data"), &Path::new("data"), errs);
    }
}

// ---------------------------------------------------------------------------------------
// Jobs and CronJobs

const MAX_PARALLELISM_INDEXED: i64 = 100_000;
const MAX_FAILED_INDEXES: i64 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i64 = 100_000;
const HIGH_COMPLETIONS_LIMIT: i64 = 10_000;

/// `validateJobSpec`: what a Job and a CronJob's job template have in common.
fn validate_job_spec(spec: &Value, path: &Path, errs: &mut Errs) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ] {
        non_negative(spec, field, path, errs);
    }
    let completions = int_of(spec, "completions");
    let parallelism = int_of(spec, "parallelism");
    let per_index = is_set(spec, "backoffLimitPerIndex");
    let max_failed = int_of(spec, "maxFailedIndexes");
    if max_failed.is_some() {
        non_negative(spec, "maxFailedIndexes", path, errs);
        if !per_index {
            errs.push(required(
                &path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(managed_by) = opt_str(spec, "managedBy") {
        domain_prefixed_path(&path.child("managedBy"), managed_by, errs);
        if managed_by.len() > 63 {
            errs.push(too_long(&path.child("managedBy"), 63));
        }
    }
    let mode = opt_str(spec, "completionMode");
    let indexed = mode == Some("Indexed");
    if let Some(mode) = mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(not_supported(
                &path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
    }
    if indexed {
        if completions.is_none() {
            errs.push(required(
                &path.child("completions"),
                "when completion mode is Indexed",
            ));
        }
        if let Some(p) = parallelism.filter(|p| *p > MAX_PARALLELISM_INDEXED) {
            errs.push(invalid(&path.child("parallelism"), p, &format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed")));
        }
        if let (Some(c), Some(m)) = (completions, max_failed) {
            if m > c {
                errs.push(invalid(
                    &path.child("maxFailedIndexes"),
                    m,
                    "must be less than or equal to completions",
                ));
            }
        }
        if let Some(m) = max_failed.filter(|m| *m > MAX_FAILED_INDEXES) {
            errs.push(invalid(
                &path.child("maxFailedIndexes"),
                m,
                &format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
            ));
        }
        if completions.is_some_and(|c| c > COMPLETIONS_SOFT_LIMIT) && per_index {
            if max_failed.is_none() {
                errs.push(required(
                    &path.child("maxFailedIndexes"),
                    &format!(
                        "must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"
                    ),
                ));
            }
            if let Some(p) = parallelism.filter(|p| *p > HIGH_COMPLETIONS_LIMIT) {
                errs.push(invalid(&path.child("parallelism"), p, &format!("must be less than or equal to {HIGH_COMPLETIONS_LIMIT} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index")));
            }
            if let Some(m) = max_failed.filter(|m| *m > HIGH_COMPLETIONS_LIMIT) {
                errs.push(invalid(&path.child("maxFailedIndexes"), m, &format!("must be less than or equal to {HIGH_COMPLETIONS_LIMIT} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index")));
            }
        }
    } else {
        if let Some(b) = int_of(spec, "backoffLimitPerIndex") {
            errs.push(invalid(
                &path.child("backoffLimitPerIndex"),
                b,
                "requires indexed completion mode",
            ));
        }
        if let Some(m) = max_failed {
            errs.push(invalid(
                &path.child("maxFailedIndexes"),
                m,
                "requires indexed completion mode",
            ));
        }
    }
    let failure_policy = get(spec, "podFailurePolicy");
    if !failure_policy.is_null() {
        validate_pod_failure_policy(spec, &path.child("podFailurePolicy"), errs);
    }
    if let Some(success) = spec.get("successPolicy").filter(|s| !s.is_null()) {
        let sp = path.child("successPolicy");
        if !indexed {
            errs.push(invalid(
                &sp,
                success.clone(),
                "requires indexed completion mode",
            ));
        } else {
            let rules = items(success, "rules");
            if rules.is_empty() {
                errs.push(required(
                    &sp.child("rules"),
                    "at least one rules must be specified when the successPolicy is specified",
                ));
            }
            if rules.len() > 20 {
                errs.push(too_many(&sp.child("rules"), rules.len(), 20));
            }
            for (i, rule) in rules.iter().enumerate() {
                let rp = sp.child("rules").index(i);
                if !is_set(rule, "succeededCount") && !is_set(rule, "succeededIndexes") {
                    errs.push(required(
                        &rp,
                        "at least one of succeededCount or succeededIndexes must be specified",
                    ));
                }
                if let Some(count) = int_of(rule, "succeededCount") {
                    non_negative(rule, "succeededCount", &rp, errs);
                    if let Some(c) = completions.filter(|c| count > *c) {
                        errs.push(invalid(&rp.child("succeededCount"), count, &format!("must be less than or equal to {c} (the number of specified completions)")));
                    }
                }
            }
        }
    }
    if let Some(policy) = opt_str(spec, "podReplacementPolicy") {
        let p = path.child("podReplacementPolicy");
        if !failure_policy.is_null() {
            if policy != "Failed" {
                errs.push(not_supported(&p, policy, &["Failed"]));
            }
        } else if policy != "Failed" && policy != "TerminatingOrFailed" {
            errs.push(not_supported(
                &p,
                policy,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    validate_pod_template(get(spec, "template"), &path.child("template"), errs);
    let restart = str_of(get(get(spec, "template"), "spec"), "restartPolicy");
    let rp = path.child("template.spec.restartPolicy");
    match restart {
        "Always" | "" => errs.push(required(&rp, "valid values: \"OnFailure\", \"Never\"")),
        "OnFailure" | "Never" => {
            if !failure_policy.is_null() && restart != "Never" {
                errs.push(invalid(
                    &rp,
                    restart,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(not_supported(&rp, other, &["OnFailure", "Never"])),
    }
}

fn validate_pod_failure_policy(spec: &Value, path: &Path, errs: &mut Errs) {
    let rules = items(get(spec, "podFailurePolicy"), "rules");
    let rp = path.child("rules");
    if rules.len() > 20 {
        errs.push(too_many(&rp, rules.len(), 20));
    }
    let template_spec = get(get(spec, "template"), "spec");
    let containers: HashSet<&str> = items(template_spec, "containers")
        .iter()
        .chain(items(template_spec, "initContainers"))
        .map(|c| str_of(c, "name"))
        .collect();
    let actions = ["Count", "FailIndex", "FailJob", "Ignore"];
    for (i, rule) in rules.iter().enumerate() {
        let p = rp.index(i);
        match str_of(rule, "action") {
            "" => errs.push(required(
                &p.child("action"),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            )),
            "FailIndex" if !is_set(spec, "backoffLimitPerIndex") => {
                errs.push(invalid(
                    &p.child("action"),
                    "FailIndex",
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
            a if !actions.contains(&a) => errs.push(not_supported(&p.child("action"), a, &actions)),
            _ => {}
        }
        let on_exit = get(rule, "onExitCodes");
        let on_conditions = items(rule, "onPodConditions");
        if !on_exit.is_null() {
            let ep = p.child("onExitCodes");
            match str_of(on_exit, "operator") {
                "" => errs.push(required(
                    &ep.child("operator"),
                    "valid values: [\"In\" \"NotIn\"]",
                )),
                "In" | "NotIn" => {}
                other => errs.push(not_supported(
                    &ep.child("operator"),
                    other,
                    &["In", "NotIn"],
                )),
            }
            if let Some(name) = opt_str(on_exit, "containerName") {
                if !containers.contains(name) {
                    errs.push(invalid(
                        &ep.child("containerName"),
                        name,
                        "must be one of the container or initContainer names in the pod template",
                    ));
                }
            }
            let values: Vec<i64> = items(on_exit, "values")
                .iter()
                .filter_map(Value::as_i64)
                .collect();
            let vp = ep.child("values");
            if values.is_empty() {
                errs.push(invalid(
                    &vp,
                    get(on_exit, "values").clone(),
                    "at least one value is required",
                ));
            } else if values.len() > 255 {
                errs.push(too_many(&vp, values.len(), 255));
            }
            let mut seen = HashSet::new();
            for (j, v) in values.iter().enumerate() {
                if str_of(on_exit, "operator") == "In" && *v == 0 {
                    errs.push(invalid(
                        &vp.index(j),
                        *v,
                        "must not be 0 for the In operator",
                    ));
                }
                if !seen.insert(*v) {
                    errs.push(duplicate(&vp.index(j), *v));
                }
            }
            if values.windows(2).any(|w| w[0] > w[1]) {
                errs.push(invalid(
                    &vp,
                    get(on_exit, "values").clone(),
                    "must be ordered",
                ));
            }
        }
        if on_conditions.len() > 20 {
            errs.push(too_many(
                &p.child("onPodConditions"),
                on_conditions.len(),
                20,
            ));
        }
        for (j, pattern) in on_conditions.iter().enumerate() {
            let pp = p.child("onPodConditions").index(j);
            check_qualified(&pp.child("type"), str_of(pattern, "type"), errs);
            match str_of(pattern, "status") {
                "" => errs.push(required(
                    &pp.child("status"),
                    "valid values: [\"False\" \"True\" \"Unknown\"]",
                )),
                "False" | "True" | "Unknown" => {}
                other => errs.push(not_supported(
                    &pp.child("status"),
                    other,
                    &["False", "True", "Unknown"],
                )),
            }
        }
        match (on_exit.is_null(), on_conditions.is_empty()) {
            (false, false) => errs.push(field_error(
                ErrorType::Invalid,
                &p,
                None,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (true, true) => errs.push(field_error(
                ErrorType::Invalid,
                &p,
                None,
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
    }
}

/// Jobs. The registry generates the selector before validation unless `manualSelector` is set
/// (`registry/jobs.rs`); a selector must be valid and match the template.
fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    if spec_changed(obj, old) {
        validate_job_spec(spec, &sp, errs);
        let sel = get(spec, "selector");
        if sel.is_null() {
            if is_true(spec, "manualSelector") {
                errs.push(required(&sp.child("selector"), ""));
            }
        } else {
            validate_label_selector(sel, &sp.child("selector"), errs);
            if let SelectorMatch::Matches(false) =
                selector_match(sel, get(get(get(spec, "template"), "metadata"), "labels"))
            {
                template_labels_mismatch(spec, &sp, errs);
            }
        }
        let name = str_of(get(obj, "metadata"), "name");
        if let Some(c) = int_of(spec, "completions")
            .filter(|c| *c > 0 && opt_str(spec, "completionMode") == Some("Indexed"))
        {
            let hostname = format!("{name}-{}", c - 1);
            if !dns1123_label(&hostname).is_empty() {
                errs.push(invalid(
                    &Path::new("metadata.name"),
                    name,
                    &format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    }
    let Some(old) = old else { return };
    let old_spec = get(old, "spec");
    if opt_str(spec, "completionMode") == Some("Indexed") {
        // Indexed jobs may scale completions together with parallelism.
        let (c, o) = (get(spec, "completions"), get(old_spec, "completions"));
        if !semantic_eq(c, o) && !c.is_null() && c != get(spec, "parallelism") {
            errs.push(invalid(
                &sp.child("completions"),
                c.clone(),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    } else {
        immutable(
            get(spec, "completions"),
            get(old_spec, "completions"),
            &sp.child("completions"),
            errs,
        );
    }
    immutable(
        get(spec, "selector"),
        get(old_spec, "selector"),
        &sp.child("selector"),
        errs,
    );
    let mut old_template = get(old_spec, "template").clone();
    let template = get(spec, "template");
    // Suspended jobs that never started may change where their pods will run.
    if is_true(old_spec, "suspend") && !is_set(get(old, "status"), "startTime") {
        if let Some(t) = old_template.as_object_mut() {
            let new_meta = get(template, "metadata");
            let meta = t
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("labels".into(), get(new_meta, "labels").clone());
                meta.insert("annotations".into(), get(new_meta, "annotations").clone());
            }
            let new_spec = get(template, "spec");
            if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for field in ["nodeSelector", "tolerations", "schedulingGates"] {
                    s.insert(field.into(), get(new_spec, field).clone());
                }
                let mut affinity = s.get("affinity").cloned().unwrap_or(Value::Null);
                match (affinity.as_object_mut(), get(new_spec, "affinity")) {
                    (Some(a), new_affinity) => {
                        a.insert(
                            "nodeAffinity".into(),
                            get(new_affinity, "nodeAffinity").clone(),
                        );
                    }
                    (None, new_affinity) if !new_affinity.is_null() => {
                        affinity = serde_json::json!({ "nodeAffinity": get(new_affinity, "nodeAffinity") });
                    }
                    _ => {}
                }
                s.insert("affinity".into(), affinity);
            }
        }
    }
    immutable(template, &old_template, &sp.child("template"), errs);
    for field in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(
            get(spec, field),
            get(old_spec, field),
            &sp.child(field),
            errs,
        );
    }
}

fn validate_cron_job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let spec = get(obj, "spec");
    let old_spec = old.map(|o| get(o, "spec"));
    if old.is_none() {
        // The controller names each Job `<cronjob>-<11-digit timestamp>`.
        let name = str_of(get(obj, "metadata"), "name");
        if name.len() > 52 {
            errs.push(invalid(
                &Path::new("metadata.name"),
                name,
                &max_len_error(52),
            ));
        }
    }
    if !spec_changed(obj, old) {
        return;
    }
    let schedule = str_of(spec, "schedule");
    let time_zone = get(spec, "timeZone");
    if schedule.is_empty() {
        errs.push(required(&sp.child("schedule"), ""));
    } else {
        let schp = sp.child("schedule");
        if let Err(e) = parse_cron_schedule(schedule) {
            errs.push(invalid(&schp, schedule, &e));
        }
        let tz_allowed = old_spec.is_some_and(|o| str_of(o, "schedule").contains("TZ"));
        if tz_allowed && schedule.contains("TZ") && !time_zone.is_null() {
            errs.push(invalid(
                &schp,
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !tz_allowed && schedule.contains("TZ") {
            errs.push(invalid(
                &schp,
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    non_negative(spec, "startingDeadlineSeconds", &sp, errs);
    if old_spec.is_none_or(|o| get(o, "timeZone") != time_zone) {
        if let Value::String(tz) = time_zone {
            let tzp = sp.child("timeZone");
            if tz.is_empty() {
                errs.push(invalid(
                    &tzp,
                    tz.as_str(),
                    "timeZone must be nil or non-empty string",
                ));
            } else if let Err(e) = load_location(tz) {
                errs.push(invalid(&tzp, tz.as_str(), &e));
            } else if tz.eq_ignore_ascii_case("Local") {
                errs.push(invalid(&tzp, tz.as_str(), "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"));
            }
        }
    }
    match str_of(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required(&sp.child("concurrencyPolicy"), "")),
        other => errs.push(not_supported(
            &sp.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let template = get(spec, "jobTemplate");
    let jp = sp.child("jobTemplate.spec");
    let job_spec = get(template, "spec");
    validate_job_spec(job_spec, &jp, errs);
    if let Some(sel) = job_spec.get("selector").filter(|s| !s.is_null()) {
        errs.push(invalid(
            &jp.child("selector"),
            sel.clone(),
            "`selector` will be auto-generated",
        ));
    }
    if is_true(job_spec, "manualSelector") {
        errs.push(not_supported(
            &jp.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    non_negative(spec, "successfulJobsHistoryLimit", &sp, errs);
    non_negative(spec, "failedJobsHistoryLimit", &sp, errs);
}

/// Time zones: IANA names, checked against the zone database when this machine has one (the
/// API server embeds its own).
fn load_location(tz: &str) -> Result<(), String> {
    let unknown = || Err(format!("unknown time zone {tz}"));
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    };
    if !tz.split('/').all(part_ok) {
        return unknown();
    }
    let zoneinfo = std::path::Path::new("/usr/share/zoneinfo");
    if tz != "UTC" && tz != "Local" && zoneinfo.is_dir() && !zoneinfo.join(tz).is_file() {
        return unknown();
    }
    Ok(())
}

/// robfig/cron v3's standard parser (five fields or a descriptor), with its error texts.
fn parse_cron_schedule(spec: &str) -> Result<(), String> {
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let Some(space) = spec.find(' ') else {
            // Go slices up to index -1 here and panics; the API server reports the panic.
            return Err(format!(
                "failed to parse cronSpec: runtime error: slice bounds out of range [{}:-1]",
                eq + 1
            ));
        };
        let tz = spec.get(eq + 1..space).unwrap_or_default();
        load_location(tz).map_err(|e| format!("provided bad location {tz}: {e}"))?;
        spec = spec[space..].trim();
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match spec.strip_prefix("@every ") {
                Some(d) => parse_go_duration(d)
                    .map_err(|e| format!("failed to parse duration {spec}: {e}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u64, u64, &[&str], u64); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    for (field, (min, max, names, first)) in fields.iter().zip(bounds) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            cron_range(expr, min, max, names, first)?;
        }
    }
    Ok(())
}

fn cron_range(expr: &str, min: u64, max: u64, names: &[&str], first: u64) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let value = |s: &str| -> Result<u64, String> {
        match names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            Some(i) => Ok(i as u64 + first),
            None => cron_int(s),
        }
    };
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (min, max)
    } else {
        let start = value(low_high[0])?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, value(low_high[1])?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_int(range_and_step[1])?;
            if low_high.len() == 1 {
                end = max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// `mustParseInt`: Go's `strconv.Atoi`, then no negatives.
fn cron_int(s: &str) -> Result<u64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    let n: i64 = s.parse().map_err(|_| {
        format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: value out of range",
            go_quote(s)
        )
    })?;
    u64::try_from(n).map_err(|_| format!("negative number ({n}) not allowed: {s}"))
}

/// Go's `time.ParseDuration` grammar, for `@every`.
fn parse_go_duration(s: &str) -> Result<(), String> {
    let invalid_duration = || Err(format!("time: invalid duration {}", go_quote(s)));
    let mut rest = s.strip_prefix(['+', '-']).unwrap_or(s);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return invalid_duration();
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut frac_len = 0;
        let mut after = &rest[int_len..];
        if let Some(f) = after.strip_prefix('.') {
            frac_len = f.bytes().take_while(u8::is_ascii_digit).count();
            after = &f[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return invalid_duration();
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(s)));
        }
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return Err(format!(
                "time: unknown unit {} in duration {}",
                go_quote(unit),
                go_quote(s)
            ));
        }
        rest = &after[unit_len..];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Services and endpoints

fn cluster_ips(spec: &Value) -> Vec<&str> {
    strings(spec, "clusterIPs")
}

fn is_headless(spec: &Value) -> bool {
    cluster_ips(spec) == ["None"]
}

/// Fields Kubernetes' service registry clears (`dropTypeDependentFields`) when the type no
/// longer uses them and the client merely sent back the old values; it does so before
/// validating, so they must not be held against the update.
fn drop_type_dependent_fields(spec: &Value, old_spec: &Value) -> Value {
    let mut spec = spec.clone();
    let new_type = str_of(&spec, "type").to_string();
    let Some(m) = spec.as_object_mut() else {
        return spec;
    };
    let unchanged =
        |m: &Map<String, Value>, f: &str| semantic_eq(m.get(f).unwrap_or(&NULL), get(old_spec, f));
    if new_type == "ExternalName" {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if unchanged(m, field) {
                m.remove(field);
            }
        }
    }
    if new_type != "NodePort" && new_type != "LoadBalancer" {
        let old_ports = items(old_spec, "ports");
        if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut() {
                let node_port = get(port, "nodePort").clone();
                if !node_port.is_null()
                    && old_ports.iter().any(|o| get(o, "nodePort") == &node_port)
                {
                    if let Some(p) = port.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
        }
    }
    if new_type != "LoadBalancer" {
        for field in [
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
        ] {
            if unchanged(m, field) {
                m.remove(field);
            }
        }
    }
    let external = matches!(new_type.as_str(), "NodePort" | "LoadBalancer")
        || (new_type == "ClusterIP"
            && m.get("externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()));
    if !external && unchanged(m, "externalTrafficPolicy") {
        m.remove("externalTrafficPolicy");
    }
    spec
}

fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let old_spec = old.map(|o| get(o, "spec"));
    let mut spec = match old_spec {
        Some(o) => drop_type_dependent_fields(get(obj, "spec"), o),
        None => get(obj, "spec").clone(),
    };
    // The registry fills `clusterIP` from `clusterIPs` before validating (normalizeClusterIPs).
    if str_of(&spec, "clusterIP").is_empty() {
        if let Some(first) = strings(&spec, "clusterIPs")
            .first()
            .map(|ip| ip.to_string())
        {
            spec["clusterIP"] = Value::from(first);
        }
    }
    let spec = &spec;
    let service_type = str_of(spec, "type");
    let annotations = get(get(obj, "metadata"), "annotations");
    if let (Some(mode), Some(hints)) = (
        opt_str(annotations, "service.kubernetes.io/topology-mode"),
        opt_str(annotations, "service.kubernetes.io/topology-aware-hints"),
    ) {
        if mode != hints {
            errs.push(invalid(
                &Path::new("metadata.annotations").key("service.kubernetes.io/topology-mode"),
                mode,
                "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
            ));
        }
    }
    if let Some(old_spec) = old_spec {
        validate_service_update(spec, old_spec, errs);
    }
    if !spec_changed(obj, old) {
        return;
    }
    let ports = items(spec, "ports");
    if ports.is_empty() && !is_headless(spec) && service_type != "ExternalName" {
        errs.push(required(&sp.child("ports"), ""));
    }
    match service_type {
        "LoadBalancer" | "NodePort" if is_headless(spec) => errs.push(invalid(
            &sp.child("clusterIPs").index(0),
            "None",
            &format!("may not be set to 'None' for {service_type} services"),
        )),
        "ExternalName" => {
            for field in ["clusterIPs", "ipFamilies"] {
                if !items(spec, field).is_empty() {
                    errs.push(forbidden(
                        &sp.child(field),
                        "may not be set for ExternalName services",
                    ));
                }
            }
            if is_set(spec, "ipFamilyPolicy") {
                errs.push(forbidden(
                    &sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            // The name (a CNAME) may end in a dot to mark it fully qualified.
            let cname = str_of(spec, "externalName").trim_end_matches('.');
            if cname.is_empty() {
                errs.push(required(&sp.child("externalName"), ""));
            } else {
                check_name(NameRule::Subdomain, &sp.child("externalName"), cname, errs);
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = sp.child("ports").index(i);
        let name = str_of(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        } else if !name.is_empty() {
            check_label(&p.child("name"), name, errs);
            if !names.insert(name) {
                errs.push(duplicate(&p.child("name"), name));
            }
        }
        let number = int_of(port, "port").unwrap_or(0);
        for msg in port_number(number) {
            errs.push(invalid(&p.child("port"), number, &msg));
        }
        protocol(str_of(port, "protocol"), &p.child("protocol"), errs);
        port_num_or_name(get(port, "targetPort"), &p.child("targetPort"), errs);
        if let Some(app) = opt_str(port, "appProtocol") {
            check_qualified(&p.child("appProtocol"), app, errs);
        }
    }
    validate_labels(get(spec, "selector"), &sp.child("selector"), errs);
    match str_of(spec, "sessionAffinity") {
        "" => errs.push(required(&sp.child("sessionAffinity"), "")),
        "ClientIP" => {
            let cp = sp.child("sessionAffinityConfig");
            let config = get(spec, "sessionAffinityConfig");
            let detail = "when session affinity type is ClientIP";
            if config.is_null() {
                errs.push(required(&cp, detail));
            } else if get(config, "clientIP").is_null() {
                errs.push(required(&cp.child("clientIP"), detail));
            } else {
                match int_of(get(config, "clientIP"), "timeoutSeconds") {
                    None => errs.push(required(&cp.child("clientIP.timeoutSeconds"), detail)),
                    Some(t) if !(1..=86400).contains(&t) => errs.push(invalid(
                        &cp.child("clientIP.timeoutSeconds"),
                        t,
                        "must be greater than 0 and less than 86400",
                    )),
                    Some(_) => {}
                }
            }
        }
        "None" => {
            if is_set(spec, "sessionAffinityConfig") {
                errs.push(forbidden(
                    &sp.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(not_supported(
            &sp.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    if service_type != "ExternalName" {
        validate_cluster_ips(spec, &sp, errs);
    }
    for (i, ip) in strings(spec, "externalIPs").iter().enumerate() {
        let p = sp.child("externalIPs").index(i);
        if valid_ip(&p, ip, errs) {
            non_special_ip(&p, ip, errs);
        }
    }
    match service_type {
        "" => errs.push(required(&sp.child("type"), "")),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errs.push(not_supported(
            &sp.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    let mut node_ports = HashSet::new();
    let mut port_keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = sp.child("ports").index(i);
        let node_port = int_of(port, "nodePort").unwrap_or(0);
        if service_type == "ClusterIP" && node_port != 0 {
            errs.push(forbidden(
                &p.child("nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
        if node_port != 0 && !node_ports.insert((str_of(port, "protocol"), node_port)) {
            errs.push(duplicate(&p.child("nodePort"), node_port));
        }
        let number = int_of(port, "port").unwrap_or(0);
        if !port_keys.insert((str_of(port, "protocol"), number)) {
            errs.push(duplicate(
                &p,
                serde_json::json!({ "protocol": str_of(port, "protocol"), "port": number }),
            ));
        }
    }
    let ranges = strings(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Kubernetes reports this field with a capital L.
        let rp = sp.child("LoadBalancerSourceRanges");
        if service_type != "LoadBalancer" {
            errs.push(forbidden(
                &rp,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, range) in ranges.iter().enumerate() {
            valid_cidr(&rp.index(i), range.trim(), errs);
        }
    } else if let Some(value) = opt_str(
        annotations,
        "service.beta.kubernetes.io/load-balancer-source-ranges",
    ) {
        let ap = Path::new("metadata.annotations")
            .key("service.beta.kubernetes.io/load-balancer-source-ranges");
        if service_type != "LoadBalancer" {
            errs.push(forbidden(
                &ap,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        let value = value.trim();
        if !value.is_empty() {
            for range in value.split(',') {
                valid_cidr(&ap, range.trim(), errs);
            }
        }
    }
    if is_set(spec, "allocateLoadBalancerNodePorts") && service_type != "LoadBalancer" {
        errs.push(forbidden(
            &sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if service_type == "LoadBalancer" && !is_set(spec, "allocateLoadBalancerNodePorts") {
        // Kubernetes reports this one without the `spec.` prefix.
        errs.push(required(&Path::new("allocateLoadBalancerNodePorts"), ""));
    }
    if let Some(class) = opt_str(spec, "loadBalancerClass") {
        if service_type == "LoadBalancer" {
            check_qualified(&sp.child("loadBalancerClass"), class, errs);
        } else {
            errs.push(forbidden(
                &sp.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let external = matches!(service_type, "NodePort" | "LoadBalancer")
        || (service_type == "ClusterIP" && !strings(spec, "externalIPs").is_empty());
    match (external, str_of(spec, "externalTrafficPolicy")) {
        (false, "") => {}
        (false, policy) => errs.push(invalid(
            &sp.child("externalTrafficPolicy"),
            policy,
            "may only be set for externally-accessible services",
        )),
        (true, "") => errs.push(required(&sp.child("externalTrafficPolicy"), "")),
        (true, "Cluster" | "Local") => {}
        (true, other) => errs.push(not_supported(
            &sp.child("externalTrafficPolicy"),
            other,
            &["Cluster", "Local"],
        )),
    }
    // Orch allocates no health check node ports, so only a port that cannot be used is rejected.
    let needs_health_check =
        service_type == "LoadBalancer" && str_of(spec, "externalTrafficPolicy") == "Local";
    if let Some(port) = int_of(spec, "healthCheckNodePort").filter(|p| *p != 0) {
        if !needs_health_check {
            errs.push(invalid(&sp.child("healthCheckNodePort"), port, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"));
        } else {
            for msg in port_number(port) {
                errs.push(invalid(&sp.child("healthCheckNodePort"), port, &msg));
            }
        }
    }
    match opt_str(spec, "internalTrafficPolicy") {
        None if matches!(service_type, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(required(&sp.child("internalTrafficPolicy"), ""))
        }
        Some(p) if p != "Cluster" && p != "Local" => errs.push(not_supported(
            &sp.child("internalTrafficPolicy"),
            p,
            &["Cluster", "Local"],
        )),
        _ => {}
    }
    if let Some(distribution) = opt_str(spec, "trafficDistribution") {
        let valid = ["PreferClose", "PreferSameZone", "PreferSameNode"];
        if !valid.contains(&distribution) {
            errs.push(not_supported(
                &sp.child("trafficDistribution"),
                distribution,
                &valid,
            ));
        }
    }
}

/// `ValidateServiceClusterIPsRelatedFields`. A create may leave the cluster IP empty: orch
/// allocates it after validation.
fn validate_cluster_ips(spec: &Value, sp: &Path, errs: &mut Errs) {
    let ips = cluster_ips(spec);
    let cp = sp.child("clusterIPs");
    let cluster_ip = str_of(spec, "clusterIP");
    if !cluster_ip.is_empty() {
        match ips.first() {
            None => errs.push(required(&cp, "")),
            Some(first) if *first != cluster_ip => errs.push(invalid(
                &cp,
                get(spec, "clusterIPs").clone(),
                "first value must match `clusterIP`",
            )),
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(invalid(
            &cp,
            get(spec, "clusterIPs").clone(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let families = strings(spec, "ipFamilies");
    let mut seen = HashSet::new();
    for (i, family) in families.iter().enumerate() {
        if *family != "IPv4" && *family != "IPv6" {
            errs.push(not_supported(
                &sp.child("ipFamilies").index(i),
                *family,
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(family) {
            errs.push(duplicate(&sp.child("ipFamilies").index(i), *family));
        }
    }
    if let Some(policy) = opt_str(spec, "ipFamilyPolicy") {
        let valid = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !valid.contains(&policy) {
            errs.push(not_supported(&sp.child("ipFamilyPolicy"), policy, &valid));
        }
    }
    let mut bad = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                bad = true;
                errs.push(invalid(
                    &cp,
                    get(spec, "clusterIPs").clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        bad |= !valid_ip(&cp.index(i), ip, errs);
    }
    if ips.len() > 2 {
        errs.push(invalid(
            &cp,
            get(spec, "clusterIPs").clone(),
            "may only hold up to 2 values",
        ));
    }
    if bad {
        return;
    }
    let parsed: Vec<Option<IpAddr>> = ips.iter().map(|ip| parse_ip(ip)).collect();
    if ips.len() > 1
        && parsed
            .iter()
            .filter(|ip| ip.is_some_and(|ip| ip.is_ipv4()))
            .count()
            != 1
    {
        errs.push(invalid(
            &cp,
            get(spec, "clusterIPs").clone(),
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(spec) {
        for (i, (ip, family)) in parsed.iter().zip(&families).enumerate() {
            match (ip, *family) {
                (Some(IpAddr::V6(_)), "IPv4") => errs.push(invalid(
                    &cp.index(i),
                    ips[i],
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                )),
                (Some(IpAddr::V4(_)), "IPv6") => errs.push(invalid(
                    &cp.index(i),
                    ips[i],
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                )),
                _ => {}
            }
        }
    }
}

/// Update rules. An empty cluster IP list in the update means "keep the allocated ones", which
/// orch restores after validation.
fn validate_service_update(spec: &Value, old_spec: &Value, errs: &mut Errs) {
    let (new_type, old_type) = (str_of(spec, "type"), str_of(old_spec, "type"));
    if new_type != "ExternalName"
        && old_type != "ExternalName"
        && !(is_headless(spec) && is_headless(old_spec))
    {
        let (now, before) = (cluster_ips(spec), cluster_ips(old_spec));
        let cp = Path::new("spec.clusterIPs");
        if !now.is_empty() {
            let changed_primary = before.first().is_some_and(|b| Some(b) != now.first());
            if now.len() == before.len() {
                for i in 0..now.len() {
                    if now[i] != before[i] {
                        errs.push(invalid(
                            &cp.index(i),
                            get(spec, "clusterIPs").clone(),
                            "may not change once set",
                        ));
                    }
                }
            } else if changed_primary {
                errs.push(invalid(
                    &cp.index(0),
                    get(spec, "clusterIPs").clone(),
                    "may not change once set",
                ));
            }
            if now.len() == 1 && before.len() > 1 && str_of(spec, "ipFamilyPolicy") != "SingleStack"
            {
                errs.push(invalid(
                    &Path::new("spec.ipFamilyPolicy"),
                    get(spec, "ipFamilyPolicy").clone(),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        }
        if is_headless(spec) == is_headless(old_spec) && !is_headless(spec) {
            let (now, before) = (strings(spec, "ipFamilies"), strings(old_spec, "ipFamilies"));
            let fp = Path::new("spec.ipFamilies").index(0);
            if now.len() == before.len() {
                if now != before {
                    errs.push(invalid(
                        &fp,
                        get(spec, "ipFamilies").clone(),
                        "may not change once set",
                    ));
                }
            } else if !now.is_empty() && !before.is_empty() && now[0] != before[0] {
                errs.push(invalid(
                    &fp,
                    get(spec, "clusterIPs").clone(),
                    "may not change once set",
                ));
            }
        }
    }
    if new_type == "LoadBalancer"
        && old_type == "LoadBalancer"
        && get(spec, "loadBalancerClass") != get(old_spec, "loadBalancerClass")
    {
        errs.push(invalid(
            &Path::new("spec.loadBalancerClass"),
            get(spec, "loadBalancerClass").clone(),
            "may not change once set",
        ));
    }
    let health_checked = |s: &Value| {
        str_of(s, "type") == "LoadBalancer" && str_of(s, "externalTrafficPolicy") == "Local"
    };
    if health_checked(spec)
        && health_checked(old_spec)
        && int_of(spec, "healthCheckNodePort").unwrap_or(0) != 0
        && int_of(spec, "healthCheckNodePort") != int_of(old_spec, "healthCheckNodePort")
    {
        errs.push(forbidden(&Path::new("spec.healthCheckNodePort"), IMMUTABLE));
    }
}

fn validate_endpoints(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    let path = Path::new("subsets");
    for (i, subset) in items(obj, "subsets").iter().enumerate() {
        let p = path.index(i);
        if items(subset, "addresses").is_empty() && items(subset, "notReadyAddresses").is_empty() {
            errs.push(required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for list in ["addresses", "notReadyAddresses"] {
            for (j, address) in items(subset, list).iter().enumerate() {
                let ap = p.child(list).index(j);
                let ip = str_of(address, "ip");
                valid_ip(&ap.child("ip"), ip, errs);
                if let Some(hostname) = opt_str(address, "hostname").filter(|h| !h.is_empty()) {
                    check_label(&ap.child("hostname"), hostname, errs);
                }
                if let Some(node) = opt_str(address, "nodeName") {
                    check_name(NameRule::Subdomain, &ap.child("nodeName"), node, errs);
                }
                non_special_ip(&ap.child("ip"), ip, errs);
            }
        }
        let ports = items(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            endpoint_port(port, ports.len() > 1, &p.child("ports").index(j), errs);
        }
    }
}

fn endpoint_port(port: &Value, require_name: bool, p: &Path, errs: &mut Errs) {
    let name = str_of(port, "name");
    if require_name && name.is_empty() {
        errs.push(required(&p.child("name"), ""));
    } else if !name.is_empty() {
        check_label(&p.child("name"), name, errs);
    }
    let number = int_of(port, "port").unwrap_or(0);
    for msg in port_number(number) {
        errs.push(invalid(&p.child("port"), number, &msg));
    }
    protocol(str_of(port, "protocol"), &p.child("protocol"), errs);
    if let Some(app) = opt_str(port, "appProtocol") {
        check_qualified(&p.child("appProtocol"), app, errs);
    }
}

fn validate_endpoint_slice(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let address_type = str_of(obj, "addressType");
    let tp = Path::new("addressType");
    match address_type {
        "" => errs.push(required(&tp, "")),
        "FQDN" | "IPv4" | "IPv6" => {}
        other => errs.push(not_supported(&tp, other, &["FQDN", "IPv4", "IPv6"])),
    }
    let endpoints = items(obj, "endpoints");
    let ep = Path::new("endpoints");
    if endpoints.len() > 1000 {
        errs.push(too_many(&ep, endpoints.len(), 1000));
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        let p = ep.index(i);
        let ap = p.child("addresses");
        let addresses = strings(endpoint, "addresses");
        if addresses.is_empty() {
            errs.push(required(&ap, "must contain at least 1 address"));
        } else if addresses.len() > 100 {
            errs.push(too_many(&ap, addresses.len(), 100));
        }
        for (j, address) in addresses.iter().enumerate() {
            let ip = parse_ip(address);
            match address_type {
                "IPv4" if !ip.is_some_and(|ip| ip.is_ipv4()) => errs.push(invalid(
                    &ap.index(j),
                    *address,
                    "must be a valid IPv4 address",
                )),
                "IPv6" if !ip.is_some_and(|ip| ip.is_ipv6()) => errs.push(invalid(
                    &ap.index(j),
                    *address,
                    "must be a valid IPv6 address",
                )),
                "IPv4" | "IPv6" => non_special_ip(&ap.index(j), address, errs),
                "FQDN" => {
                    let name = address.strip_suffix('.').unwrap_or(address);
                    let msgs = dns1123_subdomain(name);
                    if !msgs.is_empty() {
                        errs.push(invalid(&ap.index(j), name, &msgs.join(",")));
                    } else if !name.contains('.') {
                        errs.push(invalid(
                            &ap.index(j),
                            name,
                            "should be a domain with at least two segments separated by dots",
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(node) = opt_str(endpoint, "nodeName") {
            check_name(NameRule::Subdomain, &p.child("nodeName"), node, errs);
        }
        let topology = get(endpoint, "deprecatedTopology");
        let tp = p.child("deprecatedTopology");
        if map_of(endpoint, "deprecatedTopology").is_some_and(|m| m.len() > 16) {
            errs.push(too_many(
                &tp,
                map_of(endpoint, "deprecatedTopology").map_or(0, Map::len),
                16,
            ));
        }
        validate_labels(topology, &tp, errs);
        if let Some(hostname) = opt_str(endpoint, "hostname") {
            check_label(&p.child("hostname"), hostname, errs);
        }
    }
    let ports = items(obj, "ports");
    let pp = Path::new("ports");
    if ports.len() > 20000 {
        errs.push(too_many(&pp, ports.len(), 20000));
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = pp.index(i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            check_label(&p.child("name"), name, errs);
        }
        if !names.insert(name) {
            errs.push(duplicate(&p.child("name"), name));
        }
        match opt_str(port, "protocol") {
            None => errs.push(required(&p.child("protocol"), "")),
            Some(proto) => protocol(proto, &p.child("protocol"), errs),
        }
        if let Some(number) = int_of(port, "port") {
            for msg in port_number(number) {
                errs.push(invalid(&p.child("port"), number, &msg));
            }
        }
        if let Some(app) = opt_str(port, "appProtocol") {
            check_qualified(&p.child("appProtocol"), app, errs);
        }
    }
    if let Some(old) = old {
        immutable(get(obj, "addressType"), get(old, "addressType"), &tp, errs);
    }
}

// ---------------------------------------------------------------------------------------
// Configuration objects

fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old.filter(|o| is_true(o, "immutable")) {
        immutable_payload(obj, old, &["data", "binaryData"], errs);
    }
    let mut size = 0;
    let binary = map_of(obj, "binaryData");
    for (key, value) in map_of(obj, "data").into_iter().flatten() {
        let p = Path::new("data").key(key);
        for msg in config_map_key(key) {
            errs.push(invalid(&p, key.as_str(), &msg));
        }
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(invalid(
                &p,
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        size += value.as_str().map_or(0, str::len);
    }
    for (key, value) in binary.into_iter().flatten() {
        for msg in config_map_key(key) {
            errs.push(invalid(
                &Path::new("binaryData").key(key),
                key.as_str(),
                &msg,
            ));
        }
        size += base64_decode(value.as_str().unwrap_or_default()).len();
    }
    if size > MAX_SECRET_SIZE {
        // Kubernetes reports the whole object, whose path prints as "[]".
        errs.push(too_long(&Path::new("[]"), MAX_SECRET_SIZE));
    }
}

/// Once `immutable` is set, it stays set and the payload fields stay as they are.
fn immutable_payload(obj: &Value, old: &Value, fields: &[&str], errs: &mut Errs) {
    let detail = "field is immutable when `immutable` is set";
    if !is_true(obj, "immutable") {
        errs.push(forbidden(&Path::new("immutable"), detail));
    }
    for field in fields {
        if !semantic_eq(get(obj, field), get(old, field)) {
            errs.push(forbidden(&Path::new(field), detail));
        }
    }
}

fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let dp = Path::new("data");
    if let Some(old) = old {
        immutable(get(obj, "type"), get(old, "type"), &Path::new("type"), errs);
        if is_true(old, "immutable") {
            immutable_payload(obj, old, &["data"], errs);
        }
    }
    let mut data: HashMap<&str, Vec<u8>> = HashMap::new();
    let mut size = 0;
    for (key, value) in map_of(obj, "data").into_iter().flatten() {
        for msg in config_map_key(key) {
            errs.push(invalid(&dp.key(key), key.as_str(), &msg));
        }
        let bytes = base64_decode(value.as_str().unwrap_or_default());
        size += bytes.len();
        data.insert(key, bytes);
    }
    if size > MAX_SECRET_SIZE {
        errs.push(too_long(&dp, MAX_SECRET_SIZE));
    }
    let annotations = get(get(obj, "metadata"), "annotations");
    match str_of(obj, "type") {
        "kubernetes.io/service-account-token"
            if str_of(annotations, "kubernetes.io/service-account.name").is_empty() =>
        {
            errs.push(required(
                &Path::new("metadata.annotations").key("kubernetes.io/service-account.name"),
                "",
            ));
        }
        "kubernetes.io/dockercfg" => docker_config(&data, ".dockercfg", &dp, errs),
        "kubernetes.io/dockerconfigjson" => docker_config(&data, ".dockerconfigjson", &dp, errs),
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            errs.push(required(&dp.key("username"), ""));
            errs.push(required(&dp.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(Vec::is_empty) => {
            errs.push(required(&dp.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !data.contains_key(key) {
                    errs.push(required(&dp.key(key), ""));
                }
            }
        }
        _ => {}
    }
}

/// Docker config secrets must carry a JSON object under their key.
fn docker_config(data: &HashMap<&str, Vec<u8>>, key: &str, dp: &Path, errs: &mut Errs) {
    let Some(bytes) = data.get(key) else {
        errs.push(required(&dp.key(key), ""));
        return;
    };
    let problem = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_)) => None,
        // Go's encoding/json wording for the common cases.
        Ok(other) => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            Some(format!(
                "json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
            ))
        }
        Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => {
            Some("unexpected end of JSON input".to_string())
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(msg) = problem {
        errs.push(invalid(&dp.key(key), "<secret contents redacted>", &msg));
    }
}

/// Standard or URL-safe base64, padded or not; undecodable input yields what decodes.
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Cluster objects

fn validate_namespace(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    let path = Path::new("spec.finalizers");
    for f in strings(get(obj, "spec"), "finalizers") {
        check_qualified(&path, f, errs);
        kube_finalizer_name(&path, f, errs);
    }
}

/// v1 nodes carry both `podCIDR` and `podCIDRs`; the internal type only the list.
fn node_pod_cidrs(spec: &Value) -> Vec<&str> {
    let list = strings(spec, "podCIDRs");
    match (
        list.is_empty(),
        opt_str(spec, "podCIDR").filter(|c| !c.is_empty()),
    ) {
        (true, Some(cidr)) => vec![cidr],
        _ => list,
    }
}

fn validate_node(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    // Kubernetes reports taints under `metadata`.
    let tp = Path::new("metadata.taints");
    let mut unique: HashSet<(&str, &str)> = HashSet::new();
    for (i, taint) in items(spec, "taints").iter().enumerate() {
        let p = tp.index(i);
        let (key, value, effect) = (
            str_of(taint, "key"),
            str_of(taint, "value"),
            str_of(taint, "effect"),
        );
        check_qualified(&p.child("key"), key, errs);
        let msgs = label_value(value);
        if !msgs.is_empty() {
            errs.push(invalid(&p.child("value"), value, &msgs.join(";")));
        }
        if effect.is_empty() {
            errs.push(required(&p.child("effect"), ""));
        } else {
            taint_effect(effect, &p.child("effect"), errs);
        }
        if !unique.insert((effect, key)) {
            errs.push(field_error(
                ErrorType::Duplicate,
                &p,
                Some(taint.clone()),
                "taints must be unique by key and effect pair",
            ));
        }
    }
    let status = get(obj, "status");
    for list in ["capacity", "allocatable"] {
        for (name, value) in map_of(status, list).into_iter().flatten() {
            let p = Path::new("status").child(list).child(name);
            if let Some(q) = quantity(value, &p, errs) {
                resource_quantity_value(name, &q, &p, errs);
            }
        }
    }
    let cidrs = node_pod_cidrs(spec);
    let cp = Path::new("spec.podCIDRs");
    for (i, cidr) in cidrs.iter().enumerate() {
        valid_cidr(&cp.index(i), cidr, errs);
    }
    if cidrs.len() > 1 {
        let v4 = cidrs
            .iter()
            .filter(|c| parse_cidr(c).is_some_and(|(ip, _)| ip.is_ipv4()))
            .count();
        if v4 != 1 || cidrs.len() > 2 {
            errs.push(invalid(
                &cp,
                Value::from(cidrs.clone()),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        let mut seen = HashSet::new();
        for (i, cidr) in cidrs.iter().enumerate() {
            if !seen.insert(cidr) {
                errs.push(duplicate(&cp.index(i), *cidr));
            }
        }
    }
    let Some(old) = old else { return };
    let old_spec = get(old, "spec");
    let old_cidrs = node_pod_cidrs(old_spec);
    if !old_cidrs.is_empty() && old_cidrs != cidrs {
        errs.push(forbidden(
            &cp,
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_provider = str_of(old_spec, "providerID");
    if !old_provider.is_empty() && old_provider != str_of(spec, "providerID") {
        errs.push(forbidden(
            &Path::new("spec.providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    if str_of(spec, "externalID") != str_of(old_spec, "externalID") {
        errs.push(forbidden(
            &Path::new("spec.externalID"),
            "may not be updated",
        ));
    }
    let mut addresses = HashSet::new();
    for (i, address) in items(status, "addresses").iter().enumerate() {
        if !addresses.insert((str_of(address, "type"), str_of(address, "address"))) {
            errs.push(duplicate(
                &Path::new("status.addresses").index(i),
                address.clone(),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Storage

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(spec: &Value, path: &Path, required_detail: &str, errs: &mut Errs) {
    let modes = strings(spec, "accessModes");
    let mp = path.child("accessModes");
    if modes.is_empty() {
        errs.push(required(&mp, required_detail));
    }
    for mode in &modes {
        if !ACCESS_MODES.contains(mode) {
            errs.push(not_supported(&mp, *mode, ACCESS_MODES));
        }
    }
    if modes.contains(&"ReadWriteOncePod")
        && modes
            .iter()
            .any(|m| *m != "ReadWriteOncePod" && ACCESS_MODES.contains(m))
    {
        errs.push(forbidden(
            &mp,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// `ValidatePersistentVolumeClaimSpec`.
fn validate_pvc_spec(spec: &Value, path: &Path, errs: &mut Errs) {
    access_modes(spec, path, "at least 1 access mode is required", errs);
    validate_label_selector(get(spec, "selector"), &path.child("selector"), errs);
    // Kubernetes reports `resources[storage]`, without `requests`.
    let sp = path.child("resources").key("storage");
    match get(get(spec, "resources"), "requests").get("storage") {
        None => errs.push(required(&sp, "")),
        Some(v) => {
            if let Some(q) = quantity(v, &sp, errs) {
                if q.is_negative() || q.is_zero() {
                    errs.push(invalid(&sp, q.to_string(), "must be greater than zero"));
                }
            }
        }
    }
    if let Some(class) = opt_str(spec, "storageClassName").filter(|c| !c.is_empty()) {
        check_name(
            NameRule::Subdomain,
            &path.child("storageClassName"),
            class,
            errs,
        );
    }
    if let Some(mode) = opt_str(spec, "volumeMode") {
        if mode != "Block" && mode != "Filesystem" {
            errs.push(not_supported(
                &path.child("volumeMode"),
                mode,
                &["Block", "Filesystem"],
            ));
        }
    }
    for field in ["dataSource", "dataSourceRef"] {
        let Some(source) = spec.get(field).filter(|s| !s.is_null()) else {
            continue;
        };
        let dp = path.child(field);
        for key in ["name", "kind"] {
            if str_of(source, key).is_empty() {
                errs.push(required(&dp.child(key), ""));
            }
        }
        let group = str_of(source, "apiGroup");
        if group.is_empty() && str_of(source, "kind") != "PersistentVolumeClaim" {
            errs.push(invalid(
                &dp,
                str_of(source, "kind"),
                "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
            ));
        }
        if !group.is_empty() {
            check_name(NameRule::Subdomain, &dp.child("apiGroup"), group, errs);
        }
        if let Some(ns) = opt_str(source, "namespace").filter(|n| !n.is_empty()) {
            check_label(&dp.child("namespace"), ns, errs);
        }
    }
    if let (Some(source), Some(reference)) = (
        spec.get("dataSource").filter(|s| !s.is_null()),
        spec.get("dataSourceRef").filter(|s| !s.is_null()),
    ) {
        if !str_of(reference, "namespace").is_empty() {
            errs.push(invalid(
                path,
                path.child("dataSource").0,
                "may not be specified when dataSourceRef.namespace is specified",
            ));
        } else if ["apiGroup", "kind", "name"]
            .iter()
            .any(|k| get(source, k) != get(reference, k))
        {
            errs.push(invalid(
                path,
                path.child("dataSource").0,
                "must match dataSourceRef",
            ));
        }
    }
}

fn validate_pvc(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    if spec_changed(obj, old) {
        validate_pvc_spec(spec, &sp, errs);
    }
    let Some(old) = old else { return };
    let old_spec = get(old, "spec");
    // Volume name may be set once; bound claims may change their storage request.
    let mut compare = spec.clone();
    if let Some(m) = compare.as_object_mut() {
        if str_of(old_spec, "volumeName").is_empty() {
            m.insert("volumeName".into(), get(old_spec, "volumeName").clone());
        }
        if str_of(get(obj, "status"), "phase") == "Bound" {
            if let Some(requests) = m
                .get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut)
            {
                requests.insert(
                    "storage".into(),
                    get(get(get(old_spec, "resources"), "requests"), "storage").clone(),
                );
            }
            m.insert(
                "volumeAttributesClassName".into(),
                get(old_spec, "volumeAttributesClassName").clone(),
            );
        }
        if !is_set(old_spec, "storageClassName") && is_set(spec, "storageClassName") {
            let annotated = opt_str(
                get(get(old, "metadata"), "annotations"),
                "volume.beta.kubernetes.io/storage-class",
            );
            if annotated.is_none_or(|a| Some(a) == opt_str(spec, "storageClassName")) {
                m.remove("storageClassName");
            }
        }
    }
    if !semantic_eq(&compare, old_spec) {
        let mut diff = Vec::new();
        diff_lines(old_spec, &compare, "spec", &mut diff);
        errs.push(forbidden(
            &sp,
            &format!("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}", diff.join("\n")),
        ));
    }
    let size =
        |s: &Value| Quantity::try_from(get(get(get(s, "resources"), "requests"), "storage")).ok();
    if let (Some(new_size), Some(old_size)) = (size(spec), size(old_spec)) {
        let capacity = Quantity::try_from(get(get(get(old, "status"), "capacity"), "storage")).ok();
        if new_size < old_size && capacity.is_none_or(|c| new_size <= c) {
            let detail = if capacity.is_some() {
                "field can not be less than status.capacity"
            } else {
                "field can not be less than previous value"
            };
            errs.push(forbidden(
                &Path::new("spec.resources.requests.storage"),
                detail,
            ));
        }
    }
    // Kubernetes reports this one without the `spec.` prefix.
    immutable(
        get(spec, "volumeMode"),
        get(old_spec, "volumeMode"),
        &Path::new("volumeMode"),
        errs,
    );
}

/// PersistentVolume sources in `ValidatePersistentVolumeSpec` order.
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn validate_persistent_volume(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    if spec_changed(obj, old) {
        access_modes(spec, &sp, "", errs);
        let capacity = map_of(spec, "capacity");
        let cp = sp.child("capacity");
        if capacity.is_none_or(Map::is_empty) {
            errs.push(required(&cp, ""));
        }
        if capacity.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
            errs.push(not_supported(
                &cp,
                get(spec, "capacity").clone(),
                &["storage"],
            ));
        }
        for (name, value) in capacity.into_iter().flatten() {
            if let Some(q) = quantity(value, &cp.key(name), errs) {
                if q.is_negative() {
                    errs.push(invalid(
                        &cp.key(name),
                        i64::try_from(q.to_bytes()).unwrap_or(i64::MIN),
                        "must be a valid resource quantity",
                    ));
                }
                if q.is_negative() || q.is_zero() {
                    errs.push(invalid(
                        &cp.key(name),
                        q.to_string(),
                        "must be greater than zero",
                    ));
                }
            }
        }
        if let Some(policy) =
            opt_str(spec, "persistentVolumeReclaimPolicy").filter(|p| !p.is_empty())
        {
            if !["Delete", "Recycle", "Retain"].contains(&policy) {
                errs.push(not_supported(
                    &sp.child("persistentVolumeReclaimPolicy"),
                    policy,
                    &["Delete", "Recycle", "Retain"],
                ));
            }
        }
        let affinity = get(spec, "nodeAffinity");
        if !affinity.is_null() {
            match affinity.get("required").filter(|r| !r.is_null()) {
                Some(r) => node_selector(r, false, &sp.child("nodeAffinity.required"), errs),
                None => errs.push(required(
                    &sp.child("nodeAffinity.required"),
                    "must specify required node constraints",
                )),
            }
        }
        let mut count = 0;
        for key in PV_SOURCES {
            let Some(src) = spec.get(*key).filter(|s| !s.is_null()) else {
                continue;
            };
            let p = sp.child(key);
            // flexVolume is counted without the one-source check, as in Kubernetes.
            if count > 0 && *key != "flexVolume" {
                errs.push(forbidden(&p, "may not specify more than 1 volume type"));
                continue;
            }
            count += 1;
            match *key {
                "hostPath" => host_path_source(src, &p, errs),
                "nfs" => {
                    for field in ["server", "path"] {
                        if str_of(src, field).is_empty() {
                            errs.push(required(&p.child(field), ""));
                        }
                    }
                    if !str_of(src, "path").starts_with('/') {
                        errs.push(invalid(
                            &p.child("path"),
                            str_of(src, "path"),
                            "must be an absolute path",
                        ));
                    }
                }
                "local" => {
                    match str_of(src, "path") {
                        "" => errs.push(required(&p.child("path"), "")),
                        path => path_no_backsteps(path, &p.child("path"), errs),
                    }
                    if affinity.is_null() {
                        errs.push(required(
                            &sp.child("nodeAffinity"),
                            "Local volume requires node affinity",
                        ));
                    }
                }
                "csi" => {
                    csi_driver_name(str_of(src, "driver"), &p.child("driver"), errs);
                    if str_of(src, "volumeHandle").is_empty() {
                        errs.push(required(&p.child("volumeHandle"), ""));
                    }
                }
                _ => {}
            }
        }
        if count == 0 {
            errs.push(required(&sp, "must specify a volume type"));
        }
        let host_path = str_of(get(spec, "hostPath"), "path");
        if is_set(spec, "hostPath")
            && host_path.trim_end_matches('/').is_empty()
            && host_path.starts_with('/')
            && str_of(spec, "persistentVolumeReclaimPolicy") == "Recycle"
        {
            errs.push(forbidden(
                &sp.child("persistentVolumeReclaimPolicy"),
                "may not be 'recycle' for a hostPath mount of '/'",
            ));
        }
        if let Some(class) = opt_str(spec, "storageClassName").filter(|c| !c.is_empty()) {
            check_name(
                NameRule::Subdomain,
                &sp.child("storageClassName"),
                class,
                errs,
            );
        }
        if let Some(mode) = opt_str(spec, "volumeMode") {
            if mode != "Block" && mode != "Filesystem" {
                errs.push(not_supported(
                    &sp.child("volumeMode"),
                    mode,
                    &["Block", "Filesystem"],
                ));
            }
        }
    }
    let Some(old) = old else { return };
    let old_spec = get(old, "spec");
    let source = |s: &Value| -> Value {
        let mut m = Map::new();
        for key in PV_SOURCES {
            if let Some(v) = s.get(*key).filter(|v| !v.is_null()) {
                m.insert((*key).into(), v.clone());
            }
        }
        Value::Object(m)
    };
    let (mut now, before) = (source(spec), source(old_spec));
    // A CSI volume may gain a controller-expand secret after creation.
    if !is_set(get(old_spec, "csi"), "controllerExpandSecretRef") {
        if let Some(csi) = now.get_mut("csi").and_then(Value::as_object_mut) {
            csi.remove("controllerExpandSecretRef");
        }
    }
    if !semantic_eq(&now, &before) {
        let mut diff = Vec::new();
        diff_lines(&before, &now, "spec", &mut diff);
        errs.push(forbidden(
            &Path::new("spec.persistentvolumesource"),
            &format!(
                "spec.persistentvolumesource is immutable after creation\n{}",
                diff.join("\n")
            ),
        ));
    }
    immutable(
        get(spec, "volumeMode"),
        get(old_spec, "volumeMode"),
        &Path::new("volumeMode"),
        errs,
    );
    if is_set(old_spec, "nodeAffinity")
        && !semantic_eq(get(spec, "nodeAffinity"), get(old_spec, "nodeAffinity"))
    {
        errs.push(invalid(
            &Path::new("nodeAffinity"),
            get(spec, "nodeAffinity").clone(),
            "field is immutable, except for updating from beta label to GA",
        ));
    }
}

fn validate_storage_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let provisioner = str_of(obj, "provisioner");
    let pp = Path::new("provisioner");
    if provisioner.is_empty() {
        errs.push(required(&pp, ""));
    } else {
        check_qualified(&pp, &provisioner.to_lowercase(), errs);
    }
    let params = map_of(obj, "parameters");
    let par = Path::new("parameters");
    if params.is_some_and(|p| p.len() > 512) {
        errs.push(too_long(&par, 512));
    } else {
        let mut size = 0;
        for (key, value) in params.into_iter().flatten() {
            if key.is_empty() {
                errs.push(invalid(&par, key.as_str(), "field can not be empty."));
            }
            size += key.len() + value.as_str().map_or(0, str::len);
        }
        if size > 256 * 1024 {
            errs.push(too_long(&par, 256 * 1024));
        }
    }
    // Unset policy and binding mode are defaulted (Delete, Immediate) by the API server.
    if let Some(policy) = opt_str(obj, "reclaimPolicy").filter(|p| !p.is_empty()) {
        if policy != "Delete" && policy != "Retain" {
            errs.push(not_supported(
                &Path::new("reclaimPolicy"),
                policy,
                &["Delete", "Retain"],
            ));
        }
    }
    if let Some(mode) = opt_str(obj, "volumeBindingMode") {
        if mode != "Immediate" && mode != "WaitForFirstConsumer" {
            errs.push(not_supported(
                &Path::new("volumeBindingMode"),
                mode,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
    }
    for (i, term) in items(obj, "allowedTopologies").iter().enumerate() {
        let tp = Path::new("allowedTopologies")
            .index(i)
            .child("matchLabelExpressions");
        let mut keys = HashSet::new();
        for (j, req) in items(term, "matchLabelExpressions").iter().enumerate() {
            let p = tp.index(j);
            let values = strings(req, "values");
            if values.is_empty() {
                errs.push(required(&p.child("values"), ""));
            }
            let mut seen = HashSet::new();
            for (k, v) in values.iter().enumerate() {
                if !seen.insert(v) {
                    errs.push(duplicate(&p.child("values").index(k), *v));
                }
            }
            check_qualified(&p.child("key"), str_of(req, "key"), errs);
            if !keys.insert(str_of(req, "key")) {
                errs.push(duplicate(&p.child("key"), str_of(req, "key")));
            }
        }
    }
    let Some(old) = old else { return };
    if !semantic_eq(get(obj, "parameters"), get(old, "parameters")) {
        errs.push(forbidden(&par, "updates to parameters are forbidden."));
    }
    if provisioner != str_of(old, "provisioner") {
        errs.push(forbidden(&pp, "updates to provisioner are forbidden."));
    }
    let policy = |o: &Value| opt_str(o, "reclaimPolicy").unwrap_or("Delete").to_string();
    if policy(obj) != policy(old) {
        errs.push(forbidden(
            &Path::new("reclaimPolicy"),
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    let mode = |o: &Value| Value::from(opt_str(o, "volumeBindingMode").unwrap_or("Immediate"));
    immutable(
        &mode(obj),
        &mode(old),
        &Path::new("volumeBindingMode"),
        errs,
    );
}

// ---------------------------------------------------------------------------------------
// Quotas and limits

fn validate_resource_quota(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    for (name, value) in map_of(spec, "hard").into_iter().flatten() {
        let p = sp.child("hard").key(name);
        quota_resource_name(name, &p, errs);
        if let Some(q) = quantity(value, &p, errs) {
            resource_quantity_value(name, &q, &p, errs);
        }
    }
    let scopes = strings(spec, "scopes");
    let standard = [
        "BestEffort",
        "CrossNamespacePodAffinity",
        "NotBestEffort",
        "NotTerminating",
        "PriorityClass",
        "Terminating",
        "VolumeAttributesClass",
    ];
    let conflicting = |s: &[&str]| {
        (s.contains(&"BestEffort") && s.contains(&"NotBestEffort"))
            || (s.contains(&"Terminating") && s.contains(&"NotTerminating"))
    };
    if scopes.iter().any(|s| !standard.contains(s)) {
        errs.push(invalid(
            &sp.child("scopes"),
            get(spec, "scopes").clone(),
            "unsupported scope",
        ));
    }
    if conflicting(&scopes) {
        errs.push(invalid(
            &sp.child("scopes"),
            get(spec, "scopes").clone(),
            "conflicting scopes",
        ));
    }
    let selector = get(spec, "scopeSelector");
    let mp = sp.child("scopeSelector.matchExpressions");
    let mut selected = Vec::new();
    for req in items(selector, "matchExpressions") {
        let scope = str_of(req, "scopeName");
        if !standard.contains(&scope) {
            errs.push(invalid(&mp.child("scopeName"), scope, "unsupported scope"));
        }
        let operator = str_of(req, "operator");
        if [
            "BestEffort",
            "NotBestEffort",
            "Terminating",
            "NotTerminating",
            "CrossNamespacePodAffinity",
        ]
        .contains(&scope)
            && operator != "Exists"
        {
            errs.push(invalid(&mp.child("operator"), operator, "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"));
        }
        let values = items(req, "values");
        match operator {
            "In" | "NotIn" if values.is_empty() => errs.push(required(
                &mp.child("values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(invalid(
                &mp.child("values"),
                get(req, "values").clone(),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(invalid(
                &mp.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        selected.push(scope);
    }
    if conflicting(&selected) {
        errs.push(invalid(
            &mp,
            get(spec, "scopes").clone(),
            "conflicting scopes",
        ));
    }
    if let Some(old) = old {
        let mut now = scopes.clone();
        let mut before = strings(get(old, "spec"), "scopes");
        now.sort_unstable();
        now.dedup();
        before.sort_unstable();
        before.dedup();
        if now != before {
            errs.push(invalid(
                &sp.child("scopes"),
                get(spec, "scopes").clone(),
                IMMUTABLE,
            ));
        }
    }
}

fn quota_resource_name(name: &str, path: &Path, errs: &mut Errs) {
    resource_name(name, path, errs);
    let standard = STANDARD_QUOTA_RESOURCES.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-");
    if !name.contains('/') && !standard {
        errs.push(invalid(path, name, "must be a standard resource for quota"));
    }
}

fn validate_limit_range(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    let lp = Path::new("spec.limits");
    let mut types = HashSet::new();
    for (i, limit) in items(get(obj, "spec"), "limits").iter().enumerate() {
        let p = lp.index(i);
        let limit_type = str_of(limit, "type");
        let before = errs.len();
        check_qualified(&p.child("type"), limit_type, errs);
        if errs.len() == before
            && !limit_type.contains('/')
            && !["Pod", "Container", "PersistentVolumeClaim"].contains(&limit_type)
        {
            errs.push(invalid(
                &p.child("type"),
                limit_type,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(limit_type) {
            errs.push(duplicate(&p.child("type"), limit_type));
        }
        let mut lists: BTreeMap<&str, HashMap<&str, Quantity>> = BTreeMap::new();
        let mut keys: Vec<&str> = Vec::new();
        for list in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            let values = map_of(limit, list);
            if limit_type == "Pod" && (list == "default" || list == "defaultRequest") {
                if values.is_some_and(|v| !v.is_empty()) {
                    errs.push(forbidden(
                        &p.child(list),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
                continue;
            }
            for (name, value) in values.into_iter().flatten() {
                let np = p.child(list).key(name);
                if limit_type == "Pod" || limit_type == "Container" {
                    container_resource_name(name, &np, errs);
                } else {
                    resource_name(name, &np, errs);
                }
                if !keys.contains(&name.as_str()) {
                    keys.push(name);
                }
                if let Ok(q) = Quantity::try_from(value) {
                    lists.entry(list).or_default().insert(name, q);
                }
            }
        }
        if limit_type == "PersistentVolumeClaim"
            && !map_of(limit, "min").is_some_and(|m| m.contains_key("storage"))
            && !map_of(limit, "max").is_some_and(|m| m.contains_key("storage"))
        {
            errs.push(required(
                &p.child("limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        for key in keys {
            let q = |list: &str| lists.get(list).and_then(|m| m.get(key)).copied();
            let (min, max, default, request, ratio) = (
                q("min"),
                q("max"),
                q("default"),
                q("defaultRequest"),
                q("maxLimitRequestRatio"),
            );
            let at = |list: &str| p.child(list).key(key);
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    errs.push(invalid(
                        &at("min"),
                        min.to_string(),
                        &format!("min value {min} is greater than max value {max}"),
                    ));
                }
            }
            if let (Some(request), Some(min)) = (request, min) {
                if min > request {
                    errs.push(invalid(
                        &at("defaultRequest"),
                        request.to_string(),
                        &format!("min value {min} is greater than default request value {request}"),
                    ));
                }
            }
            if let (Some(request), Some(max)) = (request, max) {
                if request > max {
                    errs.push(invalid(
                        &at("defaultRequest"),
                        request.to_string(),
                        &format!("default request value {request} is greater than max value {max}"),
                    ));
                }
            }
            if let (Some(request), Some(default)) = (request, default) {
                if request > default {
                    errs.push(invalid(&at("defaultRequest"), request.to_string(), &format!("default request value {request} is greater than default limit value {default}")));
                }
            }
            if let (Some(default), Some(min)) = (default, min) {
                if min > default {
                    errs.push(invalid(
                        &at("default"),
                        min.to_string(),
                        &format!("min value {min} is greater than default value {default}"),
                    ));
                }
            }
            if let (Some(default), Some(max)) = (default, max) {
                if default > max {
                    errs.push(invalid(
                        &at("default"),
                        max.to_string(),
                        &format!("default value {default} is greater than max value {max}"),
                    ));
                }
            }
            if let Some(ratio) = ratio {
                if ratio.to_millis() < 1000 {
                    errs.push(invalid(
                        &at("maxLimitRequestRatio"),
                        ratio.to_string(),
                        &format!("ratio {ratio} is less than 1"),
                    ));
                }
                if let (Some(min), Some(max)) = (min, max) {
                    let limit = max.to_millis() as f64 / min.to_millis() as f64;
                    if ratio.to_millis() as f64 / 1000.0 > limit {
                        errs.push(invalid(
                            &at("maxLimitRequestRatio"),
                            ratio.to_string(),
                            &format!("ratio {ratio} is greater than max/min = {limit:.6}"),
                        ));
                    }
                }
            }
            if !is_overcommit_allowed(key) {
                if let (Some(default), Some(request)) = (default, request) {
                    if default != request {
                        errs.push(invalid(&at("defaultRequest"), request.to_string(), &format!("default value {default} must equal to defaultRequest value {request} in {key}")));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Events

/// Core and events.k8s.io Events. The latter spell fields differently in JSON, but Kubernetes
/// reports the internal (core) field names for both.
fn validate_event(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let strict = str_of(obj, "apiVersion").starts_with("events.k8s.io/");
    let field = |core: &'static str, events: &'static str| if strict { events } else { core };
    let involved = get(obj, field("involvedObject", "regarding"));
    let namespace = str_of(get(obj, "metadata"), "namespace");
    let involved_ns = str_of(involved, "namespace");
    let ns_mismatch = || {
        invalid(
            &Path::new("involvedObject.namespace"),
            involved_ns,
            "does not match event.namespace",
        )
    };
    let event_time = is_set(obj, "eventTime");
    if !event_time {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(ns_mismatch());
            }
        } else if namespace != involved_ns {
            errs.push(ns_mismatch());
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(ns_mismatch());
        }
        let controller = str_of(obj, field("reportingComponent", "reportingController"));
        let cp = Path::new("reportingController");
        if controller.is_empty() {
            errs.push(required(&cp, ""));
        }
        check_qualified(&cp, controller, errs);
        for (json, reported, limit) in [
            ("reportingInstance", "reportingInstance", 128),
            ("action", "action", 128),
            ("reason", "reason", 128),
        ] {
            let value = str_of(obj, json);
            if value.is_empty() {
                errs.push(required(&Path::new(reported), ""));
            }
            if value.len() > limit {
                errs.push(invalid(
                    &Path::new(reported),
                    "",
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if str_of(obj, field("message", "note")).len() > 1024 {
            errs.push(invalid(
                &Path::new("message"),
                "",
                "can have at most 1024 characters",
            ));
        }
    }
    for msg in dns1123_subdomain(namespace) {
        errs.push(invalid(&Path::new("namespace"), namespace, &msg));
    }
    if !strict {
        return;
    }
    let series = get(obj, "series");
    let series_changed = old.is_none_or(|o| !semantic_eq(series, get(o, "series")));
    if !series.is_null() && series_changed {
        if int_of(series, "count").unwrap_or(0) < 2 {
            errs.push(invalid(
                &Path::new("series.count"),
                "",
                "should be at least 2",
            ));
        }
        if !is_set(series, "lastObservedTime") {
            errs.push(required(&Path::new("series.lastObservedTime"), ""));
        }
    }
    let Some(old) = old else {
        if !event_time {
            errs.push(required(&Path::new("eventTime"), ""));
        }
        let event_type = str_of(obj, "type");
        if event_type != "Normal" && event_type != "Warning" {
            errs.push(invalid(
                &Path::new("type"),
                "",
                &format!("has invalid value: {event_type}"),
            ));
        }
        for (json, reported) in [
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
            ("deprecatedSource", "source"),
        ] {
            if !is_zero(get(obj, json)) {
                errs.push(invalid(&Path::new(reported), "", "needs to be unset"));
            }
        }
        return;
    };
    for (json, reported) in [
        ("regarding", "involvedObject"),
        ("reason", "reason"),
        ("note", "message"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        immutable(get(obj, json), get(old, json), &Path::new(reported), errs);
    }
}

// ---------------------------------------------------------------------------------------
// Autoscaling

fn validate_hpa(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    let min = int_of(spec, "minReplicas");
    let max = int_of(spec, "maxReplicas").unwrap_or(0);
    if let Some(min) = min.filter(|m| *m < 1) {
        errs.push(invalid(
            &sp.child("minReplicas"),
            min,
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        errs.push(invalid(
            &sp.child("maxReplicas"),
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|min| max < min) {
        errs.push(invalid(
            &sp.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    object_reference(
        get(spec, "scaleTargetRef"),
        &sp.child("scaleTargetRef"),
        errs,
    );
    for (i, metric) in items(spec, "metrics").iter().enumerate() {
        validate_metric(metric, &sp.child("metrics").index(i), errs);
    }
    let behavior = get(spec, "behavior");
    for direction in ["scaleUp", "scaleDown"] {
        let Some(rules) = behavior.get(direction).filter(|r| !r.is_null()) else {
            continue;
        };
        let rp = sp.child("behavior").child(direction);
        if let Some(window) = int_of(rules, "stabilizationWindowSeconds") {
            if window < 0 {
                errs.push(invalid(
                    &rp.child("stabilizationWindowSeconds"),
                    window,
                    "must be greater than or equal to zero",
                ));
            } else if window > 3600 {
                errs.push(invalid(
                    &rp.child("stabilizationWindowSeconds"),
                    window,
                    "must be less than or equal to 3600",
                ));
            }
        }
        if let Some(select) = opt_str(rules, "selectPolicy") {
            if !["Disabled", "Max", "Min"].contains(&select) {
                errs.push(not_supported(
                    &rp.child("selectPolicy"),
                    select,
                    &["Disabled", "Max", "Min"],
                ));
            }
        }
        let policies = items(rules, "policies");
        if policies.is_empty() {
            errs.push(required(
                &rp.child("policies"),
                "must specify at least one Policy",
            ));
        }
        for (i, policy) in policies.iter().enumerate() {
            let pp = rp.child("policies").index(i);
            let kind = str_of(policy, "type");
            if kind != "Pods" && kind != "Percent" {
                errs.push(not_supported(&pp.child("type"), kind, &["Percent", "Pods"]));
            }
            let value = int_of(policy, "value").unwrap_or(0);
            if value <= 0 {
                errs.push(invalid(
                    &pp.child("value"),
                    value,
                    "must be greater than zero",
                ));
            }
            let period = int_of(policy, "periodSeconds").unwrap_or(0);
            if period <= 0 {
                errs.push(invalid(
                    &pp.child("periodSeconds"),
                    period,
                    "must be greater than zero",
                ));
            }
            if period > 1800 {
                errs.push(invalid(
                    &pp.child("periodSeconds"),
                    period,
                    "must be less than or equal to 1800",
                ));
            }
        }
    }
}

/// `ValidateCrossVersionObjectReference`.
fn object_reference(r: &Value, path: &Path, errs: &mut Errs) {
    for field in ["kind", "name"] {
        match str_of(r, field) {
            "" => errs.push(required(&path.child(field), "")),
            value => {
                for msg in path_segment_name(value, false) {
                    errs.push(invalid(&path.child(field), value, &msg));
                }
            }
        }
    }
}

const METRIC_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

fn validate_metric(metric: &Value, path: &Path, errs: &mut Errs) {
    let metric_type = str_of(metric, "type");
    if metric_type.is_empty() {
        errs.push(required(
            &path.child("type"),
            "must specify a metric source type",
        ));
    }
    if !METRIC_TYPES.contains(&metric_type) {
        errs.push(not_supported(
            &path.child("type"),
            metric_type,
            METRIC_TYPES,
        ));
    }
    let sources = [
        "object",
        "external",
        "pods",
        "resource",
        "containerResource",
    ];
    let present: Vec<&str> = sources
        .iter()
        .copied()
        .filter(|s| is_set(metric, s))
        .collect();
    if let Some(first) = present.first() {
        let src = get(metric, first);
        let p = path.child(first);
        let target = get(src, "target");
        let tp = p.child("target");
        match *first {
            "object" => {
                object_reference(
                    get(src, "describedObject"),
                    &p.child("describedObject"),
                    errs,
                );
                metric_identifier(get(src, "metric"), &p.child("metric"), errs);
                metric_target(target, &tp, errs);
                if !is_set(target, "value") && !is_set(target, "averageValue") {
                    errs.push(required(
                        &tp.child("averageValue"),
                        "must set either a target value or averageValue",
                    ));
                }
            }
            "external" => {
                metric_identifier(get(src, "metric"), &p.child("metric"), errs);
                metric_target(target, &tp, errs);
                match (is_set(target, "value"), is_set(target, "averageValue")) {
                    (false, false) => errs.push(required(
                        &tp.child("averageValue"),
                        "must set either a target value for metric or a per-pod target",
                    )),
                    (true, true) => errs.push(forbidden(
                        &tp.child("value"),
                        "may not set both a target value for metric and a per-pod target",
                    )),
                    _ => {}
                }
            }
            "pods" => {
                metric_identifier(get(src, "metric"), &p.child("metric"), errs);
                metric_target(target, &tp, errs);
                if !is_set(target, "averageValue") {
                    errs.push(required(
                        &tp.child("averageValue"),
                        "must specify a positive target averageValue",
                    ));
                }
            }
            _ => {
                let name = str_of(src, "name");
                if name.is_empty() {
                    errs.push(required(&p.child("name"), "must specify a resource name"));
                } else if *first == "containerResource" {
                    container_resource_name(name, &p.child("name"), errs);
                }
                if *first == "containerResource" {
                    match str_of(src, "container") {
                        "" => {
                            errs.push(required(&p.child("container"), "must specify a container"))
                        }
                        c => check_label(&p.child("container"), c, errs),
                    }
                }
                metric_target(target, &tp, errs);
                match (
                    is_set(target, "averageUtilization"),
                    is_set(target, "averageValue"),
                ) {
                    (false, false) => errs.push(required(
                        &tp.child("averageUtilization"),
                        "must set either a target raw value or a target utilization",
                    )),
                    (true, true) => errs.push(forbidden(
                        &tp.child("averageValue"),
                        "may not set both a target raw value and a target utilization",
                    )),
                    _ => {}
                }
            }
        }
    }
    let expected = match metric_type {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "External" => "external",
        "ContainerResource" => "containerResource",
        _ => "",
    };
    if !expected.is_empty() && !present.contains(&expected) {
        errs.push(required(
            &path.child(expected),
            "must populate information for the given metric source",
        ));
    }
    if present.len() != 1 {
        for extra in present.iter().filter(|p| **p != expected) {
            errs.push(forbidden(
                &path.child(extra),
                "must populate the given metric source only",
            ));
        }
    }
}

fn metric_identifier(id: &Value, path: &Path, errs: &mut Errs) {
    match str_of(id, "name") {
        "" => errs.push(required(&path.child("name"), "must specify a metric name")),
        name => {
            for msg in path_segment_name(name, false) {
                errs.push(invalid(&path.child("name"), name, &msg));
            }
        }
    }
}

fn metric_target(target: &Value, path: &Path, errs: &mut Errs) {
    let kind = str_of(target, "type");
    if kind.is_empty() {
        errs.push(required(
            &path.child("type"),
            "must specify a metric target type",
        ));
    }
    if !["Utilization", "Value", "AverageValue"].contains(&kind) {
        errs.push(invalid(
            &path.child("type"),
            kind,
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for field in ["value", "averageValue"] {
        if let Some(q) = target
            .get(field)
            .filter(|v| !v.is_null())
            .and_then(|v| Quantity::try_from(v).ok())
        {
            if q.is_negative() || q.is_zero() {
                errs.push(invalid(
                    &path.child(field),
                    q.to_string(),
                    "must be positive",
                ));
            }
        }
    }
    if let Some(u) = int_of(target, "averageUtilization").filter(|u| *u < 1) {
        errs.push(invalid(
            &path.child("averageUtilization"),
            u,
            "must be greater than 0",
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Networking

fn validate_ingress(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    let rules = items(spec, "rules");
    if rules.is_empty() && !is_set(spec, "defaultBackend") {
        errs.push(invalid(
            &sp,
            get(spec, "rules").clone(),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    // Objects stored before the stricter rules keep passing on update.
    let old_rules = old
        .map(|o| items(get(o, "spec"), "rules"))
        .unwrap_or_default();
    let relaxed_service_names = old_rules.iter().any(|r| {
        items(get(r, "http"), "paths").iter().any(|p| {
            str_of(get(get(p, "backend"), "service"), "name")
                .starts_with(|c: char| c.is_ascii_digit())
        })
    });
    if let Some(backend) = spec.get("defaultBackend").filter(|b| !b.is_null()) {
        ingress_backend(
            backend,
            &sp.child("defaultBackend"),
            relaxed_service_names,
            errs,
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        let p = sp.child("rules").index(i);
        let host = str_of(rule, "host");
        if !host.is_empty() {
            if parse_ip(host).is_some() {
                errs.push(invalid(
                    &p.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            let msgs = if host.contains('*') {
                wildcard_dns1123_subdomain(host)
            } else {
                dns1123_subdomain(host)
            };
            for msg in msgs {
                errs.push(invalid(&p.child("host"), host, &msg));
            }
        }
        let Some(http) = rule.get("http").filter(|h| !h.is_null()) else {
            continue;
        };
        let hp = p.child("http");
        let paths = items(http, "paths");
        if paths.is_empty() {
            errs.push(required(&hp.child("paths"), ""));
        }
        for (j, path) in paths.iter().enumerate() {
            let pp = hp.child("paths").index(j);
            let Some(path_type) = opt_str(path, "pathType") else {
                errs.push(required(
                    &pp.child("pathType"),
                    "pathType must be specified",
                ));
                continue;
            };
            let value = str_of(path, "path");
            match path_type {
                "Exact" | "Prefix" => {
                    if !value.starts_with('/') {
                        errs.push(invalid(
                            &pp.child("path"),
                            value,
                            "must be an absolute path",
                        ));
                    }
                    for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                        if value.contains(seq) {
                            errs.push(invalid(
                                &pp.child("path"),
                                value,
                                &format!("must not contain '{seq}'"),
                            ));
                        }
                    }
                    for suffix in ["/..", "/."] {
                        if value.ends_with(suffix) {
                            errs.push(invalid(
                                &pp.child("path"),
                                value,
                                &format!("cannot end with '{suffix}'"),
                            ));
                        }
                    }
                }
                "ImplementationSpecific" => {
                    if !value.is_empty() && !value.starts_with('/') {
                        errs.push(invalid(
                            &pp.child("path"),
                            value,
                            "must be an absolute path",
                        ));
                    }
                }
                other => errs.push(not_supported(
                    &pp.child("pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            ingress_backend(
                get(path, "backend"),
                &pp.child("backend"),
                relaxed_service_names,
                errs,
            );
        }
    }
    let old_tls_invalid = old.is_some_and(|o| {
        items(get(o, "spec"), "tls").iter().any(|t| {
            !str_of(t, "secretName").is_empty()
                && !dns1123_subdomain(str_of(t, "secretName")).is_empty()
        })
    });
    for (i, tls) in items(spec, "tls").iter().enumerate() {
        let p = sp.child("tls").index(i);
        for (j, host) in strings(tls, "hosts").iter().enumerate() {
            let msgs = if host.contains('*') {
                wildcard_dns1123_subdomain(host)
            } else {
                dns1123_subdomain(host)
            };
            for msg in msgs {
                errs.push(invalid(&p.child("hosts").index(j), *host, &msg));
            }
        }
        let secret = str_of(tls, "secretName");
        if !secret.is_empty() && !old_tls_invalid {
            check_name(NameRule::Subdomain, &p.child("secretName"), secret, errs);
        }
    }
    if let Some(class) = opt_str(spec, "ingressClassName") {
        check_name(
            NameRule::Subdomain,
            &sp.child("ingressClassName"),
            class,
            errs,
        );
    }
    if old.is_none() {
        let annotated = opt_str(
            get(get(obj, "metadata"), "annotations"),
            "kubernetes.io/ingress.class",
        );
        if let (Some(annotated), Some(class)) = (annotated, opt_str(spec, "ingressClassName")) {
            if annotated != class {
                errs.push(invalid(
                    &Path::new("annotations.kubernetes.io/ingress.class"),
                    annotated,
                    "must match `ingressClassName` when both are specified",
                ));
            }
        }
    }
}

fn ingress_backend(backend: &Value, path: &Path, relaxed_service_names: bool, errs: &mut Errs) {
    match (
        is_set(backend, "resource"),
        backend.get("service").filter(|s| !s.is_null()),
    ) {
        (true, Some(_)) => errs.push(invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (true, None) => {
            typed_local_reference(get(backend, "resource"), &path.child("resource"), errs)
        }
        (false, Some(service)) => {
            let sp = path.child("service");
            match str_of(service, "name") {
                "" => errs.push(required(&sp.child("name"), "")),
                name => {
                    let rule = if relaxed_service_names {
                        NameRule::Label
                    } else {
                        NameRule::Dns1035
                    };
                    check_name(rule, &sp.child("name"), name, errs);
                }
            }
            let port = get(service, "port");
            let (name, number) = (str_of(port, "name"), int_of(port, "number").unwrap_or(0));
            match (name.is_empty(), number == 0) {
                (false, false) => {
                    errs.push(invalid(path, "", "cannot set both port name & port number"))
                }
                (false, true) => {
                    for msg in port_name(name) {
                        errs.push(invalid(&sp.child("port.name"), name, &msg));
                    }
                }
                (true, false) => {
                    for msg in port_number(number) {
                        errs.push(invalid(&sp.child("port.number"), number, &msg));
                    }
                }
                (true, true) => errs.push(required(path, "port name or number is required")),
            }
        }
        (false, None) => errs.push(invalid(path, "", "resource or service backend is required")),
    }
}

fn typed_local_reference(r: &Value, path: &Path, errs: &mut Errs) {
    if let Some(group) = opt_str(r, "apiGroup") {
        check_name(NameRule::Subdomain, &path.child("apiGroup"), group, errs);
    }
    for (field, missing) in [("kind", "kind is required"), ("name", "name is required")] {
        match str_of(r, field) {
            "" => errs.push(required(&path.child(field), missing)),
            value => {
                for msg in path_segment_name(value, false) {
                    errs.push(invalid(&path.child(field), value, &msg));
                }
            }
        }
    }
}

fn validate_ingress_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let cp = Path::new("spec.controller");
    let controller = str_of(spec, "controller");
    if controller.len() > 250 {
        errs.push(too_long(&cp, 250));
    }
    domain_prefixed_path(&cp, controller, errs);
    if let Some(params) = spec.get("parameters").filter(|p| !p.is_null()) {
        let pp = Path::new("spec.parameters");
        typed_local_reference(params, &pp, errs);
        match opt_str(params, "scope") {
            None => errs.push(required(&pp.child("scope"), "")),
            Some("Namespace") => match opt_str(params, "namespace") {
                None => errs.push(required(
                    &pp.child("namespace"),
                    "`parameters.scope` is set to 'Namespace'",
                )),
                Some(ns) => check_label(&pp.child("namespace"), ns, errs),
            },
            Some("Cluster") => {
                if is_set(params, "namespace") {
                    errs.push(forbidden(
                        &pp.child("namespace"),
                        "`parameters.scope` is set to 'Cluster'",
                    ));
                }
            }
            Some(other) => errs.push(not_supported(
                &pp.child("scope"),
                other,
                &["Cluster", "Namespace"],
            )),
        }
    }
    if let Some(old) = old {
        immutable(
            get(spec, "controller"),
            get(get(old, "spec"), "controller"),
            &cp,
            errs,
        );
    }
}

fn validate_network_policy(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    validate_label_selector(get(spec, "podSelector"), &sp.child("podSelector"), errs);
    // CIDRs already stored are not held to today's parsing again.
    let mut existing: HashSet<&str> = HashSet::new();
    if let Some(old) = old {
        for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
            for rule in items(get(old, "spec"), direction) {
                for peer in items(rule, peers) {
                    let block = get(peer, "ipBlock");
                    existing.insert(str_of(block, "cidr"));
                    existing.extend(strings(block, "except"));
                }
            }
        }
    }
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in items(spec, direction).iter().enumerate() {
            let rp = sp.child(direction).index(i);
            for (j, port) in items(rule, "ports").iter().enumerate() {
                network_policy_port(port, &rp.child("ports").index(j), errs);
            }
            for (j, peer) in items(rule, peers).iter().enumerate() {
                network_policy_peer(peer, &existing, &rp.child(peers).index(j), errs);
            }
        }
    }
    let types = strings(spec, "policyTypes");
    if types.len() > 2 {
        errs.push(invalid(
            &sp.child("policyTypes"),
            get(spec, "policyTypes").clone(),
            "may not specify more than two policyTypes",
        ));
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if *t != "Ingress" && *t != "Egress" {
            errs.push(not_supported(
                &sp.child("policyTypes").index(i),
                *t,
                &["Ingress", "Egress"],
            ));
        }
    }
}

fn network_policy_port(port: &Value, path: &Path, errs: &mut Errs) {
    if let Some(proto) = opt_str(port, "protocol") {
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            errs.push(not_supported(
                &path.child("protocol"),
                proto,
                &["TCP", "UDP", "SCTP"],
            ));
        }
    }
    let end = int_of(port, "endPort");
    match get(port, "port") {
        Value::Null => {
            if let Some(end) = end {
                errs.push(invalid(
                    &path.child("endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
        Value::String(name) => {
            if let Some(end) = end {
                errs.push(invalid(
                    &path.child("endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for msg in port_name(name) {
                errs.push(invalid(&path.child("port"), name.as_str(), &msg));
            }
        }
        number => {
            let n = number.as_i64().unwrap_or(0);
            for msg in port_number(n) {
                errs.push(invalid(&path.child("port"), n, &msg));
            }
            if let Some(end) = end {
                if end < n {
                    errs.push(invalid(
                        &path.child("endPort"),
                        n,
                        "must be greater than or equal to `port`",
                    ));
                }
                for msg in port_number(end) {
                    errs.push(invalid(&path.child("endPort"), end, &msg));
                }
            }
        }
    }
}

fn network_policy_peer(peer: &Value, existing: &HashSet<&str>, path: &Path, errs: &mut Errs) {
    let mut count = 0;
    for selector in ["podSelector", "namespaceSelector"] {
        if is_set(peer, selector) {
            count += 1;
            validate_label_selector(get(peer, selector), &path.child(selector), errs);
        }
    }
    if let Some(block) = peer.get("ipBlock").filter(|b| !b.is_null()) {
        count += 1;
        let bp = path.child("ipBlock");
        let cidr = str_of(block, "cidr");
        if cidr.is_empty() {
            errs.push(required(&bp.child("cidr"), ""));
        } else {
            if !existing.contains(cidr) {
                valid_cidr(&bp.child("cidr"), cidr, errs);
            }
            if let Some(net) = parse_cidr(cidr) {
                for (i, except) in strings(block, "except").iter().enumerate() {
                    let ep = bp.child("except").index(i);
                    if !existing.contains(except) {
                        valid_cidr(&ep, except, errs);
                    }
                    let Some(sub) = parse_cidr(except) else {
                        continue;
                    };
                    if !cidr_contains(net, sub.0) || net.1 >= sub.1 {
                        errs.push(invalid(&ep, *except, "must be a strict subset of `cidr`"));
                    }
                }
            }
        }
    }
    if count == 0 {
        errs.push(required(path, "must specify a peer"));
    } else if count > 1 && is_set(peer, "ipBlock") {
        errs.push(forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Policy, RBAC, scheduling, coordination

fn validate_pdb(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    if is_set(spec, "minAvailable") && is_set(spec, "maxUnavailable") {
        errs.push(invalid(
            &sp,
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for field in ["minAvailable", "maxUnavailable"] {
        if let Some(v) = spec.get(field).filter(|v| !v.is_null()) {
            positive_int_or_percent(v, &sp.child(field), errs);
            not_more_than_100_percent(v, &sp.child(field), errs);
        }
    }
    validate_label_selector(get(spec, "selector"), &sp.child("selector"), errs);
    if let Some(policy) = opt_str(spec, "unhealthyPodEvictionPolicy") {
        if policy != "AlwaysAllow" && policy != "IfHealthyBudget" {
            errs.push(not_supported(
                &sp.child("unhealthyPodEvictionPolicy"),
                policy,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn validate_policy_rules(obj: &Value, namespaced: bool, errs: &mut Errs) {
    for (i, rule) in items(obj, "rules").iter().enumerate() {
        let p = Path::new("rules").index(i);
        if items(rule, "verbs").is_empty() {
            errs.push(required(
                &p.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        if !items(rule, "nonResourceURLs").is_empty() {
            let urls = get(rule, "nonResourceURLs").clone();
            if namespaced {
                errs.push(invalid(
                    &p.child("nonResourceURLs"),
                    urls.clone(),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|f| !items(rule, f).is_empty())
            {
                errs.push(invalid(
                    &p.child("nonResourceURLs"),
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if items(rule, "apiGroups").is_empty() {
            errs.push(required(
                &p.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if items(rule, "resources").is_empty() {
            errs.push(required(
                &p.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn validate_role(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    validate_policy_rules(obj, true, errs);
}

fn validate_cluster_role(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    validate_policy_rules(obj, false, errs);
    if let Some(aggregation) = obj.get("aggregationRule").filter(|a| !a.is_null()) {
        let sp = Path::new("aggregationRule.clusterRoleSelectors");
        let selectors = items(aggregation, "clusterRoleSelectors");
        if selectors.is_empty() {
            errs.push(required(
                &sp,
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        for (i, selector) in selectors.iter().enumerate() {
            validate_label_selector(selector, &sp.index(i), errs);
        }
    }
}

fn validate_role_binding(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    validate_binding(obj, old, &["Role", "ClusterRole"], true, errs);
}

fn validate_cluster_role_binding(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    validate_binding(obj, old, &["ClusterRole"], false, errs);
}

fn validate_binding(
    obj: &Value,
    old: Option<&Value>,
    kinds: &[&str],
    namespaced: bool,
    errs: &mut Errs,
) {
    let role_ref = get(obj, "roleRef");
    let rp = Path::new("roleRef");
    let group = str_of(role_ref, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(not_supported(&rp.child("apiGroup"), group, &[RBAC_GROUP]));
    }
    let kind = str_of(role_ref, "kind");
    if !kinds.contains(&kind) {
        errs.push(not_supported(&rp.child("kind"), kind, kinds));
    }
    match str_of(role_ref, "name") {
        "" => errs.push(required(&rp.child("name"), "")),
        name => check_name(NameRule::PathSegment, &rp.child("name"), name, errs),
    }
    for (i, subject) in items(obj, "subjects").iter().enumerate() {
        let p = Path::new("subjects").index(i);
        let name = str_of(subject, "name");
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        // An absent apiGroup is what the v1 defaults would fill in.
        let group = opt_str(subject, "apiGroup");
        match str_of(subject, "kind") {
            "ServiceAccount" => {
                if !name.is_empty() {
                    check_name(NameRule::Subdomain, &p.child("name"), name, errs);
                }
                if let Some(g) = group.filter(|g| !g.is_empty()) {
                    errs.push(not_supported(&p.child("apiGroup"), g, &[""]));
                }
                if !namespaced && str_of(subject, "namespace").is_empty() {
                    errs.push(required(&p.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if let Some(g) = group.filter(|g| *g != RBAC_GROUP) {
                    errs.push(not_supported(&p.child("apiGroup"), g, &[RBAC_GROUP]));
                }
            }
            other => errs.push(not_supported(
                &p.child("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old {
        if !semantic_eq(role_ref, get(old, "roleRef")) {
            errs.push(invalid(&rp, role_ref.clone(), "cannot change roleRef"));
        }
    }
}

const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

fn validate_priority_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let name = str_of(get(obj, "metadata"), "name");
    let value = int_of(obj, "value").unwrap_or(0);
    if name.starts_with("system-") {
        let known = [
            ("system-node-critical", 2_000_001_000),
            ("system-cluster-critical", 2_000_000_000),
        ];
        let problem = match known.iter().find(|(n, _)| *n == name) {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, v)) if *v != value => {
                Some(format!("value of {name} PriorityClass must be {v}"))
            }
            Some(_) if is_true(obj, "globalDefault") => Some(format!(
                "globalDefault of {name} PriorityClass must be false"
            )),
            Some(_) => None,
        };
        if let Some(e) = problem {
            errs.push(forbidden(
                &Path::new("metadata.name"),
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {e}"),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        errs.push(forbidden(
            &Path::new("value"),
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(policy) = opt_str(obj, "preemptionPolicy") {
        preemption_policy(policy, &Path::new("preemptionPolicy"), errs);
    }
    if let Some(old) = old {
        if int_of(old, "value").unwrap_or(0) != value {
            errs.push(forbidden(
                &Path::new("value"),
                "may not be changed in an update.",
            ));
        }
        immutable(
            get(obj, "preemptionPolicy"),
            get(old, "preemptionPolicy"),
            &Path::new("preemptionPolicy"),
            errs,
        );
    }
}

fn validate_lease(obj: &Value, _old: Option<&Value>, errs: &mut Errs) {
    let spec = get(obj, "spec");
    let sp = Path::new("spec");
    if let Some(d) = int_of(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        errs.push(invalid(
            &sp.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int_of(spec, "leaseTransitions").filter(|t| *t < 0) {
        errs.push(invalid(&sp.child("leaseTransitions"), t, NEGATIVE));
    }
    if let Some(strategy) = opt_str(spec, "strategy") {
        if strategy != "OldestEmulationVersion" {
            errs.push(not_supported(
                &sp.child("strategy"),
                strategy,
                &["OldestEmulationVersion"],
            ));
        }
    }
    if !str_of(spec, "preferredHolder").is_empty() && str_of(spec, "strategy").is_empty() {
        errs.push(forbidden(
            &sp.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Entry points

type KindCheck = fn(&Value, Option<&Value>, &mut Errs);

/// The name rule and the checks of each kind orch serves; other kinds get the metadata checks
/// every Kubernetes registry applies, with path-segment names.
fn kind_rules(kind: &str, obj: &Value) -> (NameRule, Option<KindCheck>) {
    use NameRule::*;
    match kind {
        "Pod" => (Subdomain, Some(validate_pod)),
        "Service" => (Dns1035, Some(validate_service)),
        "Namespace" => (Label, Some(validate_namespace)),
        "Node" => (Subdomain, Some(validate_node)),
        "Endpoints" => (Subdomain, Some(validate_endpoints)),
        "ConfigMap" => (Subdomain, Some(validate_config_map)),
        "Secret" => (Subdomain, Some(validate_secret)),
        // Core v1 Events keep the legacy rules; only events.k8s.io names are checked strictly.
        "Event" if str_of(obj, "apiVersion").starts_with("events.k8s.io/") => {
            (Subdomain, Some(validate_event))
        }
        "Event" => (PathSegment, Some(validate_event)),
        "ServiceAccount" => (Subdomain, None),
        "ControllerRevision" => (Subdomain, Some(validate_controller_revision)),
        "LimitRange" => (Subdomain, Some(validate_limit_range)),
        "ResourceQuota" => (Subdomain, Some(validate_resource_quota)),
        "Lease" => (Subdomain, Some(validate_lease)),
        "PersistentVolume" => (Subdomain, Some(validate_persistent_volume)),
        "PersistentVolumeClaim" => (Subdomain, Some(validate_pvc)),
        "Deployment" => (Subdomain, Some(validate_deployment)),
        "ReplicaSet" => (Subdomain, Some(validate_replica_set)),
        "StatefulSet" => (Label, Some(validate_stateful_set)),
        "DaemonSet" => (Subdomain, Some(validate_daemon_set)),
        "Job" => (Subdomain, Some(validate_job)),
        "CronJob" => (Subdomain, Some(validate_cron_job)),
        "HorizontalPodAutoscaler" => (Subdomain, Some(validate_hpa)),
        "Ingress" => (Subdomain, Some(validate_ingress)),
        "IngressClass" => (Subdomain, Some(validate_ingress_class)),
        "NetworkPolicy" => (Subdomain, Some(validate_network_policy)),
        "PodDisruptionBudget" => (PathSegment, Some(validate_pdb)),
        "Role" => (PathSegment, Some(validate_role)),
        "ClusterRole" => (PathSegment, Some(validate_cluster_role)),
        "RoleBinding" => (PathSegment, Some(validate_role_binding)),
        "ClusterRoleBinding" => (PathSegment, Some(validate_cluster_role_binding)),
        "PriorityClass" => (Subdomain, Some(validate_priority_class)),
        "StorageClass" => (Subdomain, Some(validate_storage_class)),
        "EndpointSlice" => (Subdomain, Some(validate_endpoint_slice)),
        _ => (PathSegment, None),
    }
}

/// Whether the create rules of `spec` apply: always on create, on update only when the spec
/// changed (a status update, or a metadata-only one, leaves it as it was).
fn spec_changed(obj: &Value, old: Option<&Value>) -> bool {
    old.is_none_or(|old| !semantic_eq(get(obj, "spec"), get(old, "spec")))
}

/// Drops repeats, as `ErrorList.ToAggregate` does when Kubernetes checks a field twice.
fn dedup(errs: Errs) -> Errs {
    let mut seen = HashSet::new();
    errs.into_iter()
        .filter(|e| seen.insert(e.message()))
        .collect()
}

pub fn validate_create(kind: &str, obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let (rule, check) = kind_rules(kind, obj);
    let mut errs = Vec::new();
    validate_object_meta(obj, namespaced, rule, true, &mut errs);
    if let Some(check) = check {
        check(obj, None, &mut errs);
    }
    dedup(errs)
}

/// `ValidatePodEphemeralContainersUpdate`, for `pods/ephemeralcontainers`: the pod with its new spec is
/// valid, and ephemeral containers are only added, never changed or removed, and not to static pods.
pub fn validate_ephemeral_containers_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mirror = opt_str(
        get(get(old, "metadata"), "annotations"),
        "kubernetes.io/config.mirror",
    );
    if mirror.is_some() {
        return vec![forbidden(
            &Path::new(""),
            "static pods do not support ephemeral containers",
        )];
    }
    let mut errs = Vec::new();
    validate_object_meta(new, true, NameRule::Subdomain, true, &mut errs);
    validate_object_meta_update(new, old, &mut errs);
    let spec = get(new, "spec");
    let ctx = PodContext {
        is_pod: true,
        pod_name: str_of(get(new, "metadata"), "name"),
    };
    validate_pod_spec(spec, &Path::new("spec"), ctx, &mut errs);
    let path = Path::new("spec").child("ephemeralContainers");
    let now: HashMap<&str, &Value> = items(spec, "ephemeralContainers")
        .iter()
        .map(|c| (str_of(c, "name"), c))
        .collect();
    for before in items(get(old, "spec"), "ephemeralContainers") {
        let name = str_of(before, "name");
        match now.get(name) {
            None => errs.push(forbidden(
                &path,
                &format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(c) if !semantic_eq(c, before) => errs.push(forbidden(
                &path,
                &format!("existing ephemeral containers {name:?} may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
    dedup(errs)
}

/// `ValidatePodResize`, for `pods/resize`: the pod with its new spec is valid, keeps its QoS class
/// (`old_qos`, which `new_qos` is the class its new spec computes to), and of its containers and
/// sidecars only the cpu
/// and memory requests and limits changed, none of them removed. Pods with pod-level resources, static
/// pods and Windows pods are not resized at all.
pub fn validate_pod_resize(
    new: &Value,
    old: &Value,
    old_qos: &str,
    new_qos: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta(new, true, NameRule::Subdomain, true, &mut errs);
    validate_object_meta_update(new, old, &mut errs);
    let (spec, old_spec) = (get(new, "spec"), get(old, "spec"));
    let sp = Path::new("spec");
    let ctx = PodContext {
        is_pod: true,
        pod_name: str_of(get(new, "metadata"), "name"),
    };
    validate_pod_spec(spec, &sp, ctx, &mut errs);
    let stated = |spec: &Value| {
        let resources = get(spec, "resources");
        ["requests", "limits"]
            .iter()
            .any(|list| map_of(resources, list).is_some_and(|m| !m.is_empty()))
    };
    let root = Path::new("");
    if stated(spec) || stated(old_spec) {
        errs.push(forbidden(
            &root,
            "pods with pod-level resources cannot be resized",
        ));
        return dedup(errs);
    }
    let annotations = get(get(old, "metadata"), "annotations");
    if opt_str(annotations, "kubernetes.io/config.mirror").is_some() {
        errs.push(forbidden(&root, "static pods cannot be resized"));
        return dedup(errs);
    }
    if str_of(get(spec, "os"), "name") == "windows" {
        errs.push(forbidden(&root, "windows pods cannot be resized"));
        return dedup(errs);
    }
    if old_qos != new_qos {
        errs.push(invalid(
            &sp,
            old_qos,
            "Pod QOS Class may not change as a result of resizing",
        ));
    }
    let mut munged = spec.clone();
    for list in ["containers", "initContainers"] {
        let old_list = items(old_spec, list);
        let Some(containers) = munged.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, (c, before)) in containers.iter_mut().zip(old_list).enumerate() {
            let path = sp.child(list).index(i).child("resources");
            let sidecar = str_of(before, "restartPolicy") == "Always";
            if list == "initContainers" && !sidecar {
                if !semantic_eq(get(c, "resources"), get(before, "resources")) {
                    errs.push(forbidden(
                        &sp,
                        "resources for non-sidecar init containers are immutable",
                    ));
                }
                continue;
            }
            for kind in ["requests", "limits"] {
                let now = map_of(get(c, "resources"), kind);
                let removed = map_of(get(before, "resources"), kind)
                    .into_iter()
                    .flatten()
                    .any(|(name, _)| now.is_none_or(|n| !n.contains_key(name)));
                if removed {
                    let what = if kind == "requests" {
                        "resource requests cannot be removed"
                    } else {
                        "resource limits cannot be removed"
                    };
                    errs.push(forbidden(&path.child(kind), what));
                }
            }
            restore_cpu_and_memory(c, before);
            if !semantic_eq(c, before) {
                errs.push(forbidden(
                    &sp,
                    if sidecar {
                        "only cpu and memory resources for sidecar containers are mutable"
                    } else {
                        "only cpu and memory resources are mutable"
                    },
                ));
            }
        }
    }
    if errs.is_empty() && !semantic_eq(&munged, old_spec) {
        errs.push(forbidden(&sp, "only cpu and memory resources are mutable"));
    }
    dedup(errs)
}

/// Puts the container's cpu and memory requests and limits back to what `before` had, so that what
/// else changed shows (an emptied list compares equal to none).
fn restore_cpu_and_memory(container: &mut Value, before: &Value) {
    for kind in ["requests", "limits"] {
        let old = map_of(get(before, "resources"), kind);
        let mut list = map_of(get(container, "resources"), kind)
            .cloned()
            .unwrap_or_default();
        for name in ["cpu", "memory"] {
            match old.and_then(|o| o.get(name)) {
                Some(q) => list.insert(name.into(), q.clone()),
                None => list.remove(name),
            };
        }
        if !container["resources"].is_object() {
            container["resources"] = Value::Object(Map::new());
        }
        container["resources"][kind] = Value::Object(list);
    }
}

pub fn validate_update(kind: &str, new: &Value, old: &Value, namespaced: bool) -> Vec<FieldError> {
    let (rule, check) = kind_rules(kind, new);
    let mut errs = Vec::new();
    // A name cannot change on update, and some kinds once allowed names they no longer do.
    let check_name = !matches!(kind, "StatefulSet" | "CronJob");
    validate_object_meta(new, namespaced, rule, check_name, &mut errs);
    validate_object_meta_update(new, old, &mut errs);
    // These kinds have a status subresource and only spec rules, none about changes.
    let spec_only = matches!(
        kind,
        "HorizontalPodAutoscaler" | "Ingress" | "PodDisruptionBudget" | "ResourceQuota"
    );
    if let Some(check) = check.filter(|_| !spec_only || spec_changed(new, Some(old))) {
        check(new, Some(old), &mut errs);
    }
    dedup(errs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    /// Cluster-scoped kinds among those the tests use.
    fn namespaced(kind: &str) -> bool {
        !matches!(
            kind,
            "Namespace"
                | "Node"
                | "PersistentVolume"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "PriorityClass"
                | "StorageClass"
                | "IngressClass"
        )
    }

    fn create(kind: &str, obj: &Value) -> Vec<String> {
        validate_create(kind, obj, namespaced(kind))
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn update(kind: &str, new: &Value, old: &Value) -> Vec<String> {
        validate_update(kind, new, old, namespaced(kind))
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn object(kind: &str, name: &str, body: Value) -> Value {
        let mut obj =
            json!({"kind": kind, "metadata": {"name": name, "uid": "u1", "resourceVersion": "1"}});
        if namespaced(kind) {
            obj["metadata"]["namespace"] = json!("default");
        }
        for (k, v) in body.as_object().unwrap() {
            obj[k] = v.clone();
        }
        obj
    }

    /// `obj` with the field at a JSON pointer set, the field created if need be.
    fn with(mut obj: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match obj.pointer_mut(parent).unwrap() {
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
            other => other[key] = value,
        }
        obj
    }

    /// A container as the defaults leave it.
    fn container(name: &str, image: &str) -> Value {
        json!({
            "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "resources": {}
        })
    }

    fn pod_spec(restart: &str) -> Value {
        json!({
            "containers": [container("app", "nginx:1.27")],
            "restartPolicy": restart, "dnsPolicy": "ClusterFirst", "securityContext": {},
            "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"
        })
    }

    fn template(restart: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(restart)})
    }

    fn pod() -> Value {
        object("Pod", "web-0", json!({"spec": pod_spec("Always")}))
    }

    fn deployment() -> Value {
        object(
            "Deployment",
            "web",
            json!({"spec": {
                "replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template("Always"),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600
            }}),
        )
    }

    fn service() -> Value {
        object(
            "Service",
            "web",
            json!({"spec": {
                "type": "ClusterIP", "selector": {"app": "web"}, "sessionAffinity": "None",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"
            }}),
        )
    }

    fn job() -> Value {
        object(
            "Job",
            "pi",
            json!({"spec": {
                "parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
                "suspend": false, "podReplacementPolicy": "TerminatingOrFailed", "manualSelector": false,
                "template": template("Never")
            }}),
        )
    }

    #[test]
    fn a_resize_changes_only_cpu_and_memory_of_containers_and_sidecars_and_keeps_the_qos_class() {
        let resize = |new: &Value, old: &Value, qos: &str| -> Vec<String> {
            validate_pod_resize(new, old, "Burstable", qos)
                .iter()
                .map(FieldError::message)
                .collect()
        };
        let sized =
            |requests: Value, limits: Value| json!({"requests": requests, "limits": limits});
        let mut old = with(
            pod(),
            "/spec/containers/0/resources",
            sized(
                json!({"cpu": "100m", "memory": "32Mi"}),
                json!({"cpu": "200m"}),
            ),
        );
        old["status"] = json!({"qosClass": "Burstable"});
        let grown = with(
            old.clone(),
            "/spec/containers/0/resources",
            sized(
                json!({"cpu": "150m", "memory": "48Mi"}),
                json!({"cpu": "300m", "memory": "64Mi"}),
            ),
        );
        assert_eq!(resize(&grown, &old, "Burstable"), Vec::<String>::new());
        assert_eq!(
            resize(&grown, &old, "Guaranteed"),
            ["spec: Invalid value: \"Burstable\": Pod QOS Class may not change as a result of resizing"]
        );
        let removed = with(
            old.clone(),
            "/spec/containers/0/resources",
            sized(json!({"cpu": "100m"}), json!({})),
        );
        assert_eq!(
            resize(&removed, &old, "Burstable"),
            [
                "spec.containers[0].resources.requests: Forbidden: resource requests cannot be removed",
                "spec.containers[0].resources.limits: Forbidden: resource limits cannot be removed",
            ]
        );
        let storage = with(
            old.clone(),
            "/spec/containers/0/resources/limits/ephemeral-storage",
            json!("1Gi"),
        );
        assert_eq!(
            resize(&storage, &old, "Burstable"),
            ["spec: Forbidden: only cpu and memory resources are mutable"]
        );
        let image = with(old.clone(), "/spec/containers/0/image", json!("nginx:1.28"));
        assert_eq!(
            resize(&image, &old, "Burstable"),
            ["spec: Forbidden: only cpu and memory resources are mutable"]
        );

        let sidecar = with(
            container("proxy", "envoy"),
            "/restartPolicy",
            json!("Always"),
        );
        let mut inits = old.clone();
        inits["spec"]["initContainers"] = json!([container("setup", "busybox"), sidecar]);
        let sidecar_grown = with(
            inits.clone(),
            "/spec/initContainers/1/resources",
            sized(json!({"cpu": "50m"}), json!({})),
        );
        assert_eq!(
            resize(&sidecar_grown, &inits, "Burstable"),
            Vec::<String>::new()
        );
        let init_grown = with(
            inits.clone(),
            "/spec/initContainers/0/resources",
            sized(json!({"cpu": "50m"}), json!({})),
        );
        assert_eq!(
            resize(&init_grown, &inits, "Burstable"),
            ["spec: Forbidden: resources for non-sidecar init containers are immutable"]
        );

        let mut pod_level = grown.clone();
        pod_level["spec"]["resources"] = json!({"limits": {"cpu": "1"}});
        assert_eq!(
            resize(&pod_level, &old, "Burstable"),
            [": Forbidden: pods with pod-level resources cannot be resized"]
        );
        let mut mirror = old.clone();
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        let mut mirror_grown = grown.clone();
        mirror_grown["metadata"]["annotations"] = mirror["metadata"]["annotations"].clone();
        assert_eq!(
            resize(&mirror_grown, &mirror, "Burstable"),
            [": Forbidden: static pods cannot be resized"]
        );
    }

    #[test]
    fn ephemeral_containers_are_added_only_and_kept_out_of_the_workload() {
        let ephemeral_update = |new: &Value, old: &Value| -> Vec<String> {
            validate_ephemeral_containers_update(new, old)
                .iter()
                .map(FieldError::message)
                .collect()
        };
        let debugger = with(
            container("debugger", "busybox"),
            "/targetContainerName",
            json!("app"),
        );
        let old = pod();
        let added = with(
            pod(),
            "/spec/ephemeralContainers",
            json!([debugger.clone()]),
        );
        assert_eq!(ephemeral_update(&added, &old), Vec::<String>::new());
        // The main resource may not add them, nor a create carry them.
        assert!(update("Pod", &added, &old)
            .iter()
            .any(|m| m.starts_with("spec: Forbidden: pod updates may not change fields")));
        assert!(create("Pod", &added)
            .contains(&"spec.ephemeralContainers: Forbidden: cannot be set on create".to_string()));

        let changed = with(
            added.clone(),
            "/spec/ephemeralContainers/0/image",
            json!("busybox:1.37"),
        );
        assert_eq!(
            ephemeral_update(&changed, &added),
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be changed\n"]
        );
        assert_eq!(
            ephemeral_update(&old, &added),
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed\n"]
        );

        let mut workload = with(debugger, "/name", json!("app"));
        workload["targetContainerName"] = json!("db");
        workload["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
        workload["readinessProbe"] = json!({"tcpSocket": {"port": 80}});
        workload["volumeMounts"] = json!([{"name": "data", "mountPath": "/d", "subPath": "x"}]);
        let mut bad = with(pod(), "/spec/ephemeralContainers", json!([workload]));
        bad["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
        assert_eq!(
            ephemeral_update(&bad, &old),
            [
                "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[0].targetContainerName: Not found: \"db\"",
                "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
            ]
        );
        let mut mirrored = pod();
        mirrored["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        mirrored["spec"]["nodeName"] = json!("n1");
        let mut mirrored_added = with(mirrored.clone(), "/spec/ephemeralContainers", json!([]));
        mirrored_added["spec"]["ephemeralContainers"] =
            added["spec"]["ephemeralContainers"].clone();
        assert_eq!(
            ephemeral_update(&mirrored_added, &mirrored),
            [": Forbidden: static pods do not support ephemeral containers"]
        );
    }

    #[test]
    fn messages_and_reasons_follow_field_errors() {
        let p = Path::new("spec.replicas");
        assert_eq!(
            invalid(&p, -1, NEGATIVE).message(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(required(&p, "").message(), "spec.replicas: Required value");
        assert_eq!(
            duplicate(&p, "x").message(),
            "spec.replicas: Duplicate value: \"x\""
        );
        assert_eq!(
            not_found(&p, "x").message(),
            "spec.replicas: Not found: \"x\""
        );
        assert_eq!(
            forbidden(&p, "no").message(),
            "spec.replicas: Forbidden: no"
        );
        assert_eq!(
            too_long(&p, 63).message(),
            "spec.replicas: Too long: may not be more than 63 bytes"
        );
        assert_eq!(
            too_many(&p, 3, 2).message(),
            "spec.replicas: Too many: 3: must have at most 2 items"
        );
        assert_eq!(
            not_supported(&p, "Sometimes", &["Always", "OnFailure", "Never"]).message(),
            "spec.replicas: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        // An omitted value (Kubernetes' omitValue) prints nothing, a nil one prints null.
        assert_eq!(
            field_error(ErrorType::Invalid, &p, None, "detail").message(),
            "spec.replicas: Invalid value: detail"
        );
        assert_eq!(
            invalid(&p, Value::Null, "detail").message(),
            "spec.replicas: Invalid value: null: detail"
        );
        let reasons: Vec<&str> = [
            required(&p, ""),
            invalid(&p, 1, ""),
            not_supported(&p, "", &[]),
            duplicate(&p, ""),
            too_long(&p, 1),
            forbidden(&p, ""),
            too_many(&p, 1, 1),
            not_found(&p, ""),
        ]
        .iter()
        .map(FieldError::reason)
        .collect();
        assert_eq!(
            reasons,
            [
                "FieldValueRequired",
                "FieldValueInvalid",
                "FieldValueNotSupported",
                "FieldValueDuplicate",
                "FieldValueTooLong",
                "FieldValueForbidden",
                "FieldValueTooMany",
                "FieldValueNotFound"
            ]
        );
    }

    #[test]
    fn values_render_like_go() {
        assert_eq!(render_value("a", &json!("tab\there")), "\"tab\\there\"");
        assert_eq!(
            render_value(
                "spec.template.metadata.labels",
                &json!({"b": "2", "a": "1"})
            ),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
        assert_eq!(
            render_value("spec.template.metadata.labels", &Value::Null),
            "map[string]string(nil)"
        );
        assert_eq!(
            render_value("x.maxSurge", &json!(0)),
            "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}"
        );
        assert_eq!(
            render_value("x.maxSurge", &json!("120%")),
            "intstr.IntOrString{Type:1, IntVal:0, StrVal:\"120%\"}"
        );
        assert_eq!(
            render_value("spec.selector", &json!({"matchLabels": {"app": "b"}})),
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
        assert_eq!(
            render_value("a", &json!(["x", "y"])),
            "[]string{\"x\", \"y\"}"
        );
    }

    #[test]
    fn name_is_required_and_formatted_per_kind() {
        let cm = object("ConfigMap", "", json!({}));
        assert_eq!(
            create("ConfigMap", &cm),
            ["metadata.name: Required value: name or generateName is required"]
        );
        let cm = object("ConfigMap", "Bad_Name", json!({}));
        assert_eq!(
            create("ConfigMap", &cm),
            [format!(
                "metadata.name: Invalid value: \"Bad_Name\": {SUBDOMAIN_ERR}"
            )]
        );
        let ns = object("Namespace", "a.b", json!({}));
        assert_eq!(
            create("Namespace", &ns),
            ["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
        let mut svc = service();
        svc["metadata"]["name"] = json!("1web");
        assert_eq!(
            create("Service", &svc),
            ["metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
        );
        let role = object("Role", "a/b", json!({"rules": []}));
        assert_eq!(
            create("Role", &role),
            ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
        );
        let role = object("Role", "System:Reader", json!({"rules": []}));
        assert!(create("Role", &role).is_empty());
        let long = "a".repeat(64);
        let sts = with(
            object("StatefulSet", &long, json!({})),
            "/metadata/name",
            json!(long),
        );
        assert!(create("StatefulSet", &sts).contains(&format!(
            "metadata.name: Invalid value: \"{long}\": must be no more than 63 bytes"
        )));
        let unknown = object("Widget", "x", json!({}));
        assert!(create("Widget", &unknown).is_empty());
    }

    #[test]
    fn generate_name_prefix_may_end_in_a_dash() {
        let mut cm = object("ConfigMap", "web-abcde", json!({}));
        cm["metadata"]["generateName"] = json!("web-");
        assert!(create("ConfigMap", &cm).is_empty());
        cm["metadata"]["generateName"] = json!("Web-");
        assert_eq!(create("ConfigMap", &cm).len(), 1);
    }

    #[test]
    fn namespace_is_required_or_forbidden_by_scope() {
        let mut cm = object("ConfigMap", "c", json!({}));
        cm["metadata"].as_object_mut().unwrap().remove("namespace");
        assert_eq!(
            create("ConfigMap", &cm),
            ["metadata.namespace: Required value"]
        );
        let mut node = object("Node", "n1", json!({}));
        node["metadata"]["namespace"] = json!("default");
        assert_eq!(
            create("Node", &node),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn labels_annotations_owners_and_finalizers() {
        let mut cm = object("ConfigMap", "c", json!({}));
        cm["metadata"]["labels"] = json!({"-bad": "ok", "good": "x".repeat(64)});
        cm["metadata"]["annotations"] = json!({"big": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)});
        cm["metadata"]["finalizers"] = json!(["kubernetes", "foo", "example.com/foo"]);
        cm["metadata"]["ownerReferences"] = json!([
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "", "controller": true}
        ]);
        assert_eq!(
            create("ConfigMap", &cm),
            [
                "metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string(),
                format!("metadata.labels: Invalid value: \"{}\": must be no more than 63 bytes", "x".repeat(64)),
                "metadata.annotations: Too long: may not be more than 262144 bytes".to_string(),
                "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty".to_string(),
                "metadata.ownerReferences: Invalid value: [{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"a\",\"uid\":\"1\",\"controller\":true},{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"b\",\"uid\":\"\",\"controller\":true}]: Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b".to_string(),
                "metadata.finalizers[1]: Invalid value: \"foo\": name is neither a standard finalizer name nor is it fully qualified".to_string(),
            ]
        );
    }

    #[test]
    fn metadata_is_immutable_on_update() {
        let old = object("ConfigMap", "c", json!({}));
        let mut new = old.clone();
        new["metadata"]["uid"] = json!("u2");
        new["metadata"]["name"] = json!("d");
        assert_eq!(
            update("ConfigMap", &new, &old),
            [
                "metadata.name: Invalid value: \"d\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable"
            ]
        );
        let mut deleting = old.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        let mut new = deleting.clone();
        new["metadata"]["finalizers"] = json!(["example.com/x"]);
        assert_eq!(
            update("ConfigMap", &new, &deleting),
            ["metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/x\"}"]
        );
    }

    #[test]
    fn a_defaulted_pod_is_valid() {
        assert!(
            create("Pod", &pod()).is_empty(),
            "{:?}",
            create("Pod", &pod())
        );
    }

    #[test]
    fn pod_containers_images_and_names() {
        let p = with(pod(), "/spec/containers", json!([]));
        assert_eq!(create("Pod", &p), ["spec.containers: Required value"]);
        let p = with(pod(), "/spec/containers/0/image", json!(""));
        assert_eq!(
            create("Pod", &p),
            ["spec.containers[0].image: Required value"]
        );
        let p = with(pod(), "/spec/containers/0/image", json!(" nginx"));
        assert_eq!(create("Pod", &p), ["spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace"]);
        let mut p = pod();
        p["spec"]["initContainers"] = json!([container("app", "busybox")]);
        p["spec"]["containers"][0]["name"] = json!("App");
        assert_eq!(
            create("Pod", &p),
            [
                "spec.containers[0].name: Invalid value: \"App\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ]
        );
        p["spec"]["containers"][0]["name"] = json!("app");
        assert_eq!(
            create("Pod", &p),
            ["spec.initContainers[0].name: Duplicate value: \"app\""]
        );
    }

    #[test]
    fn pod_policies() {
        let p = with(pod(), "/spec/restartPolicy", json!("Sometimes"));
        assert_eq!(create("Pod", &p), ["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]);
        let p = with(pod(), "/spec/dnsPolicy", json!("Google"));
        assert_eq!(
            create("Pod", &p),
            ["spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""]
        );
        let p = with(
            pod(),
            "/spec/containers/0/imagePullPolicy",
            json!("Sometimes"),
        );
        assert_eq!(
            create("Pod", &p),
            ["spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\""]
        );
        let p = with(pod(), "/spec/activeDeadlineSeconds", json!(0));
        assert_eq!(create("Pod", &p), ["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"]);
    }

    #[test]
    fn pod_ports_and_env() {
        let c = with(
            container("app", "nginx"),
            "/ports",
            json!([
                {"name": "http", "containerPort": 80, "protocol": "TCP"},
                {"name": "http", "containerPort": 70000, "protocol": "ICMP"},
                {"containerPort": 0, "protocol": "TCP"}
            ]),
        );
        let c = with(
            c,
            "/env",
            json!([
                {"name": "A=B", "value": "x"},
                {"name": "", "value": "x"},
                {"name": "REF", "valueFrom": {}},
                {"name": "BOTH", "value": "v", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "BAD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.restartPolicy"}}}
            ]),
        );
        let p = with(pod(), "/spec/containers/0", c);
        assert_eq!(
            create("Pod", &p),
            [
                "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[2].containerPort: Required value",
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].env[1].name: Required value",
                "spec.containers[0].env[2].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                "spec.containers[0].env[3].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
                "spec.containers[0].env[4].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.restartPolicy\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
            ]
        );
    }

    #[test]
    fn pod_resources() {
        let p = with(
            pod(),
            "/spec/containers/0/resources",
            json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2", "memory": "-1Gi", "gpu": "1"}}),
        );
        assert_eq!(
            create("Pod", &p),
            [
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                "spec.containers[0].resources.requests[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0",
                "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified",
                "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
            ]
        );
        let p = with(
            pod(),
            "/spec/containers/0/resources",
            json!({"limits": {"example.com/gpu": "1", "hugepages-2Mi": "3Mi", "memory": "1Gi"}, "requests": {"example.com/gpu": "1"}}),
        );
        assert_eq!(create("Pod", &p), ["spec.containers[0].resources.limits[hugepages-2Mi]: Invalid value: \"3Mi\": 3Mi is not positive integer multiple of hugepages-2Mi"]);
    }

    #[test]
    fn pod_volumes_and_mounts() {
        let mut p = pod();
        p["spec"]["volumes"] = json!([
            {"name": "data", "emptyDir": {}},
            {"name": "data", "configMap": {"name": "c", "defaultMode": 420}},
            {"name": "both", "emptyDir": {}, "secret": {"secretName": "s"}},
            {"name": "none"}
        ]);
        p["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/d"}, {"name": "missing", "mountPath": "/d"}]);
        assert_eq!(
            create("Pod", &p),
            [
                "spec.volumes[1].name: Duplicate value: \"data\"",
                "spec.volumes[2].secret: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[3]: Required value: must specify a volume type",
                "spec.containers[0].volumeMounts[1].name: Not found: \"missing\"",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique",
            ]
        );
    }

    #[test]
    fn pod_probes_tolerations_and_security() {
        let mut p = pod();
        p["spec"]["containers"][0]["livenessProbe"] = json!({"periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 2, "failureThreshold": 3});
        p["spec"]["containers"][0]["readinessProbe"] = json!({"httpGet": {"path": "/", "port": "web-http-port-too-long", "scheme": "HTTP"}, "tcpSocket": {"port": 80}, "periodSeconds": -1, "successThreshold": 1});
        p["spec"]["tolerations"] = json!([{"operator": "Equal", "value": "x"}, {"key": "k", "operator": "Exists", "value": "v"}, {"key": "k", "effect": "Sometimes"}]);
        p["spec"]["securityContext"] = json!({"runAsUser": -1});
        assert_eq!(
            create("Pod", &p),
            [
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe.httpGet.port: Invalid value: \"web-http-port-too-long\": must be no more than 15 bytes",
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
                "spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 4294967295, inclusive",
                "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                "spec.tolerations[1].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
                "spec.tolerations[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            ]
        );
    }

    #[test]
    fn pod_updates_may_change_only_some_fields() {
        let old = pod();
        let mut new = with(old.clone(), "/spec/containers/0/image", json!("nginx:1.28"));
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        assert!(
            update("Pod", &new, &old).is_empty(),
            "{:?}",
            update("Pod", &new, &old)
        );
        let new = with(old.clone(), "/spec/restartPolicy", json!("Never"));
        assert_eq!(
            update("Pod", &new, &old),
            [format!("spec: Forbidden: pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n  spec.restartPolicy: \"Always\" -> \"Never\"")]
        );
        let mut new = old.clone();
        new["spec"]["containers"] = json!([container("app", "nginx"), container("b", "nginx")]);
        assert_eq!(
            update("Pod", &new, &old),
            ["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        let mut with_deadline = old.clone();
        with_deadline["spec"]["activeDeadlineSeconds"] = json!(10);
        let longer = with(
            with_deadline.clone(),
            "/spec/activeDeadlineSeconds",
            json!(20),
        );
        assert_eq!(update("Pod", &longer, &with_deadline), ["spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"]);
        // A status update leaves the spec alone and is not held to the spec rules again.
        let mut status = old.clone();
        status["status"] = json!({"phase": "Running"});
        assert!(update("Pod", &status, &old).is_empty());
    }

    #[test]
    fn deployments() {
        assert!(
            create("Deployment", &deployment()).is_empty(),
            "{:?}",
            create("Deployment", &deployment())
        );
        let d = with(
            deployment(),
            "/spec/template/metadata/labels",
            json!({"app": "x"}),
        );
        assert_eq!(create("Deployment", &d), ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"]);
        let d = with(
            deployment(),
            "/spec/template/spec/restartPolicy",
            json!("Never"),
        );
        assert_eq!(create("Deployment", &d), ["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]);
        let d = with(deployment(), "/spec/replicas", json!(-1));
        assert_eq!(
            create("Deployment", &d),
            ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
        let d = with(
            deployment(),
            "/spec/strategy/rollingUpdate",
            json!({"maxUnavailable": 0, "maxSurge": "0%"}),
        );
        assert_eq!(
            create("Deployment", &d),
            ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0"]
        );
        let d = with(deployment(), "/spec/selector", json!({}));
        assert_eq!(
            create("Deployment", &d),
            ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
        );
        let mut d = deployment();
        d["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(
            create("Deployment", &d),
            ["spec.selector: Required value", "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"]
        );
        let d = with(deployment(), "/spec/progressDeadlineSeconds", json!(0));
        assert_eq!(create("Deployment", &d), ["spec.progressDeadlineSeconds: Invalid value: 0: must be greater than minReadySeconds"]);
    }

    #[test]
    fn workload_selectors_are_immutable() {
        let old = deployment();
        let mut new = with(
            old.clone(),
            "/spec/selector",
            json!({"matchLabels": {"app": "web", "tier": "x"}}),
        );
        new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
        assert_eq!(
            update("Deployment", &new, &old),
            ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
        let scaled = with(old.clone(), "/spec/replicas", json!(3));
        assert!(update("Deployment", &scaled, &old).is_empty());
        let rs = with(deployment(), "/kind", json!("ReplicaSet"));
        let changed = with(rs.clone(), "/spec/selector/matchLabels/app", json!("other"));
        assert!(update("ReplicaSet", &changed, &rs).contains(&"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"other\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable".to_string()));
    }

    fn daemon_set() -> Value {
        object(
            "DaemonSet",
            "agent",
            json!({"spec": {
                "selector": {"matchLabels": {"app": "web"}}, "template": template("Always"), "revisionHistoryLimit": 10,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
            }}),
        )
    }

    #[test]
    fn daemon_sets() {
        assert!(create("DaemonSet", &daemon_set()).is_empty());
        let d = with(
            daemon_set(),
            "/spec/updateStrategy/rollingUpdate",
            json!({"maxUnavailable": 1, "maxSurge": 1}),
        );
        assert_eq!(
            create("DaemonSet", &d),
            ["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero"]
        );
    }

    fn stateful_set() -> Value {
        object(
            "StatefulSet",
            "db",
            json!({"spec": {
                "replicas": 1, "serviceName": "db", "podManagementPolicy": "OrderedReady", "selector": {"matchLabels": {"app": "web"}},
                "template": template("Always"), "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}, "revisionHistoryLimit": 10
            }}),
        )
    }

    #[test]
    fn stateful_sets() {
        assert!(create("StatefulSet", &stateful_set()).is_empty());
        let s = with(
            stateful_set(),
            "/spec/podManagementPolicy",
            json!("Eventually"),
        );
        assert_eq!(create("StatefulSet", &s), ["spec.podManagementPolicy: Invalid value: \"Eventually\": must be 'OrderedReady' or 'Parallel'"]);
        let old = stateful_set();
        let new = with(old.clone(), "/spec/serviceName", json!("other"));
        assert_eq!(
            update("StatefulSet", &new, &old),
            ["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
        );
        let scaled = with(
            old.clone(),
            "/spec/template/spec/containers/0/image",
            json!("nginx:2"),
        );
        assert!(update("StatefulSet", &scaled, &old).is_empty());
    }

    #[test]
    fn jobs() {
        assert!(
            create("Job", &job()).is_empty(),
            "{:?}",
            create("Job", &job())
        );
        let j = with(job(), "/spec/template/spec/restartPolicy", json!("Always"));
        assert_eq!(create("Job", &j), ["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]);
        let mut j = with(job(), "/spec/completionMode", json!("Indexed"));
        j["spec"].as_object_mut().unwrap().remove("completions");
        j["spec"]["backoffLimit"] = json!(-1);
        assert_eq!(
            create("Job", &j),
            [
                "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
                "spec.completions: Required value: when completion mode is Indexed"
            ]
        );
        let old = job();
        let new = with(
            old.clone(),
            "/spec/template/spec/containers/0/image",
            json!("perl"),
        );
        let errs = update("Job", &new, &old);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("spec.template: Invalid value: {")
                && errs[0].ends_with("}: field is immutable")
        );
        let new = with(old.clone(), "/spec/completions", json!(2));
        assert_eq!(
            update("Job", &new, &old),
            ["spec.completions: Invalid value: 2: field is immutable"]
        );
    }

    fn cron_job(schedule: &str) -> Value {
        object(
            "CronJob",
            "nightly",
            json!({"spec": {
                "schedule": schedule, "concurrencyPolicy": "Allow", "suspend": false,
                "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"spec": {"template": template("OnFailure")}}
            }}),
        )
    }

    #[test]
    fn cron_jobs_and_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 1 jan-mar mon",
            "@hourly",
            "@every 1h30m",
            "5,10 1-3/2 ? * 0",
        ] {
            assert!(
                create("CronJob", &cron_job(ok)).is_empty(),
                "{ok}: {:?}",
                create("CronJob", &cron_job(ok))
            );
        }
        let cases = [
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("@often", "unrecognized descriptor: @often"),
            (
                "@every 5d",
                "failed to parse duration @every 5d: time: unknown unit \"d\" in duration \"5d\"",
            ),
        ];
        for (schedule, detail) in cases {
            assert_eq!(
                create("CronJob", &cron_job(schedule)),
                [format!(
                    "spec.schedule: Invalid value: {}: {detail}",
                    go_quote(schedule)
                )]
            );
        }
        assert_eq!(
            create("CronJob", &cron_job("TZ=UTC 0 * * * *")),
            ["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        let c = with(
            cron_job("@daily"),
            "/spec/concurrencyPolicy",
            json!("Sometimes"),
        );
        assert_eq!(create("CronJob", &c), ["spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""]);
        let c = with(
            cron_job("@daily"),
            "/spec/jobTemplate/spec/template/spec/restartPolicy",
            json!("Always"),
        );
        assert_eq!(create("CronJob", &c), ["spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]);
        let long = format!("n{}", "a".repeat(52));
        let c = with(cron_job("@daily"), "/metadata/name", json!(long));
        assert_eq!(
            create("CronJob", &c),
            [format!(
                "metadata.name: Invalid value: \"{long}\": must be no more than 52 bytes"
            )]
        );
    }

    #[test]
    fn services() {
        assert!(
            create("Service", &service()).is_empty(),
            "{:?}",
            create("Service", &service())
        );
        let mut s = service();
        s["spec"]["ports"] = json!([{"port": 80, "protocol": "TCP", "targetPort": 80}, {"name": "b", "port": 80, "protocol": "TCP", "targetPort": "http", "nodePort": 30080}]);
        s["spec"]["type"] = json!("ClusterIP");
        s["spec"]["clusterIP"] = json!("10.0.0.300");
        s["spec"]["clusterIPs"] = json!(["10.0.0.300"]);
        assert_eq!(
            create("Service", &s),
            [
                "spec.ports[0].name: Required value",
                "spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.ports[1].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ]
        );
        let external = object(
            "Service",
            "ext",
            json!({"spec": {"type": "ExternalName", "sessionAffinity": "None"}}),
        );
        assert_eq!(
            create("Service", &external),
            ["spec.externalName: Required value"]
        );
        let s = with(service(), "/spec/type", json!("Magic"));
        assert_eq!(
            create("Service", &s),
            ["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
        );
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let mut old = service();
        old["spec"]["clusterIP"] = json!("10.0.0.10");
        old["spec"]["clusterIPs"] = json!(["10.0.0.10"]);
        let new = with(
            with(old.clone(), "/spec/clusterIP", json!("10.0.0.11")),
            "/spec/clusterIPs",
            json!(["10.0.0.11"]),
        );
        assert_eq!(update("Service", &new, &old), ["spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.11\"}: may not change once set"]);
        // Omitting the cluster IP keeps the allocated one.
        let mut kept = old.clone();
        kept["spec"].as_object_mut().unwrap().remove("clusterIP");
        kept["spec"].as_object_mut().unwrap().remove("clusterIPs");
        assert!(update("Service", &kept, &old).is_empty());
        // Switching to NodePort and back drops the node ports the client sent back.
        let mut node_port = old.clone();
        node_port["spec"]["type"] = json!("NodePort");
        node_port["spec"]["externalTrafficPolicy"] = json!("Cluster");
        node_port["spec"]["ports"][0]["nodePort"] = json!(30001);
        let mut back = node_port.clone();
        back["spec"]["type"] = json!("ClusterIP");
        assert!(
            update("Service", &back, &node_port).is_empty(),
            "{:?}",
            update("Service", &back, &node_port)
        );
    }

    #[test]
    fn config_maps_and_secrets() {
        let cm = object(
            "ConfigMap",
            "c",
            json!({"data": {"ok.key": "v", "bad/key": "v"}}),
        );
        assert_eq!(
            create("ConfigMap", &cm),
            ["data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]
        );
        let big = object(
            "ConfigMap",
            "c",
            json!({"data": {"k": "x".repeat(MAX_SECRET_SIZE + 1)}}),
        );
        assert_eq!(
            create("ConfigMap", &big),
            ["[]: Too long: may not be more than 1048576 bytes"]
        );
        let old = object(
            "ConfigMap",
            "c",
            json!({"immutable": true, "data": {"k": "v"}}),
        );
        let new = with(old.clone(), "/data/k", json!("w"));
        assert_eq!(
            update("ConfigMap", &new, &old),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let tls = object(
            "Secret",
            "s",
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
        );
        assert_eq!(create("Secret", &tls), ["data[tls.key]: Required value"]);
        let docker = object(
            "Secret",
            "s",
            json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "W10="}}),
        );
        assert_eq!(
            create("Secret", &docker),
            ["data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": json: cannot unmarshal array into Go value of type map[string]interface {}"]
        );
        let token = object(
            "Secret",
            "s",
            json!({"type": "kubernetes.io/service-account-token"}),
        );
        assert_eq!(
            create("Secret", &token),
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        let old = object("Secret", "s", json!({"type": "Opaque"}));
        let new = with(old.clone(), "/type", json!("kubernetes.io/basic-auth"));
        assert_eq!(
            update("Secret", &new, &old),
            [
                "type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable",
                "data[username]: Required value",
                "data[password]: Required value"
            ]
        );
    }

    #[test]
    fn namespaces_nodes_and_events() {
        let ns = object(
            "Namespace",
            "team-a",
            json!({"spec": {"finalizers": ["kubernetes", "bogus"]}}),
        );
        assert_eq!(create("Namespace", &ns), ["spec.finalizers: Invalid value: \"bogus\": name is neither a standard finalizer name nor is it fully qualified"]);
        let node = object(
            "Node",
            "n1",
            json!({"spec": {"podCIDR": "10.244.0.0/24", "taints": [{"key": "k", "effect": "Sometimes"}]}}),
        );
        assert_eq!(
            create("Node", &node),
            ["metadata.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""]
        );
        let old = object("Node", "n1", json!({"spec": {"podCIDR": "10.244.0.0/24"}}));
        let new = with(old.clone(), "/spec/podCIDR", json!("10.244.1.0/24"));
        assert_eq!(update("Node", &new, &old), ["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"]);
        let event = object(
            "Event",
            "e",
            json!({"apiVersion": "v1", "involvedObject": {"kind": "Pod", "namespace": "other"}}),
        );
        assert_eq!(create("Event", &event), ["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]);
        let event = object(
            "Event",
            "e",
            json!({"apiVersion": "events.k8s.io/v1", "eventTime": "2025-01-01T00:00:00.000000Z", "type": "Normal",
            "regarding": {"namespace": "default"}, "reportingController": "example.com/ctl", "reportingInstance": "i", "action": "Act", "reason": "Why"}),
        );
        assert!(
            create("Event", &event).is_empty(),
            "{:?}",
            create("Event", &event)
        );
    }

    #[test]
    fn storage() {
        let pvc = object(
            "PersistentVolumeClaim",
            "data",
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"}}),
        );
        assert!(create("PersistentVolumeClaim", &pvc).is_empty());
        let bad = object(
            "PersistentVolumeClaim",
            "data",
            json!({"spec": {"resources": {}}}),
        );
        assert_eq!(
            create("PersistentVolumeClaim", &bad),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value"
            ]
        );
        let grown = with(
            pvc.clone(),
            "/spec/resources/requests/storage",
            json!("2Gi"),
        );
        let mut bound = grown.clone();
        bound["status"] = json!({"phase": "Bound"});
        assert!(update("PersistentVolumeClaim", &bound, &pvc).is_empty());
        let errs = update("PersistentVolumeClaim", &grown, &pvc);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"));
        let pv = object(
            "PersistentVolume",
            "pv1",
            json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data", "type": ""}, "persistentVolumeReclaimPolicy": "Retain"}}),
        );
        assert!(create("PersistentVolume", &pv).is_empty());
        let pv = with(
            pv,
            "/spec/accessModes",
            json!(["ReadWriteOncePod", "ReadOnlyMany"]),
        );
        assert_eq!(
            create("PersistentVolume", &pv),
            ["spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"]
        );
        let sc = object(
            "StorageClass",
            "fast",
            json!({"provisioner": "example.com/disk"}),
        );
        assert!(create("StorageClass", &sc).is_empty());
        let no_provisioner = object("StorageClass", "fast", json!({}));
        assert_eq!(
            create("StorageClass", &no_provisioner),
            ["provisioner: Required value"]
        );
        let changed = with(sc.clone(), "/provisioner", json!("example.com/other"));
        assert_eq!(
            update("StorageClass", &changed, &sc),
            ["provisioner: Forbidden: updates to provisioner are forbidden."]
        );
    }

    #[test]
    fn quotas_and_limits() {
        let quota = object(
            "ResourceQuota",
            "q",
            json!({"spec": {"hard": {"pods": "1.5", "cpu": "2", "widgets": "1"}}}),
        );
        assert_eq!(
            create("ResourceQuota", &quota),
            [
                "spec.hard[pods]: Invalid value: \"1500m\": must be an integer",
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified",
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota",
            ]
        );
        let limits = object(
            "LimitRange",
            "l",
            json!({"spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}),
        );
        assert_eq!(create("LimitRange", &limits), ["spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"]);
    }

    #[test]
    fn endpoints() {
        let ep = object(
            "Endpoints",
            "web",
            json!({"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]}),
        );
        assert_eq!(create("Endpoints", &ep), ["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]);
        let slice = object(
            "EndpointSlice",
            "web-1",
            json!({"addressType": "IPv5", "endpoints": [{"addresses": []}], "ports": [{"name": "", "protocol": "TCP", "port": 80}]}),
        );
        assert_eq!(
            create("EndpointSlice", &slice),
            ["addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"", "endpoints[0].addresses: Required value: must contain at least 1 address"]
        );
    }

    #[test]
    fn autoscalers() {
        let hpa = object(
            "HorizontalPodAutoscaler",
            "web",
            json!({"spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
            }}),
        );
        assert!(create("HorizontalPodAutoscaler", &hpa).is_empty());
        let mut bad = with(hpa, "/spec/maxReplicas", json!(0));
        bad["spec"]["scaleTargetRef"]["name"] = json!("");
        assert_eq!(
            create("HorizontalPodAutoscaler", &bad),
            ["spec.maxReplicas: Invalid value: 0: must be greater than 0", "spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`", "spec.scaleTargetRef.name: Required value"]
        );
    }

    #[test]
    fn networking() {
        let ingress = object(
            "Ingress",
            "web",
            json!({"spec": {"rules": [{"host": "example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "api", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {}}}}
            ]}}]}}),
        );
        assert_eq!(
            create("Ingress", &ingress),
            ["spec.rules[0].http.paths[1].path: Invalid value: \"api\": must be an absolute path", "spec.rules[0].http.paths[1].backend: Required value: port name or number is required"]
        );
        let empty = object("Ingress", "web", json!({"spec": {}}));
        assert_eq!(
            create("Ingress", &empty),
            ["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
        );
        let class = object(
            "IngressClass",
            "nginx",
            json!({"spec": {"controller": "nginx"}}),
        );
        assert_eq!(create("IngressClass", &class), ["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"]);
        let policy = object(
            "NetworkPolicy",
            "deny",
            json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}], "ports": [{"protocol": "TCP", "port": "http", "endPort": 90}]}]}}),
        );
        assert_eq!(
            create("NetworkPolicy", &policy),
            [
                "spec.ingress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
                "spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"11.0.0.0/16\": must be a strict subset of `cidr`",
            ]
        );
    }

    #[test]
    fn policy_rbac_scheduling_and_leases() {
        let pdb = object(
            "PodDisruptionBudget",
            "web",
            json!({"spec": {"minAvailable": "120%", "selector": {"matchLabels": {"app": "web"}}}}),
        );
        assert_eq!(create("PodDisruptionBudget", &pdb), ["spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"120%\"}: must not be greater than 100%"]);
        let role = object(
            "Role",
            "r",
            json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]}),
        );
        assert_eq!(
            create("Role", &role),
            ["rules[0].verbs: Required value: verbs must contain at least one value"]
        );
        let binding = object(
            "RoleBinding",
            "b",
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Robot", "name": "r2"}]}),
        );
        assert_eq!(create("RoleBinding", &binding), ["subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""]);
        let rebound = with(binding.clone(), "/roleRef/name", json!("other"));
        assert!(update("RoleBinding", &rebound, &binding)
            .iter()
            .any(|e| e.starts_with("roleRef: Invalid value: ")
                && e.ends_with(": cannot change roleRef")));
        let crb = object(
            "ClusterRoleBinding",
            "b",
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
        );
        assert_eq!(
            create("ClusterRoleBinding", &crb),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value"
            ]
        );
        let pc = object("PriorityClass", "high", json!({"value": 2_000_000_000}));
        assert_eq!(
            create("PriorityClass", &pc),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        let pc = object("PriorityClass", "high", json!({"value": 100}));
        let changed = with(pc.clone(), "/value", json!(200));
        assert_eq!(
            update("PriorityClass", &changed, &pc),
            ["value: Forbidden: may not be changed in an update."]
        );
        let lease = object("Lease", "l", json!({"spec": {"leaseDurationSeconds": 0}}));
        assert_eq!(
            create("Lease", &lease),
            ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
        let revision = object("ControllerRevision", "r", json!({"revision": -1}));
        assert_eq!(
            create("ControllerRevision", &revision),
            [
                "data: Required value: data is mandatory",
                "revision: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }

    #[test]
    fn formats() {
        assert!(parse_ip("010.001.2.3").is_some());
        assert!(parse_ip("1.2.3").is_none());
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some((IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8))
        );
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert_eq!(port_name("a--b"), ["must not contain consecutive hyphens"]);
        assert!(qualified_name("example.com/Name").is_empty());
        assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
        assert_eq!(base64_decode("aGVsbG8="), b"hello");
        assert!(parse_go_duration("1.5h").is_ok());
        assert_eq!(
            parse_go_duration("10").unwrap_err(),
            "time: missing unit in duration \"10\""
        );
    }
}
