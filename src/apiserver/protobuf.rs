//! Kubernetes protobuf request bodies, decoded into the JSON the same object has in the
//! Kubernetes JSON encoding.
//!
//! client-go's typed clients (and so `kubectl create deployment|secret|…`) write with
//! `Content-Type: application/vnd.kubernetes.protobuf`: the body is the four bytes `k8s\0`
//! followed by a `runtime.Unknown` message whose `raw` field holds the serialised object. Rather
//! than generating Rust types for every API message, the upstream `generated.proto` files are
//! shipped as data (`assets/proto/`) and parsed at run time into a [`ProtoRegistry`]; the wire
//! decoder walks that registry, so supporting another API group means adding its `.proto` file.
//!
//! The .proto files do not carry everything the JSON encoding needs, so a few facts about the Go
//! types are kept here: the well-known types with a custom JSON form (`Time`, `Quantity`,
//! `IntOrString`, …), the Go structs embedded with `json:",inline"`, and the field names that
//! go-to-protobuf spelled differently from their JSON tags.
//!
//! Go writes every non-pointer field, so decoded objects carry zero values (`""`, `0`, `{}`)
//! wherever the Go struct had them; they are kept as they came, and only fields absent from the
//! wire are absent from the JSON. The one exception is an unset `Time`/`MicroTime`, which Go
//! sends as an empty message and which is left out, as Go's JSON would leave it out or null it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// Every Kubernetes protobuf body starts with these bytes.
const MAGIC: &[u8] = b"k8s\0";

/// Bounds recursion: a hostile body could otherwise nest `RawExtension`s until the stack runs out.
const MAX_DEPTH: usize = 100;

const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Go structs embedded with `json:",inline"`: the .proto keeps them as a named field, but in JSON
/// their fields sit directly in the parent object. Keyed by (field type, field name), because a
/// type such as `LocalObjectReference` is embedded in some places and an ordinary field in others.
const INLINE_FIELDS: &[(&str, &str)] = &[
    (
        "k8s.io.api.core.v1.LocalObjectReference",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.EphemeralContainerCommon",
        "ephemeralContainerCommon",
    ),
    ("k8s.io.api.core.v1.ProbeHandler", "handler"),
    ("k8s.io.api.core.v1.VolumeSource", "volumeSource"),
    (
        "k8s.io.api.core.v1.PersistentVolumeSource",
        "persistentVolumeSource",
    ),
    (
        "k8s.io.api.networking.v1.IngressRuleValue",
        "ingressRuleValue",
    ),
];

/// The option kinds that `metav1.AddToGroupVersion` registers in every group version, so a body
/// may name them with any apiVersion; they always decode as the meta/v1 messages.
const META_OPTION_KINDS: &[&str] = &[
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "UpdateOptions",
    "WatchEvent",
];

/// Why a body or a .proto source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("{file}:{line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    #[error("message {message} is defined twice (again in {file})")]
    DuplicateMessage { file: String, message: String },
    #[error("field {field} of {message} has unknown type {type_name}")]
    UnresolvedType {
        message: String,
        field: String,
        type_name: String,
    },
    #[error("body does not start with the Kubernetes protobuf prefix \"k8s\\0\"")]
    BadMagic,
    #[error("protobuf input ends in the middle of {path}")]
    Truncated { path: String },
    #[error("varint longer than 10 bytes at {path}")]
    OverlongVarint { path: String },
    #[error("invalid field key {key} at {path}")]
    BadFieldKey { key: u64, path: String },
    #[error("wire type {wire_type} is not valid for {path}")]
    BadWireType { wire_type: u8, path: String },
    #[error("{path} is not valid UTF-8")]
    InvalidUtf8 { path: String },
    #[error("unknown type \"{api_version} {kind}\"")]
    UnknownType { api_version: String, kind: String },
    #[error("content encoding {0:?} is not supported")]
    UnsupportedEncoding(String),
    #[error("content type {0:?} is not supported inside a protobuf envelope")]
    UnsupportedContentType(String),
    #[error("{path} does not hold JSON: {source}")]
    EmbeddedJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: time {seconds}s {nanos}ns is out of range")]
    TimeOutOfRange {
        path: String,
        seconds: i64,
        nanos: i64,
    },
    #[error("{path} nests more than {max} levels deep", max = MAX_DEPTH)]
    TooDeep { path: String },
}

/// Message definitions parsed from .proto sources, keyed by full name
/// (`k8s.io.api.apps.v1.Deployment`). Immutable once built.
#[derive(Debug)]
pub struct ProtoRegistry {
    messages: HashMap<String, MessageDef>,
}

#[derive(Debug)]
struct MessageDef {
    /// In declaration order, which is the Go struct order and so the order of the JSON fields.
    fields: Vec<FieldDef>,
    by_number: HashMap<u32, usize>,
}

#[derive(Debug)]
struct FieldDef {
    json_name: String,
    repeated: bool,
    inline: bool,
    ty: FieldType,
}

#[derive(Debug)]
enum FieldType {
    Scalar(Scalar),
    /// Full name of a message in the registry.
    Message(String),
    Map(Scalar, Box<FieldType>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
}

impl Scalar {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "double" => Self::Double,
            "float" => Self::Float,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "uint32" => Self::Uint32,
            "uint64" => Self::Uint64,
            "sint32" => Self::Sint32,
            "sint64" => Self::Sint64,
            "fixed32" => Self::Fixed32,
            "fixed64" => Self::Fixed64,
            "sfixed32" => Self::Sfixed32,
            "sfixed64" => Self::Sfixed64,
            "bool" => Self::Bool,
            "string" => Self::String,
            "bytes" => Self::Bytes,
            _ => return None,
        })
    }

    fn wire_type(self) -> u8 {
        match self {
            Self::Int32
            | Self::Int64
            | Self::Uint32
            | Self::Uint64
            | Self::Sint32
            | Self::Sint64
            | Self::Bool => WIRE_VARINT,
            Self::Double | Self::Fixed64 | Self::Sfixed64 => WIRE_I64,
            Self::Float | Self::Fixed32 | Self::Sfixed32 => WIRE_I32,
            Self::String | Self::Bytes => WIRE_LEN,
        }
    }

    /// What a map entry holds when the encoder left its key or value out (proto default).
    fn zero(self) -> Value {
        match self {
            Self::String | Self::Bytes => Value::String(String::new()),
            Self::Bool => Value::Bool(false),
            _ => Value::from(0),
        }
    }
}

/// Messages whose JSON form is not "an object of its fields".
#[derive(Debug, Clone, Copy)]
enum WellKnown {
    Time,
    MicroTime,
    Duration,
    Quantity,
    IntOrString,
    RawExtension,
    FieldsV1,
    /// `+protobuf.nullable` wrappers such as `Verbs`: a message around a string list that is a
    /// plain JSON array.
    StringList,
}

impl WellKnown {
    fn of(message: &str) -> Option<Self> {
        Some(match message {
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Self::Time,
            "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Self::MicroTime,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Self::Duration,
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => Self::Quantity,
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Self::IntOrString,
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => Self::RawExtension,
            "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => Self::FieldsV1,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs"
            | "k8s.io.api.authentication.v1.ExtraValue" => Self::StringList,
            _ => return None,
        })
    }
}

