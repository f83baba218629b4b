#!/usr/bin/env python3
"""chaosctl's own overhead next to Chaos Toolkit's, on the same small experiment.

The experiment: a hypothesis of two HTTP probes (one sample each), checked before and after one
action that SIGKILLs a `sleep` process, with no fault wait. chaosctl samples every 1 ms, so the
only wait the scenario asks of it (the after-check's first fresh sample) is at most 1 ms. Both tools run it against the same
`chaos-demo` server on 127.0.0.1, one after the other, N times each. Printed per tool: median and
worst wall time, and peak resident memory (ru_maxrss of the tool's process tree).

    python3 bench/overhead.py [--runs N]

Needs GNU time (`apt-get install time`). It builds chaosctl with the `dist` profile (as shipped) and installs chaostoolkit (from PyPI) into a virtual
environment under target/bench/ the first time. Benchmark only: never used by the tests.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "target", "bench", "ctk-venv")
# A target folder of its own, so a benchmark build never waits on (or evicts) the test builds.
BUILD = os.path.join(ROOT, "target", "bench", "build")
RELEASE = os.path.join(BUILD, "dist")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def code_order_note(exe):
    """How much of chaosctl/code-order.txt the measured binary still has (scripts/order-code)."""
    path = os.path.join(ROOT, "chaosctl", "code-order.txt")
    listed = [line.strip() for line in open(path) if line.strip() and not line.startswith("#")]
    symbols = subprocess.run(["nm", "--defined-only", exe], capture_output=True, text=True, check=True).stdout
    present = {line.split()[-1] for line in symbols.splitlines()}
    found = sum(1 for name in listed if name in present)
    return (f"code order: {found} of the {len(listed)} functions chaosctl/code-order.txt lists are in this build"
            + ("" if found >= 0.9 * len(listed) else "; run scripts/order-code again"))


def start_demo(bin_dir):
    """Starts `chaos-demo` from bin_dir on a free loopback port; returns it and its URL once it
    answers. Stop it with os.killpg(server.pid, 15): it runs in a session of its own."""
    port = free_port()
    server = subprocess.Popen([os.path.join(bin_dir, "chaos-demo"), "--port", str(port), "--workers", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/health", timeout=0.2)
            break
        except OSError:
            time.sleep(0.05)
    return server, url


def minimal_scenario(url, pattern):
    """The benchmark's run: two HTTP probes of `url` (one sample each, before and after) around a
    SIGKILL of the processes whose command line matches `pattern`, with no fault wait.
    scripts/order-code trains chaosctl's code order on it too."""
    return f"""version: 1
name: overhead
steady_state:
  - name: health
    http: {{url: "{url}/health", timeout: 1s}}
    every: 1ms
    window: 1ms
  - name: home
    http: {{url: "{url}/", timeout: 1s}}
    every: 1ms
    window: 1ms
steps:
  - name: kill the victim
    target: local
    fault: {{kill: {{process: {{pattern: "^{pattern}$"}}}}}}
    recover_within: 5s
"""


def measured(argv, **kw):
    """Runs argv under GNU time; returns (wall seconds, peak RSS in KiB, exit code).

    GNU time forks a small C process that execs the tool, so the peak RSS is the tool's own; a
    Python parent would count its own copy-on-write pages before the exec.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        start = time.monotonic()
        rc = subprocess.run(["/usr/bin/time", "-q", "-o", out.name, "-f", "%M"] + argv,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw).returncode
        secs = time.monotonic() - start
        kib = out.read().split()[-1]
    return [secs, int(kib), rc]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--profile", "dist", "-q", "-p", "chaosctl"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": BUILD})
    if not os.path.exists(os.path.join(VENV, "bin", "chaos")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "chaostoolkit"], check=True)
    os.sync()  # a freshly written binary's dirty pages would count as its own memory
    ctk_version = subprocess.run([os.path.join(VENV, "bin", "chaos"), "--version"], capture_output=True, text=True).stdout.strip()

    print(code_order_note(os.path.join(RELEASE, "chaosctl")))
    server, url = start_demo(RELEASE)
    work = tempfile.mkdtemp(prefix="chaos-bench-")
    victims = []
    try:

        def victim(tag):
            # A process for the action to kill, with a command line no other run shares.
            p = subprocess.Popen(["sleep", f"{1000 + len(victims)}.{tag}"])
            victims.append(p)
            return f"sleep {1000 + len(victims) - 1}.{tag}"

        results = {"chaosctl": [], "chaostoolkit": []}
        for i in range(args.runs):
            pattern = victim(f"{i}1")
            scenario = os.path.join(work, f"s{i}.yaml")
            with open(scenario, "w") as f:
                f.write(minimal_scenario(url, pattern))
            results["chaosctl"].append(measured([
                os.path.join(RELEASE, "chaosctl"), "--state-dir", os.path.join(work, "state"),
                "run", scenario, "--yes", "--report-dir", os.path.join(work, "reports")]))

            pattern = victim(f"{i}2")
            experiment = os.path.join(work, f"e{i}.json")
            probe = lambda name, path: {"type": "probe", "name": name, "tolerance": 200,
                                        "provider": {"type": "http", "url": url + path, "timeout": 1}}
            with open(experiment, "w") as f:
                json.dump({
                    "title": "overhead", "description": "same experiment as chaosctl's",
                    "steady-state-hypothesis": {"title": "demo answers",
                                                "probes": [probe("health", "/health"), probe("home", "/")]},
                    "method": [{"type": "action", "name": "kill the victim",
                                "provider": {"type": "process", "path": "pkill",
                                             "arguments": ["-KILL", "-f", f"^{pattern}$"]}}],
                }, f)
            results["chaostoolkit"].append(measured([
                os.path.join(VENV, "bin", "chaos"), "--log-file", os.path.join(work, "chaostoolkit.log"),
                "run", "--journal-path", os.path.join(work, f"journal{i}.json"), experiment], cwd=work))

        print(f"overhead of one run: 2 HTTP probes x 1 sample, before and after one SIGKILL, no fault wait; {args.runs} runs each")
        print(f"{'tool':<28} {'median wall':>12} {'worst wall':>11} {'peak RSS':>10} {'exit codes'}")
        for tool, rows in results.items():
            name = tool if tool == "chaosctl" else f"chaostoolkit ({ctk_version})"
            walls = [r[0] for r in rows]
            rss = max(r[1] for r in rows)
            codes = sorted(set(r[2] for r in rows))
            print(f"{name:<28} {statistics.median(walls)*1000:>9.1f} ms {max(walls)*1000:>8.1f} ms {rss/1024:>7.1f} MiB {codes}")
        ours, theirs = results["chaosctl"], results["chaostoolkit"]
        print(f"time ratio (median): chaosctl takes 1/{statistics.median(r[0] for r in theirs)/statistics.median(r[0] for r in ours):.1f} of chaostoolkit's; "
              f"memory ratio (peak): 1/{max(r[1] for r in theirs)/max(r[1] for r in ours):.1f}")
    finally:
        os.killpg(server.pid, 15)
        server.wait()
        for p in victims:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
