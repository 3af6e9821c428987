"""Benchmarks: the template and the generated sworkers against their floors, side by side.

    python bench/run.py            # the full run: writes BENCHMARKS.md and bench/throughput.png
    python bench/run.py --quick    # a short run that proves the script works (CI uses it)

Absolute times drift between runs on shared machines; ratios measured in the
same run do not, so every figure is reported against its floor, measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
REPLAY = REPO / "tests" / "replay"


@dataclass(frozen=True)
class Settings:
    repeats: int
    tasks: int
    capacities: tuple[int, ...]
    batches: tuple[int, ...]
    readiness_repeats: int
    #: Section 3, the ratios to the floors: long runs, more of them, so that a burst of load moves them less.
    floor_tasks: int
    floor_repeats: int
    #: Section 6: a server that works ``work_ms`` per request, ``work_tasks`` tasklets a run.
    work_ms: int
    work_tasks: int
    work_capacities: tuple[int, ...]
    work_repeats: int
    client_calls: int


FULL = Settings(
    repeats=3,
    tasks=300,
    capacities=(1, 2, 4, 8, 16),
    batches=(100, 1000, 10000),
    readiness_repeats=15,
    floor_tasks=1000,
    floor_repeats=5,
    work_ms=10,
    work_tasks=200,
    work_capacities=(1, 2, 4, 8),
    work_repeats=3,
    client_calls=3000,
)
QUICK = Settings(
    repeats=1,
    tasks=20,
    capacities=(1,),
    batches=(20,),
    readiness_repeats=2,
    floor_tasks=20,
    floor_repeats=1,
    work_ms=10,
    work_tasks=20,
    work_capacities=(1, 2),
    work_repeats=1,
    client_calls=200,
)
#: The speed-up at V=4 over V=1 with a 10 ms server that issue 14 asks for (the limit is 4x).
SPEEDUP_TARGET = 3.2


@dataclass(frozen=True)
class Sworker:
    """A sworker measured on real Grain: what to import, and the tasklet to submit."""

    label: str
    kind: str  # "server" or "backendless": whose floor it is, or is
    module: str
    tasklet: str
    env: str = ""
    is_floor: bool = False
    #: Shown beside the floor, without a target (e.g. Grain's least cost, not like for like).
    is_reference: bool = False
    #: Environment variables for the head, the worker and the server of every run.
    variables: tuple[tuple[str, str], ...] = ()


def answers(variant: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPLAY / f"{variant}.json").read_text())["cookiecutter"]
    return data


def median_time(command: list[str], repeats: int, cwd: Path, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(
                f"{command} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
            )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cookiecutter_command(template: Path, output: Path, extra: dict[str, Any]) -> list[str]:
    pairs = [f"{key}={json.dumps(value) if isinstance(value, bool) else value}" for key, value in extra.items()]
    cli = str(Path(sys.executable).with_name("cookiecutter"))
    return [
        cli,
        "--no-input",
        "--overwrite-if-exists",
        "--output-dir",
        str(output),
        str(template),
        *pairs,
    ]


def trivial_template(root: Path) -> Path:
    """A one-file template: cookiecutter's own start-up and rendering, the bake floor."""
    template = root / "trivial-template"
    (template / "{{cookiecutter.name}}").mkdir(parents=True)
    (template / "cookiecutter.json").write_text('{"name": "trivial"}\n')
    (template / "{{cookiecutter.name}}" / "README.md").write_text("# {{ cookiecutter.name }}\n")
    return template


def bake_times(root: Path, settings: Settings) -> dict[str, float]:
    repeats = 1 if settings is QUICK else max(settings.repeats, 7)
    results = {
        "trivial": median_time(
            cookiecutter_command(trivial_template(root), root / "out", {}),
            repeats,
            root,
        )
    }
    for variant in ("server", "backendless"):
        command = cookiecutter_command(REPO, root / "out", answers(variant))
        results[variant] = median_time(command, repeats, root)
    return results


