//! The verbs on resources: decoding what the request carries, calling the registry, and shaping the answer
//! (object, list, Table, Status, Scale).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::api::meta;
use crate::api::resources::ResourceInfo;
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::registry::{
    CreateOptions, DeleteOptions, DeleteOutcome, ListOptions, RegistryError, UpdateOptions,
};

use super::body::{self, FieldValidation};
use super::patch::{self, PatchType};
use super::request::{ResourceRequest, Verb};
use super::status::{success_status, ApiError};
use super::{json_response, ApiServer, Body, Query, RequestContext};

pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    r: ResourceRequest,
    q: &Query,
    ctx: &RequestContext,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let ns = r.namespace.as_deref();
    let info = r.info;
    let registry = server.registry();
    match r.verb {
        Verb::Get if r.subresource.as_deref() == Some("log") => {
            let name = r.name.as_deref().unwrap_or_default();
            super::logs::serve(server, ns.unwrap_or_default(), name, q).await
        }
        Verb::Get => {
            let name = r.name.as_deref().unwrap_or_default();
            let obj = registry.get(info, ns, name).await?;
            match r.subresource.as_deref() {
                Some("scale") => Ok(json_response(StatusCode::OK, &scale_of(&obj)?)),
                _ => Ok(object_response(
                    StatusCode::OK,
                    info,
                    obj,
                    ctx,
                    q,
                    Vec::new(),
                )),
            }
        }
        Verb::List => {
            let options = list_options(q)?;
            let result = registry.list(info, ns, &options).await?;
            if wants_table(&ctx.accept) {
                return Ok(table_response(
                    info,
                    &result.items,
                    result.resource_version,
                    result.continue_token.as_deref(),
                    q,
                    registry.now(),
                ));
            }
            let mut metadata = json!({"resourceVersion": result.resource_version.to_string()});
            if let Some(token) = result.continue_token {
                metadata["continue"] = json!(token);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": metadata, "items": result.items}),
            ))
        }
        Verb::Watch => super::watch::serve(server, info, ns, r.name.as_deref(), q, ctx).await,
        Verb::Create => create(server, &r, q, ctx, content_type, &body).await,
        Verb::Update => update(server, &r, q, ctx, content_type, &body).await,
        Verb::Patch => patch_object(server, &r, q, ctx, content_type, &body).await,
        Verb::Delete => {
            let options = delete_options(q, &body)?;
            let name = r.name.as_deref().unwrap_or_default();
            match registry.delete(info, ns, name, &options).await? {
                DeleteOutcome::Pending(obj) => Ok(json_response(StatusCode::OK, &obj)),
                DeleteOutcome::Deleted(obj) if returns_deleted_object(info) => {
                    Ok(json_response(StatusCode::OK, &obj))
                }
                DeleteOutcome::Deleted(obj) => Ok(json_response(
                    StatusCode::OK,
                    &success_status(Some(
                        json!({"name": name, "group": info.group, "kind": info.plural, "uid": meta::uid(&obj)}),
                    )),
                )),
            }
        }
        Verb::DeleteCollection => {
            let options = delete_options(q, &body)?;
            let list = registry.list(info, ns, &list_options(q)?).await?;
            let mut deleted = Vec::new();
            for item in list.items {
                let name = meta::name(&item).unwrap_or_default().to_string();
                let item_ns = meta::namespace(&item).map(str::to_string);
                match registry
                    .delete(info, item_ns.as_deref(), &name, &options)
                    .await
                {
                    Ok(DeleteOutcome::Deleted(obj)) | Ok(DeleteOutcome::Pending(obj)) => {
                        deleted.push(obj)
                    }
                    Err(RegistryError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": {}, "items": deleted}),
            ))
        }
    }
}

/// Pods and services answer a completed delete with the deleted object, as in Kubernetes; others with a Status.
fn returns_deleted_object(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.kind, "Pod" | "Service")
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
        ))),
    }
}

fn field_manager(q: &Query, ctx: &RequestContext) -> Option<String> {
    match q.get("fieldManager") {
        Some(m) if !m.is_empty() => Some(m.to_string()),
        // Kubernetes names an unnamed manager after the client's user agent, up to the first '/'.
        _ => Some(
            ctx.user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string(),
        )
        .filter(|m| !m.is_empty()),
    }
}

pub(super) fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    Ok(ListOptions {
        label_selector: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?,
        field_selector: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
        continue_token: q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    })
}

pub(super) fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn warning_headers(resp: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append("Warning", v);
        }
    }
}

fn object_response(
    code: StatusCode,
    info: &ResourceInfo,
    obj: Value,
    ctx: &RequestContext,
    q: &Query,
    warnings: Vec<String>,
) -> Response<Body> {
    let mut resp = if wants_table(&ctx.accept) {
        let rv = crate::registry::resource_version_of(&obj);
        table_response(
            info,
            std::slice::from_ref(&obj),
            rv,
            None,
            q,
            jiff::Timestamp::now(),
        )
    } else {
        json_response(code, &obj)
    };
    *resp.status_mut() = code;
    warning_headers(&mut resp, &warnings);
    resp
}

