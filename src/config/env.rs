//! `${env:VAR}`, `${env:VAR:-default}` and `${VAR}` substitution in scalar values (never in
//! keys), as the Collector does; `$$` is a literal `$`. A scalar that is exactly one
//! reference is re-typed after substitution, so `port: ${env:PORT}` becomes an integer.
//! An unset variable without a default becomes empty, with a warning.

use super::ConfigError;
use super::yaml::{Node, Value, plain_scalar};

pub fn substitute(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(s.len());
    let mut warnings = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        if let Some(inner_start) = after.strip_prefix('{') {
            let end = inner_start
                .find('}')
                .ok_or_else(|| format!("unterminated ${{...}} in {s:?}"))?;
            let inner = &inner_start[..end];
            let reference = inner.strip_prefix("env:").unwrap_or(inner);
            if let Some((scheme, _)) = inner.split_once(':')
                && scheme != "env"
                && !inner.contains(":-")
            {
                return Err(format!(
                    "unsupported config provider \"{scheme}\" in ${{{inner}}}: weft supports only env"
                ));
            }
            let (name, default) = match reference.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "invalid environment variable name {name:?} in {s:?}"
                ));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => warnings.push(format!(
                    "environment variable {name} is not set; using \"\""
                )),
            }
            rest = &inner_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, warnings))
}

/// Substitutes in every string scalar of the tree.
pub fn substitute_tree(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    walk(node, lookup, &mut errors, "");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn walk(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    path: &str,
) {
    match &mut node.value {
        Value::Str(s) if s.contains('$') => {
            let whole_ref = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
            match substitute(s, lookup) {
                Ok((v, warnings)) => {
                    for w in warnings {
                        tracing::warn!("{}:{}: {}: {}", node.pos.file, node.pos.line, path, w);
                    }
                    node.value = if whole_ref {
                        plain_scalar(&v)
                    } else {
                        Value::Str(v)
                    };
                    if whole_ref && matches!(node.value, Value::Null) {
                        node.value = Value::Str(String::new());
                    }
                }
                Err(message) => errors.push(ConfigError {
                    file: node.pos.file.to_string(),
                    line: node.pos.line,
                    path: path.to_string(),
                    message,
                    suggestion: None,
                }),
            }
        }
        Value::Seq(items) => {
            for (i, n) in items.iter_mut().enumerate() {
                walk(n, lookup, errors, &format!("{path}.{i}"));
            }
        }
        Value::Map(entries) => {
            for (k, _, n) in entries.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(n, lookup, errors, &p);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("collector".into()),
            "PORT" => Some("4317".into()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            substitute("${env:HOST}:${PORT}", &env).unwrap().0,
            "collector:4317"
        );
        assert_eq!(
            substitute("${env:NOPE:-fallback}", &env).unwrap().0,
            "fallback"
        );
        assert_eq!(substitute("a$$b", &env).unwrap().0, "a$b");
        let (v, w) = substitute("x${env:NOPE}y", &env).unwrap();
        assert_eq!(v, "xy");
        assert_eq!(w.len(), 1);
        assert!(
            substitute("${file:/etc/x}", &env)
                .unwrap_err()
                .contains("file")
        );
        assert!(substitute("${env:HOST", &env).is_err());
    }

    #[test]
    fn whole_reference_is_retyped() {
        let mut n =
            super::super::yaml::parse("t", "port: ${env:PORT}\nhost: x${env:PORT}\n").unwrap();
        substitute_tree(&mut n, &env).unwrap();
        assert_eq!(n.get("port").unwrap().value, Value::Int(4317));
        assert_eq!(n.get("host").unwrap().value, Value::Str("x4317".into()));
    }
}
