"""Summarises a `cargo build --timings` report: where a build's time goes.

    python3 benches/build_timings.py [REPORT.html]   # default: the newest under $CARGO_TARGET_DIR/cargo-timings

Prints the build's wall time, the CPU time of all units, the crates that took
longest, and the critical path: from the unit that finished last, back
through the unit whose end released it, to the first. (Issue 33 measures the
cold release build with it.)
"""

import glob
import json
import os
import re
import sys


def report_path():
    if len(sys.argv) > 1:
        return sys.argv[1]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    reports = sorted(glob.glob(os.path.join(target, "cargo-timings", "cargo-timing-*.html")))
    if not reports:
        raise SystemExit(f"no cargo-timing-*.html under {target}/cargo-timings: build with --timings first")
    return reports[-1]


def units_of(path):
    text = open(path, encoding="utf-8").read()
    found = re.search(r"const UNIT_DATA = (\[.*?\]);\n", text, re.S)
    if not found:
        raise SystemExit(f"{path}: no UNIT_DATA (not a cargo timings report?)")
    return json.loads(found.group(1))


def label(unit):
    target = unit.get("target", "").strip()
    return f"{unit['name']} {unit['version']}{' ' + target if target else ''}"


def critical_path(units):
    by_index = {u["i"]: u for u in units}
    released_by = {}
    for unit in units:
        for other in unit.get("unblocked_units", []) + unit.get("unblocked_rmeta_units", []):
            end = unit["start"] + unit["duration"]
            if other not in released_by or end > released_by[other][0]:
                released_by[other] = (end, unit["i"])
    last = max(units, key=lambda u: u["start"] + u["duration"])
    path = [last]
    while path[-1]["i"] in released_by:
        path.append(by_index[released_by[path[-1]["i"]][1]])
    return list(reversed(path))


def main():
    path = report_path()
    units = units_of(path)
    wall = max(u["start"] + u["duration"] for u in units)
    cpu = sum(u["duration"] for u in units)
    print(f"report: {path}")
    print(f"units: {len(units)}; wall {wall / 60:.1f} min; unit time {cpu / 60:.1f} min")
    print()
    print("| crate | seconds | share of unit time |")
    print("|---|---|---|")
    for unit in sorted(units, key=lambda u: -u["duration"])[:20]:
        print(f"| {label(unit)} | {unit['duration']:.1f} | {unit['duration'] / cpu * 100:.1f} % |")
    print()
    print("critical path (start → end, seconds):")
    for unit in critical_path(units):
        print(f"  {unit['start']:7.1f} → {unit['start'] + unit['duration']:7.1f}  {label(unit)}")


if __name__ == "__main__":
    main()
