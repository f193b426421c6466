"""Render benchmarks/RESULTS.md and benchmarks/results.json from benchmark JSON files.

    python benchmarks/write_results.py                           # every *.json in benchmarks/results
    python benchmarks/write_results.py OUT/                      # every *.json in OUT
    python benchmarks/write_results.py OUT/mle.json OUT/grpo.json

Every benchmark script writes (with --json) one JSON in the same results protocol, so this
writer has no per-benchmark rendering code:

    {"benchmark": name, "title": str, "description": one paragraph (method, column meanings),
     "command": str, "date": ISO date, "machine": {...}, "settings": {...},
     "columns": [[key, header, format spec], ...], "rows": [{key: value}, ...],
     "figures": {flat name: number}   (headline figures and the raw figures behind them),
     "notes": [str, ...], "plot": "path/from/repo/root.png" (optional)}

RESULTS.md: a Targets section (the issue's targets against the headline figures, met / not
met / not measured), then one section per benchmark. results.json: {"machine", "date", then
one key per benchmark found: {"command", **figures}}, plus "targets", "not_run" and
"not_available". A benchmark without a JSON gets a "Not run" section rather than an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from common import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROTOCOL_KEYS = ("benchmark", "title", "description", "command", "date", "machine", "settings", "columns", "rows",
                 "figures", "notes")

# The benchmarks a full run produces, in section order: name -> (title, script). Any other
# protocol JSON found is rendered too, after these.
EXPECTED = {
    "sampler_vs_generate": ("Sampler vs model.generate", "benchmarks/bench_sampler.py"),
    "grpo": ("GRPO step", "benchmarks/bench_grpo.py"),
    "grpo_vs_trl": ("GRPO step vs TRL", "benchmarks/bench_vs_trl.py"),
    "mle": ("MLE throughput and MFU", "benchmarks/bench_mle.py"),
    "scaling": ("GRPO step scaling", "benchmarks/bench_scaling.py"),
    "video": ("Video world model (Meta-World)", "benchmarks/bench_video.py"),
    "web": ("Web world (MiniWoB++)", "benchmarks/bench_web.py"),
    "pretrained": ("Pretrained LM (SmolLM2-135M-Instruct) in the GRPO loop", "benchmarks/bench_pretrained.py"),
}
NOT_AVAILABLE: dict[str, tuple[str, str]] = {}

# The targets: (what, benchmark, figure, target, format of the value). All are "at least".
TARGETS = [
    ("GRPO prompts/s, ours / TRL", "grpo_vs_trl", "ratio_prompts_per_s", 2.0, ".2f"),
    ("Sampler tok/s, ours / model.generate, batch >= 32 (measured at 32, greedy)", "sampler_vs_generate",
     "ratio_tokens_per_s_batch32", 1.5, ".2f"),
    ("MLE model FLOPs utilisation (fraction of the fp32 matmul peak)", "mle", "mfu", 0.60, ".3f"),
]


# ---------------------------------------------------------------- loading

def json_files(inputs: list[Path]) -> list[Path]:
    """The JSON files named, and every *.json directly in the folders named."""
    files = []
    for path in inputs:
        if path.is_dir():
            files += sorted(path.glob("*.json"))
        elif path.exists():
            files.append(path)
        else:
            print(f"warning: {path} does not exist; skipped", file=sys.stderr)
    return files


def load_results(files: list[Path]) -> dict[str, dict]:
    """name -> result; files outside the protocol are skipped with a warning, and of two
    results for one benchmark the later-dated one is kept."""
    results: dict[str, dict] = {}
    for f in files:
        try:
            r = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"warning: {f}: not readable JSON ({e}); skipped", file=sys.stderr)
            continue
        missing = [k for k in PROTOCOL_KEYS if not isinstance(r, dict) or k not in r]
        if missing:
            print(f"warning: {f}: not in the results protocol (missing {', '.join(missing)}); skipped; "
                  "rerun its benchmark", file=sys.stderr)
            continue
        name = r["benchmark"]
        if name in results:
            keep = max(results[name], r, key=lambda x: x["date"])
            print(f"warning: two results for {name!r}; keeping the one dated {keep['date']}", file=sys.stderr)
            r = keep
        results[name] = r
    return results


# ---------------------------------------------------------------- rendering

def fmt_number(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.4e}"


def describe_machine(m: dict) -> str:
    keys = ("cpu", "cores", "torch", "threads", "transformers", "omp_wait_policy", "loadavg_1m_at_start")
    if all(k in m for k in keys):
        return (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads), "
                f"transformers {m['transformers']}, OMP_WAIT_POLICY={m['omp_wait_policy']}, "
                f"load average at start {m['loadavg_1m_at_start']}")
    return ", ".join(f"{k} {v}" for k, v in m.items())


def plot_link(plot: str, title: str, out_dir: Path) -> str:
    """A Markdown image whose path works from RESULTS.md's folder (plot paths are from the repo root)."""
    path = Path(plot) if Path(plot).is_absolute() else ROOT / plot
    rel = os.path.relpath(path, out_dir.resolve())
    missing = "" if path.exists() else f"\n\n(plot file {plot} not found)"
    return f"![{title}]({rel}){missing}"