macro_rules! embedded_protos {
    ($($rel:literal),* $(,)?) => {
        [$(($rel, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/proto/", $rel)))),*]
    };
}

/// The shipped .proto files, as (path under assets/proto, text).
const EMBEDDED: &[(&str, &str)] = &embedded_protos!(
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/autoscaling/v2/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/storage/v1/generated.proto",
);

impl ProtoRegistry {
    /// Parses all .proto sources given as (path, text) pairs. Type names are resolved across all
    /// of them, so every referenced message must be among the sources.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ProtobufError> {
        let mut raw = Vec::new();
        let mut names = HashSet::new();
        for (file, text) in sources {
            for message in Parser::new(file, text)?.parse_file()? {
                if !names.insert(message.full_name.clone()) {
                    return Err(ProtobufError::DuplicateMessage {
                        file: file.to_owned(),
                        message: message.full_name,
                    });
                }
                raw.push(message);
            }
        }
        let mut messages = HashMap::with_capacity(raw.len());
        for message in raw {
            let mut fields = Vec::with_capacity(message.fields.len());
            let mut by_number = HashMap::with_capacity(message.fields.len());
            for (index, field) in message.fields.into_iter().enumerate() {
                let ty = resolve(&names, &message.full_name, field.name, &field.ty)?;
                let inline = matches!(&ty, FieldType::Message(type_name)
                    if INLINE_FIELDS.contains(&(type_name.as_str(), field.name)));
                by_number.insert(field.number, index);
                fields.push(FieldDef {
                    json_name: json_name(field.name),
                    repeated: field.repeated,
                    inline,
                    ty,
                });
            }
            messages.insert(message.full_name, MessageDef { fields, by_number });
        }
        Ok(Self { messages })
    }

    /// The registry of the shipped .proto files, built on first use.
    pub fn embedded() -> &'static ProtoRegistry {
        static REGISTRY: OnceLock<ProtoRegistry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            // The sources are compiled in and covered by tests, so a failure is a build defect.
            ProtoRegistry::from_sources(EMBEDDED.iter().copied())
                .expect("the embedded .proto files parse")
        })
    }

    fn decode_envelope(&self, body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
        let data = body.strip_prefix(MAGIC).ok_or(ProtobufError::BadMagic)?;
        let root = Path::root("runtime.Unknown");
        let (mut api_version, mut kind) = (String::new(), String::new());
        let (mut raw, mut encoding, mut content_type): (&[u8], _, _) =
            (&[], String::new(), String::new());
        for_each_field(data, &root, |number, wire, reader| {
            match number {
                1 => {
                    let path = root.field("typeMeta");
                    let type_meta = read_len(wire, reader, &path)?;
                    for_each_field(type_meta, &path, |number, wire, reader| {
                        match number {
                            1 => api_version = read_string(wire, reader, &path)?,
                            2 => kind = read_string(wire, reader, &path)?,
                            _ => return Ok(false),
                        }
                        Ok(true)
                    })?;
                }
                2 => raw = read_len(wire, reader, &root.field("raw"))?,
                3 => encoding = read_string(wire, reader, &root.field("contentEncoding"))?,
                4 => content_type = read_string(wire, reader, &root.field("contentType"))?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if !encoding.is_empty() {
            return Err(ProtobufError::UnsupportedEncoding(encoding));
        }
        let object = match content_type.as_str() {
            "" | "application/vnd.kubernetes.protobuf" => {
                let message = proto_message_name(&api_version, &kind)
                    .filter(|name| self.messages.contains_key(name))
                    .ok_or_else(|| ProtobufError::UnknownType {
                        api_version: api_version.clone(),
                        kind: kind.clone(),
                    })?;
                self.decode_message(&message, raw, &Path::root(&kind), depth + 1)?
                    .unwrap_or_else(|| Value::Object(Map::new()))
            }
            // The envelope may wrap a JSON encoding of the object; nothing else is in use.
            "application/json" => {
                serde_json::from_slice(raw).map_err(|source| ProtobufError::EmbeddedJson {
                    path: root.field("raw").to_string(),
                    source,
                })?
            }
            _ => return Err(ProtobufError::UnsupportedContentType(content_type)),
        };
        Ok(with_type_meta(object, api_version, kind))
    }

    /// Decodes one message; `None` means the value is left out of the JSON (an unset time or an
    /// empty raw extension).
    fn decode_message(
        &self,
        type_name: &str,
        data: &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        if depth > MAX_DEPTH {
            return Err(ProtobufError::TooDeep {
                path: path.to_string(),
            });
        }
        if let Some(well_known) = WellKnown::of(type_name) {
            return self.decode_well_known(well_known, data, path, depth);
        }
        let message = self.messages.get(type_name).ok_or_else(|| {
            // Registry construction resolves every field type, so this only guards the invariant.
            ProtobufError::UnresolvedType {
                message: path.to_string(),
                field: String::new(),
                type_name: type_name.to_owned(),
            }
        })?;
        let mut slots: Vec<Slot> = message.fields.iter().map(|_| Slot::Unset).collect();
        for_each_field(data, path, |number, wire, reader| {
            let Some(&index) = message.by_number.get(&number) else {
                return Ok(false);
            };
            let field = &message.fields[index];
            let field_path = path.field(&field.json_name);
            let slot = &mut slots[index];
            match &field.ty {
                FieldType::Map(key_type, value_type) => {
                    let entry = read_len(wire, reader, &field_path)?;
                    let (key, value) =
                        self.decode_map_entry(*key_type, value_type, entry, &field_path, depth)?;
                    slot.map().insert(key, value);
                }
                FieldType::Scalar(scalar)
                    if field.repeated
                        && wire == WIRE_LEN
                        && *scalar != Scalar::String
                        && *scalar != Scalar::Bytes =>
                {
                    // Packed encoding of a repeated number field.
                    let mut packed = Reader::new(read_len(wire, reader, &field_path)?);
                    while !packed.is_empty() {
                        let item_path = field_path.index(slot.list().len());
                        let value =
                            decode_scalar(*scalar, scalar.wire_type(), &mut packed, &item_path)?;
                        slot.list().push(value);
                    }
                }
                ty if field.repeated => {
                    let item_path = field_path.index(slot.list().len());
                    let value = self.decode_value(ty, wire, reader, &item_path, depth)?;
                    slot.list().push(value.unwrap_or(Value::Null));
                }
                ty => {
                    *slot = match self.decode_value(ty, wire, reader, &field_path, depth)? {
                        Some(value) => Slot::Single(value),
                        None => Slot::Unset,
                    };
                }
            }
            Ok(true)
        })?;
        let mut object = Map::new();
        for (field, slot) in message.fields.iter().zip(slots) {
            let value = match slot {
                Slot::Unset => continue,
                Slot::Single(value) => value,
                Slot::List(items) => Value::Array(items),
                Slot::Map(entries) => Value::Object(entries),
            };
            match value {
                Value::Object(embedded) if field.inline => object.extend(embedded),
                value => {
                    object.insert(field.json_name.clone(), value);
                }
            }
        }
        Ok(Some(Value::Object(object)))
    }

    fn decode_value(
        &self,
        ty: &FieldType,
        wire: u8,
        reader: &mut Reader<'_>,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        match ty {
            FieldType::Scalar(scalar) => decode_scalar(*scalar, wire, reader, path).map(Some),
            FieldType::Message(type_name) => {
                let data = read_len(wire, reader, path)?;
                self.decode_message(type_name, data, path, depth + 1)
            }
            // The .proto grammar has no map of maps, and repeated maps are rejected when parsing.
            FieldType::Map(..) => Err(ProtobufError::BadWireType {
                wire_type: wire,
                path: path.to_string(),
            }),
        }
    }

    fn decode_map_entry(
        &self,
        key_type: Scalar,
        value_type: &FieldType,
        entry: &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(String, Value), ProtobufError> {
        let (mut key, mut value) = (None, None);
        for_each_field(entry, path, |number, wire, reader| {
            match number {
                1 => key = Some(decode_scalar(key_type, wire, reader, path)?),
                2 => value = Some(self.decode_value(value_type, wire, reader, path, depth)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let key = match key.unwrap_or_else(|| key_type.zero()) {
            Value::String(key) => key,
            // JSON object keys are strings; Kubernetes maps are keyed by strings anyway.
            other => other.to_string(),
        };
        let value = match value {
            Some(value) => value,
            None => match value_type {
                FieldType::Scalar(scalar) => Some(scalar.zero()),
                FieldType::Message(type_name) => {
                    self.decode_message(type_name, &[], path, depth + 1)?
                }
                FieldType::Map(..) => None,
            },
        };
        Ok((key, value.unwrap_or(Value::Null)))
    }

    fn decode_well_known(
        &self,
        kind: WellKnown,
        data: &[u8],
        path: &Path<'_>,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        match kind {
            WellKnown::Time | WellKnown::MicroTime => {
                let (mut seconds, mut nanos) = (0_i64, 0_i64);
                for_each_field(data, path, |number, wire, reader| {
                    match number {
                        1 => seconds = read_varint(wire, reader, path)? as i64,
                        2 => nanos = i64::from(read_varint(wire, reader, path)? as i32),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                if seconds == 0 && nanos == 0 {
                    // client-go sends an unset time as an empty message.
                    return Ok(None);
                }
                let micro = matches!(kind, WellKnown::MicroTime);
                format_time(seconds, nanos, micro, path).map(|text| Some(Value::String(text)))
            }
            WellKnown::Duration => {
                let mut nanos = 0_i64;
                for_each_field(data, path, |number, wire, reader| {
                    if number != 1 {
                        return Ok(false);
                    }
                    nanos = read_varint(wire, reader, path)? as i64;
                    Ok(true)
                })?;
                Ok(Some(Value::String(crate::util::go_duration(nanos))))
            }
            WellKnown::Quantity => {
                // A Quantity with no string is Go's zero Quantity, which marshals as "0".
                let mut text = String::from("0");
                for_each_field(data, path, |number, wire, reader| {
                    if number != 1 {
                        return Ok(false);
                    }
                    text = read_string(wire, reader, path)?;
                    Ok(true)
                })?;
                Ok(Some(Value::String(text)))
            }
            WellKnown::IntOrString => {
                let (mut is_string, mut int_val, mut str_val) = (false, 0_i32, String::new());
                for_each_field(data, path, |number, wire, reader| {
                    match number {
                        1 => is_string = read_varint(wire, reader, path)? == 1,
                        2 => int_val = read_varint(wire, reader, path)? as i32,
                        3 => str_val = read_string(wire, reader, path)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Some(if is_string {
                    Value::String(str_val)
                } else {
                    Value::from(int_val)
                }))
            }
            WellKnown::RawExtension | WellKnown::FieldsV1 => {
                let mut raw: &[u8] = &[];
                for_each_field(data, path, |number, wire, reader| {
                    if number != 1 {
                        return Ok(false);
                    }
                    raw = read_len(wire, reader, path)?;
                    Ok(true)
                })?;
                if raw.is_empty() {
                    return Ok(None);
                }
                if matches!(kind, WellKnown::RawExtension) && raw.starts_with(MAGIC) {
                    // An embedded object that was itself protobuf-encoded.
                    return self.decode_envelope(raw, depth + 1).map(Some);
                }
                serde_json::from_slice(raw).map(Some).map_err(|source| {
                    ProtobufError::EmbeddedJson {
                        path: path.to_string(),
                        source,
                    }
                })
            }
            WellKnown::StringList => {
                let mut items = Vec::new();
                for_each_field(data, path, |number, wire, reader| {
                    if number != 1 {
                        return Ok(false);
                    }
                    let item_path = path.index(items.len());
                    items.push(Value::String(read_string(wire, reader, &item_path)?));
                    Ok(true)
                })?;
                Ok(Some(Value::Array(items)))
            }
        }
    }
}

/// Decodes a whole request body (`k8s\0` + `runtime.Unknown`) into the object's JSON, with
/// `apiVersion` and `kind` taken from the envelope and placed first.
pub fn decode_request_body(reg: &ProtoRegistry, body: &[u8]) -> Result<Value, ProtobufError> {
    reg.decode_envelope(body, 0)
}

/// The protobuf message that holds `kind` of `api_version`, following go-to-protobuf's package
/// naming: the core group is `k8s.io.api.core`, a group `x.k8s.io` (or `x.y.k8s.io`) is
/// `k8s.io.api.x`, a group without dots (`apps`, `batch`, `policy`, …) is `k8s.io.api.<group>`,
/// and `meta.k8s.io` is apimachinery's meta package. Other groups (custom resources) have none.
pub fn proto_message_name(api_version: &str, kind: &str) -> Option<String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let alphanumeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !alphanumeric(version) || !alphanumeric(kind) {
        return None;
    }
    if META_OPTION_KINDS.contains(&kind) {
        return Some(format!("{META_V1}.{kind}"));
    }
    let package = match group {
        "" => "k8s.io.api.core".to_owned(),
        "meta.k8s.io" => "k8s.io.apimachinery.pkg.apis.meta".to_owned(),
        group if !group.contains('.') => format!("k8s.io.api.{group}"),
        group => format!(
            "k8s.io.api.{}",
            group.strip_suffix(".k8s.io")?.split('.').next()?
        ),
    };
    Some(format!("{package}.{version}.{kind}"))
}

/// Puts `apiVersion` and `kind` first, as Kubernetes' JSON has them.
fn with_type_meta(object: Value, api_version: String, kind: String) -> Value {
    let Value::Object(fields) = object else {
        return object;
    };
    let mut out = Map::with_capacity(fields.len() + 2);
    out.insert("apiVersion".to_owned(), Value::String(api_version));
    out.insert("kind".to_owned(), Value::String(kind));
    for (key, value) in fields {
        if key != "apiVersion" && key != "kind" {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

/// A field's value while a message is being decoded.
enum Slot {
    Unset,
    Single(Value),
    List(Vec<Value>),
    Map(Map<String, Value>),
}

impl Slot {
    fn list(&mut self) -> &mut Vec<Value> {
        if !matches!(self, Slot::List(_)) {
            *self = Slot::List(Vec::new());
        }
        match self {
            Slot::List(items) => items,
            _ => unreachable!("just made a list"),
        }
    }

    fn map(&mut self) -> &mut Map<String, Value> {
        if !matches!(self, Slot::Map(_)) {
            *self = Slot::Map(Map::new());
        }
        match self {
            Slot::Map(entries) => entries,
            _ => unreachable!("just made a map"),
        }
    }
}

/// `metav1.Time` marshals as RFC 3339 in UTC with whole seconds, `MicroTime` with six digits.
fn format_time(
    seconds: i64,
    nanos: i64,
    micro: bool,
    path: &Path<'_>,
) -> Result<String, ProtobufError> {
    let out_of_range = || ProtobufError::TimeOutOfRange {
        path: path.to_string(),
        seconds,
        nanos,
    };
    let nanos_i32 = i32::try_from(nanos).map_err(|_| out_of_range())?;
    let timestamp = jiff::Timestamp::new(seconds, nanos_i32).map_err(|_| out_of_range())?;
    let whole = timestamp.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(if micro {
        format!("{whole}.{:06}Z", timestamp.subsec_nanosecond() / 1000)
    } else {
        format!("{whole}Z")
    })
}

/// go-to-protobuf derives a field name by lower-casing only the first letter of the Go name, so a
/// Go field starting with an acronym (`UID`, `APIGroup`) is `uID`/`aPIGroup` in the .proto while
/// its JSON tag is `uid`/`apiGroup`. Lower-case that leading capital run, except a capital that
/// begins the next word. Names like `Port` (JSON "Port") or `maxSkew` are left alone.
fn json_name(proto_name: &str) -> String {
    let bytes = proto_name.as_bytes();
    if bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || !bytes[1].is_ascii_uppercase() {
        return proto_name.to_owned();
    }
    let run_end = 1 + bytes[1..]
        .iter()
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    let lower_to = if run_end < bytes.len() {
        run_end - 1
    } else {
        run_end
    };
    format!(
        "{}{}{}",
        &proto_name[..1],
        proto_name[1..lower_to].to_ascii_lowercase(),
        &proto_name[lower_to..]
    )
}

// ---------------------------------------------------------------------------------------------
// Wire format

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// Where in the object a value sits, rendered only when an error needs it.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root(&'a str),
    Field(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    fn root(name: &'a str) -> Self {
        Path {
            parent: None,
            segment: Segment::Root(name),
        }
    }

    fn field<'b>(&'b self, name: &'b str) -> Path<'b> {
        Path {
            parent: Some(self),
            segment: Segment::Field(name),
        }
    }

    fn index(&self, index: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.segment {
            Segment::Root(name) => f.write_str(name),
            Segment::Field(name) => write!(f, ".{name}"),
            Segment::Index(index) => write!(f, "[{index}]"),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

enum WireError {
    Truncated,
    Overlong,
}

impl WireError {
    fn at(self, path: &Path<'_>) -> ProtobufError {
        let path = path.to_string();
        match self {
            WireError::Truncated => ProtobufError::Truncated { path },
            WireError::Overlong => ProtobufError::OverlongVarint { path },
        }
    }
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0_u64;
        for (index, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.buf = &self.buf[index + 1..];
                return Ok(value);
            }
        }
        Err(if self.buf.len() >= 10 {
            WireError::Overlong
        } else {
            WireError::Truncated
        })
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < len {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        self.take(usize::try_from(len).map_err(|_| WireError::Truncated)?)
    }

    fn fixed32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn fixed64(&mut self) -> Result<u64, WireError> {
        let bytes = self.take(8)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    /// Skips a field this decoder does not know, as protobuf readers must.
    fn skip(&mut self, wire: u8, path: &Path<'_>) -> Result<(), ProtobufError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.take(8).map(drop),
            WIRE_LEN => self.length_delimited().map(drop),
            WIRE_I32 => self.take(4).map(drop),
            // Groups (3, 4) are not used by Kubernetes; anything else is corrupt.
            _ => {
                return Err(ProtobufError::BadWireType {
                    wire_type: wire,
                    path: path.to_string(),
                })
            }
        }
        .map_err(|e| e.at(path))
    }
}

/// Calls `visit(number, wire type, reader)` for each field of a message; when it returns
/// `false` the field is unknown and skipped.
fn for_each_field<'a>(
    data: &'a [u8],
    path: &Path<'_>,
    mut visit: impl FnMut(u32, u8, &mut Reader<'a>) -> Result<bool, ProtobufError>,
) -> Result<(), ProtobufError> {
    let mut reader = Reader::new(data);
    while !reader.is_empty() {
        let key = reader.varint().map_err(|e| e.at(path))?;
        let wire = (key & 7) as u8;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| ProtobufError::BadFieldKey {
                key,
                path: path.to_string(),
            })?;
        if !visit(number, wire, &mut reader)? {
            reader.skip(wire, path)?;
        }
    }
    Ok(())
}

fn expect_wire(expected: u8, wire: u8, path: &Path<'_>) -> Result<(), ProtobufError> {
    if wire == expected {
        Ok(())
    } else {
        Err(ProtobufError::BadWireType {
            wire_type: wire,
            path: path.to_string(),
        })
    }
}

fn read_varint(wire: u8, reader: &mut Reader<'_>, path: &Path<'_>) -> Result<u64, ProtobufError> {
    expect_wire(WIRE_VARINT, wire, path)?;
    reader.varint().map_err(|e| e.at(path))
}

fn read_len<'a>(
    wire: u8,
    reader: &mut Reader<'a>,
    path: &Path<'_>,
) -> Result<&'a [u8], ProtobufError> {
    expect_wire(WIRE_LEN, wire, path)?;
    reader.length_delimited().map_err(|e| e.at(path))
}

fn read_string(
    wire: u8,
    reader: &mut Reader<'_>,
    path: &Path<'_>,
) -> Result<String, ProtobufError> {
    let bytes = read_len(wire, reader, path)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 {
        path: path.to_string(),
    })
}

fn decode_scalar(
    scalar: Scalar,
    wire: u8,
    reader: &mut Reader<'_>,
    path: &Path<'_>,
) -> Result<Value, ProtobufError> {
    expect_wire(scalar.wire_type(), wire, path)?;
    let float = |value: f64| Number::from_f64(value).map_or(Value::Null, Value::Number);
    let wire_error = |e: WireError| e.at(path);
    Ok(match scalar {
        // Casts truncate to the declared width, as protobuf specifies for varints.
        Scalar::Int32 => Value::from(reader.varint().map_err(wire_error)? as i32),
        Scalar::Int64 => Value::from(reader.varint().map_err(wire_error)? as i64),
        Scalar::Uint32 => Value::from(reader.varint().map_err(wire_error)? as u32),
        Scalar::Uint64 => Value::from(reader.varint().map_err(wire_error)?),
        Scalar::Sint32 => {
            let raw = reader.varint().map_err(wire_error)? as u32;
            Value::from((raw >> 1) as i32 ^ -((raw & 1) as i32))
        }
        Scalar::Sint64 => {
            let raw = reader.varint().map_err(wire_error)?;
            Value::from((raw >> 1) as i64 ^ -((raw & 1) as i64))
        }
        Scalar::Bool => Value::Bool(reader.varint().map_err(wire_error)? != 0),
        Scalar::Fixed32 => Value::from(reader.fixed32().map_err(wire_error)?),
        Scalar::Sfixed32 => Value::from(reader.fixed32().map_err(wire_error)? as i32),
        Scalar::Float => float(f64::from(f32::from_bits(
            reader.fixed32().map_err(wire_error)?,
        ))),
        Scalar::Fixed64 => Value::from(reader.fixed64().map_err(wire_error)?),
        Scalar::Sfixed64 => Value::from(reader.fixed64().map_err(wire_error)? as i64),
        Scalar::Double => float(f64::from_bits(reader.fixed64().map_err(wire_error)?)),
        Scalar::String => Value::String(read_string(wire, reader, path)?),
        Scalar::Bytes => {
            let bytes = read_len(wire, reader, path)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// .proto parser for the proto2 subset go-to-protobuf emits

struct RawMessage<'a> {
    full_name: String,
    fields: Vec<RawField<'a>>,
}

struct RawField<'a> {
    name: &'a str,
    number: u32,
    repeated: bool,
    ty: RawType<'a>,
}

enum RawType<'a> {
    Scalar(Scalar),
    Named(&'a str),
    Map(Scalar, Box<RawType<'a>>),
}

/// Resolves a type name the way protoc does: a leading dot means fully qualified, otherwise the
/// name is looked up in the enclosing scopes from the innermost outwards.
fn resolve(
    names: &HashSet<String>,
    scope: &str,
    field: &str,
    ty: &RawType<'_>,
) -> Result<FieldType, ProtobufError> {
    match ty {
        RawType::Scalar(scalar) => Ok(FieldType::Scalar(*scalar)),
        RawType::Map(key, value) => Ok(FieldType::Map(
            *key,
            Box::new(resolve(names, scope, field, value)?),
        )),
        RawType::Named(name) => {
            let found = if let Some(absolute) = name.strip_prefix('.') {
                names.get(absolute)
            } else {
                let mut scope = Some(scope);
                let mut found = None;
                while let Some(current) = scope {
                    if let Some(hit) = names.get(&format!("{current}.{name}")) {
                        found = Some(hit);
                        break;
                    }
                    scope = current.rsplit_once('.').map(|(parent, _)| parent);
                }
                found.or_else(|| names.get(*name))
            };
            found
                .map(|full| FieldType::Message(full.clone()))
                .ok_or_else(|| ProtobufError::UnresolvedType {
                    message: scope.to_owned(),
                    field: field.to_owned(),
                    type_name: (*name).to_owned(),
                })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Str(&'a str),
    Punct(char),
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(word) => write!(f, "`{word}`"),
            Token::Str(text) => write!(f, "string {text:?}"),
            Token::Punct(c) => write!(f, "`{c}`"),
        }
    }
}

struct Parser<'a> {
    file: &'a str,
    tokens: Vec<(Token<'a>, usize)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(file: &'a str, src: &'a str) -> Result<Self, ProtobufError> {
        let parse_error = |line, message: String| ProtobufError::Parse {
            file: file.to_owned(),
            line,
            message,
        };
        let bytes = src.as_bytes();
        let mut tokens = Vec::new();
        let (mut i, mut line) = (0, 1);
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'\n' => {
                    line += 1;
                    i += 1;
                }
                _ if c.is_ascii_whitespace() => i += 1,
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    let start_line = line;
                    i += 2;
                    loop {
                        match bytes.get(i) {
                            None => {
                                return Err(parse_error(start_line, "unterminated comment".into()))
                            }
                            Some(b'*') if bytes.get(i + 1) == Some(&b'/') => {
                                i += 2;
                                break;
                            }
                            Some(b'\n') => line += 1,
                            Some(_) => {}
                        }
                        i += 1;
                    }
                }
                b'"' | b'\'' => {
                    let start = i + 1;
                    i = start;
                    loop {
                        match bytes.get(i) {
                            None | Some(b'\n') => {
                                return Err(parse_error(line, "unterminated string".into()))
                            }
                            Some(b'\\') => i += 2,
                            Some(&q) if q == c => break,
                            Some(_) => i += 1,
                        }
                    }
                    tokens.push((Token::Str(&src[start..i]), line));
                    i += 1;
                }
                _ if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                    let start = i;
                    while i < bytes.len()
                        && (bytes[i].is_ascii_alphanumeric()
                            || bytes[i] == b'_'
                            || bytes[i] == b'.')
                    {
                        i += 1;
                    }
                    tokens.push((Token::Word(&src[start..i]), line));
                }
                b'{' | b'}' | b'<' | b'>' | b'=' | b';' | b',' | b'[' | b']' | b'(' | b')'
                | b'-' | b'+' => {
                    tokens.push((Token::Punct(char::from(c)), line));
                    i += 1;
                }
                _ => {
                    let shown = src[i..].chars().next().unwrap_or('?');
                    return Err(parse_error(line, format!("unexpected character {shown:?}")));
                }
            }
        }
        Ok(Parser {
            file,
            tokens,
            pos: 0,
        })
    }

    fn error(&self, message: impl Into<String>) -> ProtobufError {
        let line = self
            .tokens
            .get(self.pos.min(self.tokens.len().saturating_sub(1)))
            .map_or(1, |&(_, line)| line);
        ProtobufError::Parse {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).map(|&(token, _)| token)
    }

    fn next(&mut self) -> Result<Token<'a>, ProtobufError> {
        let token = self
            .peek()
            .ok_or_else(|| self.error("unexpected end of file"))?;
        self.pos += 1;
        Ok(token)
    }

    fn expect(&mut self, punct: char) -> Result<(), ProtobufError> {
        match self.next()? {
            Token::Punct(c) if c == punct => Ok(()),
            other => {
                self.pos -= 1;
                Err(self.error(format!("expected `{punct}`, found {other}")))
            }
        }
    }

    fn word(&mut self) -> Result<&'a str, ProtobufError> {
        match self.next()? {
            Token::Word(word) => Ok(word),
            other => {
                self.pos -= 1;
                Err(self.error(format!("expected a name, found {other}")))
            }
        }
    }

    /// Skips the rest of a statement whose content does not matter here (`option`, `reserved`).
    fn skip_statement(&mut self) -> Result<(), ProtobufError> {
        while self.next()? != Token::Punct(';') {}
        Ok(())
    }

    fn parse_file(mut self) -> Result<Vec<RawMessage<'a>>, ProtobufError> {
        let mut package = String::new();
        let mut messages = Vec::new();
        while let Some(token) = self.peek() {
            self.pos += 1;
            match token {
                Token::Punct(';') => {}
                Token::Word("syntax") => {
                    self.expect('=')?;
                    match self.next()? {
                        Token::Str("proto2") => {}
                        other => return Err(self.error(format!("unsupported syntax {other}"))),
                    }
                    self.expect(';')?;
                }
                Token::Word("package") => {
                    package = self.word()?.to_owned();
                    self.expect(';')?;
                }
                Token::Word("import") => {
                    // Types are resolved across all sources, so imports need no following.
                    self.skip_statement()?;
                }
                Token::Word("option") => self.skip_statement()?,
                Token::Word("message") => self.parse_message(&package, &mut messages)?,
                other => {
                    self.pos -= 1;
                    return Err(self.error(format!("unsupported top-level statement {other}")));
                }
            }
        }
        Ok(messages)
    }

    fn parse_message(
        &mut self,
        scope: &str,
        messages: &mut Vec<RawMessage<'a>>,
    ) -> Result<(), ProtobufError> {
        let name = self.word()?;
        let full_name = if scope.is_empty() {
            name.to_owned()
        } else {
            format!("{scope}.{name}")
        };
        self.expect('{')?;
        let mut fields: Vec<RawField<'a>> = Vec::new();
        loop {
            match self.next()? {
                Token::Punct('}') => break,
                Token::Punct(';') => {}
                Token::Word("message") => self.parse_message(&full_name, messages)?,
                Token::Word("option" | "reserved") => self.skip_statement()?,
                Token::Word(label @ ("optional" | "required" | "repeated")) => {
                    let ty = self.parse_type()?;
                    if matches!(ty, RawType::Map(..)) {
                        return Err(self.error("a map field cannot have a label"));
                    }
                    fields.push(self.parse_field_rest(label == "repeated", ty)?);
                }
                Token::Word("map") => {
                    self.pos -= 1;
                    let ty = self.parse_type()?;
                    fields.push(self.parse_field_rest(false, ty)?);
                }
                other => {
                    self.pos -= 1;
                    return Err(
                        self.error(format!("unsupported statement {other} in message {name}"))
                    );
                }
            }
            if let Some(last) = fields.last() {
                if fields[..fields.len() - 1]
                    .iter()
                    .any(|f| f.number == last.number || f.name == last.name)
                {
                    return Err(self.error(format!(
                        "field {} = {} repeats a name or number in message {name}",
                        last.name, last.number
                    )));
                }
            }
        }
        messages.push(RawMessage { full_name, fields });
        Ok(())
    }

    fn parse_type(&mut self) -> Result<RawType<'a>, ProtobufError> {
        let name = self.word()?;
        if name == "map" && self.peek() == Some(Token::Punct('<')) {
            self.expect('<')?;
            let key = self.word()?;
            let key = Scalar::from_name(key)
                .filter(|k| !matches!(k, Scalar::Double | Scalar::Float | Scalar::Bytes))
                .ok_or_else(|| self.error(format!("unsupported map key type `{key}`")))?;
            self.expect(',')?;
            let value = self.parse_type()?;
            if matches!(value, RawType::Map(..)) {
                return Err(self.error("a map value cannot be a map"));
            }
            self.expect('>')?;
            return Ok(RawType::Map(key, Box::new(value)));
        }
        Ok(Scalar::from_name(name).map_or(RawType::Named(name), RawType::Scalar))
    }

    /// `name = number [options];` after the label and type.
    fn parse_field_rest(
        &mut self,
        repeated: bool,
        ty: RawType<'a>,
    ) -> Result<RawField<'a>, ProtobufError> {
        let name = self.word()?;
        self.expect('=')?;
        let number = self.word()?;
        let number = number
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=536_870_911).contains(n))
            .ok_or_else(|| self.error(format!("invalid field number `{number}`")))?;
        if self.peek() == Some(Token::Punct('[')) {
            while self.next()? != Token::Punct(']') {}
        }
        self.expect(';')?;
        Ok(RawField {
            name,
            number,
            repeated,
            ty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Builds protobuf bytes the way Go's generated marshallers lay them out.
    #[derive(Default, Clone)]
    struct Enc(Vec<u8>);

    impl Enc {
        fn new() -> Self {
            Self::default()
        }

        fn raw_varint(&mut self, mut value: u64) {
            while value >= 0x80 {
                self.0.push((value as u8) | 0x80);
                value >>= 7;
            }
            self.0.push(value as u8);
        }

        fn key(&mut self, field: u32, wire: u8) {
            self.raw_varint((u64::from(field) << 3) | u64::from(wire));
        }

        fn varint(mut self, field: u32, value: u64) -> Self {
            self.key(field, WIRE_VARINT);
            self.raw_varint(value);
            self
        }

        fn bytes(mut self, field: u32, bytes: &[u8]) -> Self {
            self.key(field, WIRE_LEN);
            self.raw_varint(bytes.len() as u64);
            self.0.extend_from_slice(bytes);
            self
        }

        fn str(self, field: u32, text: &str) -> Self {
            self.bytes(field, text.as_bytes())
        }

        fn msg(self, field: u32, message: Enc) -> Self {
            self.bytes(field, &message.0)
        }

        /// A `map<string, string>` entry.
        fn entry(self, field: u32, key: &str, value: &str) -> Self {
            self.msg(field, Enc::new().str(1, key).str(2, value))
        }
    }

    fn body(api_version: &str, kind: &str, object: Enc) -> Vec<u8> {
        let envelope = Enc::new()
            .msg(1, Enc::new().str(1, api_version).str(2, kind))
            .msg(2, object)
            .str(3, "")
            .str(4, "");
        [MAGIC, envelope.0.as_slice()].concat()
    }

    fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
        decode_request_body(ProtoRegistry::embedded(), body)
    }

    /// ObjectMeta as client-go writes it for a new object: unset strings are written empty and
    /// the unset creationTimestamp is an empty message.
    fn object_meta(name: &str, labels: &[(&str, &str)]) -> Enc {
        let mut meta = Enc::new().str(1, name).str(2, "").str(3, "");
        meta = meta.msg(8, Enc::new());
        for (key, value) in labels {
            meta = meta.entry(11, key, value);
        }
        meta
    }

    #[test]
    fn embedded_sources_parse_and_resolve() {
        let registry = ProtoRegistry::embedded();
        for name in [
            "k8s.io.api.apps.v1.Deployment",
            "k8s.io.api.core.v1.Secret",
            "k8s.io.api.networking.v1.Ingress",
            "k8s.io.api.authentication.v1.TokenRequest",
            "k8s.io.api.policy.v1.PodDisruptionBudget",
            "k8s.io.api.scheduling.v1.PriorityClass",
            "k8s.io.api.rbac.v1.RoleBinding",
            "k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler",
            "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        ] {
            assert!(registry.messages.contains_key(name), "{name} missing");
        }
    }

    #[test]
    fn maps_api_versions_to_messages() {
        let name = |api_version, kind| proto_message_name(api_version, kind);
        assert_eq!(name("v1", "Pod").as_deref(), Some("k8s.io.api.core.v1.Pod"));
        assert_eq!(
            name("apps/v1", "Deployment").as_deref(),
            Some("k8s.io.api.apps.v1.Deployment")
        );
        assert_eq!(
            name("rbac.authorization.k8s.io/v1", "Role").as_deref(),
            Some("k8s.io.api.rbac.v1.Role")
        );
        assert_eq!(
            name("networking.k8s.io/v1", "Ingress").as_deref(),
            Some("k8s.io.api.networking.v1.Ingress")
        );
        assert_eq!(
            name("authentication.k8s.io/v1", "TokenRequest").as_deref(),
            Some("k8s.io.api.authentication.v1.TokenRequest")
        );
        assert_eq!(
            name("autoscaling/v2", "HorizontalPodAutoscaler").as_deref(),
            Some("k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler")
        );
        assert_eq!(
            name("meta.k8s.io/v1", "DeleteOptions").as_deref(),
            Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions")
        );
        assert_eq!(
            name("v1", "DeleteOptions").as_deref(),
            Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions")
        );
        assert_eq!(name("example.com/v1", "Widget"), None);
        assert_eq!(name("apps/v1", "Bad.Kind"), None);
        assert_eq!(name("", "Pod"), None);
    }

    #[test]
    fn decodes_kubectl_create_deployment() {
        let labels = [("app", "hello")];
        let port = Enc::new()
            .str(1, "")
            .varint(2, 0)
            .varint(3, 80)
            .str(4, "TCP")
            .str(5, "");
        let container = Enc::new()
            .str(1, "nginx")
            .str(2, "nginx")
            .msg(6, port)
            .msg(8, Enc::new());
        let template = Enc::new()
            .msg(1, object_meta("", &labels))
            .msg(2, Enc::new().msg(2, container));
        let spec = Enc::new()
            .varint(1, 2)
            .msg(2, Enc::new().entry(1, "app", "hello"))
            .msg(3, template)
            .msg(4, Enc::new());
        let deployment = Enc::new()
            .msg(1, object_meta("hello", &labels))
            .msg(2, spec)
            .msg(3, Enc::new());
        let decoded = decode(&body("apps/v1", "Deployment", deployment)).unwrap();
        let expected = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "hello", "generateName": "", "namespace": "",
                "labels": {"app": "hello"}
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "hello"}},
                "template": {
                    "metadata": {
                        "name": "", "generateName": "", "namespace": "",
                        "labels": {"app": "hello"}
                    },
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx",
                        "ports": [{
                            "name": "", "hostPort": 0, "containerPort": 80,
                            "protocol": "TCP", "hostIP": ""
                        }],
                        "resources": {}
                    }]}
                },
                "strategy": {}
            },
            "status": {}
        });
        assert_eq!(decoded, expected);
        // Keys come out in the Go struct order, apiVersion and kind first.
        assert_eq!(
            serde_json::to_string(&decoded).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    /// The body kubectl 1.32.4 sent for `kubectl create deployment hello --image=nginx
    /// --replicas=2 --port=80`, captured from the wire.
    const KUBECTL_CREATE_DEPLOYMENT: &str = concat!(
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412c0010a230a0568656c6c6f12001a0022002a0032",
        "00380042005a0c0a03617070120568656c6c6f128a010802120e0a0c0a03617070120568656c6c6f1a6e0a1e0a001200",
        "1a0022002a003200380042005a0c0a03617070120568656c6c6f124c122e0a056e67696e7812056e67696e782a00320a",
        "0a001000185022002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a",
        "01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200",
    );

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_a_captured_kubectl_body() {
        let meta = |name: &str| {
            json!({"name": name, "generateName": "", "namespace": "", "selfLink": "", "uid": "",
                   "resourceVersion": "", "generation": 0, "labels": {"app": "hello"}})
        };
        let decoded = decode(&unhex(KUBECTL_CREATE_DEPLOYMENT)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta("hello"),
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "hello"}},
                    "template": {
                        "metadata": meta(""),
                        "spec": {
                            "containers": [{
                                "name": "nginx", "image": "nginx", "workingDir": "",
                                "ports": [{"name": "", "hostPort": 0, "containerPort": 80,
                                           "protocol": "", "hostIP": ""}],
                                "resources": {}, "terminationMessagePath": "",
                                "terminationMessagePolicy": "", "imagePullPolicy": "",
                                "stdin": false, "stdinOnce": false, "tty": false
                            }],
                            "restartPolicy": "", "dnsPolicy": "", "serviceAccountName": "",
                            "serviceAccount": "", "nodeName": "", "hostNetwork": false,
                            "hostPID": false, "hostIPC": false, "hostname": "", "subdomain": "",
                            "schedulerName": "", "priorityClassName": ""
                        }
                    },
                    "strategy": {"type": ""},
                    "minReadySeconds": 0,
                    "paused": false
                },
                "status": {
                    "observedGeneration": 0, "replicas": 0, "updatedReplicas": 0,
                    "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 0
                }
            })
        );
    }

    #[test]
    fn secret_data_becomes_base64() {
        let secret = Enc::new()
            .msg(1, object_meta("creds", &[]))
            .msg(2, Enc::new().str(1, "key").bytes(2, b"\x00\xffhi"))
            .str(3, "Opaque");
        let decoded = decode(&body("v1", "Secret", secret)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "creds", "generateName": "", "namespace": ""},
                "data": {"key": "AP9oaQ=="},
                "type": "Opaque"
            })
        );
    }

    #[test]
    fn decodes_namespace() {
        let namespace = Enc::new()
            .msg(1, Enc::new().str(1, "team-a").msg(8, Enc::new()))
            .msg(2, Enc::new())
            .msg(3, Enc::new().str(1, ""));
        assert_eq!(
            decode(&body("v1", "Namespace", namespace)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "team-a"},
                "spec": {},
                "status": {"phase": ""}
            })
        );
    }

    #[test]
    fn service_target_port_is_int_or_string() {
        let by_number = Enc::new()
            .str(1, "80-8080")
            .str(2, "TCP")
            .varint(3, 80)
            .msg(4, Enc::new().varint(1, 0).varint(2, 8080).str(3, ""))
            .varint(5, 0);
        let by_name = Enc::new()
            .str(1, "https")
            .str(2, "TCP")
            .varint(3, 443)
            .msg(4, Enc::new().varint(1, 1).varint(2, 0).str(3, "https"));
        let spec = Enc::new()
            .msg(1, by_number)
            .msg(1, by_name)
            .entry(2, "app", "web")
            .str(4, "ClusterIP");
        let service = Enc::new().msg(1, Enc::new().str(1, "web")).msg(2, spec);
        assert_eq!(
            decode(&body("v1", "Service", service)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {
                    "ports": [
                        {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                         "nodePort": 0},
                        {"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https"}
                    ],
                    "selector": {"app": "web"},
                    "type": "ClusterIP"
                }
            })
        );
    }

    #[test]
    fn resource_quota_quantities_are_strings() {
        let quantity = |text: &str| Enc::new().str(1, text);
        let hard = |key: &str, value: Enc| Enc::new().str(1, key).msg(2, value);
        let spec = Enc::new()
            .msg(1, hard("pods", quantity("10")))
            .msg(1, hard("requests.cpu", quantity("500m")))
            .msg(1, hard("limits.memory", Enc::new()));
        let quota = Enc::new().msg(1, Enc::new().str(1, "q")).msg(2, spec);
        assert_eq!(
            decode(&body("v1", "ResourceQuota", quota)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "q"},
                "spec": {"hard": {"pods": "10", "requests.cpu": "500m", "limits.memory": "0"}}
            })
        );
    }

    #[test]
    fn times_are_rfc3339() {
        let at = |nanos| Enc::new().varint(1, 1_767_323_045).varint(2, nanos);
        let lease = Enc::new()
            .msg(1, Enc::new().str(1, "leader").msg(8, at(0)))
            .msg(
                2,
                Enc::new()
                    .str(1, "node-1")
                    .msg(3, at(123_456_789))
                    .msg(4, Enc::new()),
            );
        assert_eq!(
            decode(&body("coordination.k8s.io/v1", "Lease", lease)).unwrap(),
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "leader", "creationTimestamp": "2026-01-02T03:04:05Z"},
                "spec": {"holderIdentity": "node-1", "acquireTime": "2026-01-02T03:04:05.123456Z"}
            })
        );
    }

    #[test]
    fn inline_structs_merge_into_their_parent() {
        let env = Enc::new().str(1, "MODE").msg(
            3,
            Enc::new().msg(
                3,
                Enc::new()
                    .msg(1, Enc::new().str(1, "settings"))
                    .str(2, "mode"),
            ),
        );
        let probe = Enc::new()
            .msg(
                1,
                Enc::new().msg(3, Enc::new().msg(1, Enc::new().varint(1, 1).str(3, "http"))),
            )
            .varint(2, 5);
        let container = Enc::new().str(1, "app").msg(7, env).msg(10, probe);
        let volume = Enc::new()
            .str(1, "scratch")
            .msg(2, Enc::new().msg(2, Enc::new().str(1, "Memory")));
        let pod = Enc::new()
            .msg(1, Enc::new().str(1, "p"))
            .msg(2, Enc::new().msg(1, volume).msg(2, container));
        assert_eq!(
            decode(&body("v1", "Pod", pod)).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {
                    "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
                    "containers": [{
                        "name": "app",
                        "env": [{
                            "name": "MODE",
                            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}
                        }],
                        "livenessProbe": {"tcpSocket": {"port": "http"}, "initialDelaySeconds": 5}
                    }]
                }
            })
        );
    }

    #[test]
    fn acronym_field_names_follow_json_tags() {
        assert_eq!(json_name("uID"), "uid");
        assert_eq!(json_name("aPIGroup"), "apiGroup");
        assert_eq!(json_name("Port"), "Port");
        assert_eq!(json_name("hostIP"), "hostIP");
        let token_request = Enc::new().msg(1, Enc::new().str(1, "default")).msg(
            2,
            Enc::new()
                .str(1, "api")
                .varint(4, 3600)
                .msg(3, Enc::new().str(1, "Pod").str(3, "p").str(4, "1234")),
        );
        assert_eq!(
            decode(&body(
                "authentication.k8s.io/v1",
                "TokenRequest",
                token_request
            ))
            .unwrap(),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "metadata": {"name": "default"},
                "spec": {
                    "audiences": ["api"],
                    "expirationSeconds": 3600,
                    "boundObjectRef": {"kind": "Pod", "name": "p", "uid": "1234"}
                }
            })
        );
    }

    #[test]
    fn raw_extensions_hold_json() {
        let revision = Enc::new()
            .msg(1, Enc::new().str(1, "rev"))
            .msg(2, Enc::new().bytes(1, br#"{"spec":{"replicas":3}}"#))
            .varint(3, 7);
        assert_eq!(
            decode(&body("apps/v1", "ControllerRevision", revision)).unwrap(),
            json!({
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {"name": "rev"},
                "data": {"spec": {"replicas": 3}},
                "revision": 7
            })
        );
    }

    #[test]
    fn durations_and_string_lists_use_go_json_forms() {
        let test_proto = "syntax = \"proto2\";\npackage test;\n\
            message Holder {\n\
              optional k8s.io.apimachinery.pkg.apis.meta.v1.Duration timeout = 1;\n\
              optional k8s.io.apimachinery.pkg.apis.meta.v1.Verbs verbs = 2;\n\
              repeated sint32 deltas = 3;\n\
            }\n";
        let sources = EMBEDDED.iter().copied().chain([("test.proto", test_proto)]);
        let registry = ProtoRegistry::from_sources(sources).unwrap();
        let holder = Enc::new()
            .msg(1, Enc::new().varint(1, 90_000_000_000))
            .msg(2, Enc::new().str(1, "get").str(1, "list"))
            .bytes(3, &[0x03, 0x04]);
        let decoded = registry
            .decode_message("test.Holder", &holder.0, &Path::root("Holder"), 0)
            .unwrap();
        assert_eq!(
            decoded,
            Some(json!({"timeout": "1m30s", "verbs": ["get", "list"], "deltas": [-2, 2]}))
        );
    }

    #[test]
    fn parser_handles_the_proto2_subset() {
        let source = "/* header */\nsyntax = 'proto2';\npackage a.b;\n\
            import \"other.proto\";\noption go_package = \"x\";\n\
            message Outer {\n  // comment\n  reserved 4, 6 to 8;\n\
              message Inner { optional int64 n = 1 [default = 0]; }\n\
              repeated Inner items = 1;\n  map<string, Inner> byName = 2;\n\
              optional .a.b.Outer.Inner first = 3;\n}\n";
        let registry = ProtoRegistry::from_sources([("a.proto", source)]).unwrap();
        let outer = &registry.messages["a.b.Outer"];
        assert_eq!(outer.fields.len(), 3);
        assert!(outer.fields[0].repeated);
        assert!(
            matches!(&outer.fields[1].ty, FieldType::Map(Scalar::String, value)
                if matches!(&**value, FieldType::Message(name) if name == "a.b.Outer.Inner"))
        );
        assert!(registry.messages.contains_key("a.b.Outer.Inner"));

        let unresolved = ProtoRegistry::from_sources([(
            "b.proto",
            "syntax = \"proto2\";\nmessage M {\n  optional Missing m = 1;\n}\n",
        )]);
        assert!(matches!(
            unresolved,
            Err(ProtobufError::UnresolvedType { ref type_name, .. }) if type_name == "Missing"
        ));
        let bad = ProtoRegistry::from_sources([(
            "c.proto",
            "syntax = \"proto2\";\nmessage M {\n  optional string s = 1\n}\n",
        )]);
        assert!(
            matches!(bad, Err(ProtobufError::Parse { line: 4, .. })),
            "{bad:?}"
        );
    }

    #[test]
    fn rejects_bad_magic() {
        let err = decode(b"{\"kind\":\"Pod\"}").unwrap_err();
        assert!(matches!(err, ProtobufError::BadMagic), "{err}");
        assert!(matches!(
            decode(b"k8s").unwrap_err(),
            ProtobufError::BadMagic
        ));
    }

    #[test]
    fn rejects_truncated_varint() {
        // metadata's length prefix stops after a continuation byte.
        let err = decode(&body("v1", "Namespace", Enc(vec![0x0a, 0x80]))).unwrap_err();
        assert!(
            matches!(&err, ProtobufError::Truncated { path } if path == "Namespace.metadata"),
            "{err}"
        );
        // The envelope itself ends inside a field key.
        let err = decode(&[MAGIC, &[0x92]].concat()).unwrap_err();
        assert!(matches!(err, ProtobufError::Truncated { .. }), "{err}");
        let err = decode(&[MAGIC, &[0xff; 11]].concat()).unwrap_err();
        assert!(matches!(err, ProtobufError::OverlongVarint { .. }), "{err}");
    }

    #[test]
    fn rejects_unknown_kind() {
        let err = decode(&body("apps/v1", "Frobnicator", Enc::new())).unwrap_err();
        assert_eq!(err.to_string(), "unknown type \"apps/v1 Frobnicator\"");
        let err = decode(&body("example.com/v1", "Widget", Enc::new())).unwrap_err();
        assert!(matches!(err, ProtobufError::UnknownType { .. }), "{err}");
    }

    #[test]
    fn rejects_wrong_wire_type() {
        let err = decode(&body("apps/v1", "Deployment", Enc::new().varint(1, 5))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wire type 0 is not valid for Deployment.metadata"
        );
        let spec = Enc::new().msg(2, Enc::new().msg(1, Enc::new().varint(1, 1)));
        let err = decode(&body("apps/v1", "Deployment", Enc::new().msg(2, spec))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "wire type 0 is not valid for Deployment.spec.selector.matchLabels"
        );
    }

    #[test]
    fn skips_unknown_fields_and_accepts_json_payloads() {
        let namespace = Enc::new()
            .msg(1, Enc::new().str(1, "ns"))
            .varint(99, 1)
            .str(100, "future field");
        assert_eq!(
            decode(&body("v1", "Namespace", namespace)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
        );
        let envelope = Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .bytes(2, br#"{"metadata":{"name":"c"},"data":{"a":"b"}}"#)
            .str(4, "application/json");
        assert_eq!(
            decode(&[MAGIC, envelope.0.as_slice()].concat()).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"a": "b"}})
        );
    }
}
