//! `prometheus` probes end to end against a real Prometheus (`/usr/bin/prometheus`, Debian's
//! `prometheus` package) that scrapes itself every second on 127.0.0.1.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use chaosd::probe::{SampleOutcome, sample};
use chaosd::scenario::model::{ProbeKind, PrometheusProbe};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus server on a free loopback port, killed and waited for on drop.
struct Prometheus {
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start() -> Prometheus {
        // Take a free port, then hand it over; the window for a clash is tiny.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      \
                 - targets: ['{addr}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus { addr, child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn probe(&self, query: &str, below: Option<f64>, above: Option<f64>) -> ProbeKind {
        ProbeKind::Prometheus(PrometheusProbe {
            url: format!("http://{}", self.addr),
            query: query.into(),
            timeout: Duration::from_secs(5),
            below,
            above,
        })
    }

    /// Polls (bounded) until its own `up` series reads 1.
    async fn wait_until_up(&mut self) {
        let up = self.probe(r#"up{job="prometheus"}"#, None, Some(0.5));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let outcome = sample(&up).await;
            if outcome.ok {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "prometheus never reported up=1 (last: {outcome:?}):\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[track_caller]
fn assert_fails(outcome: &SampleOutcome, reason: &str) {
    assert!(!outcome.ok, "expected a failure, got {outcome:?}");
    assert_eq!(outcome.reason, reason, "{outcome:?}");
}

mod prometheus_probe {
    use super::*;

    #[tokio::test]
    async fn end_to_end_against_a_real_prometheus() {
        if !chaos_tests::skip::unless_installed(&[PROMETHEUS], "prometheus") {
            return;
        }
        let mut prometheus = Prometheus::start();
        prometheus.wait_until_up().await;
        let up = r#"up{job="prometheus"}"#;

        let outcome = sample(&prometheus.probe(up, Some(2.0), Some(0.5))).await;
        assert!(outcome.ok, "{outcome:?}");
        assert_eq!(outcome.reason, "value 1");
        assert_fails(
            &sample(&prometheus.probe(up, Some(0.5), None)).await,
            "value 1 above 0.5",
        );
        assert_fails(
            &sample(&prometheus.probe(up, None, Some(1.5))).await,
            "value 1 below 1.5",
        );
        assert_fails(
            &sample(&prometheus.probe(up, Some(1.0), None)).await,
            "value 1 not below 1",
        );

        // A scalar works as well as a one-series vector.
        let outcome = sample(&prometheus.probe("scalar(up) * 3", Some(3.5), Some(2.5))).await;
        assert!(outcome.ok, "{outcome:?}");

        assert_fails(
            &sample(&prometheus.probe(r#"up{job="no-such-job"}"#, Some(1.0), None)).await,
            "query returned no data",
        );
        assert_fails(
            &sample(&prometheus.probe(r#"{__name__=~"up|scrape_samples_scraped"}"#, None, None))
                .await,
            "query returned 2 series, expected one",
        );
        let outcome = sample(&prometheus.probe("up +", None, None)).await;
        assert!(!outcome.ok, "{outcome:?}");
        assert!(
            outcome.reason.starts_with("query failed: bad_data: "),
            "{outcome:?}"
        );
        assert_fails(
            &sample(&prometheus.probe("0/0", None, None)).await,
            "value is NaN",
        );

        // Gone: the probe says so instead of hanging.
        let probe = prometheus.probe(up, Some(2.0), None);
        drop(prometheus);
        assert_fails(&sample(&probe).await, "connection refused");
    }
}
