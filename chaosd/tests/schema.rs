//! The scenario format's JSON Schema: the checked-in copy is the one the parser's types give,
//! every scenario file of the repository matches it, and a misspelt key or a plainly wrong
//! value does not.

use std::path::{Path, PathBuf};

use chaosd::scenario::schema::{SCHEMA_PATH, scenario_schema_json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&scenario_schema_json()).unwrap();
    jsonschema::validator_for(&schema).expect("the generated schema is a valid JSON Schema")
}

/// The schema's complaints about a YAML document, one line each.
fn problems(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_saphyr::from_str(yaml).expect("the test's YAML parses");
    validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Every scenario and monkey file in the repository: `scenarios/` and the test data (not the
/// inventories, policies or service configurations, which are other formats).
fn scenario_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(path);
            }
        }
    }
    let root = repo_root();
    let mut found = Vec::new();
    walk(&root.join("scenarios"), &mut found);
    walk(&root.join("chaosd/tests/data/scenario"), &mut found);
    found.sort();
    found
}

#[test]
fn the_checked_in_schema_is_the_one_the_parser_gives() {
    let path = repo_root().join(SCHEMA_PATH);
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        checked_in == scenario_schema_json(),
        "{SCHEMA_PATH} is stale: the scenario types changed. Regenerate it with \
         `cargo run -p chaosctl --bin chaosctl -- schema > {SCHEMA_PATH}` and commit it"
    );
}

#[test]
fn every_scenario_file_in_the_repository_matches_the_schema() {
    let validator = validator();
    let files = scenario_files();
    assert!(files.len() >= 10, "found only {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let found = problems(&validator, &text);
        assert!(
            found.is_empty(),
            "{} does not match the schema:\n{}",
            file.display(),
            found.join("\n")
        );
    }
}

#[test]
fn a_misspelt_key_fails_where_it_is() {
    let validator = validator();
    let quickstart =
        std::fs::read_to_string(repo_root().join("scenarios/quickstart.yaml")).unwrap();
    assert!(problems(&validator, &quickstart).is_empty());

    for (right, wrong, at) in [
        ("\nsteps:", "\nstep:", ""),
        ("duration:", "duraton:", "/steps/0"),
        ("kill:", "kil:", "/steps/0/fault"),
    ] {
        assert!(quickstart.contains(right), "quickstart has no `{right}`");
        let misspelt = quickstart.replacen(right, wrong, 1);
        let found = problems(&validator, &misspelt);
        let key = wrong.trim().trim_end_matches(':');
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(&format!("{at}:")) && p.contains(key)),
            "`{key}` at `{at}` was not reported: {found:?}"
        );
    }
}

#[test]
fn plainly_wrong_values_fail_and_variables_pass() {
    let validator = validator();
    let with = |settings: &str| format!("version: 1\nname: t\nsettings:\n{settings}\n");
    for wrong in [
        "  every: 30",      // a duration without a unit
        "  every: soon",    // not a duration
        "  max_hosts: -1",  // not a count
        "  max_hosts: [1]", // not a single value
    ] {
        assert!(
            !problems(&validator, &with(wrong)).is_empty(),
            "`{wrong}` passed the schema"
        );
    }
    for right in [
        "  every: 500ms",
        "  every: 1m30s",
        "  every: ${EVERY}",
        "  every: ${EVERY:-30s}",
        "  max_hosts: 3",
        "  max_hosts: \"3\"",
        "  max_hosts: ${HOSTS}",
    ] {
        let found = problems(&validator, &with(right));
        assert!(found.is_empty(), "`{right}` failed the schema: {found:?}");
    }
}

#[test]
fn bandwidth_rates_are_checked_by_the_schema() {
    let validator = validator();
    let with = |rate: &str| {
        format!(
            "version: 1\nname: t\nsteps:\n  - name: s\n    duration: 1s\n    fault: {{bandwidth: {{rate: \"{rate}\"}}}}\n"
        )
    };
    for wrong in ["10", "1mbps", "fast", "10mb/s"] {
        assert!(
            !problems(&validator, &with(wrong)).is_empty(),
            "rate `{wrong}` passed the schema"
        );
    }
    for right in [
        "1mbit", "500kbit", "2.5Gbit", "10MB/s", "512KiB/s", "${RATE}",
    ] {
        let found = problems(&validator, &with(right));
        assert!(
            found.is_empty(),
            "rate `{right}` failed the schema: {found:?}"
        );
    }
}
