//! Chaos Toolkit's `${name}` substitution, rewritten into chaosctl's `${NAME}`.
//!
//! Chaos Toolkit fills `${name}` (and `$name`; `$$` is a `$`) from the experiment's
//! `configuration`, then from its secrets (every scope's keys), and leaves unknown names as they
//! are. chaosctl's files take `${NAME}` from `--var NAME=VALUE` or the environment, with
//! `${NAME:-default}` for a default. So each name becomes the variable that gives the same value
//! where the run happens:
//!
//! - a configuration value `name: V` becomes `${name:-V}`: the same value, and `--var name=...`
//!   overrides it as `chaos run --var name=...` did;
//! - `name: {type: env, key: KEY, default: D}` becomes `${KEY:-D}` (or `${KEY}`), read from the
//!   environment at run time as Chaos Toolkit read it;
//! - a secret from the environment becomes `${KEY}`; any other secret becomes `${name}`, to pass
//!   with `--var`: a secret's value is never written into the scenario.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// What a Chaos Toolkit name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A configuration value, written as the variable's default.
    Value(String),
    /// An environment variable, with Chaos Toolkit's default if it had one.
    Env {
        key: String,
        default: Option<String>,
    },
    /// A secret whose value stays out of the file: `--var NAME=VALUE` at run time.
    Withheld,
    /// Nothing a file can say (a value computed by a probe, a mapping): why.
    Unusable(String),
}

/// Where a name came from, for the file's comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Configuration,
    Secret { scope: String },
}

/// Every name an experiment defines, configuration first (Chaos Toolkit's order).
#[derive(Debug, Default)]
pub struct Names {
    pub bindings: BTreeMap<String, (Binding, Origin)>,
}

/// One piece of a rewritten string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Var {
        name: String,
        default: Option<String>,
    },
}

/// A rewritten string: its pieces, and the Chaos Toolkit names it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub segments: Vec<Segment>,
    pub used: BTreeSet<String>,
}

impl Names {
    pub fn new(
        configuration: &BTreeMap<String, Value>,
        secrets: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Names {
        let mut bindings = BTreeMap::new();
        for (scope, keys) in secrets {
            for (name, value) in keys {
                // The first scope holding a name wins, as in Chaos Toolkit's lookup.
                bindings.entry(name.clone()).or_insert_with(|| {
                    let binding = match value.get("type").and_then(Value::as_str) {
                        Some("env") => match value.get("key").and_then(Value::as_str) {
                            Some(key) => Binding::Env {
                                key: key.to_string(),
                                default: None,
                            },
                            None => Binding::Unusable("an `env` secret without a `key`".into()),
                        },
                        _ => Binding::Withheld,
                    };
                    (
                        binding,
                        Origin::Secret {
                            scope: scope.clone(),
                        },
                    )
                });
            }
        }
        for (name, value) in configuration {
            bindings.insert(
                name.clone(),
                (configuration_binding(value), Origin::Configuration),
            );
        }
        Names { bindings }
    }

    /// Rewrites one string Chaos Toolkit substitutes into; an error says why it cannot be.
    pub fn translate(&self, text: &str) -> Result<Translated, String> {
        let mut segments: Vec<Segment> = Vec::new();
        let mut used = BTreeSet::new();
        let push_text = |segments: &mut Vec<Segment>, s: &str| match segments.last_mut() {
            Some(Segment::Text(t)) => t.push_str(s),
            _ => segments.push(Segment::Text(s.to_string())),
        };
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            push_text(&mut segments, &rest[..at]);
            let after = &rest[at + 1..];
            let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(close) if is_identifier(&braced[..close]) => {
                        (Some(&braced[..close]), close + 2)
                    }
                    _ => (None, 0),
                }
            } else if let Some(after_escape) = after.strip_prefix('$') {
                push_text(&mut segments, "$");
                rest = after_escape;
                continue;
            } else {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                if len > 0 && is_identifier(&after[..len]) {
                    (Some(&after[..len]), len)
                } else {
                    (None, 0)
                }
            };
            let binding = name.and_then(|n| self.bindings.get(n).map(|(b, _)| (n, b)));
            match binding {
                None => {
                    // Unknown to the experiment: Chaos Toolkit leaves it as written.
                    push_text(&mut segments, &rest[at..at + 1 + consumed]);
                    rest = &after[consumed..];
                    continue;
                }
                Some((name, binding)) => {
                    used.insert(name.to_string());
                    match binding {
                        Binding::Value(value) if is_identifier(name) && !value.contains('}') => {
                            segments.push(Segment::Var {
                                name: name.to_string(),
                                default: Some(value.clone()),
                            })
                        }
                        Binding::Value(value) => push_text(&mut segments, value),
                        Binding::Env { key, default } => {
                            if !is_identifier(key) {
                                return Err(format!(
                                    "`${{{name}}}` is the environment variable `{key}`, a name a scenario's `${{NAME}}` cannot spell"
                                ));
                            }
                            if default.as_deref().is_some_and(|d| d.contains('}')) {
                                return Err(format!(
                                    "`${{{name}}}` has a default with `}}`, which `${{{key}:-...}}` cannot hold"
                                ));
                            }
                            segments.push(Segment::Var {
                                name: key.clone(),
                                default: default.clone(),
                            });
                        }
                        Binding::Withheld => segments.push(Segment::Var {
                            name: name.to_string(),
                            default: None,
                        }),
                        Binding::Unusable(why) => {
                            return Err(format!("it uses `${{{name}}}`, {why}"));
                        }
                    }
                    rest = &after[consumed..];
                }
            }
        }
        push_text(&mut segments, rest);
        // `$` right before `${NAME}` has no spelling in a scenario (`$${` is a literal `${`).
        for pair in segments.windows(2) {
            if let [Segment::Text(t), Segment::Var { .. }] = pair
                && t.ends_with('$')
            {
                return Err(format!(
                    "`{text}` has a `$` right before a substitution, which a scenario cannot write"
                ));
            }
        }
        Ok(Translated { segments, used })
    }
}

