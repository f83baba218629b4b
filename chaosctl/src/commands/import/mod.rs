//! `chaosctl import chaostoolkit EXPERIMENT [-o FILE] [--force] [--partial]`: a Chaos Toolkit
//! experiment as a scenario.
//!
//! [`chaostoolkit`] reads the experiment, [`mapper`] decides what becomes what (and what has no
//! equivalent), [`template`] rewrites Chaos Toolkit's `${name}` substitution into the scenario's
//! variables, and [`render`] writes the YAML with its comments. The text is then loaded with the
//! scenario parser before anything is written: an import that writes a file `chaosctl validate`
//! refuses is a bug, reported as one. What was not imported is listed in the file and on stderr,
//! and makes the exit code 5 unless `--partial`.

mod chaostoolkit;
mod mapper;
mod render;
mod template;

use std::path::Path;

use anyhow::anyhow;

use super::{EXIT_FAILED, EXIT_OK, Failure};

pub fn chaostoolkit(
    file: &Path,
    output: Option<&Path>,
    force: bool,
    partial: bool,
) -> Result<u8, Failure> {
    let text = read(file)?;
    let invalid = |err: String| Failure::Invalid(anyhow!("chaosctl: {}: {err}", file.display()));
    let experiment = chaostoolkit::parse(file, &text).map_err(invalid)?;
    let fallback = file
        .file_stem()
        .map_or("imported".into(), |s| s.to_string_lossy().into_owned());
    let imported = mapper::map(&experiment, &fallback).map_err(invalid)?;
    let scenario = render::scenario(&imported, &file.display().to_string());
    let shown = output.map_or("imported.yaml".into(), |p| p.display().to_string());
    check(&shown, &scenario, &imported.required)?;

    match output {
        None => out!("{scenario}"),
        Some(path) => super::write_new(path, &scenario, force)?,
    }
    for unmapped in &imported.unmapped {
        errln!("chaosctl: not imported: {unmapped}");
    }
    let needs: Vec<String> = imported
        .required
        .iter()
        .map(|v| format!("--var {v}=..."))
        .collect();
    let vars = if needs.is_empty() {
        String::new()
    } else {
        format!(" {}", needs.join(" "))
    };
    if output.is_some() {
        errln!(
            "chaosctl: wrote {shown}; read its comments, then: `chaosctl validate {shown}{vars}`, \
             `chaosctl plan {shown}{vars}`, `chaosctl run {shown}{vars}`"
        );
    }
    match imported.unmapped.len() {
        0 => Ok(EXIT_OK),
        _ if partial => Ok(EXIT_OK),
        n => {
            errln!(
                "chaosctl: {n} part{} of the experiment not imported (listed above and in the \
                 file); pass --partial to accept the scenario without {}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            );
            Ok(EXIT_FAILED)
        }
    }
}

fn read(file: &Path) -> Result<String, Failure> {
    let bytes = std::fs::read(file).map_err(|err| {
        Failure::Invalid(anyhow!("chaosctl: cannot read `{}`: {err}", file.display()))
    })?;
    if bytes.len() as u64 > chaosd::scenario::MAX_FILE_BYTES {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: `{}` is over {} MiB, more than an experiment may be; is it the right file?",
            file.display(),
            chaosd::scenario::MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    String::from_utf8(bytes).map_err(|err| {
        Failure::Invalid(anyhow!(
            "chaosctl: `{}` is not UTF-8 text: {err}",
            file.display()
        ))
    })
}

/// Loads the scenario as `chaosctl validate` would, with this environment. A variable the file
/// needs at run time (an environment variable without a default, a secret) may be unset here:
/// that, and only that, is not a failure.
fn check(
    shown: &str,
    scenario: &str,
    required: &std::collections::BTreeSet<String>,
) -> Result<(), Failure> {
    let Err(err) = chaosd::scenario::load_str(Path::new(shown), scenario, &Default::default())
    else {
        return Ok(());
    };
    let expected = |message: &str| {
        required
            .iter()
            .any(|v| message == format!("unknown variable `{v}`"))
    };
    if err.problems().iter().all(|p| expected(&p.message)) {
        return Ok(());
    }
    Err(Failure::Failed(anyhow!(
        "the scenario the import made does not validate (a bug; please report it with the experiment):\n{err}"
    )))
}
