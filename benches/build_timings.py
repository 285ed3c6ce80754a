"""Summarises a `cargo build --timings` report: where a build's time goes.

    python3 benches/build_timings.py [REPORT.html]   # default: the newest under $CARGO_TARGET_DIR/cargo-timings
    python3 benches/build_timings.py --compare BEFORE.html AFTER.html

Prints the build's wall time, the CPU time of all units, the crates that took
longest, unit time by family of crates, how long 0, 1 or 2+ units were
compiling at once (on 2 cores, wall time is unit time / 2 when 2+ is nearly
all of it), and the critical path: from the unit that finished last, back
through the unit whose end released it, to the first. (Issue 33 measures the
cold release build with it.)

With --compare, it sets two reports side by side (a profile change measured
cold against the build before it): wall and unit time of each, and the crates
whose unit time moved most, matched by crate, version and target.
"""

import glob
import json
import os
import re
import sys


USAGE = "usage: build_timings.py [REPORT.html] | --compare BEFORE.html AFTER.html | --help"


def report_path(given):
    if given:
        return given
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    reports = sorted(glob.glob(os.path.join(target, "cargo-timings", "cargo-timing-*.html")))
    if not reports:
        raise SystemExit(f"no cargo-timing-*.html under {target}/cargo-timings: build with --timings first")
    return reports[-1]


def units_of(path):
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as error:
        raise SystemExit(f"{path}: cannot read the timings report: {error.strerror}")
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


FAMILIES = [
    ("bluelamp (this workspace)", lambda n: n.startswith("bluelamp")),
    ("datafusion-table-providers", lambda n: n.startswith("datafusion-table-providers")),
    ("datafusion-federation", lambda n: n.startswith("datafusion-federation")),
    ("datafusion and sqlparser", lambda n: n.startswith("datafusion") or n == "sqlparser"),
    ("arrow and parquet", lambda n: n.startswith("arrow") or n == "parquet"),
    ("ballista", lambda n: n.startswith("ballista")),
    ("object_store", lambda n: n == "object_store"),
    ("everything else", lambda n: True),
]


def family(name):
    return next(label for label, matches in FAMILIES if matches(name))


def concurrency(units):
    """Seconds during which 0, 1 and 2 or more units were compiling."""
    events = sorted(
        [(u["start"], 1) for u in units] + [(u["start"] + u["duration"], -1) for u in units]
    )
    active, last, spent = 0, 0.0, {0: 0.0, 1: 0.0, 2: 0.0}
    for moment, change in events:
        spent[min(active, 2)] += moment - last
        active += change
        last = moment
    return spent


def wall_and_unit_time(units):
    """The build's wall time (its last unit's end) and the sum of its units' times."""
    return max(u["start"] + u["duration"] for u in units), sum(u["duration"] for u in units)


def compare(before_path, after_path):
    before, after = units_of(before_path), units_of(after_path)

    def by_label(units):
        seconds = {}
        for unit in units:
            seconds[label(unit)] = seconds.get(label(unit), 0.0) + unit["duration"]
        return seconds

    (wall_b, cpu_b), (wall_a, cpu_a) = wall_and_unit_time(before), wall_and_unit_time(after)
    print(f"before: {before_path}\nafter:  {after_path}")
    print()
    print("| | before | after | after / before |")
    print("|---|---|---|---|")
    print(f"| wall, min | {wall_b / 60:.1f} | {wall_a / 60:.1f} | {wall_a / wall_b:.3f} |")
    print(f"| unit time, min | {cpu_b / 60:.1f} | {cpu_a / 60:.1f} | {cpu_a / cpu_b:.3f} |")
    print(f"| units | {len(before)} | {len(after)} | |")
    print()
    seconds_b, seconds_a = by_label(before), by_label(after)
    moved = sorted(
        set(seconds_b) | set(seconds_a),
        key=lambda name: -abs(seconds_a.get(name, 0.0) - seconds_b.get(name, 0.0)),
    )
    print("| crate | before s | after s | change s |")
    print("|---|---|---|---|")
    for name in moved[:25]:
        b, a = seconds_b.get(name, 0.0), seconds_a.get(name, 0.0)
        print(f"| {name} | {b:.1f} | {a:.1f} | {a - b:+.1f} |")


def main():
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return
    if args and args[0] == "--compare":
        if len(args) != 3:
            raise SystemExit(USAGE)
        compare(args[1], args[2])
        return
    if len(args) > 1 or (args and args[0].startswith("-")):
        raise SystemExit(USAGE)
    path = report_path(args[0] if args else None)
    units = units_of(path)
    wall, cpu = wall_and_unit_time(units)
    print(f"report: {path}")
    print(f"units: {len(units)}; wall {wall / 60:.1f} min; unit time {cpu / 60:.1f} min")
    print()
    print("| crate | seconds | share of unit time |")
    print("|---|---|---|")
    for unit in sorted(units, key=lambda u: -u["duration"])[:20]:
        print(f"| {label(unit)} | {unit['duration']:.1f} | {unit['duration'] / cpu * 100:.1f} % |")
    print()
    totals = {}
    for unit in units:
        name = family(unit["name"])
        totals[name] = totals.get(name, 0.0) + unit["duration"]
    print("| family | unit minutes | share |")
    print("|---|---|---|")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds / 60:.1f} | {seconds / cpu * 100:.1f} % |")
    print()
    spent = concurrency(units)
    print(
        "compiling at once: "
        + ", ".join(f"{'2+' if n == 2 else n} units {spent[n] / 60:.1f} min" for n in spent)
    )
    print()
    print("critical path (start → end, seconds):")
    for unit in critical_path(units):
        print(f"  {unit['start']:7.1f} → {unit['start'] + unit['duration']:7.1f}  {label(unit)}")


if __name__ == "__main__":
    main()
