"""schemas/gotemplate.py against Go's own text/template (tests/gotemplate_peer, built with the Go
toolchain that `make setup` needs anyway): same output for every case, and an error in both or
in neither."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.gotemplate import GoTemplate, GoTemplateError, GoTemplateExecError, StringMap, go_sprintf

PEER = Path(__file__).resolve().parent.parent / "gotemplate_peer" / "main.go"

DATA: dict[str, Any] = {
    "s": 'héllo <b>&"quoted"\'',
    "x": 1234567.0,
    "f": 0.1,
    "big": 1e21,
    "neg": -2.5,
    "zero": 0.0,
    "t": True,
    "no": False,
    "empty": "",
    "list": ["a", "b", "c"],
    "nested": {"A": {"B": "deep"}, "k": "v"},
    "labels": {"alertname": "HighErrors", "severity": "critical", "job": "api"},
    "alerts": [
        {"Status": "firing", "Labels": {"instance": "i-1"}},
        {"Status": "resolved", "Labels": {"instance": "i-2"}},
    ],
    "nums": [3.0, 1.5, 2.0],
    "emptylist": [],
}

CASES = [
    "plain text only",
    "{{ .s }}|{{ .x }}|{{ .f }}|{{ .big }}|{{ .neg }}|{{ .zero }}|{{ .t }}|{{ .no }}",
    "{{ .list }} {{ .nested }} {{ .labels }} {{ .emptylist }}",
    '{{ .nested.A.B }} {{ .nested.k }} {{ index .nested "k" }} {{ index .nested "A" "B" }}',
    "a  {{- .s -}}  b\n  {{- /* a comment */ -}}  \n c {{/* plain */}} d",
    '{{ $x := .labels.job }}{{ $x }} {{ $x = "changed" }}{{ $x }} {{ $.s }}',
    "{{ range .list }}[{{ . }}]{{ end }} {{ range $i, $e := .list }}{{ $i }}={{ $e }},{{ end }}",
    "{{ range $k, $v := .labels }}{{ $k }}:{{ $v }} {{ end }}",
    "{{ range .emptylist }}x{{ else }}none{{ end }} {{ range .alerts }}"
    "{{ .Status }}/{{ .Labels.instance }} {{ end }}",
    "{{ range $i, $e := .list }}{{ if eq $i 1 }}{{ continue }}"
    "{{ end }}{{ if eq $i 2 }}{{ break }}{{ end }}{{ $e }}{{ end }}",
    "{{ range 3 }}{{ . }}{{ end }}",
    "{{ if .t }}yes{{ else }}no{{ end }} {{ if .no }}"
    "a{{ else if .empty }}b{{ else if .f }}c{{ else }}d{{ end }}",
    "{{ with .nested.A }}{{ .B }}{{ end }} {{ with .empty }}x{{ else }}empty{{ end }}",
    "{{ with .no }}x{{ else with .labels }}{{ .job }}{{ end }}",
    '{{ and 1 0 "x" }} {{ or 0 "" "z" }} {{ not .t }} {{ and .t .s }} {{ or .empty .no }}',
    "{{ len .list }} {{ len .s }} {{ len .labels }} {{ .list | len }}",
    '{{ eq .labels.severity "warning" "critical" }} {{ ne 1 2 }}'
    ' {{ lt 1.5 2.0 }} {{ le "a" "b" }} {{ gt 3 2 }} {{ ge 2 2 }}',
    '{{ print 1 2 "a" "b" 3 .t }}|{{ println "x" 1 2 }}|{{ print }}',
    '{{ printf "%s|%v|%d|%5d|%-5d|%05d|%x|%X|%o|%b|%q|%t|%c|%U" .s .x 42 42 42 42 255 255 8 5 .s .t 65 65 }}',
    '{{ printf "%.2f|%8.3f|%-8.1f|%e|%E|%g|%G|%.3g|%+d|%+.1f|% d" .x .f .neg .x .x .x .big .x 5 .f 7 }}',
    '{{ printf "%v %g %v %v %v" 100000.0 1e6 0.0001 0.00001 123456.7 }}',
    '{{ printf "%d %s" 1 }}|{{ printf "%d" 1 2 }}|{{ printf "%d" "str" }}|{{ printf "%%" }}',
    '{{ printf "%6.2f%%" 12.3456 }} {{ printf "%10s|%-10s|" "r" "l" }} {{ printf "%.3s" "abcdef" }}',
    '{{ html .s }} {{ js .s }} {{ urlquery "a b&c=d/é" }} {{ .s | html }}',
    '{{ js "line\\nbreak\\t<tab>=" }} {{ html "a" 1 }}',
    '{{ .labels.alertname | printf "%s!" | toUpper }} {{ join ", " .list }}',
    "{{ (index .alerts 0).Labels.instance }} {{ (.nested).k }}",
    "{{ slice .s 1 3 }} {{ slice .list 1 }} {{ index .list 2 }}",
    '{{ define "inner" }}<{{ . }}>{{ end }}{{ template "inner" .labels.job }}{{ template "inner" }}',
    '{{ block "b" .list }}{{ range . }}{{ . }}{{ end }}{{ end }}',
    "{{ \"raw\" }} {{ `back\\tick` }} {{ 'a' }} {{ 0x1F }}"
    " {{ 1_000 }} {{ 017 }} {{ 1.5e3 }} {{ -3 }} {{ nil | print }}",
    "{{ if and .t (eq (len .list) 3) }}three{{ end }} {{ $n := len .list }}{{ if gt $n 2 }}many{{ end }}",
    "{{ range .alerts }}{{ $.labels.job }}:{{ .Status }} {{ end }}",
    "{{- range .list }}\n  - {{ . }}\n{{- end }}\n",
    # errors: both must refuse (parse) or fail (exec)
    "{{ .s",
    "{{ if .t }}unclosed",
    "{{ end }}",
    "{{ else }}",
    "{{ nosuchfunc .s }}",
    "{{ $undefined }}",
    "{{ break }}",
    "{{ nil }}",
    '{{ template "missing" }}',
    "{{ index .list 10 }}",
    "{{ len 3 }}",
    "{{ .s | .t }}",
    "{{ eq .s 1 }}",
    "{{ range .t }}x{{ end }}",
    '{{ define "x" }}{{ define "y" }}{{ end }}{{ end }}',
    '{{ "bad \\q escape" }}',
]


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    assert go, "the Go toolchain (needed by make setup) is not on PATH"
    out = tmp_path_factory.mktemp("gopeer") / "gotemplate_peer"
    build = tmp_path_factory.mktemp("gobuild") / "main.go"
    shutil.copy(PEER, build)
    subprocess.run([go, "build", "-o", str(out), str(build)], check=True, env=_go_env())
    return out


def _go_env() -> dict[str, str]:
    import os

    return {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "off", "GOTOOLCHAIN": "local"}


def _ours(source: str) -> dict[str, str]:
    funcs: dict[str, Callable[..., Any]] = {"toUpper": str.upper, "join": lambda sep, items: sep.join(items)}
    try:
        template = GoTemplate(source, funcs, name="t")
    except GoTemplateError as err:
        return {"output": "", "parse_error": str(err)}
    try:
        return {"output": template.render(DATA)}
    except GoTemplateExecError as err:
        return {"output": "", "exec_error": str(err)}


def test_same_output_and_errors_as_go(go_peer: Path) -> None:
    cases = [{"source": source, "data": DATA} for source in CASES]
    theirs = json.loads(
        subprocess.run(
            [str(go_peer)], input=json.dumps(cases), capture_output=True, text=True, check=True
        ).stdout
    )
    mismatches = []
    for source, want in zip(CASES, theirs, strict=True):
        got = _ours(source)
        if want.get("parse_error"):
            ok = "parse_error" in got
        elif want.get("exec_error"):
            ok = "exec_error" in got or "parse_error" in got
        else:
            ok = got == {"output": want["output"]}
        if not ok:
            mismatches.append(f"{source!r}\n   go:   {want}\n   ours: {got}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 1i }}", "t:1: complex number 1i is not supported"),
        ("{{ 0x1p-2 }}", "t:1: hexadecimal floating-point number 0x1p-2 is not supported"),
        ("line one\n{{ if .x }}\n{{ nosuch }}{{ end }}", 't:3: function "nosuch" not defined'),
        ("{{ range .x }}{{ $i }}{{ end }}", 't:1: undefined variable "$i"'),
        ("a\nb {{ .x", "t:2: unclosed action"),
        ("{{ continue }}", "t:1: {{continue}} outside {{range}}"),
    ],
)
def test_refused_at_parse_time_with_line_and_reason(source: str, message: str) -> None:
    with pytest.raises(GoTemplateError) as err:
        GoTemplate(source, name="t")
    assert message in str(err.value)


class _Alert:
    """A struct with a method, as Alertmanager's data model is."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.Labels = labels

    def Label(self, name: str) -> str:
        return self.Labels.get(name, "?")


def test_methods_string_maps_and_included_defines() -> None:
    library = GoTemplate('{{ define "who" }}{{ .Label "job" }}/{{ .Labels.none }}{{ end }}', name="lib")
    template = GoTemplate(
        '{{ template "who" . }} {{ .Label "x" }} {{ index .Labels "none" }}', include=[library]
    )
    alert = _Alert(StringMap(job="api"))
    assert template.render(alert) == "api/ ? "
    assert template.render(alert, template="who") == "api/"
    assert GoTemplate("{{ .missing }}").render({}) == "<no value>"
    assert "who" in template.defined


def test_function_errors_name_the_function_and_line() -> None:
    def boom(value: object) -> str:
        raise ValueError("bad value")

    with pytest.raises(GoTemplateExecError, match=r"t:2: error calling boom: bad value"):
        GoTemplate("x\n{{ .v | boom }}", {"boom": boom}, name="t").render({"v": 1})


def test_sprintf_matches_go_on_its_own() -> None:
    assert go_sprintf("%.1f%% of %s", 12.34, "cpu") == "12.3% of cpu"
    assert go_sprintf("%d", 1.5) == "%!d(float64=1.5)"