/// One row's embedded object: the default (`includeObject=Metadata`) is the object's metadata only.
pub(super) fn row_object(obj: &Value, q: &Query) -> Value {
    match q.get("includeObject") {
        Some("Object") => obj.clone(),
        Some("None") => Value::Null,
        _ => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
        }
    }
}

pub(super) fn table(
    info: &ResourceInfo,
    items: &[Value],
    rv: i64,
    continue_token: Option<&str>,
    q: &Query,
    now: jiff::Timestamp,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| json!({"cells": super::table::cells(info.kind, obj, now), "object": row_object(obj, q)}))
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    let mut table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "rows": rows});
    if with_columns {
        table["columnDefinitions"] = super::table::column_definitions_json(info.kind);
    }
    table
}

pub(super) fn table_response(
    info: &ResourceInfo,
    items: &[Value],
    rv: i64,
    continue_token: Option<&str>,
    q: &Query,
    now: jiff::Timestamp,
) -> Response<Body> {
    let value = table(info, items, rv, continue_token, q, now, true);
    super::json_response_typed(StatusCode::OK, &value, TABLE_CONTENT_TYPE)
}

async fn create(
    server: &Arc<ApiServer>,
    r: &ResourceRequest,
    q: &Query,
    ctx: &RequestContext,
    content_type: Option<&str>,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let registry = server.registry();
    let ns = r.namespace.as_deref();
    let validation = FieldValidation::parse(q.get("fieldValidation"))?;
    let decoded = body::decode(content_type, raw)?;
    match r.subresource.as_deref() {
        Some("binding") => {
            let name = r.name.as_deref().unwrap_or_default();
            let (binding, _) = body::typed_object_as("", "v1", "Binding", decoded, validation)?;
            let options = UpdateOptions {
                dry_run: dry_run(q)?,
                field_manager: None,
                subresource: Some("binding".into()),
            };
            let now = registry.now();
            registry
                .guaranteed_update(r.info, ns, name, &options, |pod| {
                    crate::registry::bind_pod(pod, &binding, now)
                })
                .await?;
            return Ok(json_response(StatusCode::CREATED, &success_status(None)));
        }
        Some(other) => {
            return Err(ApiError::MethodNotAllowed(format!(
                "create is not supported on {other}"
            )))
        }
        None => {}
    }
    check_type_meta(r.info, &decoded)?;
    let (obj, warnings) = body::typed_object(r.info, decoded, validation)?;
    let options = CreateOptions {
        dry_run: dry_run(q)?,
        field_manager: field_manager(q, ctx),
    };
    let created = registry.create(r.info, ns, obj, &options).await?;
    Ok(object_response(
        StatusCode::CREATED,
        r.info,
        created,
        ctx,
        q,
        warnings,
    ))
}

/// A body naming another kind or version than the URL is rejected, as Kubernetes does.
fn check_type_meta(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != info.kind)
        || (!api_version.is_empty() && api_version != info.api_version())
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            info.api_version()
        ))
        .with_kind_message(kind, info));
    }
    Ok(())
}

impl ApiError {
    fn with_kind_message(self, kind: &str, info: &ResourceInfo) -> ApiError {
        if !kind.is_empty() && kind != info.kind {
            ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            ))
        } else {
            self
        }
    }
}

async fn update(
    server: &Arc<ApiServer>,
    r: &ResourceRequest,
    q: &Query,
    ctx: &RequestContext,
    content_type: Option<&str>,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let registry = server.registry();
    let ns = r.namespace.as_deref();
    let name = r.name.as_deref().unwrap_or_default();
    let validation = FieldValidation::parse(q.get("fieldValidation"))?;
    let decoded = body::decode(content_type, raw)?;
    let dry_run = dry_run(q)?;
    if r.subresource.as_deref() == Some("scale") {
        let (scale, _) = body::typed_object_as("autoscaling", "v1", "Scale", decoded, validation)?;
        let options = UpdateOptions {
            dry_run,
            field_manager: field_manager(q, ctx),
            subresource: None,
        };
        let updated = registry
            .guaranteed_update(r.info, ns, name, &options, |current| {
                with_scale(current, &scale)
            })
            .await?;
        return Ok(json_response(StatusCode::OK, &scale_of(&updated)?));
    }
    check_type_meta(r.info, &decoded)?;
    let (obj, warnings) = body::typed_object(r.info, decoded, validation)?;
    let options = UpdateOptions {
        dry_run,
        field_manager: field_manager(q, ctx),
        subresource: r.subresource.clone(),
    };
    let updated = registry.update(r.info, ns, name, obj, &options).await?;
    Ok(object_response(
        StatusCode::OK,
        r.info,
        updated,
        ctx,
        q,
        warnings,
    ))
}