def section(r: dict, out_dir: Path) -> str:
    settings = "\n".join(f"- {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in r["settings"].items())
    parts = [
        f"## {r['title']}", r["description"], f"```bash\n{r['command']}\n```",
        f"- date: {r['date']}\n- machine: {describe_machine(r['machine'])}\n{settings}",
        markdown_table(r["rows"], [tuple(c) for c in r["columns"]]),
    ]
    if r.get("plot"):
        parts.append(plot_link(r["plot"], r["title"], out_dir))
    if r["figures"]:
        figures = "\n".join(f"- `{k}`: {fmt_number(v)}" for k, v in r["figures"].items())
        parts.append(f"<details><summary>figures ({len(r['figures'])}, also in results.json)</summary>\n\n"
                     f"{figures}\n\n</details>")
    if r["notes"]:
        parts.append("Notes:\n\n" + "\n".join(f"- {n}" for n in r["notes"]))
    return "\n\n".join(parts) + "\n"


def not_run_section(name: str) -> str:
    title, script = EXPECTED[name]
    return (f"## {title}\n\nNot run: no `{name}` result among the inputs. It comes from "
            f"`python {script} --json benchmarks/results/{name}.json` (or `bash benchmarks/run_all.sh`).\n")


def evaluate_targets(results: dict[str, dict]) -> list[dict]:
    """Each target with its measured value and status: met, not met, not measured or not available."""
    out = []
    for what, bench, figure, target, fmt in TARGETS:
        row = {"target": what, "benchmark": bench, "figure": figure, "required": target, "value": None, "fmt": fmt}
        if bench in NOT_AVAILABLE:
            row["status"] = f"not available: {NOT_AVAILABLE[bench][1]}"
        elif bench not in results:
            row["status"] = "not measured"
        elif results[bench]["figures"].get(figure) is None:
            row["status"] = f"not measured (no `{figure}` in the {bench} result)"
        else:
            row["value"] = results[bench]["figures"][figure]
            row["status"] = "met" if row["value"] >= target else "not met"
        out.append(row)
    return out


def targets_section(targets: list[dict]) -> str:
    lines = ["## Targets", "",
             "The issue's targets against the headline figures (all are \"at least\"); a value is "
             "`benchmark.figure` in results.json.", "",
             "| target | figure | value | required | status |", "|---|---|---:|---:|---|"]
    for t in targets:
        figure = f"`{t['benchmark']}.{t['figure']}`" if t["figure"] else "-"
        value = format(t["value"], t["fmt"]) if t["value"] is not None else "-"
        required = f">= {t['required']:g}" if t["required"] is not None else "-"
        lines.append(f"| {t['target']} | {figure} | {value} | {required} | {t['status']} |")
    return "\n".join(lines) + "\n"


def render(results: dict[str, dict], targets: list[dict], out_dir: Path) -> str:
    names = list(EXPECTED) + sorted(n for n in results if n not in EXPECTED)
    sections = [section(results[n], out_dir) if n in results else not_run_section(n) for n in names]
    sections += [f"## {title}\n\nNot available: {why}.\n" for title, why in NOT_AVAILABLE.values()]
    return ("# Benchmarks\n\nWritten by `benchmarks/write_results.py` from the benchmarks' JSON results "
            "(`bash benchmarks/run_all.sh` runs them all, then this); rerun it to refresh. Numbers are CPU "
            "wall-clock and depend on machine load: the load average at the start of each run is part of its "
            "machine line.\n\n" + targets_section(targets) + "\n" + "\n".join(sections))


# ---------------------------------------------------------------- results.json

def summary_json(results: dict[str, dict], targets: list[dict]) -> dict:
    """{"machine", "date", one key per benchmark: {"command", **figures}, "targets", "not_run", "not_available"}."""
    present = [results[n] for n in list(EXPECTED) + sorted(results) if n in results]
    machine = {k: v for k, v in present[0]["machine"].items() if k != "loadavg_1m_at_start"} if present else None
    out: dict = {"machine": machine, "date": max((r["date"] for r in present), default=None)}
    for r in present:
        out[r["benchmark"]] = {"command": r["command"], **r["figures"]}
    out["targets"] = [{k: v for k, v in t.items() if k != "fmt"} for t in targets]
    out["not_run"] = [n for n in EXPECTED if n not in results]
    out["not_available"] = {n: why for n, (_, why) in NOT_AVAILABLE.items()}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", type=Path, default=[HERE / "results"],
                   help="result JSON files and/or folders holding them (default: benchmarks/results)")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="Markdown to write (default: benchmarks/RESULTS.md)")
    p.add_argument("--results-json", type=Path, default=HERE / "results.json",
                   help="summary JSON to write (default: benchmarks/results.json)")
    args = p.parse_args(argv)

    summary_file = args.results_json.resolve()
    results = load_results([f for f in json_files(args.inputs) if f.resolve() != summary_file])
    targets = evaluate_targets(results)
    args.out.write_text(render(results, targets, args.out.parent))
    args.results_json.write_text(json.dumps(summary_json(results, targets), indent=1) + "\n")
    found = ", ".join(results) or "none"
    print(f"wrote {args.out} and {args.results_json} (benchmarks found: {found})")
    for t in targets:
        value = format(t["value"], t["fmt"]) if t["value"] is not None else "-"
        print(f"  {t['target']}: {value} -> {t['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
