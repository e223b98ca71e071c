"""The HTML report, rendered by a real browser (Debian chromium), and the dashboard's HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from autocompress.cli import main

pytestmark = pytest.mark.browser


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _rendered_dom(html_path) -> str:
    """The page's DOM after its scripts ran, as the browser holds it."""
    proc = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=15000",
            "--dump-dom",
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_report_renders_one_marker_per_front_member_and_the_baselines(finished, tmp_path):
    from bs4 import BeautifulSoup

    result, journal = finished
    out = tmp_path / "report.html"
    assert main(["report", journal, "-o", str(out)]) == 0
    front = result.front
    baselines = [m for m in front.completed if m.baseline]
    others = [m for m in front.completed if not m.baseline and m not in front.members]
    knee = front.knee

    dom = BeautifulSoup(_rendered_dom(out), "html.parser")
    plot = dom.find(id="pareto-accuracy-latency")
    assert plot is not None and plot.select("svg.main-svg"), "plotly did not render the plot"
    traces = plot.select("g.scatterlayer g.trace")
    counts = [len(t.select("path.point")) for t in traces]
    groups = {
        "dominated trials": [m for m in others if m.feasible],
        "below the accuracy floor (infeasible)": [m for m in others if not m.feasible],
        "Pareto front": front.members,
        "baselines": baselines,
        "knee": [knee] if knee else [],
    }
    shown = {name: group for name, group in groups.items() if group}  # a search may have no others
    assert counts == [len(group) for group in shown.values()]
    legend = [t.get_text() for t in plot.select("g.legend text.legendtext")]
    assert legend == list(shown)
    labels = {t.get_text() for t in plot.select("g.scatterlayer g.textpoint text")}
    assert {m.baseline for m in baselines} | {f"knee (trial {knee.number})"} <= labels
    assert dom.find(id="hypervolume").select("g.scatterlayer path.point")
    assert dom.find(id="picked-plan").select("g.barlayer path")  # per-layer bits and pruning
    table = dom.find(id="front-table")
    first_plot = dom.find(id="pareto-accuracy-latency")
    assert table in first_plot.find_all_previous("table")  # the table comes first
    table_rows = table.find_all("tr")
    fp32 = [m for m in baselines if m.baseline == "fp32"]
    on_front = [m for m in fp32 if m in front.members]
    assert len(table_rows) == 1 + len(front.members) + len(fp32) - len(on_front)
    assert table_rows[1].find("td").get_text() == str(fp32[0].number)  # fp32 row first
    rows = zip(table_rows[1:], fp32 + [m for m in front.members if m not in fp32], strict=True)
    for row, m in rows:
        assert f"autocompress export {journal} exported-{m.number}/ --trial {m.number}" in (
            row.get_text()
        )
    assert "s3cret" not in out.read_text()
    summary = [li.get_text() for li in dom.find("ul").find_all("li")]
    assert any(li.startswith("trial time, 0 steps (") for li in summary)  # where time went


def test_report_png_through_kaleido(finished, tmp_path) -> None:
    _chromium()
    _, journal = finished
    assert main(["report", journal, "-o", str(tmp_path / "r.html"), "--png"]) == 0
    pngs = sorted(tmp_path.glob("r-*.png"))
    assert len(pngs) >= 5
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study_on_loopback(finished) -> None:
    result, journal = finished
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autocompress.cli", "dashboard", journal, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, studies = time.monotonic() + 60, None
        while time.monotonic() < deadline and studies is None:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=2
                ) as r:
                    studies = json.loads(r.read())["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies is not None, "the dashboard never answered"
        assert [s["study_name"] for s in studies] == [result.study.study_name]
        with socket.socket() as s:  # not listening on other interfaces
            host_ip = socket.gethostbyname(socket.gethostname())
            if not host_ip.startswith("127."):
                assert s.connect_ex((host_ip, port)) != 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_group_without_trials_takes_no_trace_and_no_legend_entry():
    from types import SimpleNamespace

    from autocompress.deploy._report import pareto_2d, pareto_3d

    def trial(number, baseline=None):
        ms = 1.0 + number
        result = SimpleNamespace(accuracy=0.9, latency_ms=ms, size_bytes=1000)
        result.latency_ratio = ms  # fp32 at 1 ms
        result.reference_latency_ms = 1.0
        plan = SimpleNamespace(summary=lambda: "bits 8x10")
        return SimpleNamespace(
            number=number,
            result=result,
            baseline=baseline,
            plan=plan,
            feasible=True,
            parent=None,
            steps=0,
        )

    fp32, found = trial(0, baseline="fp32"), trial(1)
    front = SimpleNamespace(
        completed=[fp32, found],
        members=[fp32, found],  # no other trials
        knee=None,
        reference={"size_bytes": 1000},
        accuracy_floor=None,
    )
    names = [t.name for t in pareto_2d(front, "latency", "accuracy").data]
    assert names == ["Pareto front", "baselines"]
    assert [t.name for t in pareto_3d(front).data] == ["Pareto front"]
