//! Prometheus metrics in the text exposition format (version 0.0.4), written by hand: a few
//! counters with labels, gauges read at scrape time and one histogram do not need a registry
//! crate, and the same small writer serves `chaos-agent` ([`crate::server::metrics`]) and
//! `chaosd`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A counter per combination of label values (in the order of the family's label names).
#[derive(Debug, Default)]
pub struct CounterVec {
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterVec {
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1);
    }

    pub fn add(&self, labels: &[&str], n: u64) {
        let key = labels.iter().map(|s| s.to_string()).collect();
        *self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default() += n;
    }

    pub fn get(&self, labels: &[&str]) -> u64 {
        let key: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// A histogram of seconds, by one label.
#[derive(Debug)]
pub struct HistogramVec {
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Hist>>,
}

#[derive(Debug, Clone, Default)]
struct Hist {
    /// Per bucket (not cumulative), then +Inf last.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl HistogramVec {
    pub const fn new(bounds: &'static [f64]) -> HistogramVec {
        HistogramVec {
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, labels: &[&str], value: f64) {
        let key = labels.iter().map(|s| s.to_string()).collect();
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let h = series.entry(key).or_insert_with(|| Hist {
            buckets: vec![0; self.bounds.len() + 1],
            ..Hist::default()
        });
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        h.buckets[i] += 1;
        h.sum += value;
        h.count += 1;
    }

    /// Adds observations already counted in buckets of the same bounds (per bucket, not
    /// cumulative, with one more last for those above the largest bound) and their sum: a
    /// `load` burst's requests, whose latencies were bucketed where they were measured. Bucket
    /// counts beyond this histogram's buckets go into its last (+Inf) one, so none is lost.
    pub fn observe_buckets(&self, labels: &[&str], buckets: &[u64], sum: f64) {
        let key = labels.iter().map(|s| s.to_string()).collect();
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let h = series.entry(key).or_insert_with(|| Hist {
            buckets: vec![0; self.bounds.len() + 1],
            ..Hist::default()
        });
        let last = self.bounds.len();
        for (i, n) in buckets.iter().enumerate() {
            h.buckets[i.min(last)] += n;
            h.count += n;
        }
        h.sum += sum;
    }
}

/// Writes one metric family after another.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    pub fn new() -> Text {
        Text::default()
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, names: &[&str], values: &[String], value: &str) {
        self.out.push_str(name);
        if !names.is_empty() {
            self.out.push('{');
            for (i, (n, v)) in names.iter().zip(values).enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{n}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.head(name, "gauge", help);
        self.sample(name, &[], &[], &fmt_f64(value));
    }

    /// A gauge with one series of labels.
    pub fn gauge_labelled(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        values: &[String],
        value: f64,
    ) {
        self.head(name, "gauge", help);
        self.sample(name, labels, values, &fmt_f64(value));
    }

    /// A counter family; `name` ends in `_total`. `always` label values are written as 0 when
    /// never counted, so a scrape shows the family's series from the start.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        family: &CounterVec,
        always: &[&[&str]],
    ) {
        self.head(name, "counter", help);
        let mut values: BTreeMap<Vec<String>, u64> = always
            .iter()
            .map(|l| (l.iter().map(|s| s.to_string()).collect(), 0))
            .collect();
        values.extend(family.snapshot());
        for (k, v) in values {
            self.sample(name, labels, &k, &v.to_string());
        }
    }

    pub fn histogram(&mut self, name: &str, help: &str, labels: &[&str], family: &HistogramVec) {
        self.head(name, "histogram", help);
        let series = family
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut names: Vec<&str> = labels.to_vec();
        names.push("le");
        for (k, h) in series {
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = family
                    .bounds
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| fmt_f64(*b));
                let mut values = k.clone();
                values.push(le);
                self.sample(
                    &format!("{name}_bucket"),
                    &names,
                    &values,
                    &cumulative.to_string(),
                );
            }
            self.sample(&format!("{name}_sum"), labels, &k, &fmt_f64(h.sum));
            self.sample(&format!("{name}_count"), labels, &k, &h.count.to_string());
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let c = CounterVec::default();
        c.inc(&["passed"]);
        c.add(&["with \"quote\""], 2);
        static H: HistogramVec = HistogramVec::new(&[0.1, 1.0]);
        H.observe(&["a"], 0.05);
        H.observe(&["a"], 0.5);
        H.observe(&["a"], 3.0);
        let mut t = Text::new();
        t.gauge("g", "a gauge", 2.0);
        t.counter("c_total", "runs", &["verdict"], &c, &[&["deviated"]]);
        // Three more, counted elsewhere in the same buckets: one ≤ 0.1, two above 1.
        H.observe_buckets(&["a"], &[1, 0, 2], 4.5);
        t.histogram("h_seconds", "latency", &["probe"], &H);
        let text = t.finish();
        for line in [
            "# TYPE g gauge\ng 2\n",
            "c_total{verdict=\"deviated\"} 0\n",
            "c_total{verdict=\"passed\"} 1\n",
            "c_total{verdict=\"with \\\"quote\\\"\"} 2\n",
            "h_seconds_bucket{probe=\"a\",le=\"0.1\"} 2\n",
            "h_seconds_bucket{probe=\"a\",le=\"1\"} 3\n",
            "h_seconds_bucket{probe=\"a\",le=\"+Inf\"} 6\n",
            "h_seconds_sum{probe=\"a\"} 8.05\n",
            "h_seconds_count{probe=\"a\"} 6\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
    }
}
