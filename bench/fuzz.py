"""The fuzz campaign: every decoder and parser reachable from the network or a config file.

    python -m bench.fuzz [--cases 1000000] [--target NAME ...] [--budget 2] [--engine atheris|mutate]

Each target (bench/fuzz_targets.py) runs in its own process under atheris (libFuzzer,
coverage-guided over talonflow's own packages), seeded from bench/fuzz_corpus/<target>/; new
inputs it finds go to .talonflow/fuzz/<target>/corpus, never into the checked-in corpus.
`--engine mutate` runs bench/fuzz_native.py's byte mutator instead, in this process, without
coverage feedback: the CI short run (tests/unit/test_fuzz_short.py) uses it, because libFuzzer
ends its process when done. A crash is an exception escaping the target or an answer it must not
give; a hang is a case over `--budget` seconds (libFuzzer's -timeout ends a case stuck for good).
Either saves its input and traceback under .talonflow/fuzz/<target>/ and the run goes on.
Prints per target: cases, cases/s (wall), crashes, hangs and the answers given, by status.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parent.parent
CORPUS = ROOT / "bench" / "fuzz_corpus"
FINDINGS = ROOT / ".talonflow" / "fuzz"
# Coverage feedback from talonflow's own code; third-party parsers (yaml, pydantic, protobuf's
# C++ decoder) are reached but not instrumented, which would slow every case several-fold.
INSTRUMENTED = ["bench.fuzz_targets", "receiver", "scrape", "tailer", "promql", "rules", "schemas"]
STATS_EVERY = 500  # cases between stats writes, so a libFuzzer timeout still leaves the counts


@dataclass
class Tally:
    target: str
    cases: int = 0
    seconds: float = 0.0  # wall
    cpu: float = 0.0  # this process's CPU time: the rate that matters on a shared machine
    crashes: int = 0
    hangs: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        rate = self.cases / self.seconds if self.seconds else 0.0
        cpu_rate = self.cases / self.cpu if self.cpu else 0.0
        answers = ", ".join(f"{k} {v:,}" for k, v in sorted(self.verdicts.items()))
        counts = f"{self.cases:>11,}{rate:>10,.0f}{cpu_rate:>12,.0f}{self.crashes:>9}{self.hangs:>7}"
        return f"{self.target:<20}{counts}  {answers}"


HEADER = f"{'target':<20}{'cases':>11}{'cases/s':>10}{'cases/CPU-s':>12}{'crashes':>9}{'hangs':>7}  answers"


def seeds(target: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((CORPUS / target).iterdir())]


def _save(target: str, kind: str, data: bytes, detail: str) -> None:
    folder = FINDINGS / target
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{hashlib.sha1(data).hexdigest()}"
    (folder / name).write_bytes(data)
    (folder / f"{name}.txt").write_text(detail)
    if len(list(folder.glob(f"{kind}-*.txt"))) <= 3:  # the first few; the table gives the count
        print(f"{target}: {kind}, input saved as {folder / name}", file=sys.stderr)


def runner(target: str, run: Callable[[bytes], str], budget: float, tally: Tally) -> Callable[[bytes], None]:
    """One case: the target's verdict counted, a crash or a case over budget saved, never raised."""

    def one(data: bytes) -> None:
        started = time.perf_counter()
        try:
            verdict = run(data)
        except Exception:
            verdict = "crash"
            tally.crashes += 1
            _save(target, "crash", data, traceback.format_exc())
        elapsed = time.perf_counter() - started
        if elapsed > budget:
            tally.hangs += 1
            _save(target, "hang", data, f"{elapsed:.3f} s, over the budget of {budget} s\n")
        tally.verdicts[verdict] += 1
        tally.cases += 1

    return one


def mutated(corpus: list[bytes], cases: int, seed: int) -> Iterable[bytes]:
    """The corpus as it is, then fuzz_native's mutations of it (truncate, flip, insert, splice)."""
    from bench.fuzz_native import mutate

    rng = random.Random(seed)
    yield from corpus[:cases]
    for _ in range(cases - min(cases, len(corpus))):
        yield mutate(rng, corpus)


