"""A local Ballista cluster of Bluelamp processes, for the benchmarks that
compare one process with a cluster (benches/tpch/run.py, benches/anpr/run.py).
"""

import os
import subprocess


def start_process(bin, args):
    """Starts `bluelamp ARGS` and returns it with its `ready` line's fields."""
    process = subprocess.Popen([bin, *args], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("ready "):
        process.kill()
        raise SystemExit(f"bluelamp {args[0]} did not start: {line!r}")
    return process, dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def start_cluster(bin, work, config, executors=2):
    """A scheduler and `executors` executors (one task each) over `config`;
    returns the processes (scheduler first) and the lines to add under
    [engine] for a front end to use them."""
    scheduler, ready = start_process(bin, ["scheduler", "--listen", "127.0.0.1:0"])
    processes = [scheduler]
    for i in range(executors):
        executor, _ = start_process(bin, [
            "executor", "--config", config, "--scheduler", ready["scheduler"],
            "--service", ready["service"], "--tasks", "1",
            "--work-dir", os.path.join(work, f"executor-{i}"),
        ])
        processes.append(executor)
    return processes, f'cluster = "{ready["scheduler"]}"\ncluster_service = "{ready["service"]}"\n'


def start_server(bin, config, extra=()):
    """`bluelamp serve --config CONFIG` on a free port (with `extra`
    arguments); returns the process and its Flight SQL URI."""
    server = subprocess.Popen(
        [bin, "serve", "--config", config, "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()
    if "listening on" not in line:
        server.kill()
        raise SystemExit(f"bluelamp serve did not start: {line!r}")
    return server, line.strip().split()[-1]


def peak_kib(pid):
    """The process's peak resident memory (VmHWM), in KiB; None if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def describe_peaks(peaks):
    """`name N MiB, ...` for a dict of name to KiB (None: unknown)."""
    return ", ".join(
        f"{name} {kib / 1024:.0f} MiB" if kib else f"{name} ?" for name, kib in peaks.items()
    )
