//! The scenario's text: YAML whose comments say where each entry came from, what was not
//! imported and why, and how the experiment's configuration and secrets are given now.

use std::fmt::Write as _;

use super::mapper::{Http, Imported, Item, ProbeKind, Run, StepKind, Unmapped};

/// The scenario file for `imported`, read from `source` (named in the header).
pub fn scenario(imported: &Imported, source: &str) -> String {
    let mut out = String::new();
    let w = &mut out;
    line(
        w,
        0,
        &format!("Imported by `chaosctl import chaostoolkit` from {source}."),
    );
    if !imported.unmapped.is_empty() {
        line(w, 0, "");
        line(
            w,
            0,
            &format!(
                "Not imported ({}): write each as a chaosctl fault, probe or command, or leave it out.",
                imported.unmapped.len()
            ),
        );
        for u in &imported.unmapped {
            line(w, 0, &format!("  - {u}"));
        }
    }
    if !imported.variables.is_empty() {
        line(w, 0, "");
        line(
            w,
            0,
            "Configuration and secrets (no secret's value is in this file):",
        );
        for v in &imported.variables {
            line(w, 0, &format!("  - {v}"));
        }
    }
    line(w, 0, "");
    line(w, 0, "What runs differently from Chaos Toolkit:");
    line(
        w,
        0,
        "  - the hypothesis is sampled every second from before the first step to after the last \
         (a window of 5 s must pass), and must hold again within 30 s after each step, not only \
         once before and once after the method;",
    );
    line(
        w,
        0,
        "  - the teardown (the rollbacks) runs once at the end, whatever happened.",
    );
    for note in &imported.notes {
        line(w, 0, &format!("  - {note}"));
    }
    out.push_str("\nversion: 1\n");
    let _ = writeln!(out, "name: {}", quote(&imported.name));
    if let Some(d) = &imported.description {
        let _ = writeln!(out, "description: {}", quote(d));
    }
    if !imported.tags.is_empty() {
        let tags: Vec<String> = imported.tags.iter().map(|t| quote(t)).collect();
        let _ = writeln!(out, "tags: [{}]", tags.join(", "));
    }

    out.push('\n');
    if let Some(title) = &imported.hypothesis_title {
        line(
            &mut out,
            0,
            &format!("The steady-state hypothesis: {title}"),
        );
    }
    section(
        &mut out,
        "steady_state",
        &imported.steady_state,
        |out, p| {
            comments(out, &p.source, &p.notes);
            let _ = writeln!(out, "  - name: {}", quote(&p.name));
            match &p.kind {
                ProbeKind::Http(http) => http_probe(out, http),
                ProbeKind::Command {
                    run,
                    timeout,
                    exit,
                    stdout_matches,
                } => {
                    let _ = writeln!(
                        out,
                        "    command: {{run: {}, timeout: {}}}",
                        run_text(run),
                        chaosd::scenario::format_duration(*timeout)
                    );
                    let mut expect = vec![format!("exit: {exit}")];
                    if let Some(m) = stdout_matches {
                        expect.push(format!("stdout_matches: {}", quote(m)));
                    }
                    let _ = writeln!(out, "    expect: {{{}}}", expect.join(", "));
                }
            }
        },
    );

    out.push('\n');
    section(&mut out, "steps", &imported.steps, |out, s| {
        comments(out, &s.source, &s.notes);
        let _ = writeln!(out, "  - name: {}", quote(&s.name));
        match &s.kind {
            StepKind::Action { run, timeout } => {
                let mut keys = vec![format!("run: {}", run_text(run))];
                if let Some(t) = timeout {
                    keys.push(format!(
                        "timeout: {}",
                        chaosd::scenario::format_duration(*t)
                    ));
                }
                let _ = writeln!(out, "    action: {{{}}}", keys.join(", "));
            }
            StepKind::Manual { prompt } => {
                let _ = writeln!(out, "    manual: {{prompt: {}}}", quote(prompt));
            }
        }
    });

    if !imported.teardown.is_empty() {
        out.push('\n');
        section(&mut out, "teardown", &imported.teardown, |out, t| {
            comments(out, &t.source, &t.notes);
            let _ = writeln!(out, "  - name: {}", quote(&t.name));
            let _ = writeln!(out, "    run: {}", run_text(&t.run));
        });
    }
    out
}

/// A list under `key`: its entries, and a comment where each one not imported was. A list with
/// no entry left is written as comments alone (the key is optional, but for `steps`, which the
/// mapper never leaves empty).
fn section<T>(out: &mut String, key: &str, items: &[Item<T>], entry: impl Fn(&mut String, &T)) {
    let any = items.iter().any(|i| matches!(i, Item::Mapped(_)));
    if any {
        let _ = writeln!(out, "{key}:");
    } else if !items.is_empty() {
        line(out, 0, &format!("{key}: nothing imported"));
    }
    for item in items {
        match item {
            Item::Mapped(t) => entry(out, t),
            Item::Skipped(u) => skipped(out, u),
        }
    }
}

fn http_probe(out: &mut String, http: &Http) {
    let mut keys = vec![format!("url: {}", quote(&http.url))];
    if http.method != "GET" {
        keys.push(format!("method: {}", quote(&http.method)));
    }
    if !http.headers.is_empty() {
        let headers: Vec<String> = http
            .headers
            .iter()
            .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
            .collect();
        keys.push(format!("headers: {{{}}}", headers.join(", ")));
    }
    if let Some(body) = &http.body {
        keys.push(format!("body: {}", quote(body)));
    }
    keys.push(format!(
        "timeout: {}",
        chaosd::scenario::format_duration(http.timeout)
    ));
    let _ = writeln!(out, "    http: {{{}}}", keys.join(", "));
    let mut expect = Vec::new();
    match http.status.as_slice() {
        [] => {}
        [one] => expect.push(format!("status: {one}")),
        many => expect.push(format!("status: [{}]", many.join(", "))),
    }
    if let Some(m) = &http.body_matches {
        expect.push(format!("body_matches: {}", quote(m)));
    }
    if !expect.is_empty() {
        let _ = writeln!(out, "    expect: {{{}}}", expect.join(", "));
    }
}

fn comments(out: &mut String, source: &str, notes: &[String]) {
    line(out, 2, &format!("From {source}."));
    for note in notes {
        line(out, 2, &format!("Note: {note}."));
    }
}

fn skipped(out: &mut String, u: &Unmapped) {
    line(out, 2, &format!("Not imported: {u}."));
}

/// A comment line, kept on one line whatever the text holds.
fn line(out: &mut String, indent: usize, text: &str) {
    let text = text.replace(['\n', '\r'], " ");
    let pad = " ".repeat(indent);
    if text.is_empty() {
        let _ = writeln!(out, "{pad}#");
    } else {
        let _ = writeln!(out, "{pad}# {text}");
    }
}

fn run_text(run: &Run) -> String {
    match run {
        Run::Shell(script) => quote(script),
        Run::Argv(argv) => {
            let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
            format!("[{}]", words.join(", "))
        }
    }
}

/// A YAML double-quoted string (JSON's, which YAML reads the same). The text is already in the
/// scenario's syntax: `${NAME}` is meant, `$${` is literal.
fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}
