//! Several chaosd instances on one PostgreSQL (`store:`), end to end: the built binaries on
//! 127.0.0.1, a PostgreSQL server of the test's own (`chaos_tests::postgres`), the API through
//! real HTTP. The scenarios hold no fault (a `manual` step waits), so a killed instance leaves
//! nothing injected behind.
//!
//! These tests wait on real processes and real time, so they measure time with
//! `std::time::Instant`.
#![allow(clippy::disallowed_types)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos_tests::eventually;
use chaos_tests::postgres::Postgres;
use serde_json::{Value, json};

mod common;

use common::{Reply, request};

const CHAOSD: &str = env!("CARGO_BIN_EXE_chaosd");
const TOKEN: &str = "cluster-token-0123456789";

/// A run that waits for an answer for up to a minute: nothing injected.
const WAITING: &str = r#"version: 1
name: waits
steps:
  - name: the room checks
    manual: {prompt: "All good?", timeout: 1m}
"#;

/// A run that ends by itself within half a second.
const QUICK: &str = r#"version: 1
name: quick
steps:
  - name: nobody answers
    manual: {prompt: "Anyone?", timeout: 300ms}
"#;

/// One chaosd instance on the shared store, with folders of its own.
struct Instance {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Instance {
    fn start(pg: &Postgres, node: &str) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix(&format!("chaosd-cluster-{node}-"))
            .tempdir()
            .expect("temp dir");
        let port = chaos_tests::support::free_port();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).expect("token");
        std::fs::write(
            dir.path().join("chaosd.yaml"),
            format!(
                "listen: 127.0.0.1:{port}\ntoken_file: token\nstate_dir: state\nreport_dir: reports\nstore: {}\nnode: {node}\n",
                pg.url()
            ),
        )
        .expect("config");
        let mut i = Instance {
            dir,
            port,
            child: None,
        };
        i.spawn();
        i
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("chaosd.log"))
            .expect("log");
        self.child = Some(
            Command::new(CHAOSD)
                .arg("--config")
                .arg(self.dir.path().join("chaosd.yaml"))
                .env("CHAOS_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start chaosd"),
        );
        eventually(Duration::from_secs(20), "chaosd answers /healthz", || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("chaosd exited {status:?}:\n{}", self.log());
            }
            request(self.port, "GET", "/healthz", None, None)
                .ok()
                .filter(|r| r.status == 200)
        });
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chaosd.log")).unwrap_or_default()
    }

    fn sigkill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        request(self.port, method, path, Some(TOKEN), body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nchaosd log:\n{}", self.log()))
    }

    fn status(&self) -> Value {
        self.call("GET", "/v1/status", None).json()
    }

    fn submit(&self, yaml: &str) -> Reply {
        self.call(
            "POST",
            "/v1/runs",
            Some(json!({"scenario": yaml, "file": "s.yaml"})),
        )
    }

    fn run_id(reply: &Reply) -> String {
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()["run_id"].as_str().expect("run_id").to_string()
    }

    fn verdict(&self, id: &str) -> String {
        let r = self.call("GET", &format!("/v1/runs/{id}"), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["run"]["verdict"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn waits(&self, id: &str) {
        eventually(
            Duration::from_secs(20),
            "the run waits for an answer",
            || {
                let r = self.call("GET", &format!("/v1/runs/{id}"), None);
                (r.json()["live"]["phase"] == "manual").then_some(())
            },
        );
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn leaders(instances: &[&Instance]) -> Vec<String> {
    instances
        .iter()
        .filter(|i| i.child.is_some())
        .map(|i| i.status())
        .filter(|s| s["leader"] == true)
        .map(|s| s["node"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn one_leader_fires_each_due_time_once_and_another_takes_over_within_10s_of_its_death() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let mut a = Instance::start(&pg, "alpha");
    let mut b = Instance::start(&pg, "beta");
    let first = eventually(Duration::from_secs(10), "one instance leads", || {
        let l = leaders(&[&a, &b]);
        (l.len() == 1).then(|| l[0].clone())
    });
    assert_eq!(a.status()["store"], "postgresql");
    let metrics = a.call("GET", "/metrics", None).body;
    assert!(
        metrics.contains("chaosd_leader{node=\"alpha\"}"),
        "{metrics}"
    );
    let (leader, follower) = if first == "alpha" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };

    // A schedule added through the follower is fired by the leader, every 2 s.
    let r = follower.call(
        "POST",
        "/v1/schedules",
        Some(json!({"scenario": QUICK, "file": "q.yaml", "cron": "*/2 * * * * *"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let schedule = r.json()["id"].as_str().unwrap().to_string();
    // A run of the leader's own, which its death interrupts.
    let doomed = Instance::run_id(&leader.submit(WAITING));
    leader.waits(&doomed);
    let fires = |pg: &Postgres| -> usize {
        pg.psql(&format!(
            "SELECT count(*) FROM schedule_fires WHERE schedule_id = '{schedule}'"
        ))
        .parse()
        .unwrap()
    };
    eventually(Duration::from_secs(15), "three due times fired", || {
        (fires(&pg) >= 3).then_some(())
    });

    leader.sigkill();
    let killed = Instant::now();
    let took_over = eventually(Duration::from_secs(15), "the other instance leads", || {
        (follower.status()["leader"] == true).then(|| killed.elapsed())
    });
    assert!(
        took_over < Duration::from_secs(10),
        "took over after {took_over:?}"
    );
    eprintln!("takeover after {took_over:?}");

    // The killed instance's run is marked interrupted by the new leader within 10 s.
    let marked = eventually(
        Duration::from_secs(20),
        "the dead instance's run is interrupted",
        || (follower.verdict(&doomed) == "interrupted").then(|| killed.elapsed()),
    );
    assert!(
        marked < Duration::from_secs(10) + Duration::from_secs(1),
        "marked after {marked:?}"
    );
    eprintln!("interrupted marked after {marked:?}");

    // The schedule goes on from the new leader.
    let before = fires(&pg);
    eventually(Duration::from_secs(15), "two more due times fired", || {
        (fires(&pg) >= before + 2).then_some(())
    });

    // Each due time ran once (the claims' primary key) and each claim started one run.
    let dues: Vec<String> = pg
        .psql(&format!(
            "SELECT extract(epoch FROM due)::bigint FROM schedule_fires WHERE schedule_id = '{schedule}' ORDER BY due"
        ))
        .lines()
        .map(str::to_string)
        .collect();
    let runs: usize = pg
        .psql(&format!(
            "SELECT count(*) FROM runs WHERE labels->>'schedule' = '{schedule}'"
        ))
        .parse()
        .unwrap();
    let claimed: usize = dues.len();
    // The due time in flight when the test reads may have a claim and not its run yet.
    assert!(
        runs == claimed || runs + 1 == claimed,
        "{runs} runs for {claimed} claimed due times"
    );
    // None lost beyond the takeover: consecutive due times are 2 s apart, but for one gap.
    let secs: Vec<i64> = dues.iter().map(|d| d.parse().unwrap()).collect();
    let gaps: Vec<i64> = secs.windows(2).map(|w| w[1] - w[0]).collect();
    let long: Vec<&i64> = gaps.iter().filter(|g| **g != 2).collect();
    assert!(long.len() <= 1, "due times {secs:?}");
    assert!(long.iter().all(|g| **g <= 2 + 10), "due times {secs:?}");
    let nodes = pg.psql(&format!(
        "SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM schedule_fires WHERE schedule_id = '{schedule}'"
    ));
    assert_eq!(nodes, "alpha,beta", "both leaders fired");

    // The killed instance comes back as a follower.
    leader.spawn();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leaders(&[&a, &b]).len(), 1);
}

#[test]
fn a_halt_through_one_instance_aborts_and_refuses_runs_on_the_other() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let a = Instance::start(&pg, "one");
    let b = Instance::start(&pg, "two");
    let running = Instance::run_id(&b.submit(WAITING));
    b.waits(&running);

    let r = a.call("POST", "/v1/halt", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let halted = Instant::now();
    let ended = eventually(Duration::from_secs(10), "b's run is aborted", || {
        (b.verdict(&running) != "running").then(|| halted.elapsed())
    });
    assert!(
        ended < Duration::from_secs(2),
        "b's run ended {ended:?} after the halt"
    );
    assert_eq!(b.verdict(&running), "aborted");
    assert_eq!(b.status()["halted"], true);
    let refused = b.submit(QUICK);
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("halt"), "{}", refused.body);

    // Resumed through b, a accepts runs again.
    assert_eq!(b.call("POST", "/v1/resume", None).status, 200);
    let id = eventually(Duration::from_secs(5), "a accepts runs again", || {
        let r = a.submit(QUICK);
        (r.status == 201).then(|| Instance::run_id(&r))
    });
    // Its history is shared: b finds a's run.
    eventually(Duration::from_secs(10), "b sees a's run end", || {
        (b.verdict(&id) != "running").then_some(())
    });

    // `chaosctl --server` with several URLs uses the first that answers.
    let dead = format!("http://127.0.0.1:{}", chaos_tests::support::free_port());
    let ctl = |servers: &str| {
        Command::new(chaos_tests::bins::chaosctl())
            .args(["--server", servers, "runs", "--output", "json"])
            .env("CHAOSD_TOKEN", TOKEN)
            .env_remove("CHAOSD_URL")
            .output()
            .expect("chaosctl")
    };
    let out = ctl(&format!("{dead}, http://127.0.0.1:{}", b.port));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = ctl(&format!("{dead},{dead}/"));
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none answered") && err.contains(&dead),
        "{err}"
    );
}

#[test]
fn postgresql_restarted_under_a_running_chaosd_loses_nothing_recorded() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let a = Instance::start(&pg, "solo");
    let earlier = Instance::run_id(&a.submit(QUICK));
    let id = Instance::run_id(&a.submit(WAITING));
    a.waits(&id);

    pg.stop();
    // The run ends while the database is down: its end is kept and written once it is back.
    let r = a.call(
        "POST",
        &format!("/v1/runs/{id}/confirm"),
        Some(json!({"by": "ops"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    std::thread::sleep(Duration::from_secs(1));
    let refused = a.submit(QUICK);
    assert!(
        refused.status >= 500,
        "a run started without its history: {}",
        refused.body
    );
    pg.start();

    eventually(Duration::from_secs(20), "the run's end is recorded", || {
        let out = pg.psql(&format!("SELECT verdict FROM runs WHERE run_id = '{id}'"));
        (out == "passed").then_some(())
    });
    eventually(
        Duration::from_secs(10),
        "the earlier run's end is there",
        || (a.verdict(&earlier) != "running").then_some(()),
    );
    assert_eq!(a.verdict(&id), "passed");
    let again = eventually(Duration::from_secs(10), "runs are accepted again", || {
        let r = a.submit(QUICK);
        (r.status == 201).then(|| Instance::run_id(&r))
    });
    eventually(Duration::from_secs(10), "the new run ends", || {
        (a.verdict(&again) != "running").then_some(())
    });
    assert!(a.status()["leader"] == true, "{}", a.log());
}

#[test]
fn a_leader_that_cannot_reach_the_database_stops_leading_within_5s() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let a = Instance::start(&pg, "fenced");
    eventually(Duration::from_secs(10), "the instance leads", || {
        (a.status()["leader"] == true).then_some(())
    });
    // Nothing answers, and every connection stays open: as a partition looks.
    pg.signal_all(nix::sys::signal::Signal::SIGSTOP);
    let frozen = Instant::now();
    let fenced = eventually(Duration::from_secs(10), "the leader stops leading", || {
        (a.status()["leader"] == false).then(|| frozen.elapsed())
    });
    eprintln!("fenced after {fenced:?}");
    assert!(
        fenced <= Duration::from_secs(5),
        "still leading {fenced:?} after the database went away"
    );
    pg.signal_all(nix::sys::signal::Signal::SIGCONT);
    eventually(
        Duration::from_secs(15),
        "it leads again once the database is back",
        || (a.status()["leader"] == true).then_some(()),
    );
}