def run_mutate(target: str, cases: int, budget: float, seed: int = 0) -> Tally:
    """The target for `cases` cases in this process, without coverage feedback."""
    from bench.fuzz_targets import TARGETS, remove_scratch

    tally = Tally(target)
    one = runner(target, TARGETS[target].run, budget, tally)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        for data in mutated(seeds(target), cases, seed):
            one(data)
    finally:
        remove_scratch()
    tally.seconds, tally.cpu = time.perf_counter() - started, time.process_time() - cpu
    return tally


def _atheris_worker(target: str, cases: int, seconds: float, budget: float, stats: Path) -> None:
    """This process runs one target under libFuzzer; it never returns (libFuzzer exits)."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        from bench.fuzz_targets import TARGETS, remove_scratch

    tally = Tally(target)
    one = runner(target, TARGETS[target].run, budget, tally)
    started, cpu = time.perf_counter(), time.process_time()

    def write() -> None:
        tally.seconds, tally.cpu = time.perf_counter() - started, time.process_time() - cpu
        stats.write_text(json.dumps({**tally.__dict__, "verdicts": dict(tally.verdicts)}))

    def case(data: bytes) -> None:
        one(data)
        done = tally.cases >= cases or time.perf_counter() - started > seconds
        if tally.cases % STATS_EVERY == 0 or done:
            write()
        if done:
            remove_scratch()
            os._exit(0)  # libFuzzer's own -runs also counts its start-up runs, so this counts exactly

    work = FINDINGS / target / "corpus"
    work.mkdir(parents=True, exist_ok=True)
    atheris.Setup(
        [
            sys.argv[0],
            f"-timeout={max(30, int(budget * 10))}",
            f"-artifact_prefix={FINDINGS / target}/libfuzzer-",
            "-max_len=16384",
            "-print_final_stats=0",
            str(work),
            str(CORPUS / target),
        ],
        case,
    )
    atheris.Fuzz()


def run_atheris(target: str, cases: int, seconds: float, budget: float) -> Tally:
    """The target in a child process under atheris; a libFuzzer timeout or abort is a hang or crash."""
    FINDINGS.mkdir(parents=True, exist_ok=True)
    stats = FINDINGS / f"{target}.stats.json"
    stats.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.fuzz", "--worker", target, "--cases", str(cases)]
    command += ["--seconds", str(seconds)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--budget", str(budget)], cwd=ROOT, stderr=subprocess.PIPE, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    tally = Tally(target)
    if stats.exists():
        saved = json.loads(stats.read_text())
        tally = Tally(
            target, saved["cases"], saved["seconds"], saved["cpu"], saved["crashes"], saved["hangs"]
        )
        tally.verdicts.update(saved["verdicts"])
    if done.returncode != 0:  # libFuzzer ended the run: -timeout (a hang) or a fatal error
        hang = "timeout" in done.stderr.lower()
        tally.hangs += hang
        tally.crashes += not hang
        tail = "\n".join(done.stderr.splitlines()[-20:])
        print(
            f"{target}: the fuzzer stopped after {elapsed:.0f} s (exit {done.returncode}):\n{tail}",
            file=sys.stderr,
        )
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000, help="cases per target")
    parser.add_argument("--target", action="append", help="a target (repeatable); default: all")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds over which a case is a hang")
    parser.add_argument(
        "--seconds", type=float, default=float("inf"), help="atheris: stop a target after this wall time"
    )
    parser.add_argument("--engine", choices=("atheris", "mutate"), default="atheris")
    parser.add_argument("--seed", type=int, default=0, help="the mutate engine's random seed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        stats = FINDINGS / f"{args.worker}.stats.json"
        _atheris_worker(args.worker, args.cases, args.seconds, args.budget, stats)
    known = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    names = args.target or known
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(known)}")
    print(HEADER, flush=True)
    failed = False
    for name in names:
        if args.engine == "atheris":
            tally = run_atheris(name, args.cases, args.seconds, args.budget)
        else:
            tally = run_mutate(name, args.cases, args.budget, args.seed)
        print(tally.line(), flush=True)
        failed |= bool(tally.crashes or tally.hangs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
