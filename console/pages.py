"""The page handlers: read the URL, run the page's queries off the event loop, render its template.

Queries are blocking Polars work, so each runs in a worker thread and the server keeps
answering (health checks, other pages) meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from console import alerting, cohorts, fleet, logs, service, sessions, traces
from console.alertmanager import AM_API
from console.humanize import FILTERS
from console.timerange import CHOICES, RangeError, TimeRange, parse_range
from schemas.config import TalonflowConfig
from talonflow.compare import CompareError

CONFIG: web.AppKey[TalonflowConfig] = web.AppKey("config", TalonflowConfig)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
BAD_INPUT = (RangeError, traces.SearchError, logs.LogFilterError, CompareError)
NAV = (
    ("Fleet", "/"),
    ("Traces", "/traces"),
    ("Sessions", "/sessions"),
    ("Logs", "/logs"),
    ("Alerts", "/alerts"),
    ("Compare", "/compare"),
)


def templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(FILTERS)
    environment.filters["tojson_script"] = lambda value: json.dumps(value).replace("</", "<\\/")
    for name in environment.list_templates():  # compiled now, not in each page's first view (10-90 ms)
        environment.get_template(name)
    return environment


def _link(path: str, params: dict[str, str], **extra: str) -> str:
    kept = {k: v for k, v in {**params, **extra}.items() if v}
    return f"{path}?{urlencode(kept)}" if kept else path


def render(request: web.Request, template: str, window: TimeRange | None, **context: Any) -> web.Response:
    params = dict(request.query)
    page = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            nav=NAV,
            path=request.path,
            params=params,
            window=window,
            choices=CHOICES,
            link=_link,
            **context,
        )
    )
    return web.Response(text=page, content_type="text/html")


async def _run(request: web.Request, work: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(work, request.app[CONFIG], *args)


def _window(request: web.Request, default: str = "1h") -> TimeRange:
    return parse_range(request.query, default)


async def fleet_page(request: web.Request) -> web.Response:
    window = _window(request)
    data = await _run(request, fleet.fleet, window)
    return render(request, "fleet.html", window, **data)


async def service_page(request: web.Request) -> web.Response:
    window = _window(request)
    data = await _run(request, service.service_page, request.match_info["name"], window)
    return render(request, "service.html", window, **data)


async def traces_page(request: web.Request) -> web.Response:
    window = _window(request)
    found = await _run(request, traces.search, dict(request.query), window)
    return render(request, "traces.html", window, traces=found)


async def _one(
    request: web.Request, work: Callable[..., Any], key: str, what: str, items: str, template: str
) -> web.Response:
    """The page of one trace or session: ids carry no time, so look back a week unless told."""
    window = _window(request, "7d")
    data = await _run(request, work, request.match_info[key], window)
    if not data[items]:
        problem = f"404: no {what} {request.match_info[key]} between {window.start} and {window.end}\n"
        raise web.HTTPNotFound(text=problem)
    return render(request, template, window, **data)


async def trace_page(request: web.Request) -> web.Response:
    return await _one(request, traces.waterfall, "trace_id", "trace", "spans", "trace.html")


async def sessions_page(request: web.Request) -> web.Response:
    window = _window(request)
    found = await _run(request, sessions.session_list, window, request.query.get("service", ""))
    return render(request, "sessions.html", window, sessions=found)


async def session_page(request: web.Request) -> web.Response:
    return await _one(request, sessions.session_steps, "session_id", "session", "steps", "session.html")


async def logs_page(request: web.Request) -> web.Response:
    window = _window(request)
    lines = await _run(request, logs.log_lines, dict(request.query), window)
    return render(request, "logs.html", window, lines=lines, severities=logs.SEVERITIES)


async def alerts_page(request: web.Request) -> web.Response:
    window = _window(request, "24h")
    data = await _run(request, alerting.alerts_page, window, request.app[AM_API].silences)
    return render(request, "alerts.html", window, **data)


async def compare_page(request: web.Request) -> web.Response:
    window = _window(request, "24h")
    data = await _run(request, cohorts.compare_page, dict(request.query), window)
    return render(request, "compare.html", window, **data)


@web.middleware
async def bad_input(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A parameter that cannot be read is a 400 naming it; nothing else is run or logged."""
    try:
        return await handler(request)
    except BAD_INPUT as err:
        return web.Response(status=400, text=f"400: {err}\n")


def add_pages(app: web.Application) -> None:
    app[TEMPLATES] = templates()
    app.router.add_get("/", fleet_page)
    app.router.add_get("/service/{name}", service_page)
    app.router.add_get("/traces", traces_page)
    app.router.add_get("/traces/{trace_id}", trace_page)
    app.router.add_get("/sessions", sessions_page)
    app.router.add_get("/sessions/{session_id}", session_page)
    app.router.add_get("/logs", logs_page)
    app.router.add_get("/alerts", alerts_page)
    app.router.add_get("/compare", compare_page)
