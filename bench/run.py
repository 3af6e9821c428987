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


FULL = Settings(
    repeats=3,
    tasks=300,
    capacities=(1, 2, 4, 8, 16),
    batches=(100, 1000, 10000),
    readiness_repeats=15,
)
QUICK = Settings(repeats=1, tasks=20, capacities=(1,), batches=(20,), readiness_repeats=2)


@dataclass(frozen=True)
class Sworker:
    """A sworker measured on real Grain: what to import, and the tasklet to submit."""

    label: str
    kind: str  # "server" or "backendless": whose floor it is, or is
    module: str
    tasklet: str
    env: str = ""
    is_floor: bool = False


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
    return {
        "conformance": pytest_reported_time(conformance, max(settings.repeats, 3), package_dir, env),
        "conformance_wall": median_time(conformance, settings.repeats, package_dir, env),
        # The whole suite takes tens of seconds: the quick run leaves it out.
        "whole": float("nan") if settings is QUICK else median_time(pytest, 1, package_dir, env),
    }


def driver(package_dir: Path, *args: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, str(BENCH / "driver.py"), *args],
        cwd=package_dir,
        env=child_env(package_dir),
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
    repeats: int,
) -> dict[str, float]:
    """Median over ``repeats`` of one batch through ``sworker`` on a real local Grain."""
    runs = []
    for _ in range(repeats):
        args = [
            "grain",
            "--harness",
            harness,
            "--sworker",
            sworker.module,
            "--tasklet",
            sworker.tasklet,
        ]
        args += ["--capacity", str(capacity), "--tasks", str(tasks)]
        if sworker.env:
            args += ["--env", sworker.env]
        runs.append(driver(harness_dir, *args))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu}",
        "os": platform.platform(),
        "python": platform.python_version(),
        "grain-scheduler": version("grain-scheduler"),
        "cookiecutter": version("cookiecutter"),
        "trio": version("trio"),
        "anyio": version("anyio"),
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def run(settings: Settings, output: Path, log: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "settings": settings.__dict__}
    with tempfile.TemporaryDirectory(prefix="sworker-bench-") as tmp:
        root = Path(tmp)
        log("bake times ...")
        report["bake"] = bake_times(root, settings)
        baked = {variant: bake(root / "pkgs", variant) for variant in ("server", "backendless")}
        packages = {variant: answers(variant)["package_name"] for variant in baked}
        log("suite times ...")
        report["suite"] = {variant: suite_times(path, settings) for variant, path in baked.items()}
        sworkers = [
            Sworker(
                "server (generated)",
                "server",
                f"{packages['server']}.the_sworker",
                f"{packages['server']}.tasklet:square",
                f"{packages['server']}.demo.environment:local_service",
            ),
            Sworker(
                "server floor (trio echo, no subprocess)",
                "server",
                "floors.echo_sworker",
                "floors.echo_sworker:square",
                is_floor=True,
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
        log("throughput at capacity 1 and the default ...")
        report["throughput"] = {}
        for sworker in sworkers:
            harness_kind = "server" if sworker.kind == "server" else "backendless"
            for capacity in sorted({1, default_capacity[sworker.kind]}):
                key = f"{sworker.label}|{capacity}"
                report["throughput"][key] = grain_run(
                    baked[harness_kind],
                    packages[harness_kind],
                    sworker,
                    capacity,
                    settings.tasks,
                    settings.repeats,
                )
                log(f"  {key}: {report['throughput'][key]}")
        log("the clients alone ...")
        report["client"] = {
            f"{kind}|{capacity}": driver(
                baked[kind],
                "client",
                "--package",
                packages[kind],
                "--capacity",
                str(capacity),
                "--calls",
                str(settings.tasks),
            )["client_calls_per_s"]
            for kind in ("server", "backendless")
            for capacity in sorted({1, default_capacity[kind]})
        }
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
        for sworker in sworkers:
            harness_kind = sworker.kind
            for capacity in settings.capacities:
                measured = grain_run(
                    baked[harness_kind], packages[harness_kind], sworker, capacity, settings.tasks, settings.repeats
                )
                report["scaling"][f"{sworker.label}|{capacity}"] = measured
        log("scaling with batch size ...")
        report["batches"] = {}
        for sworker in sworkers:
            for tasks in settings.batches:
                measured = grain_run(
                    baked[sworker.kind],
                    packages[sworker.kind],
                    sworker,
                    default_capacity[sworker.kind],
                    tasks,
                    1,
                )
                report["batches"][f"{sworker.label}|{tasks}"] = measured
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
        f"{report['settings']['tasks']} trivial tasklets per run; median of {report['settings']['repeats']} runs. "
        "Head start -> first result includes the head's boot and its attach to Gnaw; for a server sworker the "
        "worker process starts just before the head, so its start-up (and the server's) overlaps the head's.",
        "",
        "| sworker | V | tasklets/s | ratio to floor (target >= 0.90) | first result s "
        "| ratio to floor (target <= 1.1x) |",
        "|---|---|---|---|---|---|",
    ]
    for key, value in throughput.items():
        label, capacity = key.split("|")
        kind = next(s["kind"] for s in report["sworkers"] if s["label"] == label)
        floor_label = next(s["label"] for s in report["sworkers"] if s["kind"] == kind and s["is_floor"])
        floor = throughput.get(f"{floor_label}|{capacity}")
        if label == floor_label or floor is None:
            speed, start = f"{value['steady_per_s']:.0f}", f"{value['first_result_s']:.3f}"
            lines.append(f"| {label} | {capacity} | {speed} | floor | {start} | floor |")
            continue
        speed = value["steady_per_s"] / floor["steady_per_s"]
        start = value["first_result_s"] / floor["first_result_s"]
        lines.append(
            f"| {label} | {capacity} | {value['steady_per_s']:.0f} | {speed:.2f} {verdict(speed >= 0.9)} | "
            f"{value['first_result_s']:.3f} | {start:.2f} {verdict(start <= 1.1)} |"
        )
    lines += [
        "",
        "The generated clients alone, without Grain (calls/s through grain_context's client on the same loopback "
        "server or service): a tasklet can go no faster than its client.",
        "",
        "| variant | V | client calls/s |",
        "|---|---|---|",
        *[f"| {key.split('|')[0]} | {key.split('|')[1]} | {value:.0f} |" for key, value in report["client"].items()],
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
    for sworker in report["sworkers"]:
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
    for sworker in report["sworkers"]:
        label = sworker["label"]
        cells = [f"{report['batches'][f'{label}|{b}']['per_tasklet_ms']:.2f}" for b in report["settings"]["batches"]]
        lines.append(f"| {sworker['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    findings = BENCH / "FINDINGS.md"
    if findings.exists() and not quick:
        lines += [findings.read_text()]
    return "\n".join(lines)


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
