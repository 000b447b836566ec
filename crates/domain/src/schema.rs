//! Profile schemas: the fields an organisation keeps about people, their
//! types and classification, how a schema may change without losing or
//! mistyping stored data, and the validation of records against it.
//!
//! Values are parsed from `serde_json` scalars (a data model, not an API
//! shape) into `FieldValue`, whose `Debug` never shows the value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ParseError;

/// The most fields one schema may hold.
pub const MAX_FIELDS: usize = 200;
/// Names the records API uses for itself (metadata and query parameters).
pub const RESERVED_NAMES: &[&str] = &[
    "id",
    "org",
    "owner",
    "owner_user_id",
    "created_at",
    "updated_at",
    "created_by",
    "updated_by",
    "revision",
    "etag",
    "cursor",
    "limit",
    "fields",
    "withheld",
    "schema_version",
];

/// A field's name: 1 to 63 characters of lowercase ASCII letters, digits
/// and underscores, starting with a letter, not one of `RESERVED_NAMES`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FieldName(String);

impl FieldName {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 63 {
            return Err(ParseError::Length { min: 1, max: 63 });
        }
        let ok = s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(ParseError::Charset {
                allowed: "lowercase letters, digits and underscores, starting with a letter",
            });
        }
        if RESERVED_NAMES.contains(&s) {
            return Err(ParseError::OneOf {
                expected: "a name other than the reserved ones (id, created_at, cursor...)",
            });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(format!("field name: {e}")))
    }
}

/// What kind of value a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// One line of text, up to `max_length` (default 1,000) characters.
    String,
    /// Free text up to 65,536 characters; never searchable.
    Text,
    Email,
    /// A telephone number: digits, spaces, `+ - ( ) .`, 4 to 32 characters.
    Phone,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A finite number.
    Number,
    Boolean,
    /// One of the field's `values`.
    Enum,
}

impl FieldType {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Text => "text",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Date => "date",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Enum => "enum",
        }
    }
}

/// How a field's values are protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Not personal: stored in clear, filterable.
    Plain,
    /// Identifies a person: encrypted.
    Personal,
    /// Special category data: encrypted, and shown only to roles that may
    /// read sensitive fields.
    Sensitive,
}

impl Classification {
    pub fn is_encrypted(self) -> bool {
        self != Self::Plain
    }
}

const DEFAULT_STRING_MAX: u32 = 1_000;
const STRING_MAX: u32 = 10_000;
const TEXT_MAX: usize = 65_536;
const ENUM_MAX_VALUES: usize = 200;

/// One field of a schema, as written by an administrator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: FieldName,
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// The allowed values of an `enum` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default)]
    pub required: bool,
    /// Defaults to `personal`: a field is encrypted unless declared plain.
    #[serde(default = "default_classification")]
    pub classification: Classification,
    /// Exact-match search: a blind index for encrypted fields, a filter for
    /// plain ones.
    #[serde(default)]
    pub searchable: bool,
    /// No longer written; stored values stay readable.
    #[serde(default)]
    pub deprecated: bool,
    /// For `string` fields: the most characters (default 1,000, at most
    /// 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
}

fn default_classification() -> Classification {
    Classification::Personal
}

impl FieldDef {
    fn string_max(&self) -> usize {
        self.max_length.unwrap_or(DEFAULT_STRING_MAX) as usize
    }

    /// Whether values of this field can be looked up by exact value:
    /// plain fields always (except free text), encrypted ones when
    /// declared searchable (through the blind index).
    pub fn is_filterable(&self) -> bool {
        self.kind != FieldType::Text && (self.searchable || self.classification == Classification::Plain)
    }
}

/// Something wrong with a schema, a record or a query, named by a JSON
/// pointer to the offending member and the rule it breaks. Never carries
/// the offending value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub path: String,
    pub rule: &'static str,
    pub message: String,
}

impl Violation {
    pub(crate) fn new(path: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Self { path: path.into(), rule, message: message.into() }
    }
}

/// A validated, versioned schema.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Schema {
    pub version: u32,
    pub fields: Vec<FieldDef>,
}

