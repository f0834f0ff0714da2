//! `--config` (default /etc/orch/config.yaml): a YAML map whose keys are flag names. Its values come
//! before the command-line arguments, so flags given on the command line win.

use anyhow::Context;
use serde_json::Value;

const DEFAULT_CONFIG: &str = "/etc/orch/config.yaml";

/// Inserts the config file's flags after the subcommand.
pub fn with_config_file(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    if args.get(1).map(String::as_str) != Some("server") {
        return Ok(args);
    }
    let explicit = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| args.get(i + 1).cloned())
                .flatten()
        })
    });
    let env = std::env::var("ORCH_CONFIG_FILE").ok();
    let path = explicit
        .clone()
        .or(env)
        .unwrap_or_else(|| DEFAULT_CONFIG.to_string());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(args)
        }
        Err(e) => return Err(e).with_context(|| format!("reading config file {path}")),
    };
    let flags = flags_from_yaml(&text).with_context(|| format!("config file {path}"))?;
    let mut out = args[..2].to_vec();
    out.extend(flags);
    out.extend(args[2..].iter().cloned());
    Ok(out)
}

fn flags_from_yaml(text: &str) -> anyhow::Result<Vec<String>> {
    let value: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(text)?
    };
    let map = value
        .as_object()
        .context("expected a map of flag names to values")?;
    let mut out = Vec::new();
    for (key, v) in map {
        if key == "config" {
            continue;
        }
        let values = match v {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in values {
            match item {
                Value::Bool(true) => out.push(format!("--{key}")),
                Value::Bool(false) => {}
                Value::String(s) => out.push(format!("--{key}={s}")),
                Value::Number(n) => out.push(format!("--{key}={n}")),
                other => anyhow::bail!("{key}: unsupported value {other}"),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_become_flags() {
        let flags = flags_from_yaml(
            "https-listen-port: 7443\ntls-san:\n  - a.example\n  - 10.0.0.1\ndisable-agent: true\n",
        )
        .unwrap();
        assert_eq!(
            flags,
            vec![
                "--https-listen-port=7443",
                "--tls-san=a.example",
                "--tls-san=10.0.0.1",
                "--disable-agent"
            ]
        );
        assert!(flags_from_yaml("- not a map").is_err());
    }
}
