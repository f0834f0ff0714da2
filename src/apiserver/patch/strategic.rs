//! Strategic merge patch (`application/strategic-merge-patch+json`) as the Kubernetes API
//! server applies it.
//!
//! This module owns the server half of `k8s.io/apimachinery/pkg/util/strategicpatch`
//! (`StrategicMergePatch` → `mergeMap` / `mergeSlice`): merging a patch document into the stored
//! object, honouring the `$patch`, `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>` directives, and the patch metadata (the `patchStrategy` /
//! `patchMergeKey` struct tags of `k8s.io/api`) of the built-in kinds. Computing patches (the
//! client half `kubectl` uses) is not part of it.
//!
//! The merge follows upstream closely, quirks included, because clients compute their patches
//! against exactly that behaviour: `kubectl apply` relies on how server-only list items are
//! interleaved with the items it sends. Where upstream's result depends on Go slices sharing a
//! backing array, the merge reproduces what the API server (whose objects come from
//! `ToUnstructured`, so every slice starts with `cap == len`) produces.
//!
//! Object keys keep their position in the stored object; keys the patch adds are appended.

use serde_json::{Map, Value};

type Object = Map<String, Value>;
type Result<T> = std::result::Result<T, StrategicPatchError>;

/// A patch that cannot be applied. Messages match those of Kubernetes where it has one.
#[derive(Debug, thiserror::Error)]
pub enum StrategicPatchError {
    #[error("{0}")]
    InvalidPatch(String),
}

/// Patch metadata of one field: how a list under that field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the stored one (no patch strategy, e.g. `listType=atomic`).
    Replace,
    /// Items are objects matched on `merge_key`; matching items merge, others are added.
    Merge { merge_key: &'static str },
    /// `patchStrategy:"merge"` on a list of scalars (e.g. `finalizers`): union without duplicates.
    MergePrimitives,
}

/// Looks up the patch strategy of the field reached by a path of object keys from the root of a
/// resource of the given kind.
///
/// Path elements are JSON field names; list items do not add a path element (so
/// `containers[*].env` is `["spec","template","spec","containers","env"]` for a Deployment).
/// Unknown kinds and paths are [`ListStrategy::Replace`].
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    let Some((last, parents)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    let parent = parents
        .iter()
        .fold(root_type(kind), |schema, name| child_type(schema, name));
    ListField::of(parent, last).strategy
}

/// Applies a strategic merge patch to `original`, an object of the given kind.
///
/// Kinds without patch metadata merge like JSON merge patch, except that directives still apply.
pub fn apply(kind: &str, original: &Value, patch: &Value) -> Result<Value> {
    apply_with_schema(root_type(kind), original, patch)
}

fn apply_with_schema(schema: Schema, original: &Value, patch: &Value) -> Result<Value> {
    let original = document(original)?;
    let patch = document(patch)?;
    merge_map(original, patch, schema).map(Value::Object)
}

fn document(value: &Value) -> Result<Object> {
    match value {
        Value::Object(map) => Ok(map.clone()),
        // Go decodes `null` into a nil map, which merges like an empty one.
        Value::Null => Ok(Object::new()),
        _ => Err(invalid("invalid JSON document")),
    }
}

// ---------------------------------------------------------------------------------------------
// Patch metadata of the built-in types.
// ---------------------------------------------------------------------------------------------

/// The patch metadata of one Go type: only the fields that carry a patch strategy or lead to a
/// type that does. Fields are looked up by JSON name; a missing field has no metadata.
struct TypeDef {
    fields: &'static [Field],
}

struct Field {
    name: &'static str,
    strategy: ListStrategy,
    /// The type of the field, or of its items when it is a list.
    ty: Option<&'static TypeDef>,
}

impl Field {
    const fn object(name: &'static str, ty: &'static TypeDef) -> Self {
        Field {
            name,
            strategy: ListStrategy::Replace,
            ty: Some(ty),
        }
    }

    const fn merged(name: &'static str, merge_key: &'static str) -> Self {
        Field {
            name,
            strategy: ListStrategy::Merge { merge_key },
            ty: None,
        }
    }

    const fn merged_of(name: &'static str, merge_key: &'static str, ty: &'static TypeDef) -> Self {
        Field {
            name,
            strategy: ListStrategy::Merge { merge_key },
            ty: Some(ty),
        }
    }

    const fn set(name: &'static str) -> Self {
        Field {
            name,
            strategy: ListStrategy::MergePrimitives,
            ty: None,
        }
    }
}

type Schema = Option<&'static TypeDef>;

const METADATA: Field = Field::object("metadata", &OBJECT_META);

/// `metav1.ObjectMeta`.
static OBJECT_META: TypeDef = TypeDef {
    fields: &[
        Field::set("finalizers"),
        Field::merged("ownerReferences", "uid"),
    ],
};

/// `Container` and `EphemeralContainerCommon` carry the same tags (`resizePolicy` and
/// `restartPolicyRules` are atomic).
const CONTAINER_FIELDS: &[Field] = &[
    Field::merged("ports", "containerPort"),
    Field::merged("env", "name"),
    Field::merged("volumeMounts", "mountPath"),
    Field::merged("volumeDevices", "devicePath"),
];
static CONTAINER: TypeDef = TypeDef {
    fields: CONTAINER_FIELDS,
};
static EPHEMERAL_CONTAINER: TypeDef = TypeDef {
    fields: CONTAINER_FIELDS,
};

/// `PodSpec`. `volumes` and `resourceClaims` are `merge,retainKeys`: the retainKeys half only
/// shapes the patches clients compute, `$retainKeys` directives apply wherever they appear.
/// `tolerations`, `readinessGates` and `dnsConfig` lists are atomic.
static POD_SPEC: TypeDef = TypeDef {
    fields: &[
        Field::merged("volumes", "name"),
        Field::merged_of("initContainers", "name", &CONTAINER),
        Field::merged_of("containers", "name", &CONTAINER),
        Field::merged_of("ephemeralContainers", "name", &EPHEMERAL_CONTAINER),
        Field::merged("imagePullSecrets", "name"),
        Field::merged("hostAliases", "ip"),
        Field::merged("topologySpreadConstraints", "topologyKey"),
        Field::merged("schedulingGates", "name"),
        Field::merged("resourceClaims", "name"),
    ],
};

/// `PodStatus`; the container status lists are atomic.
static POD_STATUS: TypeDef = TypeDef {
    fields: &[
        Field::merged("conditions", "type"),
        Field::merged("hostIPs", "ip"),
        Field::merged("podIPs", "ip"),
        Field::merged("resourceClaimStatuses", "name"),
    ],
};

/// `PodTemplateSpec`.
static POD_TEMPLATE_SPEC: TypeDef = TypeDef {
    fields: &[METADATA, Field::object("spec", &POD_SPEC)],
};

/// `DeploymentSpec`, `ReplicaSetSpec`, `StatefulSetSpec`, `DaemonSetSpec`, `JobSpec` and
/// `ReplicationControllerSpec`: their only patch metadata is under the pod template.
static TEMPLATED_SPEC: TypeDef = TypeDef {
    fields: &[Field::object("template", &POD_TEMPLATE_SPEC)],
};

/// The status types whose only patch metadata is `conditions` merged by `type`: those of the
/// workloads above, `NamespaceStatus` and `ServiceStatus`.
static CONDITIONS_STATUS: TypeDef = TypeDef {
    fields: &[Field::merged("conditions", "type")],
};

static POD: TypeDef = TypeDef {
    fields: &[
        METADATA,
        Field::object("spec", &POD_SPEC),
        Field::object("status", &POD_STATUS),
    ],
};

static POD_TEMPLATE: TypeDef = TypeDef {
    fields: &[METADATA, Field::object("template", &POD_TEMPLATE_SPEC)],
};

/// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job and ReplicationController.
static WORKLOAD: TypeDef = TypeDef {
    fields: &[
        METADATA,
        Field::object("spec", &TEMPLATED_SPEC),
        Field::object("status", &CONDITIONS_STATUS),
    ],
};

/// `JobTemplateSpec`.
static JOB_TEMPLATE_SPEC: TypeDef = TypeDef {
    fields: &[METADATA, Field::object("spec", &TEMPLATED_SPEC)],
};

