//! `ping`, run in a network namespace, and its summary read back: the one reading of its output
//! (iputils: `5 packets transmitted, 5 received, 0% packet loss, time 804ms` and
//! `rtt min/avg/max/mdev = 0.031/0.045/0.062/0.011 ms`).

use std::process::Command;

/// A ping's outcome. The round-trip figures are NaN when no reply came back.
#[derive(Debug, Clone, Copy)]
pub struct Ping {
    pub sent: u32,
    pub received: u32,
    pub min_ms: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub mdev_ms: f64,
}

impl Ping {
    /// Reads `ping -q`'s summary; `None` without its `packets transmitted` line.
    pub fn parse(output: &str) -> Option<Ping> {
        let stats = output.lines().find(|l| l.contains("packets transmitted"))?;
        let nums: Vec<u32> = stats
            .split(',')
            .filter_map(|p| p.split_whitespace().next()?.parse().ok())
            .collect();
        let rtt: Vec<f64> = output
            .lines()
            .find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))
            .and_then(|l| l.split('=').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .map(|v| v.split('/').filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let at = |i: usize| rtt.get(i).copied().unwrap_or(f64::NAN);
        Some(Ping {
            sent: *nums.first()?,
            received: *nums.get(1)?,
            min_ms: at(0),
            avg_ms: at(1),
            max_ms: at(2),
            mdev_ms: at(3),
        })
    }

    /// The share of requests without a reply, 0 to 1.
    pub fn lost_share(&self) -> f64 {
        1.0 - f64::from(self.received) / f64::from(self.sent)
    }
}

/// `ping -n -q -W 1 -i INTERVAL -c COUNT ADDR` inside network namespace `ns`; panics when it
/// prints no summary.
#[track_caller]
pub fn ping_from(ns: &str, addr: &str, count: u32, interval: &str) -> Ping {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-q", "-W", "1", "-i", interval,
        ])
        .args(["-c", &count.to_string(), addr])
        .output()
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    Ping::parse(&text).unwrap_or_else(|| panic!("no ping statistics: {text}"))
}

#[cfg(test)]
mod tests {
    use super::Ping;

    #[test]
    fn reads_the_summary_of_iputils_ping() {
        let text = "PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.\n\n--- 10.0.0.1 ping statistics ---\n\
                    20 packets transmitted, 19 received, 5% packet loss, time 3805ms\n\
                    rtt min/avg/max/mdev = 50.112/50.431/51.020/0.210 ms\n";
        let p = Ping::parse(text).unwrap();
        assert_eq!((p.sent, p.received), (20, 19));
        assert_eq!(
            (p.min_ms, p.avg_ms, p.max_ms, p.mdev_ms),
            (50.112, 50.431, 51.020, 0.210)
        );
        assert!((p.lost_share() - 0.05).abs() < 1e-9);
    }

    #[test]
    fn no_reply_has_no_round_trip() {
        let text = "5 packets transmitted, 0 received, +5 errors, 100% packet loss, time 4090ms\n";
        let p = Ping::parse(text).unwrap();
        assert_eq!((p.sent, p.received), (5, 0));
        assert!(p.avg_ms.is_nan());
        assert!(Ping::parse("ping: connect: Network is unreachable").is_none());
    }
}