impl Schema {
    /// The schema an organisation starts with: version 0, no fields.
    pub fn empty() -> Self {
        Self { version: 0, fields: Vec::new() }
    }

    /// Checks a list of field definitions on its own.
    pub fn new(version: u32, fields: Vec<FieldDef>) -> Result<Self, Vec<Violation>> {
        let mut errors = Vec::new();
        if fields.len() > MAX_FIELDS {
            errors.push(Violation::new("/fields", "max_fields", format!("at most {MAX_FIELDS} fields")));
        }
        let mut seen = BTreeSet::new();
        for (i, f) in fields.iter().enumerate() {
            let at = |member: &str| format!("/fields/{i}{member}");
            if !seen.insert(f.name.clone()) {
                errors.push(Violation::new(at("/name"), "unique", format!("field {} is defined twice", f.name)));
            }
            match f.kind {
                FieldType::Enum => {
                    if f.values.is_empty() || f.values.len() > ENUM_MAX_VALUES {
                        errors.push(Violation::new(
                            at("/values"),
                            "enum_values",
                            format!("an enum field needs 1 to {ENUM_MAX_VALUES} values"),
                        ));
                    }
                    let distinct: BTreeSet<_> = f.values.iter().collect();
                    if distinct.len() != f.values.len() {
                        errors.push(Violation::new(at("/values"), "unique", "enum values must be distinct"));
                    }
                    if f.values
                        .iter()
                        .any(|v| v.is_empty() || v.chars().count() > 100 || v.chars().any(char::is_control))
                    {
                        errors.push(Violation::new(
                            at("/values"),
                            "enum_values",
                            "each value: 1 to 100 printable characters",
                        ));
                    }
                }
                _ if !f.values.is_empty() => {
                    errors.push(Violation::new(at("/values"), "enum_values", "only enum fields have values"));
                }
                _ => {}
            }
            if let Some(max) = f.max_length
                && (f.kind != FieldType::String || !(1..=STRING_MAX).contains(&max))
            {
                errors.push(Violation::new(
                    at("/max_length"),
                    "max_length",
                    format!("max_length applies to string fields, 1 to {STRING_MAX}"),
                ));
            }
            if f.searchable && f.kind == FieldType::Text {
                errors.push(Violation::new(at("/searchable"), "searchable", "text fields cannot be searchable"));
            }
            if f.required && f.deprecated {
                errors.push(Violation::new(at("/required"), "required", "a deprecated field cannot be required"));
            }
        }
        if errors.is_empty() { Ok(Self { version, fields }) } else { Err(errors) }
    }

    /// The next version of this schema, if the change keeps every stored
    /// value readable and correctly typed. `has_records` says whether the
    /// organisation holds any profile yet: with none, anything goes.
    pub fn evolve(&self, fields: Vec<FieldDef>, has_records: bool) -> Result<Self, Vec<Violation>> {
        let next = Self::new(self.version + 1, fields)?;
        if !has_records {
            return Ok(next);
        }
        let mut errors = Vec::new();
        for old in &self.fields {
            if next.field(&old.name).is_none() {
                errors.push(Violation::new(
                    "/fields",
                    "removed",
                    format!("field {} holds stored data and cannot be removed: deprecate it instead", old.name),
                ));
            }
        }
        for (i, f) in next.fields.iter().enumerate() {
            let at = |member: &str| format!("/fields/{i}{member}");
            let Some(old) = self.field(&f.name) else {
                if f.required {
                    errors.push(Violation::new(
                        at("/required"),
                        "required",
                        format!("new field {} cannot be required: existing profiles do not have it", f.name),
                    ));
                }
                continue;
            };
            let widening = old.kind == f.kind || (old.kind == FieldType::String && f.kind == FieldType::Text);
            if !widening {
                errors.push(Violation::new(
                    at("/type"),
                    "type_change",
                    format!(
                        "field {} cannot change from {} to {}: stored values would be mistyped",
                        f.name,
                        old.kind.as_str(),
                        f.kind.as_str()
                    ),
                ));
            }
            if old.classification.is_encrypted() != f.classification.is_encrypted() {
                errors.push(Violation::new(
                    at("/classification"),
                    "classification_change",
                    format!(
                        "field {} cannot move between plain and encrypted: stored values are kept the other way",
                        f.name
                    ),
                ));
            }
            if f.required && !old.required {
                errors.push(Violation::new(
                    at("/required"),
                    "required",
                    format!("field {} cannot become required: existing profiles may lack it", f.name),
                ));
            }
            if f.searchable && !old.searchable {
                errors.push(Violation::new(
                    at("/searchable"),
                    "searchable",
                    format!("field {} can only be made searchable when it is added", f.name),
                ));
            }
            if f.kind == FieldType::String && f.string_max() < old.string_max() {
                errors.push(Violation::new(
                    at("/max_length"),
                    "max_length",
                    format!("field {} cannot shrink: stored values may be longer", f.name),
                ));
            }
            if old.values.iter().any(|v| !f.values.contains(v)) {
                errors.push(Violation::new(
                    at("/values"),
                    "enum_values",
                    format!("field {} cannot drop enum values: stored values may use them", f.name),
                ));
            }
        }
        if errors.is_empty() { Ok(next) } else { Err(errors) }
    }