/// `CronJobSpec`; `CronJobStatus.active` is atomic.
static CRON_JOB_SPEC: TypeDef = TypeDef {
    fields: &[Field::object("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

static CRON_JOB: TypeDef = TypeDef {
    fields: &[METADATA, Field::object("spec", &CRON_JOB_SPEC)],
};

/// `ServiceSpec`.
static SERVICE_SPEC: TypeDef = TypeDef {
    fields: &[Field::merged("ports", "port")],
};

static SERVICE: TypeDef = TypeDef {
    fields: &[
        METADATA,
        Field::object("spec", &SERVICE_SPEC),
        Field::object("status", &CONDITIONS_STATUS),
    ],
};

/// `NodeSpec`; `taints` is atomic.
static NODE_SPEC: TypeDef = TypeDef {
    fields: &[Field::set("podCIDRs")],
};

/// `NodeStatus`.
static NODE_STATUS: TypeDef = TypeDef {
    fields: &[
        Field::merged("conditions", "type"),
        Field::merged("addresses", "type"),
    ],
};

static NODE: TypeDef = TypeDef {
    fields: &[
        METADATA,
        Field::object("spec", &NODE_SPEC),
        Field::object("status", &NODE_STATUS),
    ],
};

/// `NamespaceSpec.finalizers` has no patch strategy.
static NAMESPACE: TypeDef = TypeDef {
    fields: &[METADATA, Field::object("status", &CONDITIONS_STATUS)],
};

static SERVICE_ACCOUNT: TypeDef = TypeDef {
    fields: &[METADATA, Field::merged("secrets", "name")],
};

/// ConfigMap and Secret: their data maps merge key by key without any metadata.
static METADATA_ONLY: TypeDef = TypeDef {
    fields: &[METADATA],
};

static KINDS: &[(&str, &TypeDef)] = &[
    ("Pod", &POD),
    ("PodTemplate", &POD_TEMPLATE),
    ("Deployment", &WORKLOAD),
    ("ReplicaSet", &WORKLOAD),
    ("StatefulSet", &WORKLOAD),
    ("DaemonSet", &WORKLOAD),
    ("Job", &WORKLOAD),
    ("ReplicationController", &WORKLOAD),
    ("CronJob", &CRON_JOB),
    ("Service", &SERVICE),
    ("Node", &NODE),
    ("Namespace", &NAMESPACE),
    ("ServiceAccount", &SERVICE_ACCOUNT),
    ("ConfigMap", &METADATA_ONLY),
    ("Secret", &METADATA_ONLY),
];

fn root_type(kind: &str) -> Schema {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, ty)| *ty)
}

fn field(schema: Schema, name: &str) -> Option<&'static Field> {
    schema?.fields.iter().find(|f| f.name == name)
}

fn child_type(schema: Schema, name: &str) -> Schema {
    field(schema, name).and_then(|f| f.ty)
}

/// What merging the list under one field needs to know.
#[derive(Clone, Copy)]
struct ListField {
    strategy: ListStrategy,
    element: Schema,
}

impl ListField {
    fn of(schema: Schema, name: &str) -> Self {
        let field = field(schema, name);
        ListField {
            strategy: field.map_or(ListStrategy::Replace, |f| f.strategy),
            element: field.and_then(|f| f.ty),
        }
    }

    /// Upstream passes an empty merge key for lists that are not merged by key.
    fn merge_key(self) -> &'static str {
        match self.strategy {
            ListStrategy::Merge { merge_key } => merge_key,
            ListStrategy::Replace | ListStrategy::MergePrimitives => "",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Maps.
// ---------------------------------------------------------------------------------------------

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE: &str = "delete";
const REPLACE: &str = "replace";
const MERGE: &str = "merge";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

const RETAIN_KEYS_FORMAT: &str = "invalid patch format of retainKeys";
const PRIMITIVE_LIST_FORMAT: &str = "invalid patch format of primitive list";
const SET_ELEMENT_ORDER_FORMAT: &str = "invalid patch format of setElementOrder list";

/// Go type names, for error messages worded like upstream's.
const MAP_TYPE: &str = "map[string]interface {}";
const LIST_TYPE: &str = "[]interface {}";

fn merge_map(mut original: Object, mut patch: Object, schema: Schema) -> Result<Object> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some(REPLACE) => {
                patch.shift_remove(DIRECTIVE_MARKER);
                Ok(patch)
            }
            Some(DELETE) => Ok(Object::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, schema)?;

    for (key, value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST, PRIMITIVE_LIST_FORMAT)?;
            (field.to_owned(), true)
        } else {
            (key, false)
        };
        // The server ignores nulls for absent keys instead of storing them.
        if value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let current = match original.get_mut(&key) {
            Some(current) if GoKind::of(current) == GoKind::of(&value) => current,
            _ => {
                if !is_delete_list {
                    insert_patch_value(&mut original, key, value);
                }
                continue;
            }
        };
        match (current, value) {
            (Value::Object(current), Value::Object(patch)) => {
                let merged = merge_map(std::mem::take(current), patch, child_type(schema, &key))?;
                *current = merged;
            }
            (Value::Array(current), Value::Array(patch)) => {
                let list = ListField::of(schema, &key);
                let merged =
                    merge_list(std::mem::take(current), patch, list, &key, is_delete_list)?;
                *current = merged.items;
            }
            (current, value) => *current = value,
        }
    }
    Ok(original)
}

/// Stores a patch value that has nothing to merge with. Upstream strips nulls and `$patch`
/// directives from it first, so they never end up in the stored object.
fn insert_patch_value(original: &mut Object, key: String, mut value: Value) {
    discard_null_values(&mut value);
    match remove_directives(value) {
        Some(value) => {
            original.insert(key, value);
        }
        None => {
            original.shift_remove(&key);
        }
    }
}

/// Drops null map values at any depth; nulls inside lists are data and stay.
fn discard_null_values(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_null_values);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_null_values),
        _ => {}
    }
}

/// Drops every map carrying a `$patch` directive, at any depth; `None` when `value` is one.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) if map.contains_key(DIRECTIVE_MARKER) => None,
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                .collect(),
        )),
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// `$retainKeys`: every key of `original` missing from the list is cleared before merging, and
/// the patch may only set keys the list names.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(invalid(RETAIN_KEYS_FORMAT));
    };
    let retained = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    let sets_unlisted_key = patch.iter().any(|(key, value)| {
        !value.is_null()
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !retained(key)
    });
    if sets_unlisted_key {
        return Err(invalid(RETAIN_KEYS_FORMAT));
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// `$setElementOrder/<field>`: merges `<field>` (if the patch has it) and orders the result:
/// listed items in the directive's order, the other (server-only) items interleaved where they
/// stood in the stored list. Both are removed from the patch.
fn merge_ordered_lists(original: &mut Object, patch: &mut Object, schema: Schema) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|key| key.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(order) = patch.shift_remove(&directive) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type(LIST_TYPE, &order));
        };
        let field = directive_field(&directive, SET_ELEMENT_ORDER, SET_ELEMENT_ORDER_FORMAT)?;
        let original_list = original.get(field).map(list_items).transpose()?;
        let patch_list = patch.get(field).map(list_items).transpose()?;
        let list = ListField::of(schema, field);
        let merge_key = list.merge_key();
        validate_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;

        let patch_items = patch_list.clone().unwrap_or_default();
        // `server_order` is the stored list as upstream sees it after merging: merging edits the
        // stored list's backing array in place, and the ordering below reads it through the
        // original slice.
        let (merged, server_order) = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(current), None) => (current.clone(), current),
            (None, Some(new)) => (remove_list_directives(new), Vec::new()),
            (Some(current), Some(new)) => {
                let merged = merge_list(current, new, list, field, false)?;
                (merged.items, merged.original_after)
            }
        };
        let (listed, server_only) = partition(merged, &order, merge_key)?;
        let kind = element_kind(&[&server_order, &patch_items])?;
        let ordered =
            normalize_element_order(listed, server_only, &order, &server_order, merge_key, kind)?;
        original.insert(field.to_owned(), Value::Array(ordered));
        patch.shift_remove(field);
    }
    Ok(())
}

fn remove_list_directives(items: Vec<Value>) -> Vec<Value> {
    items.into_iter().filter_map(remove_directives).collect()
}

/// The items the patch sends must appear in `$setElementOrder` in the same relative order.
fn validate_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let kept = if merge_key.is_empty() {
        patch_list.to_vec()
    } else {
        split_deletions(patch_list.to_vec())?.0
    };
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if has_directive(&kept[p]) {
            p += 1;
            continue;
        }
        if merge_key_values_equal(&kept[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() && o >= order.len() {
        return Err(invalid(format!(
            "the order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}",
            show_list(patch_list),
            show_list(order)
        )));
    }
    Ok(())
}

fn has_directive(item: &Value) -> bool {
    item.as_object()
        .is_some_and(|map| map.contains_key(DIRECTIVE_MARKER))
}

fn merge_key_values_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    Ok(merge_key_value(left, merge_key)? == merge_key_value(right, merge_key)?)
}

fn merge_key_value<'a>(item: &'a Value, merge_key: &str) -> Result<&'a Value> {
    let Value::Object(map) = item else {
        return Err(bad_arg_type(MAP_TYPE, item));
    };
    map.get(merge_key)
        .ok_or_else(|| no_merge_key(map, merge_key))
}

/// The field a `<prefix>/<field>` directive key names.
fn directive_field<'a>(key: &'a str, prefix: &str, format_error: &str) -> Result<&'a str> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(field),
        _ => Err(invalid(format_error)),
    }
}

