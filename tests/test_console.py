"""The console in a real headless Chromium, on the real stack, with data the OpenTelemetry SDK sent.

One agent session crosses three services: main_agent calls an LLM and invokes planner in the
same trace; planner hands work to browser_controller, which starts a trace of its own linked
back to planner's span (as background sub-agents do), fails a tool call and logs why. Every
page must show it, filters must narrow it, and the waterfall must show the whole chain.
Screenshots are kept under .talonflow/artifacts/console-screenshots/<run> (the path is printed).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Link, Status, StatusCode
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from talonflow.compare import attribute
from talonflow.query import dataset_frame
from tests.test_alertmanager_api import amtool

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / ".talonflow" / "artifacts" / "console-screenshots"


@dataclass
class Sent:
    """What the SDK exported: names and ids the pages must show."""

    session: str
    services: dict[str, str]  # role -> service.name
    root_trace: str = ""
    linked_trace: str = ""
    span_ids: dict[str, str] = field(default_factory=dict)  # span name -> hex id


def _providers(stack: Any, service: str) -> tuple[TracerProvider, LoggerProvider]:
    resource = Resource.create(
        {"service.name": service, "service.instance.id": f"{service}-1", "service.version": "1.0.0"}
    )
    tracer = TracerProvider(resource=resource)
    tracer.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=stack.grpc_endpoint, insecure=True))
    )
    logger = LoggerProvider(resource=resource)
    logger.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=stack.grpc_endpoint, insecure=True))
    )
    return tracer, logger


def _send_session(stack: Any) -> Sent:
    suffix = uuid.uuid4().hex[:6]
    sent = Sent(f"sess-{suffix}", {r: f"{r}-{suffix}" for r in ("main", "planner", "browser")})
    providers = {role: _providers(stack, name) for role, name in sent.services.items()}
    tracers = {role: p[0].get_tracer("talonflow.tests") for role, p in providers.items()}
    session = {"session.id": sent.session}
    with tracers["main"].start_as_current_span(
        "invoke_agent main", attributes={**session, "gen_ai.operation.name": "invoke_agent"}
    ) as root:
        with tracers["main"].start_as_current_span(
            "chat claude-sonnet",
            attributes={
                **session,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "claude-sonnet",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 200,
            },
        ) as chat:
            time.sleep(0.05)
        with tracers["planner"].start_as_current_span(
            "invoke_agent planner", attributes={**session, "gen_ai.operation.name": "invoke_agent"}
        ) as planner:
            time.sleep(0.02)
    # the sub-agent's own trace, linked back to the planner span that started it
    with (
        tracers["browser"].start_as_current_span(
            "invoke_agent browser",
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            links=[Link(planner.get_span_context())],
            attributes={**session, "gen_ai.operation.name": "invoke_agent"},
        ) as browser,
        tracers["browser"].start_as_current_span(
            "execute_tool open_page",
            attributes={**session, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "open_page"},
        ) as tool,
    ):
        providers["browser"][1].get_logger("talonflow.tests").emit(
            severity_number=SeverityNumber.ERROR, severity_text="ERROR", body="open_page failed: timeout"
        )
        tool.set_status(Status(StatusCode.ERROR, "timeout"))
    for tracer_provider, logger_provider in providers.values():
        tracer_provider.shutdown()
        logger_provider.shutdown()
    sent.root_trace = format(root.get_span_context().trace_id, "032x")
    sent.linked_trace = format(browser.get_span_context().trace_id, "032x")
    for span in (root, chat, planner, browser, tool):
        sent.span_ids[span.name] = format(span.get_span_context().span_id, "016x")  # type: ignore[attr-defined]
    return sent


def _wait_for(what: str, check: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not in the datasets after {timeout}s")


@pytest.fixture(scope="module")
def sent(local_stack: Any) -> Sent:
    data = _send_session(local_stack)
    config = local_stack.config

    def landed(dataset: str, expected: int, condition: pl.Expr) -> bool:
        return dataset_frame(config, dataset).filter(condition).select(pl.len()).collect().item() >= expected

    services = list(data.services.values())
    _wait_for("the session's spans", lambda: landed("spans", 5, attribute("session.id") == data.session))
    _wait_for("the tool's log line", lambda: landed("logs", 1, pl.col("trace_id") == data.linked_trace))
    _wait_for("heartbeats", lambda: landed("heartbeats", 3, pl.col("service_name").is_in(services)))
    return data


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    """Kept in .talonflow/artifacts (not the pytest tmp dir, which later runs prune), one folder per run."""
    folder = ARTIFACTS / time.strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture
def console(local_stack: Any, browser: webdriver.Chrome, screenshots: Path) -> Any:
    """Opens a console path in Chromium; `shot(name)` saves a screenshot of what is shown."""

    class Console:
        base = local_stack.config.console.url

        def open(self, path: str) -> webdriver.Chrome:
            browser.get(self.base + path)
            assert "Internal Server Error" not in browser.page_source
            return browser

        def shot(self, name: str) -> None:
            path = screenshots / f"{name}.png"
            browser.save_screenshot(str(path))
            print(f"screenshot: {path}")

    return Console()


def _texts(browser: webdriver.Chrome, selector: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_fleet_lists_every_agent_with_its_heartbeat(sent: Sent, console: Any) -> None:
    page = console.open("/")
    for service in sent.services.values():
        row = page.find_element(By.CSS_SELECTOR, f'tr[data-service="{service}"]')
        state = row.find_element(By.CSS_SELECTOR, ".pill").text
        assert state in ("up", "late"), f"{service}: {state}"
    main_row = page.find_element(By.CSS_SELECTOR, f'tr[data-service="{sent.services["main"]}"]')
    assert "1.2k" in main_row.text  # 1,000 + 200 tokens today
    console.shot("fleet")
    main_row.find_element(By.TAG_NAME, "a").click()
    assert page.current_url.endswith(f"/service/{sent.services['main']}?range=1h")


def test_service_page_draws_its_charts(sent: Sent, console: Any) -> None:
    page = console.open(f"/service/{sent.services['main']}?range=6h")
    drawn = page.find_elements(By.CSS_SELECTOR, "figure.chart[data-drawn=true] canvas")
    titles = _texts(page, "figure.chart figcaption")
    assert len(drawn) == len(titles) >= 4, titles
    assert any(t.startswith("LLM latency") for t in titles)
    assert Select(page.find_element(By.ID, "range")).first_selected_option.text == "last 6h"
    console.shot("service")


def test_trace_search_filters(sent: Sent, console: Any) -> None:
    page = console.open(f"/traces?session={sent.session}")
    assert sorted(_texts(page, "#traces td.mono")) == sorted([sent.root_trace, sent.linked_trace])
    console.shot("traces")
    page = console.open(f"/traces?session={sent.session}&status=ERROR")
    assert _texts(page, "#traces td.mono") == [sent.linked_trace]
    page = console.open(f"/traces?service={sent.services['planner']}")
    assert _texts(page, "#traces td.mono") == [sent.root_trace]
    page = console.open(f"/traces?session={sent.session}&min_ms=60000")
    assert _texts(page, "#traces td.mono") == []
    page = console.open(f"/traces?attr={quote('gen_ai.request.model=claude-sonnet')}&session={sent.session}")
    assert _texts(page, "#traces td.mono") == [sent.root_trace]
    page = console.open(f"/traces?trace={sent.linked_trace}")
    assert _texts(page, "#traces td.mono") == [sent.linked_trace]
    page = console.open("/traces?min_ms=soon")
    assert "min_ms: 'soon' is not a number" in page.page_source


def test_waterfall_follows_the_sub_agent_chain(sent: Sent, console: Any) -> None:
    page = console.open(f"/traces/{sent.root_trace}")
    rows = page.find_elements(By.CSS_SELECTOR, "#waterfall details.span")
    shown = {r.get_attribute("data-span-id"): int(r.get_attribute("data-depth") or -1) for r in rows}
    ids = sent.span_ids
    assert shown == {
        ids["invoke_agent main"]: 0,
        ids["chat claude-sonnet"]: 1,
        ids["invoke_agent planner"]: 1,
        ids["invoke_agent browser"]: 2,  # joined through its link to the planner span
        ids["execute_tool open_page"]: 3,
    }
    tool = page.find_element(By.CSS_SELECTOR, f'details[data-span-id="{ids["execute_tool open_page"]}"]')
    tool.find_element(By.TAG_NAME, "summary").click()
    assert "open_page failed: timeout" in tool.text
    assert "gen_ai.tool.name" in tool.text
    console.shot("waterfall")


def test_session_replay_shows_each_step(sent: Sent, console: Any) -> None:
    page = console.open("/sessions?range=1h")
    assert sent.session in _texts(page, "#sessions td a")
    page.find_element(By.LINK_TEXT, sent.session).click()
    kinds = _texts(page, "#steps td .kind")
    assert sorted(kinds) == ["agent", "agent", "agent", "llm", "tool"]
    llm = page.find_element(By.CSS_SELECTOR, "#steps tr.llm")
    assert "1.0k / 200" in llm.text and "$0.0060" in llm.text  # 1000 x $3/M + 200 x $15/M
    assert page.find_element(By.CSS_SELECTOR, "#steps tr.tool.error")
    console.shot("session")


def test_logs_filter_and_link_to_their_trace(sent: Sent, console: Any) -> None:
    page = console.open(f"/logs?service={sent.services['browser']}&severity=error")
    assert _texts(page, "#logs td.body") == ["open_page failed: timeout"]
    page = console.open(f"/logs?session={sent.session}&q=failed")
    assert _texts(page, "#logs td.body") == ["open_page failed: timeout"]
    page = console.open(f"/logs?service={sent.services['browser']}&severity=fatal")
    assert _texts(page, "#logs td.body") == []
    page = console.open(f"/logs?session={sent.session}")
    console.shot("logs")
    page.find_element(By.CSS_SELECTOR, "#logs td a.mono").click()
    assert f"/traces/{sent.linked_trace}" in page.current_url
    assert sent.span_ids["invoke_agent main"] in page.page_source  # the linked trace shows the chain too


def test_alerts_page_shows_heartbeat_timelines(sent: Sent, console: Any) -> None:
    page = console.open("/alerts?range=1h")
    rows = page.find_elements(By.CSS_SELECTOR, "#heartbeats tr[data-service]")
    assert set(sent.services.values()) <= {r.get_attribute("data-service") for r in rows}
    for service in sent.services.values():  # a new agent's first transition: up -> late after 60 s silence
        row = page.find_element(By.CSS_SELECTOR, f'#heartbeats tr[data-service="{service}"]')
        state = row.find_element(By.CSS_SELECTOR, ".pill").text
        assert row.find_elements(By.CSS_SELECTOR, f".bar.hb-{state}"), service
    console.shot("alerts")


def test_alerts_page_shows_silences_made_with_amtool(local_stack: Any, console: Any) -> None:
    """An active and a pending silence, added by the real amtool through the console's API v2."""
    url, name = local_stack.config.console.url, f"Upgrade{uuid.uuid4().hex[:8]}"
    matchers = [f"alertname={name}", 'agent=~"gw-.*"']
    author, comment = "--author=ops", "--comment=rolling upgrade"
    active = amtool(url, "silence", "add", *matchers, author, comment, "--duration=2h").strip()
    start = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pending = amtool(
        url, "silence", "add", f"alertname={name}", "--author=sre", "--comment=planned migration",
        f"--start={start}", "--duration=30m",
    ).strip()  # fmt: skip
    expired = amtool(url, "silence", "add", f"alertname={name}", "--author=x", "--comment=gone").strip()
    amtool(url, "silence", "expire", expired)
    page = console.open("/alerts?range=1h")
    rows = {
        r.get_attribute("data-silence-id"): r for r in page.find_elements(By.CSS_SELECTOR, "#silences tr")
    }
    assert active in rows and pending in rows and expired not in rows
    now_row, later_row = rows[active], rows[pending]
    assert now_row.find_element(By.CSS_SELECTOR, ".pill").text == "active"
    shown = {e.text for e in now_row.find_elements(By.CSS_SELECTOR, ".matchers code")}
    assert shown == {f'alertname="{name}"', 'agent=~"gw-.*"'}
    assert now_row.find_element(By.CSS_SELECTOR, ".creator").text == "ops"
    assert now_row.find_element(By.CSS_SELECTOR, ".comment").text == "rolling upgrade"
    assert now_row.find_element(By.CSS_SELECTOR, ".ends").text in ("in 2.0 h", "in 1.9 h")
    assert later_row.find_element(By.CSS_SELECTOR, ".pill").text == "pending"
    assert later_row.find_element(By.CSS_SELECTOR, ".ends").text in ("in 3.5 h", "in 3.4 h")
    assert later_row.find_element(By.CSS_SELECTOR, ".creator").text == "sre"
    assert later_row.find_element(By.CSS_SELECTOR, ".comment").text == "planned migration"
    console.shot("silences")
    for silence in (active, pending):
        amtool(url, "silence", "expire", silence)


