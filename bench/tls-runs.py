#!/usr/bin/env python3
"""What chaosd's kept agent clients save over TLS (docs/scale.md, "TLS handshakes").

N `chaos-agent`s serving TLS on 127.0.0.1 (one certificate from `chaosctl certs`), each with a
`sleep` of its own, and one chaosd; RUNS runs, submitted one after the other through its API, of
one step pausing every host's sleep (by pid) for 1 s. Per run: from `run_started` to the first
`fault_applied` (its events.jsonl), and chaosd's CPU time over the run (/proc). The first run
makes a full handshake with every agent; the second comes 0.5 s after the first ends (kept
connections); a third GAP_S seconds after the second (past the 90 s idle timeout: the
connections are closed and TLS sessions resumed).

    python3 bench/tls-runs.py BIN_DIR N RUNS [GAP_S]     e.g. target/dist 100 3 95

BIN_DIR holds `chaosctl`, `chaosd` and `chaos-agent` (`cargo build --profile dist`). Everything it
starts is stopped and its folder deleted at its end. Benchmark only: never used by the tests.
"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request
from datetime import datetime

bins, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gap = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
tick = os.sysconf("SC_CLK_TCK")
procs = []


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def cpu_ms(pids):
    total = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except OSError:
            pass
    return total * 1000 / tick


def wait_port(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close(); return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


d = tempfile.mkdtemp(prefix="fanout-tls-")
try:
    ctl = f"{bins}/chaosctl"
    subprocess.run([ctl, "--state-dir", f"{d}/ctl", "certs", "init", f"{d}/pki"], check=True, capture_output=True)
    subprocess.run([ctl, "--state-dir", f"{d}/ctl", "certs", "issue", f"{d}/pki", "--name", "agent", "--san", "127.0.0.1", "--role", "agent"], check=True, capture_output=True)
    open(f"{d}/token", "w").write("second-run-token-0123456789\n")
    hosts, faults = "", ""
    for i in range(n):
        port = free_port()
        sleep = subprocess.Popen(["sleep", f"9{i:04d}"]); procs.append(sleep)
        a = subprocess.Popen([f"{bins}/chaos-agent", "--listen", f"127.0.0.1:{port}", "--token-file", f"{d}/token",
                              "--tls-cert", f"{d}/pki/agent.pem", "--tls-key", f"{d}/pki/agent.key",
                              "--state-dir", f"{d}/agent-{i}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(a)
        wait_port(port)
        hosts += f'  h{i}: {{agent: "https://127.0.0.1:{port}", token_file: "{d}/token", ca_file: "{d}/pki/ca.pem"}}\n'
        faults += f"      - {{target: h{i}, pause: {{process: {{pid: {sleep.pid}}}}}}}\n"
    yaml = (f"version: 1\nname: second-run\nhosts:\n{hosts}settings: {{max_hosts: {n}}}\n"
            f"steps:\n  - name: pause every sleep\n    duration: 1s\n    faults:\n{faults}")
    cport = free_port()
    open(f"{d}/api.token", "w").write("chaosd-api-token-0123456789\n")
    open(f"{d}/chaosd.yaml", "w").write(f"listen: 127.0.0.1:{cport}\ntoken_file: {d}/api.token\nstate_dir: {d}/state\n"
                                        f"report_dir: {d}/reports\nallow_local: false\n")
    c = subprocess.Popen([f"{bins}/chaosd", "--config", f"{d}/chaosd.yaml"], stdout=subprocess.DEVNULL,
                         stderr=open(f"{d}/chaosd.log", "w"))
    procs.append(c)
    wait_port(cport)

    def api(method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{cport}{path}", method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": "Bearer chaosd-api-token-0123456789",
                                              "Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(req))

    print(f"agents {n}, TLS; per run: first injection (run_started -> first fault_applied), chaosd CPU")
    for r in range(runs):
        c0 = cpu_ms([c.pid])
        run_id = api("POST", "/v1/runs", {"scenario": yaml, "file": "s.yaml"})["run_id"]
        while True:
            view = api("GET", f"/v1/runs/{run_id}")
            if view["run"]["verdict"] != "running":
                break
            time.sleep(0.05)
        c1 = cpu_ms([c.pid])
        folder = view["run"].get("report_dir")
        events = [json.loads(l) for l in open(os.path.join(folder, "events.jsonl"))]
        t = lambda e: datetime.fromisoformat(e["at"].replace("Z", "+00:00"))
        start = next(e for e in events if e["kind"] == "run_started")
        first = next(e for e in events if e["kind"] == "fault_applied")
        applied = sum(1 for e in events if e["kind"] == "fault_applied")
        print(f"run {r + 1}: {view['run']['verdict']}, {applied} applied, first injection "
              f"{(t(first) - t(start)).total_seconds() * 1000:.0f} ms, chaosd CPU {c1 - c0:.0f} ms")
        time.sleep(gap if r == 1 else 0.5)
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    subprocess.run(["rm", "-rf", d])
