//! `chaosctl init --url URL --process NAME`: a commented starting scenario for a service, that
//! validates and runs as written: an http probe of the URL and a process probe of the name as the
//! hypothesis, one step that kills one of those processes, and objectives. Its comments say what
//! each key means and what to try next, so that a first game day starts from a file that works.

use std::path::Path;

use anyhow::anyhow;

use super::{EXIT_OK, Failure};

pub fn run(url: &str, process: &str, output: Option<&Path>, force: bool) -> Result<u8, Failure> {
    check_url(url).map_err(Failure::Invalid)?;
    if process.trim().is_empty() || process.contains('/') || process.contains('\0') {
        return Err(Failure::Invalid(anyhow!(
            "chaosctl: --process `{process}` is not a process name: give the name `ps -o comm` or \
             `/proc/PID/comm` shows (or the executable's file name), e.g. `nginx`"
        )));
    }
    let file = output.map_or("game-day.yaml".to_string(), |p| p.display().to_string());
    let text = scenario(url, process, &file);
    // The file is promised to validate: a template this command cannot load is our bug, caught
    // before anything is written.
    chaosd::scenario::load_str(Path::new(&file), &text, &Default::default())
        .map_err(|err| anyhow!("the scenario init wrote does not validate (a bug): {err}"))?;
    let Some(path) = output else {
        out!("{text}");
        return Ok(EXIT_OK);
    };
    super::write_new(path, &text, force)?;
    errln!(
        "chaosctl: wrote {file}; read its comments, then: `chaosctl validate {file}`, \
         `chaosctl plan {file}`, `chaosctl run {file}`"
    );
    Ok(EXIT_OK)
}

/// An http:// or https:// URL with a host.
fn check_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            anyhow!("chaosctl: --url `{url}` is not an http:// or https:// URL, e.g. `http://127.0.0.1:8080/health`")
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(anyhow!(
            "chaosctl: --url `{url}` has no host or has spaces, e.g. `http://127.0.0.1:8080/health`"
        ));
    }
    Ok(())
}

/// A YAML double-quoted string (JSON's, which YAML reads the same), with `${` kept literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(&text.replace("${", "$${")).expect("a string serializes")
}

/// `backend-a`, from a process name: a scenario name that reads well in `chaosctl runs`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        "service".into()
    } else {
        out.into()
    }
}