def _send_cohorts(stack: Any, service: str) -> None:
    """Spans of three builds: 2.0 as fast as 1.0, 3.0 half again as slow (same jitter for all)."""
    jitter = random.Random(7)
    now = time.time_ns()
    for version, scale in (("1.0", 1.0), ("2.0", 1.0), ("3.0", 1.5)):
        resource = Resource.create({"service.name": service, "service.version": version})
        provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=stack.grpc_endpoint, insecure=True)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("talonflow.tests")
        for i in range(80):
            start = now - (i + 1) * 1_000_000_000
            span = tracer.start_span("plan", start_time=start)
            span.end(end_time=start + int(scale * jitter.uniform(40e6, 60e6)))
        provider.shutdown()


def test_compare_verdict_flips_when_the_candidate_is_slower(local_stack: Any, console: Any) -> None:
    service = f"cmp-{uuid.uuid4().hex[:6]}"
    _send_cohorts(local_stack, service)
    _wait_for(
        "the cohorts' spans",
        lambda: (
            dataset_frame(local_stack.config, "spans")
            .filter(pl.col("service_name") == service)
            .select(pl.len())
            .collect()
            .item()
            >= 240
        ),
    )
    page = console.open(f"/compare?range=1h&service={service}")
    page.find_element(By.NAME, "baseline").send_keys("service.version=1.0")
    page.find_element(By.NAME, "candidate").send_keys("service.version=2.0")
    page.find_element(By.CSS_SELECTOR, "#compare-form button").click()
    verdict = WebDriverWait(page, 60).until(lambda d: d.find_elements(By.ID, "verdict"))  # the new page
    assert verdict[0].text == "no detectable difference"
    shared = page.current_url  # the comparison is a URL: the same one with the slower build as candidate
    assert "candidate=service.version%3D2.0" in shared
    page = console.open(shared.split(console.base, 1)[1].replace("version%3D2.0", "version%3D3.0"))
    assert page.find_element(By.ID, "verdict").text == "worse"
    latency = page.find_element(By.CSS_SELECTOR, 'tr[data-measure="latency_p50"]')
    assert "worse" in latency.text
    console.shot("compare")
