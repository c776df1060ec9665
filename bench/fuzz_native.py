"""The long fuzz run of the native decoder: mutated OTLP requests, per signal, never crash it.

    python -m bench.fuzz_native [--cases 1000000] [--check-every 100] [--seed 0] [--signal otlp_spans]

Seeds are the real SDK's requests and generated ones (tests/otlp_corpus.py); each case is a seed
truncated, with bytes flipped, inserted or deleted, or spliced with another seed, decoded in polls
of 500. Every case must be accepted or rejected exactly as Python's protobuf does; every
`--check-every`th poll is compared with the previous Python flatten column for column. A crash
ends the process, which is the failure this run looks for. Prints cases/s per signal, and the
cases done so far every `--progress` cases, so that a run cut short still tells how far it got.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from hypothesis import HealthCheck, given, settings

from schemas.flatten import KafkaRecord, flatten
from tests.otlp_corpus import NOW_NS, REQUEST_STRATEGIES, REQUESTS, sdk_requests
from tests.python_flatten_oracle import assert_same, oracle_defined

POLL = 500


def seeds(topic: str, generated: int) -> list[bytes]:
    found: list[bytes] = list(sdk_requests()[topic])

    @settings(
        max_examples=generated,
        database=None,
        deadline=None,
        derandomize=True,  # the same seeds every run, so that --seed replays a run
        suppress_health_check=list(HealthCheck),
    )
    @given(REQUEST_STRATEGIES[topic])
    def collect(request: object) -> None:
        found.append(request.SerializeToString())  # type: ignore[attr-defined]

    collect()
    return found


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    value = bytearray(rng.choice(corpus))
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(value))
        choice = rng.randrange(5)
        if choice == 0:
            del value[where:]
        elif choice == 1 and value:
            value[min(where, len(value) - 1)] = rng.randrange(256)
        elif choice == 2:
            value[where:where] = rng.randbytes(rng.randint(1, 8))
        elif choice == 3:
            del value[where : where + rng.randint(1, 8)]
        else:
            other = rng.choice(corpus)
            value[where:] = other[rng.randint(0, len(other)) :]
    return bytes(value)


def fuzz(topic: str, cases: int, check_every: int, rng: random.Random, progress: int) -> float:
    """Cases per second for `topic`; raises AssertionError on the first disagreement."""
    corpus = seeds(topic, 200)
    message = REQUESTS[topic]
    started, done, poll_index = time.perf_counter(), 0, 0
    while done < cases:
        values = [mutate(rng, corpus) for _ in range(min(POLL, cases - done))]
        records = [KafkaRecord(topic, 0, i, NOW_NS // 1_000_000, None, v) for i, v in enumerate(values)]
        dead = flatten(records).tables.get("dead_letters")
        reasons = (
            {}
            if dead is None
            else dict(zip(dead["offset"].to_pylist(), dead["reason"].to_pylist(), strict=True))
        )
        for offset, value in enumerate(values):
            try:
                message.FromString(value)
                accepted = True
            except Exception:
                accepted = False
            assert accepted == (not reasons.get(offset, "").startswith("undecodable")), f"{topic}: {value!r}"
        if poll_index % check_every == 0:
            for record in records:
                if oracle_defined(topic, record.value):
                    try:
                        assert_same([record])
                    except AssertionError:
                        print(f"{topic}: differs from the oracle: {record.value!r}", file=sys.stderr)
                        raise
        done += len(values)
        poll_index += 1
        if done % progress < len(values):
            rate = done / (time.perf_counter() - started)
            print(
                f"{topic}: {done:,} cases so far, no crash, {rate:,.0f} cases/s", file=sys.stderr, flush=True
            )
    return cases / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1_000_000, help="mutated requests per signal")
    parser.add_argument("--check-every", type=int, default=100, help="compare every Nth poll with the oracle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--signal", choices=list(REQUESTS), help="one topic only (default: all three in turn)"
    )
    parser.add_argument("--progress", type=int, default=50_000, help="print the cases done every N cases")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for topic in [args.signal] if args.signal else REQUESTS:
        rate = fuzz(topic, args.cases, args.check_every, rng, args.progress)
        print(
            f"{topic:<13}{args.cases:>10,} cases, no crash, same verdicts as protobuf: {rate:>9,.0f} cases/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
