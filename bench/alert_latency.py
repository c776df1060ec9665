"""Alert latency beside Prometheus 2.42 + Alertmanager: from the evaluation that should fire an alert
to its webhook notification.

    python -m bench.alert_latency [--episodes 6] [--spacing 11] [--scrape-interval 5]

One prometheus_client exporter serves `bench_queue_depth{episode}`. A real Prometheus 2.42 scrapes
it, evaluates the rule file below and sends to two real Alertmanagers (Debian
prometheus-alertmanager 0.25): one with Alertmanager's defaults (group_wait 30s), one with
`group_wait: 0s`. The same Prometheus remote-writes every sample it scraped to a live talonflow
stack (`talonflow up`; batch_send_deadline 100ms, so that the feed adds little), whose alerts flow
evaluates the same rule file and notifies through two routes, group_wait 30s (default) and 0s.
All four notify one webhook server in the bench.

    groups: [{name: latency, interval: 15s,
              rules: [{alert: BenchQueueHigh, expr: bench_queue_depth > 50, for: 30s}]}]

Episode k's series goes from 10 to 90 `--spacing` seconds after episode k-1's, and back to 10 once
every receiver was notified. The evaluation that should fire it is, for each system, the first
evaluation at or after the first sample at 90 (Prometheus' raw samples, which are also talonflow's),
plus 30 s; evaluations are on the group's 15 s grid: talonflow's at multiples of 15 s, Prometheus'
offset by a hash of the group (read off its ALERTS_FOR_STATE samples). The delay is the webhook's
arrival (wall clock) minus that instant. `startsAt` of each notification is checked against it.

The stack's rollups, heartbeats, lifecycle and ingest flows are stopped: none of them is on the
alert path, and the machine has 2 cores. Ports: 31200-31499.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from bench.percentiles import nearest_rank
from bench.stack import bench_stack, stack_settings
from bench.webhook import Arrival, Webhook

EXPORTER, HOOK, PROMETHEUS, AM_DEFAULT, AM_ZERO = 31401, 31480, 31490, 31493, 31494
INTERVAL_MS, FOR_MS = 15_000, 30_000
LOW, HIGH = 10.0, 90.0
ALERT = "BenchQueueHigh"
RULES = {
    "groups": [
        {
            "name": "latency",
            "interval": "15s",
            "rules": [
                {
                    "alert": ALERT,
                    "expr": "bench_queue_depth > 50",
                    "for": "30s",
                    "labels": {"severity": "page"},
                }
            ],
        }
    ]
}
# receiver -> webhook path; the table's rows in this order
RECEIVERS = {
    "talonflow, group_wait 0s": "/talonflow/zero",
    "talonflow, group_wait 30s (default)": "/talonflow/default",
    "Prometheus + Alertmanager, group_wait 0s": "/alertmanager/zero",
    "Prometheus + Alertmanager, group_wait 30s (default)": "/alertmanager/default",
}
GROUP_BY = ["alertname", "episode"]  # one group per episode: each first notification waits group_wait


class LatencyHook(Webhook):
    """The webhook, asked for each episode's first firing notification per receiver path."""

    def first_firing(self, path: str, episode: str) -> Arrival | None:
        with self.lock:
            for arrival in self.arrivals:
                if (
                    arrival.path == path
                    and arrival.alert["status"] == "firing"
                    and arrival.alert["labels"].get("episode") == episode
                ):
                    return arrival
        return None


def talonflow_document(folder: Path, rules: Path) -> dict[str, Any]:
    """The bench stack on this bench's ports, the rule file, and two routes to the webhook."""
    hook = f"http://127.0.0.1:{HOOK}"
    document = stack_settings(folder)
    document.update(
        kafka={"bootstrap_servers": "127.0.0.1:31292", "controller_port": 31293},
        minio={"endpoint": {"port": 31200}, "console": {"port": 31201}},
        receiver={"grpc": {"port": 31317}, "http": {"port": 31318}, "ops": {"port": 31333}},
        lifecycle={"ops": {"port": 31334}},
        console={"port": 31300},
        alerts={"rule_files": [str(rules)]},
        notifications={
            "route": {
                "receiver": "default",
                "group_by": GROUP_BY,
                "routes": [
                    {"receiver": "zero", "group_wait": "0s", "continue": True},
                    {"receiver": "default"},
                ],
            },
            "receivers": [
                {"name": "zero", "webhook_configs": [{"url": hook + RECEIVERS["talonflow, group_wait 0s"]}]},
                {
                    "name": "default",
                    "webhook_configs": [{"url": hook + RECEIVERS["talonflow, group_wait 30s (default)"]}],
                },
            ],
        },
    )
    return document


