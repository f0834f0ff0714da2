//! Conversion between versions of the same objects. Only HorizontalPodAutoscaler is served in two versions
//! (autoscaling/v2 stored, autoscaling/v1 converted on the way in and out), as Kubernetes does.

use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    #[error("no conversion from {from} to {to}")]
    Unsupported { from: String, to: String },
}

/// Converts `obj` (any served version) to `group/version`.
pub fn convert(obj: &Value, group: &str, version: &str) -> Result<Value, ConversionError> {
    let from = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let to = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    if from == to {
        return Ok(obj.clone());
    }
    match (from.as_str(), to.as_str()) {
        ("autoscaling/v2", "autoscaling/v1") => Ok(hpa_v2_to_v1(obj)),
        ("autoscaling/v1", "autoscaling/v2") => Ok(hpa_v1_to_v2(obj)),
        _ => Err(ConversionError::Unsupported { from, to }),
    }
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn hpa_v2_to_v1(obj: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("autoscaling/v1"));
    out.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    out.insert(
        "metadata".into(),
        obj.get("metadata").cloned().unwrap_or(json!({})),
    );
    let spec = &obj["spec"];
    let mut s = Map::new();
    for field in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(field) {
            s.insert(field.into(), v.clone());
        }
    }
    if let Some(target) = spec["metrics"]
        .as_array()
        .and_then(|m| m.iter().find(|m| is_cpu_utilization(m)))
    {
        if let Some(u) = target["resource"]["target"].get("averageUtilization") {
            s.insert("targetCPUUtilizationPercentage".into(), u.clone());
        }
    }
    out.insert("spec".into(), Value::Object(s));
    if let Some(status) = obj.get("status") {
        let mut st = Map::new();
        for field in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = status.get(field) {
                st.insert(field.into(), v.clone());
            }
        }
        let current_cpu = status["currentMetrics"].as_array().and_then(|metrics| {
            metrics
                .iter()
                .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
        });
        if let Some(u) =
            current_cpu.and_then(|m| m["resource"]["current"].get("averageUtilization"))
        {
            st.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        st.entry("currentReplicas").or_insert(json!(0));
        st.entry("desiredReplicas").or_insert(json!(0));
        out.insert("status".into(), Value::Object(st));
    }
    Value::Object(out)
}

fn hpa_v1_to_v2(obj: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("autoscaling/v2"));
    out.insert("kind".into(), json!("HorizontalPodAutoscaler"));
    out.insert(
        "metadata".into(),
        obj.get("metadata").cloned().unwrap_or(json!({})),
    );
    let spec = &obj["spec"];
    let mut s = Map::new();
    for field in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        if let Some(v) = spec.get(field) {
            s.insert(field.into(), v.clone());
        }
    }
    if let Some(u) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        s.insert(
            "metrics".into(),
            json!([{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":u}}}]),
        );
    }
    out.insert("spec".into(), Value::Object(s));
    if let Some(status) = obj.get("status") {
        let mut st = Map::new();
        for field in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            if let Some(v) = status.get(field) {
                st.insert(field.into(), v.clone());
            }
        }
        if let Some(u) = status.get("currentCPUUtilizationPercentage") {
            st.insert(
                "currentMetrics".into(),
                json!([{"type":"Resource","resource":{"name":"cpu","current":{"averageUtilization":u}}}]),
            );
        }
        out.insert("status".into(), Value::Object(st));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_cpu_target_survives_a_round_trip_through_v2() {
        let v1 = json!({"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"h"},
            "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":1,
                    "maxReplicas":5,"targetCPUUtilizationPercentage":70}});
        let v2 = convert(&v1, "autoscaling", "v2").unwrap();
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        let back = convert(&v2, "autoscaling", "v1").unwrap();
        assert_eq!(back["spec"], v1["spec"]);
    }

    #[test]
    fn unknown_pairs_are_errors() {
        assert!(convert(&json!({"apiVersion":"v1"}), "apps", "v1").is_err());
    }
}