/// The scenario's text; `file` is the name its comments use in commands.
pub fn scenario(url: &str, process: &str, file: &str) -> String {
    let u = quoted(url);
    let p = quoted(process);
    let slug = slug(process);
    // The description is a plain YAML scalar: keep it to characters that need no quoting.
    let plain: String = process
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    format!(
        r#"# A first game day for the service at {url}, written by `chaosctl init`.
#
# The question it asks: when one `{process}` process dies, does the service keep answering, and
# how long are its users without it? Read each comment, change what does not fit your service,
# then:
#
#   chaosctl validate {file}    # checks the file; touches nothing
#   chaosctl plan {file}        # what a run would do and how long it takes; injects nothing
#   chaosctl run {file}         # the game day: check, kill, watch, revert, report
#
# A run reverts whatever it injected however it ends (a kill has nothing to revert), and writes
# a report folder (report.html, report.md, report.json) to review with your team.
version: 1
name: {slug}-kill-one
description: Kill one {plain} process; the service must keep answering and be back within 10s.

# The steady-state hypothesis: what "healthy" means, as probes that must all hold. It is checked
# for one window before anything is injected (when it does not hold, nothing is: verdict
# `not_steady`), sampled without a gap through the step, and must hold again within the step's
# `recover_within`.
steady_state:
  - name: service answers
    # One GET at a time; a sample passes on a 2xx answer within 500 ms.
    http: {{url: {u}, timeout: 1s}}
    expect: {{status: 2xx, max_latency: 500ms}}
    every: 250ms          # one sample every 250 ms,
    window: 1s            # a window is the last 4 samples,
    tolerance: 100%       # and all of them must pass for it to hold.
  - name: {slug} processes up
    # Processes of that name run on this machine: `name` is the kernel's process name (as
    # /proc/PID/comm shows it) or the executable's file name. Raise `min` to how many your
    # service runs, and the hypothesis says "and all of them are back".
    process: {{name: {p}}}
    expect: {{min: 1}}
    every: 250ms
    window: 1s
  # Users do not wait for each other: an open-loop `load` probe sends requests at a fixed rate
  # whatever the answers, so a failover that fails 10 requests in a second shows 10 failures, not
  # the one sample an `http` probe would. Uncomment it once the file runs as it is (and mind the
  # extra traffic on a service people use):
  # - name: users get answers
  #   load: {{url: {u}, rate: 20/s, timeout: 1s}}
  #   expect: {{status: 2xx}}
  #   every: 1s            # one sample = one second of traffic = 20 requests
  #   window: 1s
  #   tolerance: 95%       # 95% of each second's requests must succeed

steps:
  - name: kill one {slug} process
    target: local         # this machine; with `hosts:` (or --inventory), a host or target of them
    # SIGKILL one matching process, drawn with the seed below (`pick: all` kills every one).
    fault: {{kill: {{process: {{name: {p}}}, signal: SIGKILL, pick: 1}}}}
    duration: 5s          # for a kill: how long to watch after it before the after-check
    recover_within: 10s   # the hypothesis must hold again within 10 s of the kill

# What users may go through in a step, judged per probe: a miss makes the step `deviated` (exit
# 1) even when the hypothesis held again in time. `max_outage: 5s` reads "never failing for more
# than 5 s in one stretch"; `max_failed: 1%` (of the samples, or of a load probe's requests) is
# the next promise to make, once the report has shown you your figures. Objectives judge every
# steady-state probe, the process probe too, which fails by design while the killed process is
# gone: when the promise is about users alone, leave that probe out.
objectives:
  max_outage: 5s

settings:
  seed: 1                 # picks are drawn with it: a rerun kills the same pick; the report records it

# What to try next, one change at a time; `chaosctl diff RUN_A RUN_B` puts two runs side by side:
# - `pick: all`: every process at once. Does something (systemd, a supervisor) bring them back
#   within `recover_within`?
# - the `load` probe above, to count failed requests rather than failed samples;
# - `fault: {{pause: {{process: {{name: {p}}}}}}}` with `duration: 5s`: a hung process rather than a
#   dead one, which health checks often miss;
# - `guardrails:` (probes with the same keys): a check that aborts the run at once when it breaks,
#   for game days on systems people use.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_validates_with_what_was_asked() {
        let text = scenario("http://127.0.0.1:8080/health", "backend-a", "g.yaml");
        let s = chaosd::scenario::load_str(Path::new("g.yaml"), &text, &Default::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.name, "backend-a-kill-one");
        assert_eq!(s.steady_state.len(), 2);
        assert_eq!(s.steps.len(), 1);
        assert!(chaosd::scenario::lint::warnings(&s).is_empty());
        assert!(text.contains("http: {url: \"http://127.0.0.1:8080/health\", timeout: 1s}"));
        assert!(
            text.contains(
                "fault: {kill: {process: {name: \"backend-a\"}, signal: SIGKILL, pick: 1}}"
            )
        );
        assert!(text.contains(
            "  # - name: users get answers\n  #   load: {url: \"http://127.0.0.1:8080/health\""
        ));
        assert!(text.contains("chaosctl plan g.yaml"));
    }

    #[test]
    fn odd_names_and_urls_stay_literal() {
        let text = scenario("http://h:1/a?b=${X}&c=\"d\"", "my proc: #1", "g.yaml");
        let s = chaosd::scenario::load_str(Path::new("g.yaml"), &text, &Default::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.name, "my-proc-1-kill-one");
        assert!(
            text.contains(r#"url: "http://h:1/a?b=$${X}&c=\"d\"""#),
            "{text}"
        );
        assert!(text.contains(r#"name: "my proc: #1""#), "{text}");
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(check_url("http://127.0.0.1:8080/health").is_ok());
        assert!(check_url("https://api.example/").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://h/",
            "http://",
            "http:///x",
            "http://a b/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