fn list_items(value: &Value) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items.clone()),
        other => Err(bad_arg_type(LIST_TYPE, other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Lists.
// ---------------------------------------------------------------------------------------------

/// A merged list, plus the stored list as upstream's caller sees it afterwards (see
/// [`merge_ordered_lists`]).
struct MergedList {
    items: Vec<Value>,
    original_after: Vec<Value>,
}

/// `mergeSliceHandler` + `mergeSlice`.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    list: ListField,
    name: &str,
    is_delete_list: bool,
) -> Result<MergedList> {
    // `$deleteFromPrimitiveList` deletes whatever the field's strategy.
    if list.strategy == ListStrategy::Replace && !is_delete_list {
        return Ok(MergedList {
            items: patch,
            original_after: original,
        });
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(MergedList {
            items: Vec::new(),
            original_after: original,
        });
    }
    let kind = element_kind(&[&original, &patch])?;
    if kind != GoKind::Object {
        return merge_scalars(original, patch, kind, is_delete_list);
    }
    let merge_key = list.merge_key();
    if merge_key.is_empty() {
        return Err(invalid(format!(
            "cannot merge lists without merge key for {name}"
        )));
    }
    merge_objects(original, patch, merge_key, list.element)
}

fn merge_scalars(
    original: Vec<Value>,
    patch: Vec<Value>,
    kind: GoKind,
    is_delete_list: bool,
) -> Result<MergedList> {
    if is_delete_list {
        let items = original
            .iter()
            .filter(|item| !patch.contains(item))
            .cloned()
            .collect();
        return Ok(MergedList {
            items,
            original_after: original,
        });
    }
    let (merged, original_after) = if patch.is_empty() {
        // `append(original)` is `original` itself, so upstream deduplicates the stored list in
        // place and then orders the result by that rewritten list.
        let mut backing = original;
        let len = deduplicate_like_go(&mut backing);
        (backing[..len].to_vec(), backing)
    } else {
        let mut both = original.clone();
        both.extend(patch.iter().cloned());
        let len = deduplicate_like_go(&mut both);
        both.truncate(len);
        (both, original)
    };
    let (in_patch, server_only) = partition(merged, &patch, "")?;
    let items = normalize_element_order(in_patch, server_only, &patch, &original_after, "", kind)?;
    Ok(MergedList {
        items,
        original_after,
    })
}

/// Upstream's `deduplicateScalars`, which moves the last item into each duplicate's place, so
/// the surviving order is not the order of first occurrence. Returns the deduplicated length.
fn deduplicate_like_go(items: &mut [Value]) -> usize {
    let mut end = items.len();
    let mut i = 0;
    while i + 1 < end {
        let mut j = i + 1;
        while j < end {
            if items[i] == items[j] {
                items[j] = items[end - 1].clone();
                end -= 1;
            } else {
                j += 1;
            }
        }
        i += 1;
    }
    end
}

fn merge_objects(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    element: Schema,
) -> Result<MergedList> {
    // `backing` mirrors the Go backing array of the stored list: deletions shift it left in
    // place (leaving the old last item behind) and appends fill its free tail.
    let capacity = original.len();
    let mut backing = original;
    let mut len = capacity;
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(map) = item else {
            return Err(bad_arg_type(MAP_TYPE, &item));
        };
        let Some(directive) = map.get(DIRECTIVE_MARKER) else {
            plain.push(Value::Object(map));
            continue;
        };
        match directive.as_str() {
            Some(DELETE) => {
                let value = map
                    .get(merge_key)
                    .ok_or_else(|| no_merge_key(&map, merge_key))?;
                while let Some(i) = find_by_key(&backing[..len], merge_key, value)? {
                    backing[i..len].rotate_left(1);
                    if i + 1 < len {
                        backing[len - 1] = backing[len - 2].clone();
                    }
                    len -= 1;
                }
            }
            // Keep going: the remaining items may still be malformed.
            Some(REPLACE) => replace = true,
            Some(MERGE) => {
                return Err(invalid(
                    "merging lists cannot yet be specified in the patch",
                ))
            }
            _ => return Err(bad_patch_type(directive, &map)),
        }
    }

    let (server_order, patch) = if replace {
        (plain, Vec::new())
    } else {
        (backing[..len].to_vec(), plain)
    };
    let mut merged = server_order.clone();
    for item in &patch {
        let value = merge_key_value(item, merge_key)?;
        match find_by_key(&merged, merge_key, value)? {
            Some(i) => {
                let (Value::Object(current), Value::Object(update)) =
                    (std::mem::take(&mut merged[i]), item.clone())
                else {
                    return Err(bad_arg_type(MAP_TYPE, item));
                };
                merged[i] = Value::Object(merge_map(current, update, element)?);
            }
            None => {
                merged.push(item.clone());
                if len < capacity {
                    backing[len] = item.clone();
                }
                len += 1;
            }
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, merge_key)?;
    let items = normalize_element_order(
        in_patch,
        server_only,
        &patch,
        &server_order,
        merge_key,
        GoKind::Object,
    )?;
    Ok(MergedList {
        items,
        original_after: backing,
    })
}

/// Splits `items` into those present in `by` (by merge key, or by value for scalars) and the
/// rest, keeping their order.
fn partition(items: Vec<Value>, by: &[Value], merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in items {
        let found = if merge_key.is_empty() {
            by.contains(&item)
        } else {
            let value = merge_key_value(&item, merge_key)?;
            find_by_key(by, merge_key, value)?.is_some()
        };
        if found {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

fn find_by_key(items: &[Value], merge_key: &str, value: &Value) -> Result<Option<usize>> {
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(invalid(format!("value for key {i} is not a map")));
        };
        if map.get(merge_key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Orders `patch_items` by `patch_order` and `server_only` by `server_order`, then interleaves
/// them: a server-only item goes before the next patch item when both appear in
/// `server_order` and it came first there.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;

    let mut merged = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    while let (Some(l), Some(r)) = (left.peek(), right.peek()) {
        let server_first = match (
            position(server_order, l, merge_key, kind),
            position(server_order, r, merge_key, kind),
        ) {
            (Some(li), Some(ri)) => li < ri,
            _ => false,
        };
        let next = if server_first {
            left.next()
        } else {
            right.next()
        };
        merged.extend(next);
    }
    merged.extend(left);
    merged.extend(right);
    Ok(merged)
}

/// Sorts `items` by their position in `order`; `$patch: delete` items go last.
fn normalize_slice_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: GoKind,
) -> Result<Vec<Value>> {
    let (mut items, deletions) = if kind == GoKind::Object {
        validate_merge_keys(&items, merge_key)?;
        validate_merge_keys(order, merge_key)?;
        split_deletions(items)?
    } else {
        (items, Vec::new())
    };
    let mut keys: Vec<Option<usize>> = items
        .iter()
        .map(|item| position(order, item, merge_key, kind))
        .collect();
    // Upstream sorts with `sort.SliceStable` and a comparator that calls an item missing from
    // `order` smaller than anything. For lists of up to 20 items that sort is this insertion
    // sort, and any stable sort agrees with it when every item is in `order`.
    let less = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => a < b,
        _ => true,
    };
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && less(keys[j], keys[j - 1]) {
            keys.swap(j, j - 1);
            items.swap(j, j - 1);
            j -= 1;
        }
    }
    items.extend(deletions);
    Ok(items)
}

fn validate_merge_keys(items: &[Value], merge_key: &str) -> Result<()> {
    items
        .iter()
        .try_for_each(|item| merge_key_value(item, merge_key).map(drop))
}

/// Splits off the `$patch: delete` items.
fn split_deletions(items: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut kept = Vec::new();
    let mut deletions = Vec::new();
    for item in items {
        let Value::Object(map) = &item else {
            return Err(bad_arg_type(MAP_TYPE, &item));
        };
        if map.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE) {
            deletions.push(item);
        } else {
            kept.push(item);
        }
    }
    Ok((kept, deletions))
}

/// Where `item` first appears in `items`: compared by merge key for objects (an item without
/// one matches the first other item without one, as in Go), by value otherwise.
fn position(items: &[Value], item: &Value, merge_key: &str, kind: GoKind) -> Option<usize> {
    let wanted = identity(item, merge_key, kind);
    items
        .iter()
        .position(|v| identity(v, merge_key, kind) == wanted)
}

fn identity<'a>(item: &'a Value, merge_key: &str, kind: GoKind) -> Option<&'a Value> {
    if kind == GoKind::Object {
        item.as_object().and_then(|map| map.get(merge_key))
    } else {
        Some(item)
    }
}

/// The dynamic Go type of a decoded JSON value (integers decode to `int64`, other numbers to
/// `float64`); a stored value is merged with a patch value only when these agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoKind {
    Null,
    Bool,
    Int,
    Float,
    String,
    Array,
    Object,
}

impl GoKind {
    fn of(value: &Value) -> Self {
        match value {
            Value::Null => GoKind::Null,
            Value::Bool(_) => GoKind::Bool,
            Value::Number(n) if n.is_i64() => GoKind::Int,
            Value::Number(_) => GoKind::Float,
            Value::String(_) => GoKind::String,
            Value::Array(_) => GoKind::Array,
            Value::Object(_) => GoKind::Object,
        }
    }

    fn go_name(self) -> &'static str {
        match self {
            GoKind::Null => "<nil>",
            GoKind::Bool => "bool",
            GoKind::Int => "int64",
            GoKind::Float => "float64",
            GoKind::String => "string",
            GoKind::Array => LIST_TYPE,
            GoKind::Object => MAP_TYPE,
        }
    }
}

