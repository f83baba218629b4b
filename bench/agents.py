#!/usr/bin/env python3
"""chaosctl against many `chaos-agent` daemons, and the precision of the agent's network faults.

Part 1, on 127.0.0.1: N agents (default 100; own ports and state directories, one shared token),
each host with a `sleep 7000<i>` process of its own. One scenario, one step holding N pause faults
at once (one per host), no steady-state probe, `--yes`. Measured per round:
  (a) apply: from the step's start (`step_started` in events.jsonl) to the last `fault_applied`, and
      the spread of the agents' `applied_at` (report.json) over hosts: p50/p99/max minus the first;
  (b) abort: SIGINT to chaosctl during the hold (after the last `fault_applied`), until every sleep
      process has left state T (polled in /proc every ~1 ms), and in the events (SIGINT and
      `aborted` against the last `fault_reverted`);
  (c) SIGKILL: the same with chaosctl SIGKILLed and `settings.lease: 1s`: the agents revert on their
      own when the lease runs out.
Part 2: the agents' resident memory (VmRSS) and CPU time (utime+stime over a 5 s idle window),
before the runs and after them: median and max.
Part 3 (root, iptables, ping, openssl): two network namespaces joined by a veth (10.252.0.0/24), an
agent (TLS) in one, chaosctl in the other. RTT of `ping -c 20 -i 0.2` with `latency: 50ms`, then
200 ms, against no fault; and a 200 MB TCP transfer into the agent's host (the delayed direction:
the NFQUEUE holder delays ingress) under `latency: 0ms`, against no fault.

    python3 bench/agents.py [--agents N] [--rounds R] [--no-net]

Builds chaosctl and chaos-agent with the `dist` profile (as shipped) into target/bench/build.
Everything it starts (agents, sleeps, chaosctl, namespaces) is stopped or deleted at its end,
whatever happens. Traffic goes only to 127.0.0.1 and to its own namespaces. Benchmark only: never
used by the tests.
"""

import argparse
import calendar
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A target folder of its own, so a benchmark build never waits on (or evicts) the test builds.
BUILD = os.path.join(ROOT, "target", "bench", "build")
RELEASE = os.path.join(BUILD, "dist")
CHAOSCTL = os.path.join(RELEASE, "chaosctl")
AGENT = os.path.join(RELEASE, "chaos-agent")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NET = "10.252.0"
TRANSFER_BYTES = 200 * 1000 * 1000

# Everything we start, for the cleanup: Popen objects, and network namespaces.
STARTED = []
NAMESPACES = []
STATE_ROOTS = []


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, **kw):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
    STARTED.append(p)
    return p