async fn patch_object(
    server: &Arc<ApiServer>,
    r: &ResourceRequest,
    q: &Query,
    ctx: &RequestContext,
    content_type: Option<&str>,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let registry = server.registry();
    let ns = r.namespace.as_deref();
    let name = r.name.as_deref().unwrap_or_default();
    let info = r.info;
    let patch_type = PatchType::from_media_type(&body::media_type(content_type))?;
    let validation = FieldValidation::parse(q.get("fieldValidation"))?;
    let dry_run = dry_run(q)?;
    let patch = match patch_type {
        PatchType::Apply => body::decode_yaml(raw)?,
        _ => serde_json::from_slice(raw)
            .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?,
    };
    let manager = field_manager(q, ctx);
    if patch_type == PatchType::Apply {
        let Some(manager) = q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
        else {
            return Err(ApiError::BadRequest(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            ));
        };
        return patch::apply::serve(
            server,
            r,
            &patch,
            &manager,
            q.flag("force"),
            validation,
            dry_run,
            ctx,
            q,
        )
        .await;
    }
    let mut warnings = Vec::new();
    let options = UpdateOptions {
        dry_run,
        field_manager: manager,
        subresource: r.subresource.clone().filter(|s| s != "scale"),
    };
    let updated = registry
        .guaranteed_update(
            info,
            ns,
            name,
            &options,
            |current| -> Result<Value, ApiError> {
                if r.subresource.as_deref() == Some("scale") {
                    let scale = scale_of(current)?;
                    let patched = patch::apply_patch("Scale", patch_type, &scale, &patch)?;
                    let (patched, _) =
                        body::typed_object_as("autoscaling", "v1", "Scale", patched, validation)?;
                    return with_scale(current, &patched);
                }
                let mut patched = patch::apply_patch(info.kind, patch_type, current, &patch)?;
                // A patch that does not touch resourceVersion must not turn the read version into a precondition.
                if meta::resource_version(&patch_meta(&patch)).is_none() {
                    meta::remove_meta(&mut patched, "resourceVersion");
                }
                let (typed, w) = body::typed_object(info, patched, validation)?;
                warnings = w;
                Ok(typed)
            },
        )
        .await?;
    if r.subresource.as_deref() == Some("scale") {
        return Ok(json_response(StatusCode::OK, &scale_of(&updated)?));
    }
    Ok(object_response(
        StatusCode::OK,
        info,
        updated,
        ctx,
        q,
        warnings,
    ))
}

/// The part of a patch that speaks about metadata (for JSON patches: whether any op touches the RV).
fn patch_meta(patch: &Value) -> Value {
    match patch {
        Value::Array(ops) => {
            let touches = ops.iter().any(|op| {
                op["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/metadata/resourceVersion"))
            });
            if touches {
                json!({"metadata": {"resourceVersion": "set"}})
            } else {
                json!({})
            }
        }
        other => other.clone(),
    }
}

pub(super) fn scale_of(obj: &Value) -> Result<Value, ApiError> {
    let selector = match obj["spec"].get("selector") {
        Some(sel) if sel.is_object() => LabelSelector::from_json(sel)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let metadata = json!({
        "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
        "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
    });
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    }))
}

/// The object with the replicas of `scale`; the Scale's resourceVersion, if any, is a precondition.
fn with_scale(current: &Value, scale: &Value) -> Result<Value, ApiError> {
    let mut out = current.clone();
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    out["spec"]["replicas"] = json!(replicas);
    match meta::resource_version(scale) {
        Some(rv) => meta::set_meta(&mut out, "resourceVersion", rv.to_string()),
        None => {
            meta::remove_meta(&mut out, "resourceVersion");
        }
    }
    Ok(out)
}

fn delete_options(q: &Query, raw: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::decode(Some("application/json"), raw)?
    };
    let mut options = DeleteOptions {
        dry_run: dry_run(q)?
            || body["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All")),
        grace_period_seconds: body["gracePeriodSeconds"].as_i64(),
        propagation_policy: body["propagationPolicy"].as_str().map(str::to_string),
        precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    };
    if let Some(grace) = q.get("gracePeriodSeconds") {
        options.grace_period_seconds =
            Some(grace.parse().map_err(|_| {
                ApiError::BadRequest(format!("invalid gracePeriodSeconds {grace:?}"))
            })?);
    }
    if let Some(policy) = q.get("propagationPolicy") {
        options.propagation_policy = Some(policy.to_string());
    }
    let orphan = body["orphanDependents"]
        .as_bool()
        .or_else(|| q.get("orphanDependents").map(|v| v == "true"));
    if options.propagation_policy.is_none() {
        options.propagation_policy = match orphan {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        };
    }
    Ok(options)
}