impl Translated {
    /// The string as a scenario writes it, with `escape` applied to the literal text and defaults
    /// (a query's percent-encoding, a JSON string's escapes) and `${` kept literal.
    pub fn render(&self, escape: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(&literal(&escape(text))),
                Segment::Var { name, default } => match default {
                    Some(default) => out.push_str(&format!("${{{name}:-{}}}", escape(default))),
                    None => out.push_str(&format!("${{{name}}}")),
                },
            }
        }
        out
    }

    /// The value a run gets when no variable is set: every default, and `""` for the rest. The
    /// mapper checks regexes on it.
    pub fn with_defaults(&self) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Text(text) => text.as_str(),
                Segment::Var { default, .. } => default.as_deref().unwrap_or(""),
            })
            .collect()
    }

    /// The variables a run must be given (no default).
    pub fn required(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var {
                name,
                default: None,
            } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// Text a scenario must keep as it is: `${` is written `$${`.
pub fn literal(text: &str) -> String {
    text.replace("${", "$${")
}

/// Python's `str()` of a scalar, as Chaos Toolkit puts a value into a string or command line.
pub fn python_str(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Null => Some("None".into()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn configuration_binding(value: &Value) -> Binding {
    match value {
        Value::Object(map) => match map.get("type").and_then(Value::as_str) {
            Some("env") => match map.get("key").and_then(Value::as_str) {
                Some(key) => Binding::Env {
                    key: key.to_string(),
                    default: map.get("default").and_then(python_str),
                },
                None => Binding::Unusable("an `env` configuration value without a `key`".into()),
            },
            Some("probe") => Binding::Unusable(
                "a configuration value computed by a probe when the experiment starts".into(),
            ),
            _ => Binding::Unusable("a configuration value that is a mapping, not a string".into()),
        },
        Value::Array(_) => {
            Binding::Unusable("a configuration value that is a list, not a string".into())
        }
        scalar => Binding::Value(python_str(scalar).unwrap_or_default()),
    }
}

/// Python's `string.Template` identifier, which is also a scenario's variable name.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Names {
        let configuration = serde_json::from_value(json!({
            "base_url": "http://127.0.0.1:8080",
            "port": 8080,
            "host": {"type": "env", "key": "SERVICE_HOST", "default": "localhost"},
            "region": {"type": "env", "key": "AWS_REGION"},
            "dynamic": {"type": "probe", "name": "p", "provider": {"type": "python", "module": "m", "func": "f"}},
            "braces": "a}b",
        }))
        .unwrap();
        let secrets = serde_json::from_value(json!({
            "auth": {"token": {"type": "env", "key": "API_TOKEN"}, "password": "hunter2"},
            "other": {"token": "shadowed", "vaulted": {"type": "vault", "path": "secret/x", "key": "k"}},
        }))
        .unwrap();
        Names::new(&configuration, &secrets)
    }

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = names()
            .translate(input)
            .map(|t| t.render(|s| s.to_string()));
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
            (Err(err), Err(fragment)) => assert!(err.contains(fragment), "{input}: {err}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn names_become_variables_that_give_the_same_value() {
        check("plain", Ok("plain"));
        check(
            "${base_url}/health",
            Ok("${base_url:-http://127.0.0.1:8080}/health"),
        );
        check("$base_url/x", Ok("${base_url:-http://127.0.0.1:8080}/x"));
        check("port=${port}", Ok("port=${port:-8080}"));
        check("${host}", Ok("${SERVICE_HOST:-localhost}"));
        check("${region}", Ok("${AWS_REGION}"));
        check("Bearer ${token}", Ok("Bearer ${API_TOKEN}"));
        check("${password}", Ok("${password}"));
        check("${vaulted}", Ok("${vaulted}"));
        check("${braces}", Ok("a}b"));
    }

    #[test]
    fn what_chaos_toolkit_leaves_alone_stays_literal() {
        check("${unknown} and $other", Ok("$${unknown} and $other"));
        check("cost $$5", Ok("cost $5"));
        check("$${base_url}", Ok("$${base_url}"));
        check("a $ b ${not-a-name}", Ok("a $ b $${not-a-name}"));
        check("ends with $", Ok("ends with $"));
    }

    #[test]
    fn what_a_file_cannot_say_is_refused_with_why() {
        check("${dynamic}", Err("computed by a probe"));
        check("$$${port}", Err("right before a substitution"));
    }

    #[test]
    fn secrets_never_appear_and_uses_are_recorded() {
        let t = names().translate("${password} ${token} ${port}").unwrap();
        let text = t.render(|s| s.to_string());
        assert!(
            !text.contains("hunter2") && !text.contains("shadowed"),
            "{text}"
        );
        assert_eq!(
            t.used.iter().map(String::as_str).collect::<Vec<_>>(),
            ["password", "port", "token"]
        );
        assert_eq!(t.required().collect::<Vec<_>>(), ["password", "API_TOKEN"]);
        assert_eq!(t.with_defaults(), "  8080");
    }
}