    pub fn field(&self, name: &FieldName) -> Option<&FieldDef> {
        self.fields.iter().find(|f| &f.name == name)
    }

    pub fn field_named(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }

    /// Validates a new record: every member known, typed, within limits,
    /// every required field present. Lists every problem at once.
    pub fn validate_new(&self, input: &Map<String, Value>) -> Result<Fields, Vec<Violation>> {
        let mut errors = Vec::new();
        let mut fields = Fields::new();
        for (name, value) in input {
            match self.parse_member(name, value) {
                Ok(Some((n, v))) => {
                    fields.insert(n, v);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        for f in &self.fields {
            // A required field given with a bad value is reported for the
            // value only.
            let given = input.get(f.name.as_str()).is_some_and(|v| !v.is_null());
            if f.required && !given {
                errors.push(Violation::new(format!("/{}", f.name), "required", format!("{} is required", f.name)));
            }
        }
        if errors.is_empty() { Ok(fields) } else { Err(errors) }
    }

    /// Validates a JSON merge patch (RFC 7396) on a record: members set a
    /// value, `null` removes one.
    pub fn validate_patch(&self, patch: &Map<String, Value>) -> Result<Patch, Vec<Violation>> {
        let mut errors = Vec::new();
        let mut out = Patch::default();
        for (name, value) in patch {
            if value.is_null() {
                match self.field_named(name) {
                    None => errors.push(unknown(name)),
                    Some(f) if f.required => {
                        errors.push(Violation::new(
                            format!("/{name}"),
                            "required",
                            format!("{name} is required and cannot be removed"),
                        ));
                    }
                    Some(f) => out.remove.push(f.name.clone()),
                }
                continue;
            }
            match self.parse_member(name, value) {
                Ok(Some((n, v))) => {
                    out.set.insert(n, v);
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }

    /// Parses the value of a query parameter naming a field, for an exact
    /// match. Only searchable fields may be searched.
    pub fn query_term(&self, name: &str, raw: &str) -> Result<(&FieldDef, FieldValue), Violation> {
        let Some(f) = self.field_named(name) else {
            return Err(Violation::new(
                format!("/{name}"),
                "unknown",
                format!("{name} is neither a field of this schema nor a query parameter"),
            ));
        };
        if !f.is_filterable() {
            return Err(Violation::new(format!("/{name}"), "searchable", format!("{name} is not searchable")));
        }
        let value = match f.kind {
            FieldType::Number => match raw.parse::<f64>() {
                Ok(n) if n.is_finite() => Value::from(n),
                _ => return Err(type_error(f)),
            },
            FieldType::Boolean => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(type_error(f)),
            },
            _ => Value::String(raw.to_owned()),
        };
        check_value(f, &value).map(|v| (f, v))
    }

    /// Parses one member of a record; `Ok(None)` for a null.
    fn parse_member(&self, name: &str, value: &Value) -> Result<Option<(FieldName, FieldValue)>, Violation> {
        let Some(f) = self.field_named(name) else {
            return Err(unknown(name));
        };
        if value.is_null() {
            return Ok(None);
        }
        if f.deprecated {
            return Err(Violation::new(
                format!("/{name}"),
                "deprecated",
                format!("{name} is deprecated and no longer written"),
            ));
        }
        check_value(f, value).map(|v| Some((f.name.clone(), v)))
    }
}

fn unknown(name: &str) -> Violation {
    // The member name comes from the caller; bound it so an error stays small.
    let shown: String = name.chars().take(64).collect();
    Violation::new(format!("/{}", pointer_escape(&shown)), "unknown", format!("{shown} is not a field of this schema"))
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn type_error(f: &FieldDef) -> Violation {
    Violation::new(format!("/{}", f.name), "type", format!("{} must be a {}", f.name, f.kind.as_str()))
}

fn too_long(f: &FieldDef, max: usize) -> Violation {
    Violation::new(format!("/{}", f.name), "max_length", format!("{} must be at most {max} characters", f.name))
}

/// Checks one non-null value against its field definition.
fn check_value(f: &FieldDef, value: &Value) -> Result<FieldValue, Violation> {
    let path = format!("/{}", f.name);
    match f.kind {
        FieldType::Number => match value.as_f64() {
            Some(n) if n.is_finite() => Ok(FieldValue::Number(if n == 0.0 { 0.0 } else { n })),
            _ => Err(type_error(f)),
        },
        FieldType::Boolean => value.as_bool().map(FieldValue::Bool).ok_or_else(|| type_error(f)),
        _ => {
            let Some(s) = value.as_str() else {
                return Err(type_error(f));
            };
            let chars = s.chars().count();
            match f.kind {
                FieldType::String => {
                    if chars > f.string_max() {
                        return Err(too_long(f, f.string_max()));
                    }
                    if s.chars().any(char::is_control) {
                        return Err(Violation::new(path, "format", format!("{} must be one line of text", f.name)));
                    }
                    Ok(FieldValue::Text(s.to_owned()))
                }
                FieldType::Text => {
                    if chars > TEXT_MAX {
                        return Err(too_long(f, TEXT_MAX));
                    }
                    Ok(FieldValue::Text(s.to_owned()))
                }
                FieldType::Email => crate::Email::parse(s)
                    .map(|e| FieldValue::Text(e.as_str().to_owned()))
                    .map_err(|_| Violation::new(path, "format", format!("{} must be an e-mail address", f.name))),
                FieldType::Phone => {
                    let s = s.trim();
                    let digits = s.chars().filter(char::is_ascii_digit).count();
                    let ok = (4..=32).contains(&s.len())
                        && digits >= 4
                        && s.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
                        && !s[1..].contains('+');
                    if ok {
                        Ok(FieldValue::Text(s.to_owned()))
                    } else {
                        Err(Violation::new(path, "format", format!("{} must be a telephone number", f.name)))
                    }
                }
                FieldType::Date => {
                    let format = time::macros::format_description!("[year]-[month]-[day]");
                    match time::Date::parse(s, &format) {
                        Ok(_) if s.len() == 10 => Ok(FieldValue::Text(s.to_owned())),
                        _ => Err(Violation::new(path, "format", format!("{} must be a date, YYYY-MM-DD", f.name))),
                    }
                }
                FieldType::Enum => {
                    if f.values.iter().any(|v| v == s) {
                        Ok(FieldValue::Text(s.to_owned()))
                    } else {
                        Err(Violation::new(path, "enum", format!("{} must be one of the field's values", f.name)))
                    }
                }
                FieldType::Number | FieldType::Boolean => Err(type_error(f)),
            }
        }
    }
}

/// A validated field value. Personal data: `Debug` never shows it.
#[derive(Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FieldValue([redacted])")
    }
}

impl FieldValue {
    /// The bytes that are encrypted, stored in clear (plain fields) or
    /// indexed. Text as UTF-8; numbers in Rust's shortest round-trip form;
    /// booleans as `true`/`false`.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Text(s) => s.as_bytes().to_vec(),
            Self::Number(n) => n.to_string().into_bytes(),
            Self::Bool(b) => b.to_string().into_bytes(),
        }
    }

    /// The bytes a lookup compares: like `to_bytes`, with telephone numbers
    /// reduced to their digits and a leading `+`.
    pub fn search_bytes(&self, kind: FieldType) -> Vec<u8> {
        match (self, kind) {
            (Self::Text(s), FieldType::Phone) => {
                let mut out: String = s.chars().filter(char::is_ascii_digit).collect();
                if s.starts_with('+') {
                    out.insert(0, '+');
                }
                out.into_bytes()
            }
            _ => self.to_bytes(),
        }
    }

    /// Reads back bytes written by `to_bytes` for a field of this type.
    pub fn from_bytes(kind: FieldType, bytes: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(bytes).ok()?;
        match kind {
            FieldType::Number => s.parse::<f64>().ok().filter(|n| n.is_finite()).map(Self::Number),
            FieldType::Boolean => match s {
                "true" => Some(Self::Bool(true)),
                "false" => Some(Self::Bool(false)),
                _ => None,
            },
            _ => Some(Self::Text(s.to_owned())),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Self::Text(s) => Value::String(s.clone()),
            Self::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Self::Bool(b) => Value::Bool(*b),
        }
    }
}

/// A record's validated values by field.
pub type Fields = BTreeMap<FieldName, FieldValue>;

/// A validated merge patch: values to set and fields to remove.
#[derive(Debug, Default)]
pub struct Patch {
    pub set: Fields,
    pub remove: Vec<FieldName>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `unwrap` for tests, with the value's debug form on failure.
    trait Must<T> {
        fn must(self) -> T;
    }

    impl<T, E: fmt::Debug> Must<T> for Result<T, E> {
        fn must(self) -> T {
            self.unwrap_or_else(|e| panic!("{e:?}"))
        }
    }

    impl<T> Must<T> for Option<T> {
        fn must(self) -> T {
            self.unwrap_or_else(|| panic!("expected a value"))
        }
    }

    fn schema() -> Schema {
        let fields: Vec<FieldDef> = serde_json::from_value(json!([
            { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
            { "name": "email", "type": "email", "searchable": true },
            { "name": "phone", "type": "phone", "searchable": true },
            { "name": "birth_date", "type": "date", "classification": "sensitive" },
            { "name": "score", "type": "number", "classification": "plain", "searchable": true },
            { "name": "active", "type": "boolean", "classification": "plain" },
            { "name": "stage", "type": "enum", "values": ["applied", "hired"], "classification": "plain" },
            { "name": "notes", "type": "text" },
            { "name": "code", "type": "string", "max_length": 4, "classification": "plain" }
        ]))
        .must();
        Schema::new(1, fields).must()
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().must().clone()
    }

    #[test]
    fn field_names_are_checked() {
        assert!(FieldName::parse("email_2").is_ok());
        for bad in ["", "Email", "2x", "a-b", "id", "cursor", &"a".repeat(64)] {
            assert!(FieldName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn classification_defaults_to_personal() {
        let f: FieldDef = serde_json::from_value(json!({ "name": "x", "type": "string" })).must();
        assert_eq!(f.classification, Classification::Personal);
        assert!(serde_json::from_value::<FieldDef>(json!({ "name": "x", "type": "string", "colour": 1 })).is_err());
    }

    // claim 002.14
    #[test]
    fn every_bad_member_is_named_with_its_rule() {
        let errors = schema()
            .validate_new(&map(json!({
                "email": "not-an-address",
                "phone": "call me",
                "birth_date": "1990-02-30",
                "score": "high",
                "active": "yes",
                "stage": "fired",
                "code": "toolong",
                "nickname": "x"
            })))
            .err()
            .must();
        let got: BTreeSet<_> = errors.iter().map(|e| (e.path.as_str(), e.rule)).collect();
        let want: BTreeSet<_> = [
            ("/full_name", "required"),
            ("/email", "format"),
            ("/phone", "format"),
            ("/birth_date", "format"),
            ("/score", "type"),
            ("/active", "type"),
            ("/stage", "enum"),
            ("/code", "max_length"),
            ("/nickname", "unknown"),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
        // No error message repeats the value it refused.
        assert!(errors.iter().all(|e| !e.message.contains("not-an-address") && !e.message.contains("call me")));
    }

    #[test]
    fn valid_records_parse_and_normalise() {
        let fields = schema()
            .validate_new(&map(json!({
                "full_name": "Ada Lovelace", "email": " Ada@Example.ORG ", "phone": "+44 (20) 7946-0958",
                "birth_date": "1815-12-10", "score": 0.5, "active": true, "stage": "hired", "notes": "a\nb"
            })))
            .must();
        let email = &fields[&FieldName::parse("email").must()];
        assert_eq!(email.to_bytes(), b"ada@example.org");
        let phone = &fields[&FieldName::parse("phone").must()];
        assert_eq!(phone.search_bytes(FieldType::Phone), b"+442079460958");
        assert_eq!(format!("{email:?}"), "FieldValue([redacted])");
        for v in fields.values() {
            let kind = if matches!(v, FieldValue::Number(_)) {
                FieldType::Number
            } else if matches!(v, FieldValue::Bool(_)) {
                FieldType::Boolean
            } else {
                FieldType::String
            };
            assert_eq!(FieldValue::from_bytes(kind, &v.to_bytes()).as_ref(), Some(v));
        }
    }

    #[test]
    fn patches_set_and_remove_but_never_drop_required() {
        let s = schema();
        let p = s.validate_patch(&map(json!({ "email": "a@b.io", "notes": null }))).must();
        assert_eq!(p.set.len(), 1);
        assert_eq!(p.remove, vec![FieldName::parse("notes").must()]);
        let e = s.validate_patch(&map(json!({ "full_name": null, "x": 1 }))).err().must();
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn queries_only_on_searchable_fields() {
        let s = schema();
        assert!(s.query_term("email", "A@B.io").is_ok());
        assert_eq!(s.query_term("score", "2").must().1, FieldValue::Number(2.0));
        assert_eq!(s.query_term("notes", "x").err().must().rule, "searchable");
        assert_eq!(s.query_term("full_name", "x").err().must().rule, "searchable");
        assert_eq!(s.query_term("nope", "x").err().must().rule, "unknown");
        assert_eq!(s.query_term("score", "abc").err().must().rule, "type");
    }

    #[test]
    fn schema_definitions_are_checked() {
        let bad: Vec<FieldDef> = serde_json::from_value(json!([
            { "name": "a", "type": "string" },
            { "name": "a", "type": "number" },
            { "name": "b", "type": "enum" },
            { "name": "c", "type": "text", "searchable": true },
            { "name": "d", "type": "number", "max_length": 3 }
        ]))
        .must();
        let rules: Vec<_> = Schema::new(1, bad).err().must().into_iter().map(|v| v.rule).collect();
        assert_eq!(rules, vec!["unique", "enum_values", "searchable", "max_length"]);
    }

    // claim 002.13
    #[test]
    fn changes_that_would_lose_or_mistype_data_are_refused() {
        let s = schema();
        let mut fields = s.fields.clone();
        fields.retain(|f| f.name.as_str() != "notes");
        fields[0].kind = FieldType::Number;
        fields[1].classification = Classification::Plain;
        fields.push(serde_json::from_value(json!({ "name": "new", "type": "string", "required": true })).must());
        let rules: BTreeSet<_> = s.evolve(fields.clone(), true).err().must().into_iter().map(|v| v.rule).collect();
        assert_eq!(rules, ["removed", "type_change", "classification_change", "required"].into_iter().collect());
        // With no records yet, anything goes.
        assert_eq!(s.evolve(fields, false).must().version, 2);
        // Adding, deprecating, widening and personal -> sensitive are fine.
        let mut ok = s.fields.clone();
        ok[0].kind = FieldType::Text;
        ok[0].required = false;
        ok[1].classification = Classification::Sensitive;
        ok[7].deprecated = true;
        ok.push(serde_json::from_value(json!({ "name": "city", "type": "string", "searchable": true })).must());
        assert_eq!(s.evolve(ok, true).must().version, 2);
    }
}