/// The one kind shared by every item of `lists`.
fn element_kind(lists: &[&[Value]]) -> Result<GoKind> {
    let mut kind = None;
    for item in lists.iter().flat_map(|list| list.iter()) {
        let item_kind = GoKind::of(item);
        match kind {
            None if item_kind == GoKind::Array => {
                return Err(invalid("lists of lists are not supported"))
            }
            None => kind = Some(item_kind),
            Some(kind) if kind != item_kind => {
                let lists = lists.iter().map(|list| Value::Array(list.to_vec()));
                return Err(invalid(format!(
                    "list element types are not identical: {}",
                    Value::Array(lists.collect())
                )));
            }
            Some(_) => {}
        }
    }
    kind.ok_or_else(|| invalid("no elements in any of the given slices"))
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

fn invalid(message: impl Into<String>) -> StrategicPatchError {
    StrategicPatchError::InvalidPatch(message.into())
}

fn bad_arg_type(expected: &str, actual: &Value) -> StrategicPatchError {
    invalid(format!(
        "expected a {expected}, but received a {}",
        GoKind::of(actual).go_name()
    ))
}

fn no_merge_key(map: &Object, merge_key: &str) -> StrategicPatchError {
    invalid(format!(
        "map: {} does not contain declared merge key: {merge_key}",
        Value::Object(map.clone())
    ))
}

fn bad_patch_type(directive: &Value, map: &Object) -> StrategicPatchError {
    let directive = match directive {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    invalid(format!(
        "unknown patch type: {directive} in map: {}",
        Value::Object(map.clone())
    ))
}

fn show_list(items: &[Value]) -> String {
    Value::Array(items.to_vec()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The `MergeItem` test type of upstream's patch_test.go.
    static MERGE_ITEM: TypeDef = TypeDef {
        fields: &[
            Field::merged_of("mergingList", "name", &MERGE_ITEM),
            Field::set("mergingIntList"),
            Field::merged_of("mergeItemPtr", "name", &MERGE_ITEM),
            Field::object("retainKeysMap", &RETAIN_KEYS_MERGE_ITEM),
            Field::merged_of("retainKeysMergingList", "name", &MERGE_ITEM),
        ],
    };

    /// Upstream's `RetainKeysMergeItem`.
    static RETAIN_KEYS_MERGE_ITEM: TypeDef = TypeDef {
        fields: &[
            Field::set("mergingIntList"),
            Field::merged_of("mergingList", "name", &MERGE_ITEM),
        ],
    };

    fn merge_item(original: &Value, patch: &Value) -> Result<Value> {
        apply_with_schema(Some(&MERGE_ITEM), original, patch)
    }

    /// `(description, original, patch, expected)`, applied with the `MergeItem` schema.
    fn check_all(cases: Vec<(&str, Value, Value, Value)>) {
        for (description, original, patch, expected) in cases {
            match merge_item(&original, &patch) {
                Ok(actual) => assert_eq!(
                    actual, expected,
                    "{description}\nactual:   {actual}\nexpected: {expected}"
                ),
                Err(e) => panic!("{description}: unexpected error: {e}"),
            }
        }
    }

    /// `(description, original, patch, fragment of the expected error)`.
    fn check_errors(cases: Vec<(&str, Value, Value, &str)>) {
        for (description, original, patch, fragment) in cases {
            match merge_item(&original, &patch) {
                Ok(actual) => panic!("{description}: expected an error, got {actual}"),
                Err(e) => assert!(
                    e.to_string().contains(fragment),
                    "{description}: error {e:?} does not contain {fragment:?}"
                ),
            }
        }
    }

    // Upstream `customStrategicMergePatchTestCaseData` and `customStrategicMergePatchRawTestCases`.
    #[test]
    fn upstream_custom_cases() {
        check_all(vec![
            (
                "unique scalars when merging lists",
                json!({"mergingIntList": [1, 2]}),
                json!({"mergingIntList": [2, 3]}),
                json!({"mergingIntList": [1, 2, 3]}),
            ),
            (
                "delete map from nested map",
                json!({"simpleMap": {"key1": 1, "key2": 1}}),
                json!({"simpleMap": {"$patch": "delete"}}),
                json!({"simpleMap": {}}),
            ),
            (
                "delete all items from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"$patch": "replace"}]}),
                json!({"mergingList": []}),
            ),
            (
                "merge empty merging lists",
                json!({"mergingList": []}),
                json!({"mergingList": []}),
                json!({"mergingList": []}),
            ),
            (
                "delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"$patch": "replace"}),
                json!({}),
            ),
            (
                "add key and delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"other": "a", "$patch": "replace"}),
                json!({"other": "a"}),
            ),
            (
                "delete all duplicate entries in a merging list",
                json!({"mergingList": [
                    {"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}
                ]}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}
                ]}),
                json!({"mergingList": [{"name": 2, "value": "a"}]}),
            ),
            (
                "retainKeys map can add a field when no retainKeys directive present",
                json!({"retainKeysMap": {"name": "foo"}}),
                json!({"retainKeysMap": {"value": "bar"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            (
                "retainKeys map can change a field when no retainKeys directive present",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {"value": "b"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "b"}}),
            ),
            (
                "retainKeys map can delete a field when no retainKeys directive present",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {"value": null}}),
                json!({"retainKeysMap": {"name": "foo"}}),
            ),
            (
                "retainKeys map merge an empty map",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {}}),
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
            ),
            (
                "retainKeys list can add a field when no retainKeys directive present",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
            ),
            (
                "retainKeys list can change a field when no retainKeys directive present",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "value": "b"}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "b"}]}),
            ),
            (
                "retainKeys list can delete a field when no retainKeys directive present",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "value": null}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
            ),
            (
                "preserve the order from the patch in a merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [
                    {"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}
                ]}),
                json!({"mergingList": [
                    {"name": 3, "value": "c"},
                    {"name": 1, "value": "a"},
                    {"name": 2, "value": "b", "other": "x"}
                ]}),
            ),
            (
                "preserve the order from the patch in a merging list 2",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
                json!({"mergingList": [
                    {"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}
                ]}),
            ),
            (
                "preserve the order from the patch in a merging int list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1, 2]}),
                json!({"mergingIntList": [3, 1, 2]}),
            ),
            (
                "preserve the order from the patch in a merging int list 2",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1]}),
                json!({"mergingIntList": [2, 3, 1]}),
            ),
            (
                "$setElementOrder contains item that is not present in the list to be merged",
                json!({"mergingList": [{"name": 1}, {"name": 3}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]
                }),
                json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            ),
            (
                "$setElementOrder contains item that is not present in the int list to be merged",
                json!({"mergingIntList": [1, 3]}),
                json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
                json!({"mergingIntList": [3, 1]}),
            ),
            (
                "$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list",
                json!({"mergingIntList": [1, 2]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2]}),
            ),
            (
                "$deleteFromPrimitiveList on empty primitive list should not add the item to the list",
                json!({"mergingIntList": null}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": null}),
            ),
            (
                "$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list",
                json!({"foo": ["bar"]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"foo": ["bar"]}),
            ),
            (
                "$deleteFromPrimitiveList should delete item from a list with merge patch strategy",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [2]}),
                json!({"mergingIntList": [1, 3]}),
            ),
            (
                "$deleteFromPrimitiveList should delete item from a list without merge patch strategy",
                json!({"nonMergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
                json!({"nonMergingIntList": [1, 3]}),
            ),
        ]);
    }

    #[test]
    fn upstream_custom_error_cases() {
        check_errors(vec![
            (
                "should check if order in $setElementOrder and patch list match",
                json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]
                }),
                "doesn't match",
            ),
            (
                "should check if order in $setElementOrder and patch int list match",
                json!({"mergingIntList": [1, 3, 2]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
                "doesn't match",
            ),
            (
                "missing merge key should error out",
                json!({"mergingList": [{"name": 1, "value": "a"}]}),
                json!({"mergingList": [{"value": "b"}]}),
                "does not contain declared merge key",
            ),
        ]);
    }

    // Applications from upstream `createStrategicMergePatchTestCaseData` (two-way patches applied
    // to the original, three-way patches applied to the current object).
    #[test]
    fn upstream_map_cases() {
        check_all(vec![
            (
                "nil original",
                json!({}),
                json!({"name": 1, "value": 1}),
                json!({"name": 1, "value": 1}),
            ),
            (
                "add field and delete field from map",
                json!({"name": 1, "other": "a"}),
                json!({"name": null, "value": 1}),
                json!({"value": 1, "other": "a"}),
            ),
            (
                "delete field from nested map with conflict",
                json!({"simpleMap": {"key1": "a", "key2": 1, "other": "a"}}),
                json!({"simpleMap": {"key1": 1, "key2": null}}),
                json!({"simpleMap": {"key1": 1, "other": "a"}}),
            ),
            (
                "add field and delete all fields from map with conflict",
                json!({"name": 1, "value": 1, "other": "b"}),
                json!({"name": null, "value": null, "other": "a"}),
                json!({"other": "a"}),
            ),
            (
                "replace list of scalars with conflict",
                json!({"nonMergingIntList": [1, 4]}),
                json!({"nonMergingIntList": [2, 3]}),
                json!({"nonMergingIntList": [2, 3]}),
            ),
            (
                "delete all maps from merging list with conflict",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "other": "b"}]}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"}
                ]}),
                json!({"mergingList": []}),
            ),
            (
                "delete all maps from empty merging list",
                json!({"mergingList": []}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"}
                ]}),
                json!({"mergingList": []}),
            ),
            (
                "defined null values should propagate overwrite current fields (with conflict)",
                json!({"name": "a", "other": "a"}),
                json!({"name": 1, "value": 1, "other": null}),
                json!({"name": 1, "value": 1}),
            ),
            (
                "defined null values should propagate removing original fields",
                json!({"name": "original-name", "value": "original-value", "other": "current-other"}),
                json!({"name": "modified-name", "value": null}),
                json!({"name": "modified-name", "other": "current-other"}),
            ),
            (
                "discard nulls in nested and adds not nulls",
                json!({"name": "foo"}),
                json!({"complex_nullable": {"key": {"keynotnull": "value", "keynull": null}}}),
                json!({"name": "foo", "complex_nullable": {"key": {"keynotnull": "value"}}}),
            ),
            (
                "filter nulls from nested slices",
                json!({}),
                json!({"complex_nullable": [{"inner_one": {"key_one": "foo", "key_two": null}}]}),
                json!({"complex_nullable": [{"inner_one": {"key_one": "foo"}}]}),
            ),
            (
                "not filter nulls from non-associative slice",
                json!({}),
                json!({"complex_nullable": ["key1", null, "key2"]}),
                json!({"complex_nullable": ["key1", null, "key2"]}),
            ),
            (
                "null values in original are preserved",
                json!({"thing": null}),
                json!({"nested": {"value": 5}}),
                json!({"thing": null, "nested": {"value": 5}}),
            ),
        ]);
    }

    // Applications from upstream `strategicMergePatchRawTestCases`.
    #[test]
    fn upstream_merging_list_cases() {
        check_all(vec![
            (
                "nested patch merge with empty list (two-way)",
                json!({"name": "hi"}),
                json!({"mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]}),
                json!({"name": "hi", "mergingList": [{"name": "hello"}]}),
            ),
            (
                "nested patch merge with empty list (three-way)",
                json!({"name": "hi", "mergingList": [{"name": "hello2"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": "hello"}, {"name": "doesntexist"}],
                    "mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]
                }),
                json!({"name": "hi", "mergingList": [{"name": "hello"}, {"name": "hello2"}]}),
            ),
            (
                "merge lists of maps",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [
                        {"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}
                    ],
                    "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]
                }),
                json!({"mergingList": [
                    {"name": 4, "value": 4},
                    {"name": 1, "other": "a"},
                    {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3}
                ]}),
            ),
            (
                "merge lists of maps with conflict",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 3, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 2, "value": 2}, {"name": 3, "value": 3}]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a"},
                    {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3}
                ]}),
            ),
            (
                "add field to map in merging list with conflict",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 3, "value": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a", "value": 1},
                    {"name": 2, "value": 2},
                    {"name": 3, "value": 2, "other": "b"}
                ]}),
            ),
            (
                "delete map from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}],
                    "mergingList": [{"name": 1, "$patch": "delete"}]
                }),
                json!({"mergingList": [{"name": 2, "other": "b"}]}),
            ),
            (
                "delete missing map from merging list with conflict",
                json!({"mergingList": [{"name": 3, "other": "a"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}],
                    "mergingList": [{"name": 2}, {"name": 1, "$patch": "delete"}]
                }),
                json!({"mergingList": [{"name": 2}, {"name": 3, "other": "a"}]}),
            ),
            (
                "add map and delete map from merging list",
                json!({"mergingList": [
                    {"name": 1}, {"name": 2, "other": "b"}, {"name": 4, "other": "c"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 3}, {"name": 1, "$patch": "delete"}]
                }),
                json!({"mergingList": [
                    {"name": 2, "other": "b"}, {"name": 4, "other": "c"}, {"name": 3}
                ]}),
            ),
            (
                "add map and delete map from merging list with conflict",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 4, "other": "c"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 2}, {"name": 3}, {"name": 1, "$patch": "delete"}]
                }),
                json!({"mergingList": [{"name": 4, "other": "c"}, {"name": 2}, {"name": 3}]}),
            ),
            (
                "delete field from map in merging list",
                json!({"mergingList": [
                    {"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 1, "value": null}]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}
                ]}),
            ),
            (
                "replace non merging list nested in merging list with deletion conflict",
                json!({"mergingList": [
                    {"name": 1, "other": "a", "nonMergingList": [{"name": 2, "value": 2}]},
                    {"name": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 1, "nonMergingList": [{"name": 1, "value": 1}]}]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a", "nonMergingList": [{"name": 1, "value": 1}]},
                    {"name": 2, "other": "b"}
                ]}),
            ),
            (
                "add field to map in merging list nested in merging list with value conflict",
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [
                        {"name": 1, "value": "a", "other": "c"},
                        {"name": 2, "value": "b", "other": "d"}
                    ]},
                    {"name": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{
                        "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                        "name": 1,
                        "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]
                    }]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [
                        {"name": 1, "value": 1, "other": "c"},
                        {"name": 2, "value": 2, "other": "d"}
                    ]},
                    {"name": 2, "other": "b"}
                ]}),
            ),
            (
                "add field to map in merging list nested in merging list with deletion conflict (reordered)",
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [{"name": 2, "value": 2, "other": "d"}]},
                    {"name": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                    "mergingList": [{
                        "$setElementOrder/mergingList": [{"name": 2}, {"name": 1}],
                        "name": 1,
                        "mergingList": [{"name": 1, "value": 1}]
                    }]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a", "mergingList": [
                        {"name": 2, "value": 2, "other": "d"}, {"name": 1, "value": 1}
                    ]},
                    {"name": 2, "other": "b"}
                ]}),
            ),
            (
                "add map to merging list by pointer",
                json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 3}]}),
                json!({
                    "$setElementOrder/mergeItemPtr": [{"name": 1}, {"name": 2}],
                    "mergeItemPtr": [{"name": 2}]
                }),
                json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 2}, {"name": 3}]}),
            ),
            (
                "add an item in a list and preserve order",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 3}, {"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 3, "value": 3}]
                }),
                json!({"mergingList": [
                    {"name": 3, "value": 3},
                    {"name": 1, "other": "a"},
                    {"name": 2, "value": 2, "other": "b"}
                ]}),
            ),
            (
                "add multiple items in a list and preserve order",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [
                        {"name": 1}, {"name": 4}, {"name": 2}, {"name": 3}
                    ],
                    "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]
                }),
                json!({"mergingList": [
                    {"name": 1, "other": "a"},
                    {"name": 4, "value": 4},
                    {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3}
                ]}),
            ),
            (
                "delete an item in a list and preserve order",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 3, "$patch": "delete"}]
                }),
                json!({"mergingList": [
                    {"name": 2, "value": 2, "other": "b"}, {"name": 1, "other": "a"}
                ]}),
            ),
            (
                "add and delete an item in a list and preserve order",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"},
                    {"name": 3, "value": 3}
                ]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 4}, {"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 4, "value": 4}, {"name": 3, "$patch": "delete"}]
                }),
                json!({"mergingList": [
                    {"name": 4, "value": 4},
                    {"name": 2, "value": 2, "other": "b"},
                    {"name": 1, "other": "a"}
                ]}),
            ),
            (
                "set elements order in a list with server-only items",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 3, "value": 3}, {"name": 4, "value": 4},
                    {"name": 2, "value": 2}, {"name": 9}
                ]}),
                json!({"$setElementOrder/mergingList": [
                    {"name": 4}, {"name": 2}, {"name": 3}, {"name": 1}
                ]}),
                json!({"mergingList": [
                    {"name": 4, "value": 4}, {"name": 2, "value": 2}, {"name": 3, "value": 3},
                    {"name": 1, "other": "a"}, {"name": 9}
                ]}),
            ),
            (
                "set elements order in a list with server-only items 2",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 9},
                    {"name": 3, "value": 3}, {"name": 4, "value": 4}
                ]}),
                json!({"$setElementOrder/mergingList": [
                    {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}
                ]}),
                json!({"mergingList": [
                    {"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 9},
                    {"name": 4, "value": 4}, {"name": 3, "value": 3}
                ]}),
            ),
            (
                "set elements order in a list with server-only items 3",
                json!({"mergingList": [
                    {"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 7}, {"name": 9},
                    {"name": 8}, {"name": 3, "value": 3}, {"name": 4, "value": 4}
                ]}),
                json!({"$setElementOrder/mergingList": [
                    {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}
                ]}),
                json!({"mergingList": [
                    {"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 7}, {"name": 9},
                    {"name": 8}, {"name": 4, "value": 4}, {"name": 3, "value": 3}
                ]}),
            ),
            (
                "behavior of set element order for a merging list with duplicate",
                json!({"mergingList": [
                    {"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3},
                    {"name": 2, "value": "dup2"}, {"name": 4}
                ]}),
                json!({"$setElementOrder/mergingList": [
                    {"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}
                ]}),
                json!({"mergingList": [
                    {"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1},
                    {"name": 4}, {"name": 3}
                ]}),
            ),
            (
                "delete and reorder in one list, reorder in another",
                json!({
                    "mergingList": [{"name": "a", "value": "a"}, {"name": "b", "value": "b"}],
                    "mergeItemPtr": [{"name": "c", "value": "c"}, {"name": "d", "value": "d"}]
                }),
                json!({
                    "$setElementOrder/mergingList": [{"name": "b"}],
                    "$setElementOrder/mergeItemPtr": [{"name": "d"}, {"name": "c"}],
                    "mergingList": [{"$patch": "delete", "name": "a"}]
                }),
                json!({
                    "mergingList": [{"name": "b", "value": "b"}],
                    "mergeItemPtr": [{"name": "d", "value": "d"}, {"name": "c", "value": "c"}]
                }),
            ),
        ]);
    }

    #[test]
    fn upstream_primitive_list_cases() {
        check_all(vec![
            (
                "delete items in lists of scalars",
                json!({"mergingIntList": [1, 2, 3, 4]}),
                json!({
                    "$setElementOrder/mergingIntList": [1, 2],
                    "$deleteFromPrimitiveList/mergingIntList": [3]
                }),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            (
                "delete all duplicate items in lists of scalars",
                json!({"mergingIntList": [1, 2, 3, 3, 4]}),
                json!({
                    "$setElementOrder/mergingIntList": [1, 2],
                    "$deleteFromPrimitiveList/mergingIntList": [3]
                }),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            (
                "add and delete items in lists of scalars",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({
                    "$setElementOrder/mergingIntList": [1, 2, 4],
                    "$deleteFromPrimitiveList/mergingIntList": [3],
                    "mergingIntList": [4]
                }),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            (
                "merge lists of scalars",
                json!({"mergingIntList": [1, 2, 4]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2, 3, 4]}),
            ),
            (
                "add an item in a list of primitives and preserve order",
                json!({"mergingIntList": [1, 4, 2]}),
                json!({"$setElementOrder/mergingIntList": [3, 1, 2], "mergingIntList": [3]}),
                json!({"mergingIntList": [3, 1, 4, 2]}),
            ),
            (
                "delete an item in a list of primitives and preserve order",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({
                    "$setElementOrder/mergingIntList": [2, 1],
                    "$deleteFromPrimitiveList/mergingIntList": [3]
                }),
                json!({"mergingIntList": [2, 1]}),
            ),
            (
                "add multiple items in a int list and preserve order",
                json!({"mergingIntList": [1, 2]}),
                json!({"$setElementOrder/mergingIntList": [1, 4, 2, 3], "mergingIntList": [4, 3]}),
                json!({"mergingIntList": [1, 4, 2, 3]}),
            ),
            (
                "add and delete an item in a int list and preserve order",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({
                    "$setElementOrder/mergingIntList": [4, 2, 1],
                    "mergingIntList": [4],
                    "$deleteFromPrimitiveList/mergingIntList": [3]
                }),
                json!({"mergingIntList": [4, 2, 1]}),
            ),
            (
                "set elements order in a int list with server-only items 3",
                json!({"mergingIntList": [1, 2, 7, 9, 8, 3, 4]}),
                json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3]}),
                json!({"mergingIntList": [2, 1, 7, 9, 8, 4, 3]}),
            ),
            (
                "behavior of set element order for a merging int list with duplicate",
                json!({"mergingIntList": [1, 2, 3, 2, 4]}),
                json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3, 2]}),
                json!({"mergingIntList": [2, 2, 1, 4, 3]}),
            ),
        ]);
    }

    #[test]
    fn upstream_retain_keys_cases() {
        check_all(vec![
            (
                "retainKeys map should clear defaulted field",
                json!({"retainKeysMap": {"value": "foo"}}),
                json!({"retainKeysMap": {"$retainKeys": ["other"], "other": "bar"}}),
                json!({"retainKeysMap": {"other": "bar"}}),
            ),
            (
                "retainKeys map should clear defaulted field with conflict (discriminated union)",
                json!({"retainKeysMap": {"name": "type1", "value": "foo"}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["name", "other"], "name": "type2", "other": "bar"
                }}),
                json!({"retainKeysMap": {"name": "type2", "other": "bar"}}),
            ),
            (
                "retainKeys map adds a field and clear a field",
                json!({"retainKeysMap": {"name": "foo", "other": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "bar"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            (
                "retainKeys map deletes a field and clears a field",
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "other": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name"], "value": null}}),
                json!({"retainKeysMap": {"name": "foo"}}),
            ),
            (
                "retainKeys map clears a field",
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "other": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "value"]}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            (
                "retainKeys map deletes a field in a nested map",
                json!({"retainKeysMap": {
                    "name": "foo", "value": "bar",
                    "simpleMap": {"key1": "a", "key2": "b", "key3": "c"}
                }}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["name", "simpleMap", "value"], "simpleMap": {"key2": null}
                }}),
                json!({"retainKeysMap": {
                    "name": "foo", "value": "bar", "simpleMap": {"key1": "a", "key3": "c"}
                }}),
            ),
            (
                "retainKeys map delete nested non-merging list with conflict",
                json!({"retainKeysMap": {
                    "name": "foo", "nonMergingList": [{"name": "a"}, {"name": "b"}, {"name": "c"}]
                }}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["name", "value"], "value": "bar", "nonMergingList": null
                }}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            (
                "retainKeys map nested merging int list with no change",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3]}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["mergingIntList", "name", "value"],
                    "$setElementOrder/mergingIntList": [1, 2],
                    "value": "bar"
                }}),
                json!({"retainKeysMap": {
                    "name": "foo", "mergingIntList": [1, 2, 3], "value": "bar"
                }}),
            ),
            (
                "retainKeys map adds an item in nested merging int list",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3]}}),
                json!({"retainKeysMap": {
                    "$setElementOrder/mergingIntList": [1, 2, 4],
                    "$retainKeys": ["mergingIntList", "name"],
                    "mergingIntList": [4]
                }}),
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 4, 3]}}),
            ),
            (
                "retainKeys map adds an item and deletes an item in nested merging int list",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3, 4]}}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["mergingIntList", "name"],
                    "mergingIntList": [5],
                    "$deleteFromPrimitiveList/mergingIntList": [2],
                    "$setElementOrder/mergingIntList": [1, 3, 5]
                }}),
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 3, 5, 4]}}),
            ),
            (
                "retainKeys map deletes an item in nested merging list",
                json!({"retainKeysMap": {
                    "name": "foo", "mergingList": [{"name": "a"}, {"name": "b"}, {"name": "x"}]
                }}),
                json!({"retainKeysMap": {
                    "$retainKeys": ["mergingList", "name"],
                    "$setElementOrder/mergingList": [{"name": "a"}],
                    "mergingList": [{"name": "b", "$patch": "delete"}]
                }}),
                json!({"retainKeysMap": {
                    "name": "foo", "mergingList": [{"name": "a"}, {"name": "x"}]
                }}),
            ),
            (
                "retainKeys list of maps clears a field",
                json!({"retainKeysMergingList": [
                    {"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}
                ]}),
                json!({
                    "$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                    "retainKeysMergingList": [{"$retainKeys": ["name", "value"], "name": "foo"}]
                }),
                json!({"retainKeysMergingList": [
                    {"name": "bar"}, {"name": "foo", "value": "a"}
                ]}),
            ),
            (
                "retainKeys list of maps changes a field and clear a field",
                json!({"retainKeysMergingList": [
                    {"name": "bar"}, {"name": "foo", "value": "old", "other": "x"}
                ]}),
                json!({
                    "$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                    "retainKeysMergingList": [
                        {"$retainKeys": ["name", "value"], "name": "foo", "value": "new"}
                    ]
                }),
                json!({"retainKeysMergingList": [
                    {"name": "bar"}, {"name": "foo", "value": "new"}
                ]}),
            ),
            (
                "retainKeys list of maps deletes a field and clear a field",
                json!({"retainKeysMergingList": [
                    {"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}
                ]}),
                json!({
                    "$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                    "retainKeysMergingList": [
                        {"$retainKeys": ["name"], "name": "foo", "value": null}
                    ]
                }),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
            ),
        ]);
    }

    #[test]
    fn malformed_directives_are_rejected() {
        check_errors(vec![
            (
                "unknown $patch value on a map",
                json!({"simpleMap": {"a": "1"}}),
                json!({"simpleMap": {"$patch": "bogus"}}),
                "unknown patch type: bogus in map",
            ),
            (
                "$patch: merge is not a map directive",
                json!({"name": 1}),
                json!({"$patch": "merge", "value": 1}),
                "unknown patch type: merge in map",
            ),
            (
                "$patch: merge in a list",
                json!({"mergingList": [{"name": 1}]}),
                json!({"mergingList": [{"$patch": "merge"}]}),
                "merging lists cannot yet be specified in the patch",
            ),
            (
                "unknown $patch value in a list",
                json!({"mergingList": [{"name": 1}]}),
                json!({"mergingList": [{"$patch": "bogus", "name": 1}]}),
                "unknown patch type: bogus in map",
            ),
            (
                "$patch: delete without the merge key",
                json!({"mergingList": [{"name": 1}]}),
                json!({"mergingList": [{"$patch": "delete"}]}),
                "does not contain declared merge key: name",
            ),
            (
                "non-map item in a merging list",
                json!({"mergingList": [{"name": 1}]}),
                json!({"mergingList": ["name"]}),
                "list element types are not identical",
            ),
            (
                "list of lists",
                json!({"mergingIntList": []}),
                json!({"mergingIntList": [[1]]}),
                "lists of lists are not supported",
            ),
            (
                "maps in a merged list of primitives",
                json!({"mergingIntList": [{"a": 1}]}),
                json!({"mergingIntList": [{"a": 2}]}),
                "cannot merge lists without merge key for mergingIntList",
            ),
            (
                "patch sets a key $retainKeys does not list",
                json!({"retainKeysMap": {"name": "foo"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "bar"}}),
                "invalid patch format of retainKeys",
            ),
            (
                "$retainKeys is not a list",
                json!({"retainKeysMap": {"name": "foo"}}),
                json!({"retainKeysMap": {"$retainKeys": "name"}}),
                "invalid patch format of retainKeys",
            ),
            (
                "$setElementOrder is not a list",
                json!({"mergingList": [{"name": 1}]}),
                json!({"$setElementOrder/mergingList": "name"}),
                "expected a []interface {}, but received a string",
            ),
            (
                "$setElementOrder without a field",
                json!({"mergingList": [{"name": 1}]}),
                json!({"$setElementOrder": [{"name": 1}]}),
                "invalid patch format of setElementOrder list",
            ),
            (
                "$setElementOrder item without the merge key",
                json!({"mergingList": [{"name": 1}]}),
                json!({"$setElementOrder/mergingList": [{"value": 1}]}),
                "does not contain declared merge key: name",
            ),
            (
                "$setElementOrder over a field that is not a list",
                json!({"mergingList": {"name": 1}}),
                json!({"$setElementOrder/mergingList": [{"name": 1}]}),
                "expected a []interface {}, but received a map[string]interface {}",
            ),
            (
                "$deleteFromPrimitiveList without a field",
                json!({"mergingIntList": [1]}),
                json!({"$deleteFromPrimitiveListmergingIntList": [1]}),
                "invalid patch format of primitive list",
            ),
        ]);
        let not_an_object = apply("Pod", &json!([]), &json!({}));
        assert_eq!(
            not_an_object.unwrap_err().to_string(),
            "invalid JSON document"
        );
        let patch_not_an_object = apply("Pod", &json!({}), &json!("x"));
        assert_eq!(
            patch_not_an_object.unwrap_err().to_string(),
            "invalid JSON document"
        );
    }

    #[test]
    fn list_strategies_follow_the_go_struct_tags() {
        use ListStrategy::*;
        let pod_spec = ["spec", "template", "spec"];
        let in_pod_spec = |kind: &str, rest: &[&str]| {
            let path: Vec<&str> = pod_spec.iter().chain(rest).copied().collect();
            list_strategy(kind, &path)
        };
        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
        ] {
            assert_eq!(
                in_pod_spec(kind, &["containers"]),
                Merge { merge_key: "name" },
                "{kind}"
            );
        }
        let cases: Vec<(&str, Vec<&str>, ListStrategy)> = vec![
            (
                "Pod",
                vec!["spec", "containers", "env"],
                Merge { merge_key: "name" },
            ),
            (
                "Pod",
                vec!["spec", "containers", "ports"],
                Merge {
                    merge_key: "containerPort",
                },
            ),
            (
                "Pod",
                vec!["spec", "initContainers", "volumeMounts"],
                Merge {
                    merge_key: "mountPath",
                },
            ),
            (
                "Pod",
                vec!["spec", "ephemeralContainers", "volumeDevices"],
                Merge {
                    merge_key: "devicePath",
                },
            ),
            ("Pod", vec!["spec", "containers", "resizePolicy"], Replace),
            ("Pod", vec!["spec", "containers", "args"], Replace),
            ("Pod", vec!["spec", "volumes"], Merge { merge_key: "name" }),
            (
                "Pod",
                vec!["spec", "imagePullSecrets"],
                Merge { merge_key: "name" },
            ),
            (
                "Pod",
                vec!["spec", "hostAliases"],
                Merge { merge_key: "ip" },
            ),
            ("Pod", vec!["spec", "tolerations"], Replace),
            (
                "Pod",
                vec!["spec", "topologySpreadConstraints"],
                Merge {
                    merge_key: "topologyKey",
                },
            ),
            (
                "Pod",
                vec!["spec", "resourceClaims"],
                Merge { merge_key: "name" },
            ),
            (
                "Pod",
                vec!["spec", "schedulingGates"],
                Merge { merge_key: "name" },
            ),
            (
                "Pod",
                vec!["status", "conditions"],
                Merge { merge_key: "type" },
            ),
            ("Pod", vec!["status", "podIPs"], Merge { merge_key: "ip" }),
            ("Pod", vec!["status", "containerStatuses"], Replace),
            ("Pod", vec!["metadata", "finalizers"], MergePrimitives),
            (
                "Pod",
                vec!["metadata", "ownerReferences"],
                Merge { merge_key: "uid" },
            ),
            (
                "PodTemplate",
                vec!["template", "spec", "containers"],
                Merge { merge_key: "name" },
            ),
            (
                "CronJob",
                vec!["spec", "jobTemplate", "spec", "template", "spec", "volumes"],
                Merge { merge_key: "name" },
            ),
            (
                "CronJob",
                vec!["spec", "jobTemplate", "metadata", "finalizers"],
                MergePrimitives,
            ),
            (
                "Deployment",
                vec!["status", "conditions"],
                Merge { merge_key: "type" },
            ),
            (
                "Deployment",
                vec!["spec", "template", "metadata", "ownerReferences"],
                Merge { merge_key: "uid" },
            ),
            (
                "Service",
                vec!["spec", "ports"],
                Merge { merge_key: "port" },
            ),
            ("Service", vec!["spec", "externalIPs"], Replace),
            (
                "Service",
                vec!["status", "conditions"],
                Merge { merge_key: "type" },
            ),
            ("Node", vec!["spec", "taints"], Replace),
            ("Node", vec!["spec", "podCIDRs"], MergePrimitives),
            (
                "Node",
                vec!["status", "addresses"],
                Merge { merge_key: "type" },
            ),
            (
                "Node",
                vec!["status", "conditions"],
                Merge { merge_key: "type" },
            ),
            ("Namespace", vec!["spec", "finalizers"], Replace),
            (
                "Namespace",
                vec!["status", "conditions"],
                Merge { merge_key: "type" },
            ),
            ("ConfigMap", vec!["metadata", "finalizers"], MergePrimitives),
            (
                "Secret",
                vec!["metadata", "ownerReferences"],
                Merge { merge_key: "uid" },
            ),
            (
                "ServiceAccount",
                vec!["secrets"],
                Merge { merge_key: "name" },
            ),
            ("Widget", vec!["metadata", "finalizers"], Replace),
            ("Pod", vec!["spec", "nope", "containers"], Replace),
            ("Pod", vec![], Replace),
        ];
        for (kind, path, expected) in cases {
            assert_eq!(list_strategy(kind, &path), expected, "{kind} {path:?}");
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": "6f1c7d2e-1b8a-4c1e-9d3a-2f4b5c6d7e8f",
                "resourceVersion": "1234",
                "generation": 2,
                "creationTimestamp": "2025-12-01T10:00:00Z",
                "labels": {"app": "web"},
                "annotations": {
                    "deployment.kubernetes.io/revision": "2",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}\n"
                }
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.25",
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [
                                    {"containerPort": 80, "protocol": "TCP"},
                                    {"containerPort": 443, "protocol": "TCP"}
                                ],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "x"}],
                                "resources": {},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File"
                            },
                            {
                                "name": "sidecar",
                                "image": "busybox:1.36",
                                "command": ["sleep", "infinity"],
                                "resources": {},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File"
                            }
                        ],
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                        "dnsPolicy": "ClusterFirst",
                        "securityContext": {},
                        "schedulerName": "default-scheduler"
                    }
                }
            },
            "status": {
                "observedGeneration": 2,
                "replicas": 2,
                "updatedReplicas": 2,
                "readyReplicas": 2,
                "availableReplicas": 2,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "reason": "MinimumReplicasAvailable",
                        "lastTransitionTime": "2025-12-01T10:00:05Z"
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "lastTransitionTime": "2025-12-01T10:00:05Z"
                    }
                ]
            }
        })
    }

    fn set(doc: &mut Value, pointer: &str, value: Value) {
        *doc.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("no {pointer}")) = value;
    }

    const NGINX: &str = "/spec/template/spec/containers/0";

    #[test]
    fn kubectl_apply_updates_a_container_by_name() {
        let patch = json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\",\"spec\":{\"replicas\":3}}\n"
            }},
            "spec": {
                "replicas": 3,
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{
                        "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"name": "A", "value": "2"}],
                        "image": "nginx:1.27",
                        "name": "nginx"
                    }]
                }}
            }
        });
        let mut expected = deployment();
        set(
            &mut expected,
            "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
            json!("{\"kind\":\"Deployment\",\"spec\":{\"replicas\":3}}\n"),
        );
        set(&mut expected, "/spec/replicas", json!(3));
        set(
            &mut expected,
            &format!("{NGINX}/image"),
            json!("nginx:1.27"),
        );
        // B and the sidecar were never applied by kubectl, so they stay, after the listed items.
        set(&mut expected, &format!("{NGINX}/env/0/value"), json!("2"));
        assert_eq!(
            apply("Deployment", &deployment(), &patch).unwrap(),
            expected
        );
    }

    #[test]
    fn kubectl_apply_adds_and_removes_containers_and_env() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "metrics"}],
            "containers": [
                {
                    "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
                    "env": [{"name": "C", "value": "3"}, {"$patch": "delete", "name": "B"}],
                    "name": "nginx"
                },
                {"image": "exporter:1.0", "name": "metrics"},
                {"$patch": "delete", "name": "sidecar"}
            ]
        }}}});
        let mut expected = deployment();
        set(
            &mut expected,
            &format!("{NGINX}/env"),
            json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]),
        );
        let nginx = expected.pointer(NGINX).unwrap().clone();
        set(
            &mut expected,
            "/spec/template/spec/containers",
            json!([nginx, {"image": "exporter:1.0", "name": "metrics"}]),
        );
        assert_eq!(
            apply("Deployment", &deployment(), &patch).unwrap(),
            expected
        );
    }

    #[test]
    fn kubectl_apply_removes_a_container_port() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{
            "name": "nginx",
            "ports": [{"$patch": "delete", "containerPort": 80}]
        }]}}}});
        let mut expected = deployment();
        set(
            &mut expected,
            &format!("{NGINX}/ports"),
            json!([{"containerPort": 443, "protocol": "TCP"}]),
        );
        assert_eq!(
            apply("Deployment", &deployment(), &patch).unwrap(),
            expected
        );
    }

    #[test]
    fn kubectl_rollout_restart_and_resume() {
        let restart = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"
        }}}}});
        let mut expected = deployment();
        set(
            &mut expected,
            "/spec/template/metadata",
            json!({
                "labels": {"app": "web"},
                "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
            }),
        );
        assert_eq!(
            apply("Deployment", &deployment(), &restart).unwrap(),
            expected
        );

        let mut paused = deployment();
        paused["spec"]["paused"] = json!(true);
        let resumed = apply("Deployment", &paused, &json!({"spec": {"paused": null}})).unwrap();
        assert_eq!(resumed, deployment());
        // Deleting an absent field leaves no null behind.
        let unchanged = apply(
            "Deployment",
            &deployment(),
            &json!({"spec": {"paused": null}}),
        );
        assert_eq!(unchanged.unwrap(), deployment());
    }

    #[test]
    fn atomic_lists_are_replaced_with_the_patch_list() {
        let mut original = deployment();
        original["spec"]["template"]["spec"]["tolerations"] =
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        let patch = json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "c", "operator": "Exists"}],
            "containers": [{"name": "sidecar", "command": ["sleep", "10"]}]
        }}}});
        let mut expected = original.clone();
        set(
            &mut expected,
            "/spec/template/spec/tolerations",
            json!([{"key": "c", "operator": "Exists"}]),
        );
        set(
            &mut expected,
            "/spec/template/spec/containers/1/command",
            json!(["sleep", "10"]),
        );
        assert_eq!(apply("Deployment", &original, &patch).unwrap(), expected);
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-0",
                "namespace": "default",
                "finalizers": ["example.com/a", "example.com/b"],
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                    "uid": "u1", "controller": true
                }]
            },
            "spec": {
                "containers": [{"name": "app", "image": "app:1"}],
                "volumes": [
                    {"name": "data", "configMap": {"name": "cfg"}},
                    {"name": "cache", "emptyDir": {}}
                ]
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "True"}
                ]
            }
        })
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let added = apply(
            "Pod",
            &pod(),
            &json!({"metadata": {"finalizers": ["example.com/b", "example.com/c"]}}),
        )
        .unwrap();
        assert_eq!(
            added["metadata"]["finalizers"],
            json!(["example.com/a", "example.com/b", "example.com/c"])
        );
        let removed = apply(
            "Pod",
            &pod(),
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}}),
        )
        .unwrap();
        let mut expected = pod();
        set(
            &mut expected,
            "/metadata/finalizers",
            json!(["example.com/b"]),
        );
        assert_eq!(removed, expected);
        let cleared = apply("Pod", &pod(), &json!({"metadata": {"finalizers": null}})).unwrap();
        let mut expected = pod();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("finalizers");
        assert_eq!(cleared, expected);
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let patch = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u1", "blockOwnerDeletion": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u2"}
        ]}});
        let mut expected = pod();
        set(
            &mut expected,
            "/metadata/ownerReferences",
            json!([
                {
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u1",
                    "controller": true, "blockOwnerDeletion": true
                },
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u2"}
            ]),
        );
        assert_eq!(apply("Pod", &pod(), &patch).unwrap(), expected);
    }

    #[test]
    fn retain_keys_switches_a_volume_source() {
        // What kubectl sends when a volume changes from a configMap to a secret.
        let patch = json!({"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
            "volumes": [{
                "$retainKeys": ["name", "secret"],
                "configMap": null,
                "name": "data",
                "secret": {"secretName": "creds"}
            }]
        }});
        let mut expected = pod();
        set(
            &mut expected,
            "/spec/volumes",
            json!([
                {"name": "data", "secret": {"secretName": "creds"}},
                {"name": "cache", "emptyDir": {}}
            ]),
        );
        assert_eq!(apply("Pod", &pod(), &patch).unwrap(), expected);
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let patch = json!({"status": {
            "$setElementOrder/conditions": [
                {"type": "Initialized"}, {"type": "Ready"}, {"type": "PodScheduled"},
                {"type": "ContainersReady"}
            ],
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"}
            ]
        }});
        let mut expected = pod();
        set(
            &mut expected,
            "/status/conditions",
            json!([
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True"},
                {"type": "ContainersReady", "status": "True"}
            ]),
        );
        assert_eq!(apply("Pod", &pod(), &patch).unwrap(), expected);
    }

    fn node() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {
                "podCIDR": "10.244.0.0/24",
                "podCIDRs": ["10.244.0.0/24"],
                "taints": [{"key": "a", "effect": "NoSchedule"}]
            },
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "192.168.1.10"},
                    {"type": "Hostname", "address": "node-1"}
                ],
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        })
    }

    #[test]
    fn node_patches() {
        let cordoned = apply("Node", &node(), &json!({"spec": {"unschedulable": true}})).unwrap();
        let mut expected = node();
        expected["spec"]["unschedulable"] = json!(true);
        assert_eq!(cordoned, expected);

        let patch = json!({
            "spec": {
                "taints": [{"key": "b", "effect": "NoExecute"}],
                "podCIDRs": ["fd00::/64"]
            },
            "status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}]}
        });
        // Without `$setElementOrder`, items new to the server go before the stored ones.
        let mut expected = node();
        set(
            &mut expected,
            "/spec/taints",
            json!([{"key": "b", "effect": "NoExecute"}]),
        );
        set(
            &mut expected,
            "/spec/podCIDRs",
            json!(["fd00::/64", "10.244.0.0/24"]),
        );
        set(
            &mut expected,
            "/status/addresses",
            json!([
                {"type": "ExternalIP", "address": "203.0.113.7"},
                {"type": "InternalIP", "address": "192.168.1.10"},
                {"type": "Hostname", "address": "node-1"}
            ]),
        );
        assert_eq!(apply("Node", &node(), &patch).unwrap(), expected);
    }

    #[test]
    fn unknown_kinds_replace_lists_and_merge_maps() {
        let original =
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"items": [1, 2], "m": {"a": 1}}});
        let patch =
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [3], "m": {"b": 2}}});
        assert_eq!(
            apply("Widget", &original, &patch).unwrap(),
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [3], "m": {"a": 1, "b": 2}}})
        );
    }

    #[test]
    fn new_values_are_stored_without_nulls_or_directives() {
        let patch = json!({"spec": {"template": {"spec": {
            "affinity": {"nodeAffinity": {"a": null, "b": [{"c": null}, {"$patch": "delete"}]}},
            "priority": {"$patch": "delete"}
        }}}});
        let mut expected = deployment();
        expected["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {"b": [{}]}});
        assert_eq!(
            apply("Deployment", &deployment(), &patch).unwrap(),
            expected
        );
    }

    #[test]
    fn key_order_is_kept_and_new_keys_are_appended() {
        let original = json!({"b": 1, "a": {"y": 1, "x": 2}, "d": 4});
        let patch = json!({"c": 3, "a": {"z": 0, "y": 5}, "d": null});
        let merged = apply("ConfigMap", &original, &patch).unwrap();
        assert_eq!(
            merged.to_string(),
            r#"{"b":1,"a":{"y":5,"x":2,"z":0},"c":3}"#
        );
    }

    #[test]
    fn null_documents_merge_like_empty_objects() {
        assert_eq!(
            apply("ConfigMap", &Value::Null, &json!({"data": {"k": "v"}})).unwrap(),
            json!({"data": {"k": "v"}})
        );
        assert_eq!(
            apply("ConfigMap", &json!({"data": {"k": "v"}}), &Value::Null).unwrap(),
            json!({"data": {"k": "v"}})
        );
    }
}
