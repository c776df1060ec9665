"""A real Prometheus (Debian's 2.42) serving given samples: the peer talonflow's PromQL is compared with.

The samples become TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, so the server
holds exactly them, at their own timestamps, with nothing scraped.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

Sample = tuple[dict[str, str], int, float]  # labels with __name__, time in seconds, value


def openmetrics(samples: Iterable[Sample]) -> str:
    lines = []
    for labels, t, value in samples:
        rest = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
        lines.append(f"{labels['__name__']}{{{rest}}} {value} {t}")
    return "\n".join(lines) + "\n# EOF\n"


@contextmanager
def prometheus_server(
    root: Path, samples: Iterable[Sample], port: int, evaluation_interval: str = "1m"
) -> Iterator[str]:
    """The server's base URL while it runs on 127.0.0.1:`port` (a port of the calling suite's range).
    `evaluation_interval` is also the step of its `x[5m:]` subqueries: give it talonflow's."""
    promtool, server = shutil.which("promtool"), shutil.which("prometheus")
    assert promtool and server, "promtool/prometheus missing: run compose/native/install-peers.sh"
    (root / "samples.om").write_text(openmetrics(samples))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "samples.om"),
                    str(root / "data")], check=True, capture_output=True)  # fmt: skip
    (root / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: 1h\n  evaluation_interval: {evaluation_interval}\n"
    )
    log = root / "prometheus.log"
    proc = subprocess.Popen(
        [server, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=36500d"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )  # fmt: skip
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/-/ready", log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"prometheus never became ready: {log.read_text()[-2000:]}")
