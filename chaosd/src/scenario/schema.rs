//! The JSON Schema of the scenario format, for editors (yaml-language-server, VS Code's YAML
//! extension): derived from the parser's own [`raw`](super::raw) types, so a key the parser
//! knows is a key the schema knows, and `deny_unknown_fields` becomes `additionalProperties:
//! false`. Checked in at `schema/scenario.schema.json`; `chaosctl schema` prints it.
//!
//! The raw types keep every leaf as the text written (so that `${NAME}` can be substituted before
//! a value is parsed); the markers below say what that text must look like, for the editor. They
//! accept everything `validate` accepts (a `${NAME}` anywhere stands for any value): the schema
//! catches misspelt keys, misplaced sections and plainly wrong values, and `chaosctl validate`
//! stays the judge of the rest.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::raw::FileRaw;

/// Where the schema lives in the repository, relative to its root.
pub const SCHEMA_PATH: &str = "schema/scenario.schema.json";

/// The scenario format's schema as pretty JSON, ending in a newline (the checked-in file).
pub fn scenario_schema_json() -> String {
    let mut schema = schemars::schema_for!(FileRaw);
    schema.insert("title".into(), "chaos scenario (format v1)".into());
    schema.insert(
        "description".into(),
        "A game day: hosts, probes of the steady state, and steps that inject faults. \
         `chaosctl validate FILE` checks what a schema cannot (values, names, limits)."
            .into(),
    );
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}

/// A pattern that a value holding a `${NAME}` variable matches: it is checked after
/// substitution, not here.
const VARIABLE: &str = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}";

fn with_variable(description: &str, value: Schema) -> Schema {
    json_schema!({
        "description": description,
        "anyOf": [value, { "type": "string", "pattern": VARIABLE }]
    })
}

/// Declares a marker type: never built, named in `#[schemars(with = "...")]` for its schema.
macro_rules! marker {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

marker! {
    /// Any single value: text, a number or a boolean, as written.
    Text => json_schema!({ "type": ["string", "number", "boolean"] })
}

marker! {
    /// `500ms`, `30s`, `1m30s`, `1.5h`: a number and a unit, always.
    Duration => with_variable(
        "A duration: a number and a unit (ns, us, ms, s, m, h, d), e.g. `500ms`, `30s`, `1m30s`.",
        json_schema!({
            "type": "string",
            "pattern": r"^\s*([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h|d))+\s*$"
        }),
    )
}

marker! {
    /// A whole number, written bare or quoted.
    Count => with_variable(
        "A whole number, 0 or more.",
        json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": r"^\s*[0-9]+\s*$" }
            ]
        }),
    )
}

marker! {
    /// `true` or `false`.
    Bool => with_variable(
        "`true` or `false`.",
        json_schema!({
            "anyOf": [
                { "type": "boolean" },
                { "type": "string", "enum": ["true", "false"] }
            ]
        }),
    )
}

marker! {
    /// A rate: `1mbit`, `500kbit` (bits), `10MB/s`, `512KiB/s` (bytes).
    Rate => with_variable(
        "A rate: a number and a unit, in bits (`bit`, `kbit`, `mbit`, `gbit`) or bytes per second (`B/s`, `kB/s`, `MB/s`, `GB/s`, `KiB/s`, `MiB/s`, `GiB/s`), e.g. `1mbit`, `10MB/s`.",
        json_schema!({
            "type": "string",
            "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgG]?[bB][iI][tT]|([kKMG]|[KMG]i)?B/s)\s*$"
        }),
    )
}

marker! {
    /// A `dns` answer: a word, or `{address: A}`.
    DnsAnswer => json_schema!({
        "description": "`nxdomain`, `servfail`, `refused`, `timeout` (no answer), or `{address: A}` (an IPv4 or IPv6 address).",
        "anyOf": [
            { "type": "string", "enum": ["nxdomain", "servfail", "refused", "timeout"] },
            { "type": "string", "pattern": VARIABLE },
            {
                "type": "object",
                "properties": { "address": { "type": "string" } },
                "required": ["address"],
                "additionalProperties": false
            }
        ]
    })
}

marker! {
    /// A share in percent: `95%`, `0.5%`.
    Share => with_variable(
        "A share in percent, from 0% to 100%, e.g. `95%` or `0.5%`.",
        json_schema!({ "type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$" }),
    )
}

marker! {
    /// One value or a list of them: `status: [200, 204]`; a command as a shell string or argv.
    TextOrList => json_schema!({
        "anyOf": [
            { "type": ["string", "number", "boolean"] },
            { "type": "array", "items": { "type": ["string", "number", "boolean"] } }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_closed_at_every_level() {
        let schema: serde_json::Value = serde_json::from_str(&scenario_schema_json()).unwrap();
        assert_eq!(schema["additionalProperties"], false);
        let defs = schema["$defs"]
            .as_object()
            .expect("the raw types are definitions");
        let sections: Vec<_> = defs
            .iter()
            .filter(|(_, def)| def["type"] == "object")
            .collect();
        assert!(sections.len() > 25, "{} sections", sections.len());
        for (name, def) in sections {
            assert_eq!(
                def["additionalProperties"], false,
                "{name} must refuse unknown keys"
            );
        }
    }
}