def alertmanager_config(path: str, group_wait: str | None) -> dict[str, Any]:
    route: dict[str, Any] = {"receiver": "hook", "group_by": GROUP_BY}
    if group_wait is not None:
        route["group_wait"] = group_wait
    return {
        "route": route,
        "receivers": [{"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{HOOK}{path}"}]}],
    }


def prometheus_config(rules: Path, receiver_http: str, scrape_interval: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": f"{scrape_interval}s", "evaluation_interval": "15s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{AM_DEFAULT}", f"127.0.0.1:{AM_ZERO}"]}]}
            ]
        },
        "scrape_configs": [{"job_name": "bench", "static_configs": [{"targets": [f"127.0.0.1:{EXPORTER}"]}]}],
        "remote_write": [
            {
                "url": f"http://{receiver_http}/api/v1/write",
                "queue_config": {"batch_send_deadline": "100ms", "min_backoff": "50ms", "max_backoff": "1s"},
            }
        ],
    }


@contextmanager
def process(command: list[str], log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        running = subprocess.Popen(command, stdout=out, stderr=out)
        try:
            yield
        finally:
            running.terminate()
            running.wait(30)


def peers(folder: Path, rules: Path, receiver_http: str, scrape_interval: int) -> ExitStack:
    """Prometheus and the two Alertmanagers, stopped when the returned stack closes."""
    for tool in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run compose/native/install-peers.sh")
    stack = ExitStack()
    for name, port, group_wait in (("am-default", AM_DEFAULT, None), ("am-zero", AM_ZERO, "0s")):
        path = RECEIVERS[f"Prometheus + Alertmanager, group_wait {'0s' if group_wait else '30s (default)'}"]
        (folder / f"{name}.yml").write_text(yaml.safe_dump(alertmanager_config(path, group_wait)))
        command = [
            "prometheus-alertmanager",
            f"--config.file={folder / f'{name}.yml'}",
            f"--storage.path={folder / name}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        stack.enter_context(process(command, folder / f"{name}.log"))
    (folder / "prometheus.yml").write_text(
        yaml.safe_dump(prometheus_config(rules, receiver_http, scrape_interval))
    )
    command = [
        "prometheus",
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{PROMETHEUS}",
    ]
    stack.enter_context(process(command, folder / "prometheus.log"))
    return stack


def prometheus_api(query: str) -> list[dict[str, Any]]:
    """Raw samples of a range-vector selector, through Prometheus' HTTP API."""
    url = f"http://127.0.0.1:{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        result: list[dict[str, Any]] = json.load(response)["data"]["result"]
    return result


def first_high_ms(window: str) -> dict[str, int]:
    """Per episode, the time of the first sample at HIGH, as Prometheus stored (and remote-wrote) it."""
    out = {}
    for series in prometheus_api(f"bench_queue_depth[{window}]"):
        highs = [round(float(t) * 1000) for t, v in series["values"] if float(v) == HIGH]
        if highs:
            out[series["metric"]["episode"]] = min(highs)
    return out


def prometheus_offset_ms(window: str) -> int:
    """Prometheus evaluates a group at k * interval + a hash of the group: read it off ALERTS_FOR_STATE."""
    times = {round(float(t) * 1000) % INTERVAL_MS for s in prometheus_api(f"ALERTS_FOR_STATE[{window}]")
             for t, _ in s["values"]}  # fmt: skip
    if len(times) != 1:
        sys.exit(f"Prometheus' evaluation times are not on one grid: offsets {sorted(times)}")
    return times.pop()


def should_fire_ms(first_high: int, offset: int) -> int:
    """The evaluation at or after the first high sample starts `for`; the one 30 s later fires."""
    pending = offset + math.ceil((first_high - offset) / INTERVAL_MS) * INTERVAL_MS
    return pending + FOR_MS


def run(args: argparse.Namespace, folder: Path) -> int:
    rules = folder / "rules.yml"
    rules.write_text(yaml.safe_dump(RULES))
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(check.stdout + check.stderr)
    registry = CollectorRegistry()
    depth = Gauge("bench_queue_depth", "Queue depth.", ["episode"], registry=registry)
    episodes = [f"e{k}" for k in range(args.episodes)]
    for episode in episodes:
        depth.labels(episode).set(LOW)
    exporter, _thread = start_http_server(EXPORTER, addr="127.0.0.1", registry=registry)
    hook = LatencyHook(HOOK)
    document = talonflow_document(folder, rules)
    stopped = ("ingest", "rollups", "heartbeats", "lifecycle")
    started = time.time()
    try:
        with bench_stack(folder / "talonflow.yaml", document, stopped) as stack:
            receiver_http = stack.config.receiver.http.address
            with peers(folder, rules, receiver_http, args.scrape_interval):
                print(f"warming up {args.warmup} s (first scrapes, first evaluations)", file=sys.stderr)
                time.sleep(args.warmup)
                for k, episode in enumerate(episodes):
                    if k:
                        time.sleep(args.spacing)
                    depth.labels(episode).set(HIGH)
                    print(f"{episode}: high at {datetime.now().time()}", file=sys.stderr)
                deadline = time.monotonic() + args.timeout
                pending = set(episodes)
                while pending and time.monotonic() < deadline:
                    for episode in sorted(pending):
                        if all(hook.first_firing(p, episode) for p in RECEIVERS.values()):
                            depth.labels(episode).set(LOW)
                            pending.discard(episode)
                    time.sleep(0.5)
                window = f"{int(time.time() - started) + 60}s"
                highs, offset = first_high_ms(window), prometheus_offset_ms(window)
    finally:
        exporter.shutdown()
        hook.close()
    return report(hook, episodes, highs, offset, sorted(pending))


def report(
    hook: LatencyHook, episodes: list[str], highs: dict[str, int], offset: int, missed: list[str]
) -> int:
    print(f"\n{len(episodes)} episodes; Prometheus' evaluation offset {offset} ms; "
          f"notifications never received for {missed or 'none'}\n")  # fmt: skip
    header = f"{'receiver':<52} {'n':>3} {'p50 s':>8} {'p99 s':>8} {'max s':>8} {'startsAt as expected':>21}"
    print(header)
    print("-" * len(header))
    for name, path in RECEIVERS.items():
        grid = offset if path.startswith("/alertmanager") else 0
        delays, exact = [], 0
        for episode in episodes:
            arrival = hook.first_firing(path, episode)
            if arrival is None or episode not in highs:
                continue
            expected = should_fire_ms(highs[episode], grid)
            delays.append((arrival.at_ms - expected) / 1000)
            starts = datetime.fromisoformat(arrival.alert["startsAt"].replace("Z", "+00:00"))
            exact += round(starts.timestamp() * 1000) == expected
        if delays:
            p50, p99 = nearest_rank(delays, 0.5), nearest_rank(delays, 0.99)
            figures = f"{p50:>8.2f} {p99:>8.2f} {max(delays):>8.2f}"
            row = f"{name:<52} {len(delays):>3} {figures} {exact:>17}/{len(delays)}"
        else:
            row = f"{name:<52} {0:>3} {'-':>8} {'-':>8} {'-':>8} {'-':>21}"
        print(row)
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.alert_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--episodes", type=int, default=6, help="firing episodes (default 6)")
    parser.add_argument(
        "--spacing",
        type=float,
        default=11,
        help="seconds between episodes; not a multiple of 15 (default 11)",
    )
    parser.add_argument(
        "--scrape-interval", type=int, default=5, help="Prometheus' scrape interval, s (default 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=20, help="seconds before the first episode (default 20)"
    )
    parser.add_argument(
        "--timeout", type=float, default=180, help="seconds to wait for the notifications (default 180)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and data of every part")
    args = parser.parse_args()
    if args.episodes < 1 or args.spacing <= 0 or args.scrape_interval < 1:
        parser.error("--episodes, --spacing and --scrape-interval must be positive")
    if args.keep:
        folder = Path(tempfile.mkdtemp(prefix="talonflow-alert-latency-"))
        print(f"logs and data stay in {folder}", file=sys.stderr)
        return run(args, folder)
    with tempfile.TemporaryDirectory(prefix="talonflow-alert-latency-") as temporary:
        return run(args, Path(temporary))


if __name__ == "__main__":
    sys.exit(main())
