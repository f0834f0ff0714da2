//! Server-side apply (`application/apply-patch+yaml`): the applied configuration is merged into the live
//! object (maps by key, keyed lists by their merge keys), fields this manager applied before and dropped now
//! are removed, and changing a field another manager owns is a conflict unless `force=true`. Ownership is
//! recorded in `metadata.managedFields` as FieldsV1 sets.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::api::fieldset;
use crate::api::meta;
use crate::registry::{CreateOptions, RegistryError, UpdateOptions};

use super::super::body::{self, FieldValidation};
use super::super::request::ResourceRequest;
use super::super::status::ApiError;
use super::super::{json_response, ApiServer, Body, Query, RequestContext};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    server: &Arc<ApiServer>,
    r: &ResourceRequest,
    config: &Value,
    manager: &str,
    force: bool,
    validation: FieldValidation,
    dry_run: bool,
    _ctx: &RequestContext,
    _q: &Query,
) -> Result<Response<Body>, ApiError> {
    let registry = server.registry();
    let info = r.info;
    let ns = r.namespace.as_deref();
    let name = r.name.as_deref().unwrap_or_default();
    if meta::name(config).is_some_and(|n| n != name) {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta::name(config).unwrap_or_default()
        )));
    }
    let (typed_config, _) = body::typed_object(info, config.clone(), validation)?;
    let now = registry.now();
    let api_version = info.api_version();
    loop {
        match registry.get(info, ns, name).await {
            Err(RegistryError::NotFound { .. }) => {
                let mut obj = typed_config.clone();
                meta::set_meta(&mut obj, "name", name);
                set_apply_entry(
                    &mut obj,
                    manager,
                    &api_version,
                    fieldset::fields_v1(&typed_config),
                    now,
                );
                let options = CreateOptions {
                    dry_run,
                    field_manager: None,
                };
                match registry.create(info, ns, obj, &options).await {
                    Ok(created) => return Ok(json_response(StatusCode::CREATED, &created)),
                    // Lost a race with another creator: apply onto what they made.
                    Err(RegistryError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
            Ok(_) => break,
        }
    }
    let options = UpdateOptions {
        dry_run,
        field_manager: None,
        subresource: r.subresource.clone(),
    };
    let updated = registry
        .guaranteed_update(
            info,
            ns,
            name,
            &options,
            |live| -> Result<Value, ApiError> {
                let mut merged = merge(
                    info.kind,
                    live,
                    &typed_config,
                    manager,
                    force,
                    &api_version,
                    now,
                )?;
                meta::remove_meta(&mut merged, "resourceVersion");
                let (typed, _) = body::typed_object(info, merged, FieldValidation::Ignore)?;
                Ok(typed)
            },
        )
        .await?;
    Ok(json_response(StatusCode::OK, &updated))
}

fn set_apply_entry(
    obj: &mut Value,
    manager: &str,
    api_version: &str,
    fields: Value,
    now: jiff::Timestamp,
) {
    let mut entries: Vec<Value> = meta::metadata(obj)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| !(e["manager"] == manager && e["operation"] == "Apply"));
    entries.push(
        json!({"manager": manager, "operation": "Apply", "apiVersion": api_version,
        "time": meta::format_time(now), "fieldsType": "FieldsV1", "fieldsV1": fields}),
    );
    meta::set_meta(obj, "managedFields", entries);
}

/// The live object with `config` applied by `manager`.
pub fn merge(
    kind: &str,
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: jiff::Timestamp,
) -> Result<Value, ApiError> {
    let applied = fieldset::fields_v1(config);
    let applied_leaves = fieldset::leaves(&applied);
    let entries: Vec<Value> = meta::metadata(live)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut others: Vec<Value> = Vec::new();
    let mut previous: Option<Value> = None;
    for entry in entries {
        let is_mine = entry["manager"] == manager && entry["operation"] == "Apply";
        if is_mine {
            previous = Some(entry["fieldsV1"].clone());
            continue;
        }
        let owned = fieldset::leaves(&entry["fieldsV1"]);
        let mut lost = Vec::new();
        for path in applied_leaves.iter().filter(|p| owned.contains(p)) {
            if fieldset::get(live, path) != fieldset::get(config, path) {
                lost.push(path.clone());
                conflicts.push((
                    entry["manager"].as_str().unwrap_or("").to_string(),
                    fieldset::display(path),
                ));
            }
        }
        let mut entry = entry;
        if force && !lost.is_empty() {
            entry["fieldsV1"] = fieldset::without(&entry["fieldsV1"], &lost);
        }
        others.push(entry);
    }
    if !conflicts.is_empty() && !force {
        let n = conflicts.len();
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
            .collect();
        let plural = if n == 1 { "" } else { "s" };
        return Err(ApiError::ApplyConflict(format!(
            "Apply failed with {n} conflict{plural}: {}",
            list.join("\n")
        )));
    }
    let mut merged = super::strategic::apply(kind, live, config)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(previous) = previous {
        let still_owned: Vec<Vec<String>> = others
            .iter()
            .flat_map(|e| fieldset::leaves(&e["fieldsV1"]))
            .collect();
        for path in fieldset::leaves(&previous) {
            if !applied_leaves.contains(&path) && !still_owned.contains(&path) {
                fieldset::remove(&mut merged, &path);
            }
        }
    }
    others.push(
        json!({"manager": manager, "operation": "Apply", "apiVersion": api_version,
        "time": meta::format_time(now), "fieldsType": "FieldsV1", "fieldsV1": applied}),
    );
    meta::set_meta(&mut merged, "managedFields", others);
    Ok(merged)
}
