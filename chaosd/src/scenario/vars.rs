//! `${NAME}` substitution in string values.
//!
//! - `${NAME}` is replaced by `--var NAME=VALUE` or, failing that, the environment variable
//!   NAME; an unknown NAME is an error.
//! - `${NAME:-default}` (an extension of spec v1) uses `default` when NAME is set nowhere.
//! - `$${` is a literal `${`; any other `$` is kept as it is.
//!
//! Substitution runs on each string scalar before it is parsed as a duration, share and so on,
//! so `duration: ${D}` works.

/// A `${...}` that could not be substituted: `offset` is the byte offset of its `$` in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub offset: usize,
    pub message: String,
    pub help: Option<String>,
}

/// Replaces every `${NAME}` in `text` with `lookup(NAME)`.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, VarError> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = text[i..].find('$') {
        let at = i + found;
        out.push_str(&text[i..at]);
        let rest = &text[at..];
        if rest.starts_with("$${") {
            out.push_str("${");
            i = at + 3;
        } else if rest.starts_with("${") {
            let Some(close) = rest.find('}') else {
                return Err(VarError {
                    offset: at,
                    message: "unclosed `${`".into(),
                    help: Some("write `${NAME}`, or `$${` for a literal `${`".into()),
                });
            };
            let inner = &rest[2..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_name(name) {
                return Err(VarError {
                    offset: at,
                    message: format!("invalid variable name `{name}`"),
                    help: Some(
                        "a name is letters, digits and `_`, not starting with a digit".into(),
                    ),
                });
            }
            match lookup(name).or_else(|| default.map(str::to_string)) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(VarError {
                        offset: at,
                        message: format!("unknown variable `{name}`"),
                        help: Some(format!(
                            "pass `--var {name}=VALUE`, set the environment variable `{name}`, or write `${{{name}:-DEFAULT}}`"
                        )),
                    });
                }
            }
            i = at + close + 1;
        } else {
            out.push('$');
            i = at + 1;
        }
    }
    out.push_str(&text[i..]);
    Ok(out)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, (usize, &str)>) {
        let lookup = |name: &str| match name {
            "D" => Some("15s".to_string()),
            "HOST" => Some("api-1".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        match (substitute(input, lookup), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
            (Err(err), Err((offset, fragment))) => {
                assert_eq!(err.offset, offset, "{input}");
                assert!(err.message.contains(fragment), "{input}: {}", err.message);
            }
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn substitution() {
        check("plain", Ok("plain"));
        check("${D}", Ok("15s"));
        check("on ${HOST} for ${D}", Ok("on api-1 for 15s"));
        check("${EMPTY}x", Ok("x"));
        check("${NOPE:-30s}", Ok("30s"));
        check("${D:-30s}", Ok("15s"));
        check("${NOPE:-}", Ok(""));
        check("$${D}", Ok("${D}"));
        check("cost $5 and $", Ok("cost $5 and $"));
        check("a ${NOPE}", Err((2, "unknown variable `NOPE`")));
        check("${D", Err((0, "unclosed")));
        check("x${1A}", Err((1, "invalid variable name `1A`")));
    }
}
