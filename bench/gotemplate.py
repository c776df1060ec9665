"""schemas/gotemplate.py against Go's text/template: microseconds per render, side by side.

    python -m bench.gotemplate [--repeat 20000]

The templates are the kinds talonflow renders per alert: a Prometheus annotation (labels,
printf of the value) and an Alertmanager-style message over a group of alerts (range, if, len,
join-like printing). Parsing is done once on both sides, as both engines cache parsed templates;
the Go side is tests/gotemplate_peer (the conformance test's peer), built with `go build`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from schemas.gotemplate import GoTemplate

PEER = Path(__file__).resolve().parent.parent / "tests" / "gotemplate_peer" / "main.go"
ALERTS = [
    {"Status": "firing", "Labels": {"alertname": "HighErrorRate", "agent": f"a{i}", "severity": "critical"}}
    for i in range(10)
]
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "annotation": (
        '{{ .labels.instance }} of {{ .labels.job }}: error ratio {{ printf "%.2f" .value }} (> 0.1)',
        {"labels": {"instance": "i-1", "job": "planner"}, "value": 0.1234},
    ),
    "message (10 alerts)": (
        "{{ range .Alerts }}[{{ .Status }}] {{ .Labels.alertname }} on {{ .Labels.agent }}"
        '{{ if eq .Labels.severity "critical" }} (page){{ end }}\n{{ end }}{{ len .Alerts }} alerts',
        {"Alerts": ALERTS},
    ),
}


def go_times(repeat: int) -> dict[str, float]:
    go = shutil.which("go")
    if go is None:
        raise SystemExit("bench.gotemplate: the Go toolchain is needed for the peer")
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp) / "main.go", Path(tmp) / "peer"
        shutil.copy(PEER, source)
        subprocess.run([go, "build", "-o", str(binary), str(source)], check=True)
        cases = [{"source": s, "data": d, "repeat": repeat} for s, d in CASES.values()]
        out = subprocess.run(
            [str(binary)], input=json.dumps(cases), capture_output=True, text=True, check=True
        )
    return {name: r["ns_per_op"] / 1000 for name, r in zip(CASES, json.loads(out.stdout), strict=True)}


def python_times(repeat: int) -> dict[str, float]:
    times = {}
    for name, (source, data) in CASES.items():
        template = GoTemplate(source)
        start = time.perf_counter()
        for _ in range(repeat):
            template.render(data)
        times[name] = (time.perf_counter() - start) / repeat * 1e6
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=20000)
    args = parser.parse_args()
    ours, go = python_times(args.repeat), go_times(args.repeat)
    print(f"{'template':<22}{'talonflow µs':>14}{'Go µs':>10}{'ratio':>8}")
    for name in CASES:
        print(f"{name:<22}{ours[name]:>14.1f}{go[name]:>10.2f}{ours[name] / go[name]:>7.0f}x")


if __name__ == "__main__":
    main()