def wait(p, timeout):
    """Waits at most `timeout` s; the exit code, or None if it still runs."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def parse_ts(s):
    """RFC 3339 UTC (with up to nanoseconds) → seconds since the epoch, as a float."""
    main, _, frac = s.rstrip("Z").replace("+00:00", "").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + (float("0." + frac) if frac else 0.0)


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def wait_states(pids, stopped, timeout):
    """Polls every ~1 ms until every pid is (stopped) / is not (not stopped) in state T.
    Returns (monotonic time the last one got there, pids that did not within `timeout`)."""
    left = set(pids)
    last = time.monotonic()
    deadline = last + timeout
    while left and time.monotonic() < deadline:
        for pid in list(left):
            if (proc_state(pid) == "T") == stopped:
                left.discard(pid)
        last = time.monotonic()
        if left:
            time.sleep(0.001)
    return last, left


def cpu_ns(pid):
    """CPU time of the process, threads included: utime+stime (clock ticks) → ns, and where the
    kernel has it the exact figure from schedstat (threads summed)."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def rss_cpu(pids):
    """{pid: (VmRSS KiB, CPU ns)}."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
        cpu = cpu_ns(pid)
        if cpu is not None:
            out[pid] = (rss, cpu)
    return out


def agents_cpu_ms(pids):
    return sum(cpu_ns(p) or 0 for p in pids) / 1e6


def idle_figures(pids, window=5.0):
    """RSS (MiB) and CPU (ms over `window`) of each agent while idle: (median, max) of each."""
    first = rss_cpu(pids)
    time.sleep(window)
    second = rss_cpu(pids)
    both = [p for p in pids if p in first and p in second]
    rss = [second[p][0] / 1024 for p in both]
    cpu = [(second[p][1] - first[p][1]) / 1e6 for p in both]
    return {"rss": (statistics.median(rss), max(rss)), "cpu": (statistics.median(cpu), max(cpu)),
            "n": len(both)}


def http_ok(url, timeout=0.5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def percentile(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class Run:
    """One `chaosctl run`, its report folder and its events."""

    def __init__(self, work, name, scenario_text, netns=None):
        self.reports = os.path.join(work, "reports", name)
        os.makedirs(self.reports)
        self.scenario = os.path.join(work, f"{name}.yaml")
        with open(self.scenario, "w") as f:
            f.write(scenario_text)
        self.out = open(os.path.join(work, f"{name}.out"), "w")
        argv = [CHAOSCTL, "--state-dir", os.path.join(work, "ctl-state"), "run", self.scenario,
                "--yes", "--report-dir", self.reports, "--output", "json"]
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.launched = time.time()
        self.proc = start(argv, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        self.dir = None

    def events(self):
        if self.dir is None:
            dirs = [d for d in glob.glob(os.path.join(self.reports, "*")) if not d.endswith("latest")]
            if not dirs:
                return []
            self.dir = dirs[0]
        try:
            with open(os.path.join(self.dir, "events.jsonl")) as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        evs = []
        for line in lines:
            try:
                evs.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        return evs

    def wait_events(self, kind, count, timeout):
        """Waits until `count` events of `kind` are written (or the run ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events()
            if sum(e["kind"] == kind for e in evs) >= count:
                return evs
            failed = [e for e in evs if e["kind"] in ("fault_failed", "preflight_failed", "run_ended")]
            if failed or self.proc.poll() is not None:
                raise SystemExit(f"run {self.scenario} ended early (exit {self.proc.poll()}): "
                                 + "; ".join(e["message"] for e in failed)
                                 + f"; see {self.out.name}")
            time.sleep(0.002)
        raise SystemExit(f"no {count} `{kind}` events within {timeout}s in {self.scenario}; see {self.out.name}")

    def finish(self, timeout):
        rc = wait(self.proc, timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
            raise SystemExit(f"chaosctl did not end within {timeout}s ({self.scenario})")
        self.out.close()
        return rc

    def report(self):
        try:
            with open(os.path.join(self.dir, "report.json")) as f:
                return json.load(f)
        except (OSError, TypeError):
            return None


def at(evs, kind, pick=max):
    times = [parse_ts(e["at"]) for e in evs if e["kind"] == kind]
    return pick(times) if times else None


def apply_figures(run, evs):
    """Step start → first and last fault_applied (ms); the applied_at spread (ms) when there is a report."""
    step = at(evs, "step_started", min)
    fig = {"apply": (at(evs, "fault_applied") - step) * 1000,
           "first": (at(evs, "fault_applied", min) - step) * 1000,
           "launch": (step - run.launched) * 1000}
    pre = at(evs, "preflight_passed", min)
    started = at(evs, "run_started", min)
    if pre is not None and started is not None:
        fig["preflight"] = (pre - started) * 1000
    return fig


def spread(report):
    if not report:
        return None
    times = [parse_ts(f["applied_at"]) for s in report["steps"] for f in s["faults"] if f.get("applied_at")]
    base = min(times)
    d = [(t - base) * 1000 for t in times]
    return (percentile(d, 0.5), percentile(d, 0.99), max(d))


def many_scenario(n, urls, token, hold, lease):
    lines = ["version: 1", "name: many-agents", "hosts:"]
    for i, url in enumerate(urls):
        lines.append(f'  h{i:03d}: {{agent: "{url}", token_file: "{token}"}}')
    lines += ["steps:", "  - name: pause one sleep on every host", "    faults:"]
    for i in range(n):
        lines.append(f'      - {{target: h{i:03d}, pause: {{process: {{pattern: "^sleep 7000{i}$"}}}}}}')
    lines += [f"    duration: {hold}", "    recover_within: 5s",
              "settings:", f"  max_hosts: {n}", f"  lease: {lease}", ""]
    return "\n".join(lines)


def part1(args, work, results):
    n = args.agents
    token = os.path.join(work, "token")
    with open(token, "w") as f:
        f.write("bench-token-" + os.urandom(12).hex() + "\n")
    os.chmod(token, 0o600)

    sleeps = [start(["sleep", f"7000{i}"]) for i in range(n)]
    spids = [p.pid for p in sleeps]

    agents = []
    urls = []
    state_root = tempfile.mkdtemp(prefix="chaos-bench-agents-", dir=args.agent_state) if args.agent_state \
        else os.path.join(work, "agents")
    if args.agent_state:
        STATE_ROOTS.append(state_root)
    results["state_root"] = state_root
    for i in range(n):
        state = os.path.join(state_root, str(i))
        os.makedirs(state)
        for _attempt in range(3):
            port = free_port()
            log = open(os.path.join(state, "agent.log"), "w")
            p = start([AGENT, "--listen", f"127.0.0.1:{port}", "--token-file", token, "--state-dir", state],
                      stdout=log, stderr=log, start_new_session=True)
            log.close()
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and p.poll() is None and not http_ok(url + "/healthz"):
                time.sleep(0.01)
            if p.poll() is None and http_ok(url + "/healthz"):
                break
            p.kill()
            p.wait()
        else:
            raise SystemExit(f"agent {i} did not start; see {state}/agent.log")
        agents.append(p)
        urls.append(url)
    apids = [p.pid for p in agents]
    fstype = subprocess.run(["stat", "-f", "-c", "%T", state_root], capture_output=True, text=True).stdout.strip()
    print(f"started {n} agents (state directories on {fstype}: {state_root}) and {n} sleep processes "
          f"(load {loadavg()})", flush=True)

    time.sleep(1)
    results["idle_before"] = idle_figures(apids)
    results["idle_before"]["load"] = loadavg()

    results["rounds"] = []
    for r in range(args.rounds):
        rnd = {"load": loadavg()}
        # (a) a whole run: apply, hold 2 s, revert.
        cpu0 = agents_cpu_ms(apids)
        run = Run(work, f"a{r}", many_scenario(n, urls, token, "2s", "10s"))
        evs = run.wait_events("fault_applied", n, 60)
        rc = run.finish(60)
        agents_cpu = agents_cpu_ms(apids) - cpu0
        evs = run.events()
        rnd["a"] = apply_figures(run, evs)
        rnd["a"]["spread"] = spread(run.report())
        rnd["a"]["rc"] = rc
        rnd["a"]["agent_cpu"] = agents_cpu / n
        rnd["a"]["revert"] = (at(evs, "fault_reverted") - at(evs, "fault_reverted", min)) * 1000 \
            if at(evs, "fault_reverted") else None

        # (b) SIGINT during the hold.
        run = Run(work, f"b{r}", many_scenario(n, urls, token, "60s", "10s"))
        evs = run.wait_events("fault_applied", n, 60)
        _, notstopped = wait_states(spids, True, 5)
        time.sleep(0.3)
        sig_wall = time.time()
        sig = time.monotonic()
        os.kill(run.proc.pid, signal.SIGINT)
        done, left = wait_states(spids, False, 10)
        rc = run.finish(60)
        evs = run.events()
        b = apply_figures(run, evs)
        b["spread"] = spread(run.report())
        b["clean"] = (done - sig) * 1000 if not left else None
        b["left"] = len(left)
        b["notstopped"] = len(notstopped)
        last_rev = at(evs, "fault_reverted")
        b["sig_to_last_reverted"] = (last_rev - sig_wall) * 1000 if last_rev else None
        b["sig_to_first_reverted"] = (at(evs, "fault_reverted", min) - sig_wall) * 1000 if last_rev else None
        ab = at(evs, "aborted", min)
        b["aborted_to_last_reverted"] = (last_rev - ab) * 1000 if ab and last_rev else None
        b["sig_to_aborted"] = (ab - sig_wall) * 1000 if ab else None
        b["reverted"] = sum(e["kind"] == "fault_reverted" for e in evs)
        b["rc"] = rc
        rnd["b"] = b

        # (c) SIGKILL during the hold, lease 1 s: the agents revert on their own.
        run = Run(work, f"c{r}", many_scenario(n, urls, token, "60s", "1s"))
        evs = run.wait_events("fault_applied", n, 60)
        last_applied = at(evs, "fault_applied")
        wait_states(spids, True, 5)
        time.sleep(0.3)
        sig_wall = time.time()
        sig = time.monotonic()
        os.kill(run.proc.pid, signal.SIGKILL)
        done, left = wait_states(spids, False, 10)
        run.finish(10)
        c = apply_figures(run, evs)
        c["clean"] = (done - sig) * 1000 if not left else None
        c["left"] = len(left)
        c["applied_to_clean"] = (done - sig) * 1000 + (sig_wall - last_applied) * 1000 if not left else None
        rnd["c"] = c
        results["rounds"].append(rnd)
        print(f"round {r + 1}: apply {rnd['a']['apply']:.0f} ms, abort→clean "
              f"{fmt(b['clean'])} ms, SIGKILL→clean {fmt(c['clean'])} ms (load {rnd['load']})", flush=True)

    time.sleep(1)
    results["idle_after"] = idle_figures(apids)
    results["idle_after"]["load"] = loadavg()
    # The agents audit every request: check that none refused or failed one.
    bad = 0
    for i in range(n):
        with open(os.path.join(state_root, str(i), "audit.jsonl")) as f:
            bad += sum('"outcome":"failed"' in l for l in f)
    results["audit_failed"] = bad


# ---------------------------------------------------------------------------------------------
# Part 3: network faults between two namespaces.

RECEIVER = r"""
import json, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept()
c.settimeout(20)
buf = bytearray(1 << 20)
n, t0 = 0, None
try:
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        if t0 is None:
            t0 = time.monotonic()
        n += k
except socket.timeout:
    pass
print(json.dumps({"bytes": n, "secs": time.monotonic() - (t0 or time.monotonic())}), flush=True)
"""

SENDER = r"""
import socket, sys, time
total, limit = int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
chunk = b"\0" * (1 << 20)
sent = 0
while sent < total and time.monotonic() < limit:
    c.sendall(chunk[: min(len(chunk), total - sent)])
    sent += min(len(chunk), total - sent)
c.shutdown(socket.SHUT_WR)
c.settimeout(20)
c.recv(1)
c.close()
"""


def sh(argv, check=True, timeout=30):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def ping(ns, addr):
    out = sh(["ip", "netns", "exec", ns, "ping", "-q", "-c", "20", "-i", "0.2", "-W", "2", addr], timeout=30)
    for line in out.splitlines():
        if "min/avg/max" in line:
            mn, avg, mx, mdev = (float(x) for x in line.split("=")[1].split()[0].split("/"))
            return {"avg": avg, "mdev": mdev, "min": mn, "max": mx}
    raise SystemExit(f"no RTT in ping's output: {out}")


def transfer(ns_recv, ns_send, addr, port):
    recv = start(["ip", "netns", "exec", ns_recv, sys.executable, "-c", RECEIVER, addr, str(port)],
                 stdout=subprocess.PIPE, text=True)
    if recv.stdout.readline().strip() != "ready":
        raise SystemExit("the receiver did not start")
    sh(["ip", "netns", "exec", ns_send, sys.executable, "-c", SENDER, addr, str(port), str(TRANSFER_BYTES), "40"],
       timeout=90)
    out, _ = recv.communicate(timeout=30)
    got = json.loads(out.strip().splitlines()[-1])
    return {"mbps": got["bytes"] / 1e6 / got["secs"] if got["secs"] > 0 else float("nan"),
            "bytes": got["bytes"], "secs": got["secs"]}


def net_scenario(url, token, ca, iface, delay, hold):
    return f"""version: 1
name: latency-{delay}
hosts:
  lab: {{agent: "{url}", token_file: "{token}", ca_file: "{ca}"}}
steps:
  - name: delay {delay}
    target: lab
    fault: {{latency: {{delay: {delay}, interface: {iface}}}}}
    duration: {hold}
    recover_within: 5s
"""


def part3(args, work, results):
    if os.geteuid() != 0:
        results["net_skipped"] = "needs root (network namespaces, iptables)"
        return
    for tool in ["ip", "iptables", "ping", "openssl"]:
        if not shutil.which(tool):
            results["net_skipped"] = f"needs `{tool}` (apt-get install {'iputils-ping' if tool == 'ping' else 'iproute2' if tool == 'ip' else tool})"
            return
    tag = f"cb{os.getpid() % 100000}"
    ns1, ns2 = f"{tag}-agent", f"{tag}-ctl"
    va, vb = f"{tag}a", f"{tag}b"
    a1, a2 = f"{NET}.1", f"{NET}.2"
    for ns in (ns1, ns2):
        sh(["ip", "netns", "add", ns])
        NAMESPACES.append(ns)
    sh(["ip", "link", "add", va, "type", "veth", "peer", "name", vb])
    sh(["ip", "link", "set", va, "netns", ns1])
    sh(["ip", "link", "set", vb, "netns", ns2])
    for ns, dev, addr in ((ns1, va, a1), (ns2, vb, a2)):
        sh(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
        sh(["ip", "-n", ns, "link", "set", dev, "up"])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    cert, key, cnf = (os.path.join(work, x) for x in ("lab.pem", "lab.key", "openssl.cnf"))
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=lab\n[ext]\n"
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{a1}\n")
    sh(["openssl", "req", "-x509", "-config", cnf, "-extensions", "ext", "-newkey", "rsa:2048", "-nodes",
        "-days", "1", "-keyout", key, "-out", cert])
    token = os.path.join(work, "token")
    state = os.path.join(work, "lab-agent")
    os.makedirs(state)
    port = 7411
    log = open(os.path.join(state, "agent.log"), "w")
    agent = start(["ip", "netns", "exec", ns1, AGENT, "--listen", f"{a1}:{port}", "--token-file", token,
                   "--tls-cert", cert, "--tls-key", key, "--state-dir", state], stdout=log, stderr=log)
    log.close()
    probe = f"import socket; socket.create_connection(('{a1}', {port}), 0.5)"
    for _ in range(100):
        if agent.poll() is not None:
            raise SystemExit(f"the lab agent exited; see {state}/agent.log")
        if subprocess.run(["ip", "netns", "exec", ns2, sys.executable, "-c", probe],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    url = f"https://{a1}:{port}"

    net = {"load": loadavg()}
    net["base"] = ping(ns2, a1)
    for delay in ("50ms", "200ms"):
        run = Run(work, f"lat{delay}", net_scenario(url, token, cert, va, delay, "8s"), netns=ns2)
        run.wait_events("fault_applied", 1, 30)
        net[delay] = ping(ns2, a1)
        rc = run.finish(40)
        rep = run.report()
        f = rep["steps"][0]["faults"][0] if rep else {}
        net[delay]["mechanism"] = f.get("mechanism")
        net[delay]["rc"] = rc
    net["base_after"] = ping(ns2, a1)

    # Throughput into the agent's host (ingress there is what the NFQUEUE holder delays).
    net["tput"] = []
    for r in range(args.rounds):
        base = transfer(ns1, ns2, a1, 5201 + r)
        run = Run(work, f"tput{r}", net_scenario(url, token, cert, va, "0ms", "60s"), netns=ns2)
        run.wait_events("fault_applied", 1, 30)
        faulted = transfer(ns1, ns2, a1, 5301 + r)
        os.kill(run.proc.pid, signal.SIGINT)
        rc = run.finish(40)
        rep = run.report()
        f = rep["steps"][0]["faults"][0] if rep else {}
        held = [e["message"] for e in run.events() if e["kind"] == "fault_reverted"]
        packets = held[0].split("stopped after ")[1].split()[0] if held and "stopped after " in held[0] else "?"
        net["tput"].append({"base": base, "fault": faulted, "rc": rc, "mechanism": f.get("mechanism"),
                            "packets": packets, "load": loadavg()})
    results["net"] = net
    # The agent must leave nothing behind in its namespace.
    agent.send_signal(signal.SIGTERM)
    wait(agent, 10)
    left = sh(["ip", "netns", "exec", ns1, "iptables", "-S"], check=False)
    results["net_left"] = [l for l in left.splitlines() if "CHAOS" in l or "NFQUEUE" in l]


# ---------------------------------------------------------------------------------------------


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def table(args, results):
    rows = []
    rounds = results.get("rounds", [])

    def per_round(get, digits=0):
        return " / ".join(fmt(get(r), digits) for r in rounds)

    n = args.agents
    rows.append((f"apply on {n} agents: step_started → last fault_applied [(a) / (b) / (c) per round]",
                 " ; ".join(f"{fmt(r['a']['apply'])}/{fmt(r['b']['apply'])}/{fmt(r['c']['apply'])} ms" for r in rounds),
                 "< 50 ms"))
    rows.append(("  step_started → first fault_applied (a)", per_round(lambda r: r["a"]["first"], 1) + " ms", ""))
    rows.append(("  applied_at spread over hosts, p50/p99/max − min (a)",
                 " ; ".join("/".join(fmt(x, 1) for x in r["a"]["spread"]) + " ms" if r["a"]["spread"] else "-" for r in rounds), ""))
    rows.append(("  applied_at spread over hosts, p50/p99/max − min (b)",
                 " ; ".join("/".join(fmt(x, 1) for x in r["b"]["spread"]) + " ms" if r["b"]["spread"] else "-" for r in rounds), ""))
    rows.append(("  chaosctl launch → step_started (a)", per_round(lambda r: r["a"]["launch"]) + " ms", ""))
    rows.append(("  run_started → preflight_passed (a)", per_round(lambda r: r["a"].get("preflight")) + " ms", ""))
    rows.append(("  agent CPU per host for the whole run (a): preflight, apply, revert",
                 per_round(lambda r: r["a"]["agent_cpu"], 1) + " ms", ""))
    rows.append(("  normal end: first → last fault_reverted (a)", per_round(lambda r: r["a"]["revert"]) + " ms", ""))
    rows.append(("  exit codes (a) / (b)", " ; ".join(f"{r['a']['rc']}/{r['b']['rc']}" for r in rounds), "0 / 3"))
    rows.append((f"(b) SIGINT → all {n} sleeps out of T (/proc)", per_round(lambda r: r["b"]["clean"]) + " ms", "< 100 ms"))
    rows.append(("    SIGINT → first / last fault_reverted (events)",
                 " ; ".join(f"{fmt(r['b']['sig_to_first_reverted'])}/{fmt(r['b']['sig_to_last_reverted'])} ms" for r in rounds), ""))
    rows.append(("    SIGINT → `aborted` event", per_round(lambda r: r["b"]["sig_to_aborted"]) + " ms", ""))
    rows.append(("    `aborted` → last fault_reverted (events)", per_round(lambda r: r["b"]["aborted_to_last_reverted"]) + " ms", ""))
    rows.append((f"(c) SIGKILL → all {n} sleeps out of T, lease 1s", per_round(lambda r: r["c"]["clean"]) + " ms", "≤ 1000 ms (lease)"))
    rows.append(("    last fault_applied → all out of T", per_round(lambda r: r["c"]["applied_to_clean"]) + " ms", "≤ 1000 ms + renewal"))
    for when in ("idle_before", "idle_after"):
        fig = results.get(when)
        if fig:
            label = "before the runs" if when == "idle_before" else "after the runs"
            rows.append((f"agent idle RSS, median / max ({label}, {fig['n']} agents)",
                         f"{fig['rss'][0]:.2f} / {fig['rss'][1]:.2f} MiB", "< 8 MiB"))
            rows.append((f"agent idle CPU over 5 s, median / max ({label})",
                         f"{fig['cpu'][0]:.3f} / {fig['cpu'][1]:.3f} ms", ""))
    if "net" in results:
        net = results["net"]
        b = net["base"]
        rows.append(("ping RTT without fault, avg / mdev", f"{b['avg']:.3f} / {b['mdev']:.3f} ms", ""))
        for d, want in (("50ms", 50), ("200ms", 200)):
            x = net[d]
            rows.append((f"ping RTT with latency {d} ({x['mechanism']}), avg / mdev",
                         f"{x['avg']:.2f} / {x['mdev']:.2f} ms (added {x['avg'] - b['avg']:.2f}, error {x['avg'] - b['avg'] - want:+.2f})",
                         f"+{want} ms"))
        a = net["base_after"]
        rows.append(("ping RTT without fault afterwards, avg / mdev", f"{a['avg']:.3f} / {a['mdev']:.3f} ms", ""))
        for t in net["tput"]:
            rows.append((f"200 MB TCP into the agent's host, no fault / latency 0ms ({t['mechanism']})",
                         f"{t['base']['mbps']:.0f} / {t['fault']['mbps']:.0f} MB/s ({t['fault']['mbps'] / t['base']['mbps'] * 100:.0f}%; "
                         f"{t['packets']} packets held)",
                         ""))
        rows.append(("iptables rules left in the agent's namespace after it stopped", str(len(results.get("net_left", []))), "0"))
    elif "net_skipped" in results:
        rows.append(("latency precision, throughput", "skipped: " + results["net_skipped"], ""))
    if "audit_failed" in results:
        rows.append(("agent requests audited as failed", str(results["audit_failed"]), "0"))

    width = max(len(r[0]) for r in rows)
    vw = max(len(r[1]) for r in rows)
    print()
    print(f"{'figure':<{width}}  {'measured':<{vw}}  goal")
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:<{vw}}  {goal}")


def cleanup(work):
    # A paused process only acts on SIGTERM once continued: the sleeps get SIGKILL at once; the
    # agents SIGTERM (they revert what they hold), then SIGKILL after a few seconds.
    for p in STARTED:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL if p.args[0] == "sleep" else signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + 8
    for p in STARTED:
        if wait(p, max(0.0, deadline - time.monotonic())) is None:
            try:
                p.kill()
            except OSError:
                pass
            p.wait()
    for ns in NAMESPACES:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if work:
        shutil.rmtree(work, ignore_errors=True)
        for d in STATE_ROOTS:
            shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the timing-sensitive parts")
    ap.add_argument("--no-net", action="store_true", help="skip part 3 (network namespaces)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (reports, logs)")
    ap.add_argument("--agent-state", metavar="DIR",
                    help="put the agents' state directories (fault journals, fsync'd) under DIR, "
                         "e.g. /dev/shm to leave the disk's fsync out; default: the work folder under $TMPDIR")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--profile", "dist", "-q", "-p", "chaosctl", "-p", "chaos-agent"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": BUILD})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    work = tempfile.mkdtemp(prefix="chaos-bench-agents-")
    results = {}
    print(f"{os.cpu_count()} CPUs, load {loadavg()}", flush=True)
    try:
        part1(args, work, results)
        if args.no_net:
            results["net_skipped"] = "--no-net"
        else:
            part3(args, work, results)
        print(f"load at the end {loadavg()}")
        table(args, results)
    finally:
        if args.keep:
            print(f"kept {work}")
        cleanup(None if args.keep else work)


if __name__ == "__main__":
    main()
