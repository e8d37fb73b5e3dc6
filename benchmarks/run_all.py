"""Run every benchmark script and write their printed figures to benchmarks/RESULTS.md.

Run: `make benchmarks` (or `.venv/bin/python benchmarks/run_all.py [NAME ...]`).
Figures are noisy on a shared 2-core machine (about +-10%): compare runs made
on the same machine, and read the hardware line each script prints.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "zoo_table": "Every shipped model, re-evaluated (issue: trained model zoo)",
    "predict_latency": "Single-image prediction from JPEG bytes to top-3 (issue: predict)",
    "train_overhead": "Training worker overhead and poll cost (issue: train page)",
    "learn_render": (
        "Learn pages: convolution re-render on a 256x256 input, How a computer sees in a browser (issue: Learn pages)"
    ),
    "cpu_ceiling": "What this CPU can compute, and what the fast model's targets would cost (issue: trained model zoo)",
    "decode_memory": (
        "Peak memory and CPU of the worst accepted image of each kind (issue: a dashboard a class can share)"
    ),
    "build_estimate": "The Build page's minutes-per-epoch estimate against measured training times (issue: build)",
    "evaluate_first_paint": "Evaluate's first paint per shipped model, from stored predictions (issue: evaluate)",
    "rerun_cost": "The server's cost of Streamlit's cleanup after every script run (issue: a class on one server)",
}


def run(name: str) -> str:
    started = time.time()
    result = subprocess.run([sys.executable, str(HERE / f"{name}.py")], capture_output=True, text=True)
    output = result.stdout.strip() or result.stderr.strip()[-2000:]
    status = (
        "" if result.returncode == 0 else f"\n\n(exit status {result.returncode}: a target was missed or it failed)"
    )
    return f"## {SCRIPTS[name]}\n\n`python benchmarks/{name}.py` ({time.time() - started:.0f} s)\n\n{output}{status}\n"


def merged_sections(previous: str, fresh: list[str]) -> list[str]:
    """The sections of the previous RESULTS.md with the freshly measured ones put in place of theirs
    (matched by their "## " title); sections this run did not measure are kept, new ones appended."""
    by_title = {section.split("\n", 1)[0]: section for section in fresh}
    kept = []
    for old in previous.split("\n## ")[1:]:
        old = "## " + old.rstrip("\n") + "\n"
        kept.append(by_title.pop(old.split("\n", 1)[0], old))
    return kept + list(by_title.values())


def main(names: list[str]) -> None:
    fresh = [run(name) for name in (names or SCRIPTS)]
    results = HERE / "RESULTS.md"
    sections = merged_sections(results.read_text() if results.exists() else "", fresh)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Benchmark results\n\nLatest run: {stamp}. Produced by `make benchmarks`; a section not measured "
        "by that run keeps its last figures.\n\n" + "\n".join(sections)
    )
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