def bake(root: Path, variant: str) -> Path:
    subprocess.run(
        cookiecutter_command(REPO, root, answers(variant)),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return root / answers(variant)["package_name"]


def child_env(package_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join([str(package_dir), str(BENCH), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": path,
        "PYTHONDONTWRITEBYTECODE": "1",
        # The baked package's instance key, kept with it (by default it would be made in ~/.config).
        f"{package_dir.name.upper()}_INSTANCE_KEY_FILE": str(package_dir / ".instance.key"),
        **(extra or {}),
    }


def pytest_reported_time(command: list[str], repeats: int, cwd: Path, env: dict[str, str]) -> float:
    """Median of the time pytest itself reports ("in 1.23s"): the checks, without interpreter start-up."""
    times = []
    for _ in range(repeats):
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        found = re.search(r" in ([0-9.]+)s", result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None
        if result.returncode != 0 or found is None:
            raise RuntimeError(
                f"{command} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
            )
        times.append(float(found.group(1)))
    return statistics.median(times)


def suite_times(package_dir: Path, settings: Settings) -> dict[str, float]:
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    env = child_env(package_dir)
    conformance = [*pytest, "tests/sworker_conformance"]
    runs = 1 if settings is QUICK else max(settings.repeats, 3)  # a steady median; quick only proves it works
    return {
        "conformance": pytest_reported_time(conformance, runs, package_dir, env),
        "conformance_wall": median_time(conformance, settings.repeats, package_dir, env),
        # The whole suite takes tens of seconds: the quick run leaves it out.
        "whole": float("nan") if settings is QUICK else median_time(pytest, 1, package_dir, env),
    }


def driver(package_dir: Path, *args: str, variables: dict[str, str] | None = None) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, str(BENCH / "driver.py"), *args],
        cwd=package_dir,
        env=child_env(package_dir, variables),
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"driver {args} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
    measured: dict[str, float] = json.loads(lines[-1][len("BENCH ") :])
    return measured


def grain_run(
    harness_dir: Path,
    harness: str,
    sworker: Sworker,
    capacity: int,
    tasks: int,
    variables: dict[str, str] | None = None,
) -> dict[str, float]:
    """One batch through ``sworker`` on a real local Grain."""
    args = ["grain", "--harness", harness, "--sworker", sworker.module, "--tasklet", sworker.tasklet]
    args += ["--capacity", str(capacity), "--tasks", str(tasks)]
    if sworker.env:
        args += ["--env", sworker.env]
    return driver(harness_dir, *args, variables={**dict(sworker.variables), **(variables or {})})


def interleaved(jobs: dict[str, Callable[[], dict[str, float]]], repeats: int) -> dict[str, dict[str, float]]:
    """Each job's median over ``repeats``, the jobs taking turns (A B C A B C ...).

    Figures that are compared (a sworker and its floor, V=1 and V=4) are then taken
    in the same stretch of time, so load from elsewhere on the machine hits them alike.
    """
    runs: dict[str, list[dict[str, float]]] = {key: [] for key in jobs}
    for _ in range(repeats):
        for key, job in jobs.items():
            runs[key].append(job())
    return {
        key: {name: statistics.median(run[name] for run in found) for name in found[0]} for key, found in runs.items()
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for the record of how busy the machine was."""
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    """What the figures were taken on: ratios move with the CPU's speed (see the findings)."""
    cpuinfo: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            cpuinfo.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = cpuinfo.get("model name", platform.processor() or "?")
    cache = f"{cpuinfo['cache size']} cache" if "cache size" in cpuinfo else ""
    details = [f"{float(cpuinfo['cpu MHz']):.0f} MHz" if "cpu MHz" in cpuinfo else "", cache]
    if "hypervisor" in cpuinfo.get("flags", "").split():
        details.append("virtual machine")
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "?"
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu}",
        "cpu": ", ".join(detail for detail in details if detail) or "?",
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "grain-scheduler": version("grain-scheduler"),
        "cookiecutter": version("cookiecutter"),
        "trio": version("trio"),
        "anyio": version("anyio"),
    }


#: Section 6's row for the generated sworker told that its server runs one job at a time.
ONE_JOB_LABEL = "server (generated), one job at a time (MAX_CONCURRENT=1)"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def run(settings: Settings, output: Path, log: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "settings": settings.__dict__}
    report["machine"]["load average at start (1 / 5 / 15 min)"] = load_average()
    with tempfile.TemporaryDirectory(prefix="sworker-bench-") as tmp:
        root = Path(tmp)
        log("bake times ...")
        report["bake"] = bake_times(root, settings)
        baked = {variant: bake(root / "pkgs", variant) for variant in ("server", "backendless")}
        packages = {variant: answers(variant)["package_name"] for variant in baked}
        log("suite times ...")
        report["suite"] = {variant: suite_times(path, settings) for variant, path in baked.items()}
        server_package = packages["server"]
        sworkers = [
            Sworker(
                "server (generated)",
                "server",
                f"{server_package}.the_sworker",
                f"{server_package}.tasklet:square",
                f"{server_package}.demo.environment:local_service",
            ),
            Sworker(
                "server floor (same server, minimal client)",
                "server",
                "floors.same_server",
                "floors.same_server:square",
                is_floor=True,
                variables=(("BENCH_SERVER_PACKAGE", server_package),),
            ),
            Sworker(
                "server reference (trio echo in the worker, no server process)",
                "server",
                "floors.echo_sworker",
                "floors.echo_sworker:square",
                is_reference=True,
            ),
            Sworker(
                "backendless (generated)",
                "backendless",
                f"{packages['backendless']}.the_sworker",
                f"{packages['backendless']}.tasklet:square",
                f"{packages['backendless']}.demo.environment:local_service",
            ),
            Sworker(
                "backendless floor (grain.local_sworker)",
                "backendless",
                "grain.local_sworker",
                "floors.local_tasklet:square",
                is_floor=True,
            ),
        ]
        default_capacity = {kind: int(answers(kind)["capacity"]) for kind in ("server", "backendless")}

        def grain_job(
            sworker: Sworker, capacity: int, tasks: int, variables: dict[str, str] | None = None
        ) -> Callable[[], dict[str, float]]:
            return lambda: grain_run(baked[sworker.kind], packages[sworker.kind], sworker, capacity, tasks, variables)

        log("throughput at capacity 1 and the default ...")
        report["throughput"] = {}
        for capacity in sorted({1, *default_capacity.values()}):
            jobs = {
                f"{sworker.label}|{capacity}": grain_job(sworker, capacity, settings.floor_tasks)
                for sworker in sworkers
                if capacity in (1, default_capacity[sworker.kind])
            }
            report["throughput"].update(interleaved(jobs, settings.floor_repeats))
        for key, value in report["throughput"].items():
            log(f"  {key}: {value}")
        log("the clients alone ...")

        def client_job(kind: str, capacity: int) -> Callable[[], dict[str, float]]:
            args = ["client", "--package", packages[kind], "--capacity", str(capacity)]
            args += ["--calls", str(settings.client_calls)] + (["--with-floor"] if kind == "server" else [])
            return lambda: driver(baked[kind], *args)

        report["client"] = interleaved(
            {
                f"{kind}|{capacity}": client_job(kind, capacity)
                for kind in ("server", "backendless")
                for capacity in sorted({1, default_capacity[kind]})
            },
            settings.repeats,
        )
        log("readiness latency ...")
        report["readiness"] = driver(
            baked["server"],
            "readiness",
            "--package",
            packages["server"],
            "--repeats",
            str(settings.readiness_repeats),
        )
        log("scaling with capacity ...")
        report["scaling"] = {}
        measured_sworkers = [s for s in sworkers if not s.is_reference]  # the reference once, in section 3
        for capacity in settings.capacities:
            jobs = {f"{s.label}|{capacity}": grain_job(s, capacity, settings.tasks) for s in measured_sworkers}
            report["scaling"].update(interleaved(jobs, settings.repeats))
        log("scaling with batch size ...")
        report["batches"] = {}
        for sworker in measured_sworkers:
            for tasks in settings.batches:
                measured = grain_job(sworker, default_capacity[sworker.kind], tasks)()
                report["batches"][f"{sworker.label}|{tasks}"] = measured
        log(f"capacity against a server that works {settings.work_ms} ms per request ...")
        upper = server_package.upper()
        work = {f"{upper}_DEMO_DELAY_MS": str(settings.work_ms)}
        one_job = {**work, f"{upper}_MAX_CONCURRENT": "1"}
        report["work"] = {}
        for capacity in settings.work_capacities:
            jobs = {
                f"{sworkers[0].label}|{capacity}": grain_job(sworkers[0], capacity, settings.work_tasks, work),
                f"{sworkers[1].label}|{capacity}": grain_job(sworkers[1], capacity, settings.work_tasks, work),
                f"{ONE_JOB_LABEL}|{capacity}": grain_job(sworkers[0], capacity, settings.work_tasks, one_job),
            }
            report["work"].update(interleaved(jobs, settings.work_repeats))
            for key in jobs:
                log(f"  {key}: {report['work'][key]}")
        report["machine"]["load average at end (1 / 5 / 15 min)"] = load_average()
        report["sworkers"] = [s.__dict__ for s in sworkers]
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench-results.json").write_text(json.dumps(report, indent=2))
    plot(report, output / "throughput.png")
    (output / "BENCHMARKS.md").write_text(markdown(report, quick=settings is QUICK))
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for sworker in report["sworkers"]:
        if sworker.get("is_reference"):
            continue
        points = sorted(
            (int(key.split("|")[1]), value["steady_per_s"])
            for key, value in report["scaling"].items()
            if key.split("|")[0] == sworker["label"]
        )
        style = "--" if sworker["is_floor"] else "-"
        axes.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            style,
            marker="o",
            label=sworker["label"],
        )
    axes.set_xscale("log", base=2)
    axes.set_xlabel("instance capacity V")
    axes.set_ylabel("steady tasklets per second")
    axes.set_title("Throughput on real Grain 0.17 (one instance, loopback)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(report: dict[str, Any], *, quick: bool) -> str:
    bake, suite, throughput = report["bake"], report["suite"], report["throughput"]
    lines = ["# Benchmarks", ""]
    if quick:
        lines += ["_A quick run (`--quick`): too few repeats for conclusions._", ""]
    lines += [
        "Measured by `python bench/run.py` in one run on one machine; each figure is a ratio to its floor measured "
        "in the same run (medians of several runs where noted).",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in report["machine"].items()],
        "",
        "## 1. Bake time (cookiecutter --no-input, CLI start-up included)",
        "",
        "| template | median s | ratio to the trivial template | target <= 1.1x |",
        "|---|---|---|---|",
        f"| trivial one-file template (floor) | {bake['trivial']:.3f} | 1.00 | |",
    ]
    for variant in ("server", "backendless"):
        ratio = bake[variant] / bake["trivial"]
        lines.append(f"| {variant} | {bake[variant]:.3f} | {ratio:.2f} | {verdict(ratio <= 1.1)} |")
    lines += [
        "",
        "## 2. Conformance suite time",
        "",
        "The generic checks as pytest times them (median), then the same command's wall time with Python's "
        "start-up and imports, and the whole generated suite (with the real-Grain and lifecycle tests).",
        "",
        "| variant | generic checks s | target <= 3 s | wall time s | whole suite s |",
        "|---|---|---|---|---|",
    ]
    for variant, times in suite.items():
        lines.append(
            f"| {variant} | {times['conformance']:.2f} | {verdict(times['conformance'] <= 3)} "
            f"| {times['conformance_wall']:.2f} | {times['whole']:.2f} |"
        )
    lines += [
        "",
        "## 3. Real Grain: throughput and start-up against the floors",
        "",
        f"{report['settings']['floor_tasks']} trivial tasklets per run (the server answers at once); median of "
        f"{report['settings']['floor_repeats']} runs, a sworker's runs taking turns with its floor's. "
        "Head start -> first result includes the head's boot and its attach to Gnaw; for a server sworker the "
        "worker process starts just before the head, so its start-up (and the server's) overlaps the head's. "
        "The server floor runs the generated package's own demo server behind a minimal sworker and client "
        "(`bench/floors/same_server.py`): like for like. The trio echo reference serves from inside the worker, "
        "with no server process: Grain's own cost, shown without a target.",
        "",
        "| sworker | V | tasklets/s | ratio to floor (target >= 0.90) | first result s "
        "| ratio to floor (target <= 1.1x) |",
        "|---|---|---|---|---|---|",
    ]
    for sworker in report["sworkers"]:
        label, kind = sworker["label"], sworker["kind"]
        floor_label = next(s["label"] for s in report["sworkers"] if s["kind"] == kind and s["is_floor"])
        for key, value in throughput.items():
            if key.split("|")[0] != label:
                continue
            capacity = key.split("|")[1]
            floor = throughput.get(f"{floor_label}|{capacity}")
            speed, start = f"{value['steady_per_s']:.0f}", f"{value['first_result_s']:.3f}"
            if label == floor_label or floor is None or sworker.get("is_reference"):
                role = "floor" if label == floor_label else "reference"
                lines.append(f"| {label} | {capacity} | {speed} | {role} | {start} | {role} |")
                continue
            speed_ratio = value["steady_per_s"] / floor["steady_per_s"]
            start_ratio = value["first_result_s"] / floor["first_result_s"]
            lines.append(
                f"| {label} | {capacity} | {speed} | {speed_ratio:.2f} {verdict(speed_ratio >= 0.9)} | "
                f"{start} | {start_ratio:.2f} {verdict(start_ratio <= 1.1)} |"
            )
    lines += [
        "",
        "The clients alone, without Grain (calls through grain_context's client on the same loopback server or "
        "service; median of rounds): a tasklet can go no faster than its client. The server floor's minimal "
        "client calls the same server in the same run, its rounds taking turns with the generated client's. "
        "The CPU columns are the calling process's own time per call (the head's share), which waiting for the "
        "server does not inflate.",
        "",
        "| client | V | calls/s | us per call | CPU us per call | CPU ratio to the floor's |",
        "|---|---|---|---|---|---|",
        *client_rows(report["client"]),
    ]
    readiness = report["readiness"]
    lines += [
        "",
        "## 4. Readiness latency (server listening -> grain_run_sworker yields)",
        "",
        f"Median {readiness['readiness_median_ms']:.1f} ms, worst {readiness['readiness_max_ms']:.1f} ms over "
        f"{report['settings']['readiness_repeats']} starts; target <= 100 ms: "
        f"{verdict(readiness['readiness_median_ms'] <= 100)}. The wait polls with a backoff from 2 ms to 10 ms.",
        "",
        "## 5. How cost grows",
        "",
        "Throughput (tasklets/s, median of the runs) against instance capacity V ([plot](bench/throughput.png)):",
        "",
        "| sworker | " + " | ".join(f"V={c}" for c in report["settings"]["capacities"]) + " |",
        "|---|" + "---|" * len(report["settings"]["capacities"]),
    ]
    measured = [s for s in report["sworkers"] if not s.get("is_reference")]
    for sworker in measured:
        label = sworker["label"]
        cells = [f"{report['scaling'][f'{label}|{c}']['steady_per_s']:.0f}" for c in report["settings"]["capacities"]]
        lines.append(f"| {sworker['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Time per tasklet (ms, head start to last result, at the default capacity) against batch size:",
        "",
        "| sworker | " + " | ".join(f"{b} tasklets" for b in report["settings"]["batches"]) + " |",
        "|---|" + "---|" * len(report["settings"]["batches"]),
    ]
    for sworker in measured:
        label = sworker["label"]
        cells = [f"{report['batches'][f'{label}|{b}']['per_tasklet_ms']:.2f}" for b in report["settings"]["batches"]]
        lines.append(f"| {sworker['label']} | " + " | ".join(cells) + " |")
    lines += work_section(report)
    lines.append("")
    findings = BENCH / "FINDINGS.md"
    if findings.exists() and not quick:
        lines += [findings.read_text()]
    return "\n".join(lines)


def client_rows(client: dict[str, dict[str, float]]) -> list[str]:
    """The clients-alone table: the generated client, and the floor's client where it was measured beside it."""
    rows = []
    for key, value in client.items():
        kind, capacity = key.split("|")
        for name, label in (("client", f"{kind} (generated)"), ("floor", f"{kind} floor (minimal client)")):
            if f"{name}_calls_per_s" not in value:
                continue
            ratio = (
                "floor"
                if name == "floor"
                else f"{value['client_cpu_us_per_call'] / value['floor_cpu_us_per_call']:.2f}"
                if "floor_cpu_us_per_call" in value
                else ""
            )
            rows.append(
                f"| {label} | {capacity} | {value[f'{name}_calls_per_s']:.0f} | {value[f'{name}_us_per_call']:.0f} "
                f"| {value[f'{name}_cpu_us_per_call']:.0f} | {ratio} |"
            )
    return rows


def work_section(report: dict[str, Any]) -> list[str]:
    """Section 6: what Capacity buys when each request takes time on the server."""
    settings, work = report["settings"], report["work"]
    ideal_per_v = 1000 / settings["work_ms"]
    capacities = settings["work_capacities"]
    lines = [
        "",
        f"## 6. What Capacity buys: a server that works {settings['work_ms']} ms per request",
        "",
        f"The demo server with `<PKG>_DEMO_DELAY_MS={settings['work_ms']}` (each request sleeps in its "
        f"connection's thread), {settings['work_tasks']} tasklets per run, median of {settings['work_repeats']} "
        "runs taking turns. Steady throughput (first result to last, tasklets/s) and its ratio to the ideal, "
        f"V / {settings['work_ms']} ms. The last row tells the generated client that the server runs one job at a "
        "time (`<PKG>_MAX_CONCURRENT=1`): its results must stay right at any V, and its speed stays at V=1's.",
        "",
        "| sworker | " + " | ".join(f"V={c}" for c in capacities) + " |",
        "|---|" + "---|" * len(capacities),
    ]
    labels = dict.fromkeys(key.split("|")[0] for key in work)
    for label in labels:
        cells = []
        for capacity in capacities:
            steady = work[f"{label}|{capacity}"]["steady_per_s"]
            cells.append(f"{steady:.0f} ({steady / (capacity * ideal_per_v):.2f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    generated = next(label for label in labels)
    if 1 in capacities and 4 in capacities:
        speedup = work[f"{generated}|4"]["steady_per_s"] / work[f"{generated}|1"]["steady_per_s"]
        lines += [
            "",
            f"Speed-up of the generated server sworker at V=4 over V=1: **{speedup:.2f}x** (target >= "
            f"{SPEEDUP_TARGET}x, the limit is 4x): {verdict(speedup >= SPEEDUP_TARGET)}.",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that proves the script works")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write BENCHMARKS.md and the plot",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite BENCHMARKS.md from bench/results.json, measuring nothing"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        report = json.loads((BENCH / "results.json").read_text())
        (REPO / "BENCHMARKS.md").write_text(markdown(report, quick=False))
        return 0
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started as a background job: let children have SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = QUICK if args.quick else FULL
    output = args.output or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else REPO)
    started = time.perf_counter()
    report = run(settings, output, lambda message: print(message, flush=True))
    print((output / "BENCHMARKS.md").read_text())
    print(f"wrote {output / 'BENCHMARKS.md'} and {output / 'throughput.png'} in {time.perf_counter() - started:.0f} s")
    if output == REPO:
        shutil.move(str(REPO / "throughput.png"), BENCH / "throughput.png")
        (REPO / "bench-results.json").replace(BENCH / "results.json")
    del report
    return 0


if __name__ == "__main__":
    sys.exit(main())
