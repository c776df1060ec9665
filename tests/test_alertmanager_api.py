"""The Alertmanager API v2 subset driven by the real `amtool`, on the real Kafka of the session stack:
silences added, queried, expired and kept across a restart; alerts posted, listed and notified;
and a silence that holds back a flow's notification while its transition is on talon_alerts."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from console.alertmanager import add_alertmanager_api
from schemas.config import TalonflowConfig
from schemas.notify import NotifyConfig
from schemas.topics import ALERTS_TOPIC
from tests.conftest import LocalStack
from tests.isolated import isolated_flows
from tests.otlp_clients import grpc_export, span_request
from tests.test_notify import HttpSink, eventually, stays

pytestmark = pytest.mark.integration
API_PORT, HOOK_PORT = 22093, 22094  # this suite's port range: 22000-22999
ENDS_AT_API_PORT = 30593  # the endsAt test's (written in another session: ports 30500-30999)
TIMING = {"group_wait": "200ms", "group_interval": "1s", "repeat_interval": "1h"}


def hook_config(local_stack: LocalStack, hook: HttpSink) -> TalonflowConfig:
    notifications = NotifyConfig.model_validate(
        {
            "route": {"receiver": "hook", "group_by": ["alertname"], **TIMING},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{hook.url}/hook"}]}],
        }
    )
    return local_stack.config.model_copy(update={"notifications": notifications})


@contextmanager
def serving(config: TalonflowConfig, port: int = API_PORT) -> Iterator[str]:
    """The API on its own aiohttp app and port, in a thread, until the block ends."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    add_alertmanager_api(app, config)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def amtool(url: str, *args: str) -> str:
    tool = shutil.which("amtool")
    assert tool, "amtool (Debian prometheus-alertmanager, compose/native/install-peers.sh) is not installed"
    done = subprocess.run(
        [tool, f"--alertmanager.url={url}", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"amtool {' '.join(args)}: {done.stderr}"
    return done.stdout


def post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def hook() -> Iterator[HttpSink]:
    sink = HttpSink(HOOK_PORT)
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


def test_amtool_adds_queries_and_expires_silences_that_survive_a_restart(local_stack: LocalStack) -> None:
    name = f"Maintenance{uuid.uuid4().hex[:8]}"
    with serving(local_stack.config) as url:
        matchers = [f"alertname={name}", 'agent=~"a.*"']
        silence_id = amtool(
            url, "silence", "add", *matchers, "--comment=agent upgrade", "--author=ops"
        ).strip()
        [listed] = json.loads(amtool(url, "silence", "query", "-o", "json", f"alertname={name}"))
        assert listed["id"] == silence_id and listed["status"]["state"] == "active"
        assert {(m["name"], m["value"], m["isRegex"]) for m in listed["matchers"]} == {
            ("alertname", name, False),
            ("agent", "a.*", True),
        }
        assert (listed["createdBy"], listed["comment"]) == ("ops", "agent upgrade")
        status, error = post(f"{url}/api/v2/silences", b'{"matchers": [], "comment": "x"}')
        assert (status, error) == (400, "matchers: at least one matcher is required")
    with serving(local_stack.config) as url:  # a new process: the silence is read back from Kafka
        eventually(lambda: amtool(url, "silence", "query", "-q", f"alertname={name}").split() == [silence_id])
        amtool(url, "silence", "expire", silence_id)
        assert amtool(url, "silence", "query", "-q", f"alertname={name}").split() == []
        assert amtool(url, "silence", "query", "--expired", "-q", f"alertname={name}").split() == [silence_id]


def test_amtool_alert_query_shows_posted_alerts_their_silences_and_notifies(
    local_stack: LocalStack, hook: HttpSink
) -> None:
    name = f"Posted{uuid.uuid4().hex[:8]}"
    with serving(hook_config(local_stack, hook)) as url:
        silence_id = amtool(
            url, "silence", "add", f"alertname={name}", "agent=a2", "--comment=known", "--duration=1h"
        ).strip()
        for agent in ("a1", "a2"):
            amtool(url, "alert", "add", f"alertname={name}", f"agent={agent}", "--annotation=summary=slow")
        shown = json.loads(amtool(url, "alert", "query", "-o", "json", f"alertname={name}"))
        assert [a["labels"]["agent"] for a in shown] == ["a1"]  # amtool hides silenced alerts by default
        assert shown[0]["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
        silenced = json.loads(amtool(url, "alert", "query", "--silenced", "-o", "json", f"alertname={name}"))
        assert [
            (a["labels"]["agent"], a["status"]["state"], a["status"]["silencedBy"]) for a in silenced
        ] == [("a2", "suppressed", [silence_id])]  # --silenced: the silenced ones only
        assert all(a["receivers"] == [{"name": "hook"}] for a in shown + silenced)
        [sent] = eventually(lambda: hook.bodies("/hook"))
        assert [a["labels"]["agent"] for a in sent["alerts"]] == ["a1"]
        stays(lambda: len(hook.bodies("/hook")) == 1, 1.5)  # a group_interval later: a2 still held back
        amtool(url, "silence", "expire", silence_id)
        later = eventually(lambda: hook.bodies("/hook")[1:])[0]
        assert sorted(a["labels"]["agent"] for a in later["alerts"]) == ["a1", "a2"]


def test_posted_alerts_resolve_at_their_ends_at_or_after_resolve_timeout(
    local_stack: LocalStack, hook: HttpSink
) -> None:
    """As Alertmanager: `--end` reached, or `global.resolve_timeout` after a post without one, the
    alert is resolved: notified as resolved (webhooks send_resolved by default), no longer listed."""
    name = f"Ending{uuid.uuid4().hex[:8]}"
    config = hook_config(local_stack, hook)
    notifications = config.notifications.model_copy(
        update={"global_": config.notifications.global_.model_copy(update={"resolve_timeout": 4.0})}
    )
    config = config.model_copy(update={"notifications": notifications})
    now = datetime.now(UTC)
    with serving(config, ENDS_AT_API_PORT) as url:
        amtool(
            url, "alert", "add", f"alertname={name}", "agent=past", f"--end={iso(now - timedelta(minutes=1))}"
        )
        amtool(
            url, "alert", "add", f"alertname={name}", "agent=ends", f"--end={iso(now + timedelta(seconds=3))}"
        )
        amtool(url, "alert", "add", f"alertname={name}", "agent=timeout")  # no --end: resolve_timeout

        def listed() -> list[str]:
            return sorted(
                a["labels"]["agent"]
                for a in json.loads(amtool(url, "alert", "query", "-o", "json", f"alertname={name}"))
            )

        assert listed() == ["ends", "timeout"]  # an alert posted with endsAt in the past is resolved
        [first] = eventually(lambda: hook.bodies("/hook"))
        assert first["status"] == "firing"
        assert sorted(a["labels"]["agent"] for a in first["alerts"]) == ["ends", "timeout"]

        def agents(status: str) -> set[str]:
            return {
                a["labels"]["agent"]
                for b in hook.bodies("/hook")
                for a in b["alerts"]
                if a["status"] == status
            }

        eventually(lambda: "ends" in agents("resolved"), timeout=15)
        assert "timeout" not in agents("resolved") and listed() == ["timeout"]
        eventually(lambda: "timeout" in agents("resolved"), timeout=15)
        assert listed() == [] and "past" not in agents("firing") | agents("resolved")
        last = hook.bodies("/hook")[-1]
        assert last["status"] == "resolved" and {a["status"] for a in last["alerts"]} == {"resolved"}
        ends = {a["labels"]["agent"]: a["endsAt"] for b in hook.bodies("/hook") for a in b["alerts"]}
        assert datetime.fromisoformat(ends["ends"].replace("Z", "+00:00")) <= now + timedelta(seconds=4)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def firing_transitions(local_stack: LocalStack, component: str, timeout: float) -> list[dict[str, Any]]:
    """talon_alerts documents about `component`, read from the start until one is firing."""
    consumer = Consumer(
        {"bootstrap.servers": local_stack.config.kafka.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}"}
    )
    try:
        partitions = consumer.list_topics(ALERTS_TOPIC, timeout=10).topics[ALERTS_TOPIC].partitions
        consumer.assign([TopicPartition(ALERTS_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(d["status"] == "firing" for d in found):
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                document = json.loads(message.value() or b"{}")
                if document.get("labels", {}).get("component") == component:
                    found.append(document)
        return found
    finally:
        consumer.close()


def test_a_silenced_heartbeat_alert_is_recorded_but_not_notified(
    local_stack: LocalStack, hook: HttpSink, tmp_path: Path
) -> None:
    """Across processes: amtool → the API → talon_silences → the heartbeats flow's notifier."""
    tag = uuid.uuid4().hex[:8]
    service, component = f"am-{tag}", f"silenced-{tag}"
    watched = {"match": {"service.name": service}, "expected_interval": 1, "grace_period": 1}
    settings = {
        "heartbeats": {
            "components": {component: watched},
            "tick": "200ms",
            "startup_grace": "1s",
        },
        "notifications": {
            "route": {"receiver": "hook", "group_by": ["alertname", "component"], **TIMING},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{hook.url}/hook"}]}],
        },
    }
    flows, _data = isolated_flows(local_stack, tmp_path, "heartbeats", settings, 1, 1)
    with serving(local_stack.config) as url:
        silence_id = amtool(
            url, "silence", "add", "alertname=HeartbeatDown", f"component={component}", "--comment=planned",
            "--duration=1h",
        ).strip()  # fmt: skip
        flows.start()
        try:
            with grpc.insecure_channel(local_stack.grpc_endpoint) as channel:
                for _ in range(12):  # past the flow's start and its start-up grace, then silence
                    grpc_export(channel, "traces", span_request([(service, "i-1")], spans_per_agent=1))
                    time.sleep(0.5)
            transitions = firing_transitions(local_stack, component, timeout=60)
            assert [d["status"] for d in transitions][-1:] == ["firing"], flows.log_tail()
            assert transitions[-1]["labels"]["alertname"] == "HeartbeatDown"

            def notified() -> list[Any]:
                return [b for b in hook.bodies("/hook") if b["groupLabels"].get("component") == component]

            query = [
                "alert",
                "query",
                "--silenced",
                "-o",
                "json",
                "alertname=HeartbeatDown",
                f"component={component}",
            ]

            def listed() -> list[Any]:
                return json.loads(amtool(url, *query))

            [shown] = eventually(listed)  # the API lists the flow's transition, as silenced
            assert shown["status"] == {"state": "suppressed", "silencedBy": [silence_id], "inhibitedBy": []}
            stays(lambda: not notified(), 2.5)  # past group_wait and two group_interval flushes
            amtool(url, "silence", "expire", silence_id)
            [sent] = eventually(notified, timeout=10)
            assert sent["status"] == "firing" and sent["alerts"][0]["labels"]["component"] == component
        finally:
            flows.stop()
