"""`talonflow`: start, stop and inspect the local pipeline.

Exit codes: 0 success, 1 failure (a part unhealthy or failing), 2 usage or config error,
3 the stack is not running (`status`), 130 interrupted (Ctrl-C; what it started is stopped).
Errors go to stderr; `--json` output to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

from schemas.config import ConfigError, config_path, load_config
from schemas.datasets import DATASETS
from sinks import lifecycle
from sinks.tiers import ensure_bucket, minio_client
from talonflow.health import CHECKS, kafka_topics, part_checks, part_problem
from talonflow.ports import port_problems
from talonflow.provision import ensure_topics
from talonflow.query import QueryError, run_query, write_result
from talonflow.stack import Stack, StackError, planned_addresses

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_INTERRUPTED = 1, 2, 3, 130
FAILED_STATES = {"FATAL", "EXITED", "STOPPED", "UNKNOWN"}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _wait_healthy(stack: Stack, timeout: float) -> None:
    """Poll every part until all are healthy; provision topics and bucket as soon as they can be."""
    config = stack.config
    started = time.monotonic()
    pending = dict.fromkeys(part_checks(config), "starting")
    provisioned: set[str] = set()
    while pending:
        states = {p["name"]: p for p in stack.process_info()}
        for name in list(pending):
            state = states.get(name, {}).get("statename")
            if state in FAILED_STATES:
                raise StackError(f"{name} is {state}:\n{stack.log_tail(name)}")
            service = name.split("-")[0]  # kafka-2 is one of the Kafka cluster's brokers
            if service in ("kafka", "minio") and service not in provisioned:
                try:
                    _provision(service, config, provisioned)
                except Exception as err:  # not ready yet: the next round tries again, the timeout decides
                    pending[name] = f"provisioning: {err}"
                if service not in provisioned:
                    continue
            problem = _problem(name, states.get(name), config)
            if problem is None:
                del pending[name]
                _say(f"  {name}: healthy ({time.monotonic() - started:.1f}s)")
            else:
                pending[name] = problem
        if pending and time.monotonic() - started > timeout:
            name, problem = next(iter(pending.items()))
            tail = stack.log_tail(name) if name in states else ""
            raise StackError(f"{name} not healthy after {timeout:.0f}s: {problem}\n{tail}")
        time.sleep(0.5)


def _provision(name: str, config: Any, provisioned: set[str]) -> None:
    """Topics once Kafka answers, the bucket once MinIO answers; `provisioned` records success."""
    if name == "kafka" and not isinstance(kafka_topics(config), str):
        created = ensure_topics(config)
        provisioned.add(name)
        if created:
            _say(f"  kafka: created topics {', '.join(created)}")
    elif name == "minio" and CHECKS["minio"](config, None) is None:
        if ensure_bucket(config.minio):
            _say(f"  minio: created bucket {config.minio.bucket}")
        provisioned.add(name)


def _problem(name: str, process: dict[str, Any] | None, config: Any) -> str | None:
    """What keeps a part from being healthy: its supervised process not running, or its check failing.

    The process state matters: another program on the same port would pass the check alone.
    """
    if process is not None and process["statename"] != "RUNNING":
        return f"process {process['statename'].lower()}"
    return part_problem(config, name, process["pid"] if process else None)


def cmd_up(stack: Stack, args: argparse.Namespace) -> int:
    supervisor = None
    try:
        if stack.running():
            _say(f"talonflow: already running (state in {stack.state}); checking health")
        else:
            _check_ports(stack)
            stack.write_files()
            _say(f"talonflow: starting {', '.join(p.name for p in stack.programs())} (logs in {stack.logs})")
            supervisor = stack.start_supervisord(foreground=not args.detach)
            _await_socket(stack, supervisor)
        _wait_healthy(stack, args.timeout)
    except StackError as err:
        _say(f"talonflow: {err}")
        _shutdown(stack)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return _interrupted(stack, supervisor)
    receiver = stack.config.receiver
    _say(
        f"talonflow: ready. OTLP/gRPC {receiver.grpc.address}, OTLP/HTTP http://{receiver.http.address}, "
        f"Kafka {stack.config.kafka.bootstrap_servers}, MinIO http://{stack.config.minio.endpoint.address}"
    )
    if args.detach or supervisor is None:
        return 0
    _say("talonflow: running in the foreground; Ctrl-C stops everything")
    try:
        supervisor.wait()  # returns early only if someone ran `talonflow down`
    except KeyboardInterrupt:
        return _interrupted(stack, supervisor)
    return 0


def _check_ports(stack: Stack) -> None:
    """Before anything starts: every address the parts will bind is free, else say who holds it."""
    problems = port_problems(planned_addresses(stack.config))
    if problems:
        lines = "\n".join(f"  {line}" for line in problems)
        raise StackError(f"cannot start, ports unavailable (nothing was started):\n{lines}")


def _interrupted(stack: Stack, supervisor: subprocess.Popen[bytes] | None) -> int:
    """Ctrl-C: whatever this command started is stopped before it exits (130, as shells expect)."""
    _say("talonflow: interrupted; stopping")
    if supervisor is not None:
        _shutdown(stack)
        supervisor.wait()
    return EXIT_INTERRUPTED


def _await_socket(stack: Stack, supervisor: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not stack.running():
        if time.monotonic() > deadline or (supervisor.poll() not in (None, 0)):
            raise StackError(f"supervisord did not start; see {stack.logs / 'supervisord.log'}")
        time.sleep(0.1)


def _shutdown(stack: Stack, timeout: float = 60) -> bool:
    """Ask supervisord to stop every program and itself; True once its process is gone."""
    if not stack.running():
        return False
    pid = int(stack.pidfile.read_text()) if stack.pidfile.exists() else None
    stack.rpc().supervisor.shutdown()
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    return True


def cmd_down(stack: Stack, _args: argparse.Namespace) -> int:
    _say("talonflow: stopped" if _shutdown(stack) else "talonflow: not running")
    return 0


def _part_names(stack: Stack) -> list[str]:
    """The parts `up` runs with this config, plus Kafka and MinIO when they are external: checked,
    not run. A part the config leaves out (no scrape_configs: no scraper) is not listed."""
    config = stack.config
    services = (("kafka", config.kafka.managed), ("minio", config.minio.managed))
    listed = {name for name, managed in services if not managed} | {p.name for p in stack.programs()}
    return [name for name in part_checks(config) if name in listed]


def cmd_status(stack: Stack, args: argparse.Namespace) -> int:
    if not stack.running():
        if args.json:
            print(json.dumps({"running": False, "parts": []}))
        else:
            _say("talonflow: not running")
        return EXIT_NOT_RUNNING
    states = {p["name"]: p for p in stack.process_info()}
    parts = []
    for name in _part_names(stack):
        info = states.get(name)
        problem = _problem(name, info, stack.config)
        parts.append(
            {
                "name": name,
                "state": info["statename"] if info else "EXTERNAL",
                "pid": info["pid"] if info else None,
                "uptime_s": (info["now"] - info["start"]) if info and info["pid"] else None,
                "healthy": problem is None,
                "detail": problem or "",
                "log": str(stack.logs / f"{name}.log") if info else None,
            }
        )
    if args.json:
        print(json.dumps({"running": True, "parts": parts}))
    else:
        width = max(len(name) for name in ("PART", *part_checks(stack.config))) + 2
        print(f"{'PART':<{width}}{'STATE':<10}{'PID':>8}  {'UPTIME':>8}  {'HEALTH':<10}DETAIL")
        for p in parts:
            uptime = f"{p['uptime_s']}s" if p["uptime_s"] is not None else "-"
            health = "healthy" if p["healthy"] else "UNHEALTHY"
            pid = p["pid"] or "-"
            print(f"{p['name']:<{width}}{p['state']:<10}{pid:>8}  {uptime:>8}  {health:<10}{p['detail']}")
    return 0 if all(p["healthy"] for p in parts) else EXIT_FAILED


def cmd_query(stack: Stack, args: argparse.Namespace) -> int:
    try:
        frame = run_query(stack.config, args.sql)
    except QueryError as err:
        for line in str(err).splitlines() + ([err.detail] if args.verbose else []):
            _say(f"talonflow: query: {line}")
        return EXIT_USAGE
    except (pl.exceptions.PolarsError, ValueError) as err:
        _say(f"talonflow: query: {err}")
        return EXIT_FAILED
    write_result(frame, args.format)
    return 0


def cmd_compare(stack: Stack, args: argparse.Namespace) -> int:
    # Imported here, as in the rules commands: scipy and the PromQL engine would add over a second
    # to the start of every other command (the lifecycle and status calls scripts make often).
    from talonflow.compare import WORSE, Cohort, CompareError, Method, Scope, compare, render

    try:
        scope = Scope.parse(args.since, args.until, args.service, args.span_name)
        baseline, candidate = Cohort.parse(args.baseline), Cohort.parse(args.candidate)
        result = compare(stack.config, baseline, candidate, scope, Method(confidence=args.confidence))
    except CompareError as err:
        _say(f"talonflow: compare: {err}")
        return EXIT_USAGE
    except pl.exceptions.PolarsError as err:
        _say(f"talonflow: compare: {str(err).splitlines()[0]}")
        return EXIT_FAILED
    print(json.dumps(result.to_json()) if args.json else render(result))
    return EXIT_FAILED if args.fail_on_regression and result.verdict == WORSE else 0


def cmd_lifecycle_run(stack: Stack, args: argparse.Namespace) -> int:
    config = stack.config
    if not args.once:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        lifecycle.serve(config, stop)
        return 0
    mover = lifecycle.Mover(config, minio_client(config.minio), lifecycle.LifecycleMetrics(), progress=True)
    try:
        changed = mover.run_pass()
    except lifecycle.StoreUnavailable as err:
        _say(f"talonflow: lifecycle: {err}; nothing was deleted, run again when MinIO is back")
        return EXIT_FAILED
    _say("talonflow: lifecycle: " + ", ".join(f"{d} {n}" for d, n in changed.items()) + " partitions moved")
    return 0


def cmd_lifecycle_status(stack: Stack, args: argparse.Namespace) -> int:
    rows = lifecycle.status(stack.config)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows]))
        return 0
    print(f"{'DATASET':<14}{'TIER':<6}{'FILES':>7}{'BYTES':>14}{'ROWS':>12}  {'OLDEST':<26}NEWEST")
    for r in rows:
        print(
            f"{r.dataset:<14}{r.tier:<6}{r.files:>7}{r.bytes:>14}{r.rows:>12}  "
            f"{r.oldest or '-':<26}{r.newest or '-'}"
        )
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    """Validate Prometheus rule files; needs neither the config nor the stack, so CI can run it anywhere."""
    from rules.check import check_file

    files = []
    for path in args.files:
        verdict = check_file(path)
        files.append(verdict)
        for error in verdict["errors"]:
            _say(f"talonflow: rules: {error['message']}")
        if verdict["valid"] and not args.json:
            _say(f"talonflow: rules: {path}: ok, {verdict['groups']} groups, {verdict['rules']} rules")
    valid = all(f["valid"] for f in files)
    if args.json:
        print(json.dumps({"valid": valid, "files": files}))
    return 0 if valid else EXIT_FAILED


def cmd_rules_test(args: argparse.Namespace) -> int:
    """promtool's rule unit tests, through the engine the alerts flow runs."""
    from rules.unit_tests import run_files

    return run_files(args.files, sys.stdout, sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talonflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="config file (default: $TALONFLOW_CONFIG, else ./talonflow.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser("up", help="start the local pipeline (foreground unless --detach)")
    up.add_argument("--detach", action="store_true", help="return once every part is healthy")
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for health (default 180)")
    up.set_defaults(run=cmd_up)
    down = commands.add_parser("down", help="stop the local pipeline")
    down.set_defaults(run=cmd_down)
    status = commands.add_parser("status", help="state and health of each part (exit 3: not running)")
    status.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    status.set_defaults(run=cmd_status)
    query = commands.add_parser(
        "query",
        help="SQL over the datasets (tables: " + ", ".join(DATASETS) + ")",
        description="Polars SQL; each dataset is a table with hive columns date and hour.",
    )
    query.add_argument("sql", help='e.g. "SELECT name, count(*) FROM spans GROUP BY name"')
    query.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="json: one object a line"
    )
    query.add_argument("--verbose", action="store_true", help="on errors, also Polars' message and plan")
    query.set_defaults(run=cmd_query)
    comparison = commands.add_parser(
        "compare",
        help="two cohorts of spans: latency, errors, tokens, cost, with intervals and verdicts",
        description="Exit 1 with --fail-on-regression when a measure is significantly worse.",
    )
    comparison.add_argument("--baseline", required=True, metavar="ATTR=V", help="e.g. service.version=1.2")
    comparison.add_argument("--candidate", required=True, metavar="ATTR=V", help="e.g. service.version=1.3")
    comparison.add_argument(
        "--since", default="24h", help="a duration ago (24h, 7d) or ISO time; default 24h"
    )
    comparison.add_argument("--until", help="a duration ago or ISO time; default now")
    comparison.add_argument("--service", help="only spans of this service.name")
    comparison.add_argument("--span-name", help="only spans of this name")
    comparison.add_argument("--confidence", type=float, default=0.95, help="default 0.95")
    comparison.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 when the verdict is worse"
    )
    comparison.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    comparison.set_defaults(run=cmd_compare)
    tiers = commands.add_parser(
        "lifecycle", help="tiered storage: hot (local) -> warm -> cold (MinIO) -> gone"
    )
    tier_commands = tiers.add_subparsers(dest="lifecycle_command", required=True, metavar="COMMAND")
    run = tier_commands.add_parser("run", help="the mover: a service, or one pass with --once")
    run.add_argument("--once", action="store_true", help="one pass with progress bars, then exit")
    run.set_defaults(run=cmd_lifecycle_run)
    tier_status = tier_commands.add_parser(
        "status", help="files, bytes, rows, oldest/newest partition per tier"
    )
    tier_status.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    tier_status.set_defaults(run=cmd_lifecycle_status)
    rules = commands.add_parser("rules", help="alert rule files (see alerts.yaml)")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = rule_commands.add_parser("check", help="validate rule files: exit 0 valid, 1 invalid")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    check.set_defaults(run=cmd_rules_check)
    test = rule_commands.add_parser(
        "test", help="run promtool-format rule unit tests (exit 1: a test failed)"
    )
    test.add_argument("files", nargs="+", metavar="FILE", help="promtool test files (rule_files, tests)")
    test.set_defaults(run=cmd_rules_test)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "rules":  # files only: no config, no stack
        return int(args.run(args))
    try:
        config = load_config(args.config)
        stack = Stack(config, Path(config_path(args.config)))
        return int(args.run(stack, args))
    except ConfigError as err:
        _say(f"talonflow: config: {err}")
        return EXIT_USAGE
    except StackError as err:
        _say(f"talonflow: {err}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
