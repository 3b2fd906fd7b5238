"""bench/smpp runs end to end: a smoke run, checked for completeness, never for speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import bench_result

pytestmark = pytest.mark.one_engine("no database of the tests' own")  # conftest.py


def test_quick_benchmark_run_submits_every_message_once_and_delivers_it() -> None:
    """With the link in the server's process (the links' own process, the default, runs in
    the probe's test below)."""
    result = bench_result("bench.smpp", "--quick", "--one-process")
    assert result["valid"] and not result["problems"]
    phases = {(p["name"], p["round"]): p for p in result["phases"]}
    assert set(phases) == {("ingest", 1), ("link", 1)}
    link = phases[("link", 1)]
    assert link["messages"] == 200
    assert link["submits_per_s"] > 0 and link["accepted_per_s"] > 0
    assert all(p["host_gauge_ms"] > 0 for p in result["phases"])  # the host's speed, gauged
    assert result["summary"]["round"] == 1
    assert result["jasmin"] is None and "over_jasmin" not in result["summary"]


def test_the_probe_tells_what_the_links_window_waited_for() -> None:
    """--probe (with the links in their own process): the share of the link's busy time in
    each state of its window, and the group commit's batches of the links' process."""
    result = bench_result("bench.smpp", "--quick", "--probe")
    assert result["valid"] and not result["problems"]
    probe = result["probe"]
    assert probe["busy_ms"] > 0
    assert 99 <= sum(probe["states_percent"].values()) <= 101
    known = {
        "window full (awaiting answers)",
        "parts ready, places free (the sender's turn)",
        "waiting for an intent's commit",
        "parts planned, none being intended",
        "all sent, answers awaited: waiting for more messages (a claim)",
    }
    assert probe["states_percent"] and set(probe["states_percent"]) <= known
    kinds = set(probe["batches"])
    assert any("claim.unit" in kind for kind in kinds)
    assert any("settle.unit" in kind for kind in kinds)
    assert all(b["count"] > 0 and b["max_ms"] >= b["median_ms"] for b in probe["batches"].values())


def test_the_probe_needs_the_links_process() -> None:
    from bench.smpp.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--probe", "--one-process"])
    assert parse_args(["--probe"]).probe
    assert parse_args([]).links_process  # the default, as docs/links.md advises
    assert parse_args(["--probe", "--links-process"]).links_process


def test_the_anchor_ratio_is_smsgw_over_jasmin_at_the_simulator() -> None:
    """With --jasmin (not run here: Jasmin needs RabbitMQ and a venv of its own), the summary
    sets smsgw's rate at the simulator against Jasmin's of the same run, target 5x."""
    from bench.smpp.__main__ import summary
    from bench.smpp.jasmin import JasminPhase
    from bench.smpp.load import Phase

    ingest = Phase("ingest", 1, 100, 1000.0, 1.0, 2.0, server_cpu_ms_per_message=0.5)
    link = Phase("link", 1, 100, 500.0, 1.0, 2.0, submits_per_s=240.0, ratio=0.2)
    slow = JasminPhase(100, 100, 1000.0, 20.0, 0.02, submits_per_s=50.0)
    found = summary([ingest, link], slow)
    assert (found["over_jasmin"], found["target_over_jasmin_met"]) == (4.8, False)
    fast = JasminPhase(100, 100, 1000.0, 20.0, 0.02, submits_per_s=40.0)
    assert summary([ingest, link], fast)["target_over_jasmin_met"] is True
    assert "over_jasmin" not in summary([ingest, link], None)
    unfinished = JasminPhase(100, 100, 1000.0, 20.0, 0.02)  # never reached the simulator
    assert "over_jasmin" not in summary([ingest, link], unfinished)


def test_a_paced_run_meets_the_target_only_when_the_simulator_keeps_up_at_1000() -> None:
    """With --rate, the target is met when the API accepted the offered rate (at least 1,000
    a second) and the simulator saw the accepted rate during the load, each within KEEP_UP."""
    from bench.smpp.__main__ import summary
    from bench.smpp.load import Phase

    ingest = Phase("ingest", 1, 100, 1000.0, 1.0, 2.0, server_cpu_ms_per_message=0.5)

    def link(accepted: float, during: float) -> Phase:
        return Phase("link", 1, 100, accepted, 1.0, 2.0, submits_during_load_per_s=during,
                     submits_per_s=during, ratio=round(during / accepted, 3))  # fmt: skip

    kept = summary([ingest, link(999.0, 980.0)], rate=1000.0)
    assert kept["target_met"] is True and kept["rounds_keeping_up"] == 1
    assert kept["offered_per_s"] == 1000.0
    assert summary([ingest, link(999.0, 900.0)], rate=1000.0)["target_met"] is False  # backlog
    assert summary([ingest, link(900.0, 900.0)], rate=1000.0)["target_met"] is False  # API
    assert summary([ingest, link(800.0, 800.0)], rate=800.0)["target_met"] is False  # too slow
    unpaced = summary([ingest, link(1500.0, 700.0)])
    assert unpaced["target_met"] is False and "offered_per_s" not in unpaced  # 700/s overall


def test_the_latency_growth_tells_a_backlog_from_a_steady_delay() -> None:
    """A link 100 ms behind the API at its pace grows nothing; one at 0.9 of it grows about
    1000 x (1 / 0.9 - 1) = 111 ms a second of load."""
    from bench.smpp.load import Phase, latencies

    accepted = {f"m {n}": 1000.0 + n / 1000 for n in range(5000)}  # 1,000 a second, 5 s

    def at(n: int, rate: float) -> dict[str, object]:
        return {"text": f"m {n}", "at": (1000.1 + n / rate) * 1000}

    steady = Phase("link", 1, 5000, 1000.0, 1.0, 2.0)
    latencies(steady, accepted, [at(n, 1000) for n in range(5000)])
    assert steady.latency_p50_ms == steady.latency_p99_ms == 100.0
    assert steady.latency_growth_ms_per_s == 0.0

    behind = Phase("link", 1, 5000, 1000.0, 1.0, 2.0)
    latencies(behind, accepted, [at(n, 900) for n in range(5000)] + [{"text": "other", "at": 0}])
    assert behind.latency_growth_ms_per_s is not None
    assert 105 < behind.latency_growth_ms_per_s < 117
    assert behind.latency_p99_ms is not None and behind.latency_p99_ms > 600


def test_the_rounds_tally_counts_paced_rounds_by_the_hosts_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench.smpp.rounds: paced link rounds only (no warm-up, no ingest, no unpaced run), the
    profiled round apart, a round that fell behind or whose API fell short not kept up, and
    an invalid run named."""
    import json
    from dataclasses import asdict

    from bench.smpp import rounds
    from bench.smpp.load import Phase

    def phase(name: str, number: int, accepted: float, ratio: float, gauge: float) -> object:
        return asdict(Phase(name, number, 100, accepted, 1.0, 2.0, ratio=ratio,
                            host_gauge_ms=gauge))  # fmt: skip

    def result(when: str, rate: float | None, phases: list[object], valid: bool = True) -> Path:
        path = tmp_path / f"smpp-{when}.json"
        body = {"benchmark": "smpp", "when": when, "settings": {"rate": rate},
                "phases": phases, "valid": valid}  # fmt: skip
        path.write_text(json.dumps(body))
        return path

    paced = result("20261208T010000Z", 1000.0, [
        phase("link", 0, 500.0, 0.5, 60.0),  # the warm-up
        phase("ingest", 1, 1000.0, 1.0, 60.0),
        phase("link", 1, 999.0, 0.99, 60.0),
        phase("link", 2, 999.0, 0.90, 100.0),  # behind the API
        phase("link", 3, 900.0, 1.00, 150.0),  # the API short of the offered rate
        phase("link", -1, 999.0, 0.99, 60.0),  # profiled
    ])  # fmt: skip
    slow = result("20261208T020000Z", 800.0, [phase("link", 1, 800.0, 1.0, 60.0)], valid=False)
    unpaced = result("20261208T030000Z", None, [phase("link", 1, 1500.0, 0.7, 60.0)])

    found, invalid = rounds.read([unpaced, slow, paced])
    assert [(r.run, r.phase.round, r.kept_up) for r in found] == [
        ("20261208T010000Z", 1, True),
        ("20261208T010000Z", 2, False),
        ("20261208T010000Z", 3, False),
        ("20261208T010000Z", -1, True),
        ("20261208T020000Z", 1, True),
    ]
    assert invalid == ["20261208T020000Z"]
    assert rounds.totals(found) == {  # the 800/s round is under the target: not counted
        "gauge 0-75 ms": (1, 1),
        "gauge 75-110 ms": (0, 1),
        "gauge 110+ ms": (0, 1),
        "profiled (py-spy beside it)": (1, 1),
    }

    assert rounds.main([str(paced), str(slow), str(unpaced)]) == 0
    out = capsys.readouterr().out
    assert "  gauge 0-75 ms: 1 of 1\n" in out and "  gauge 110+ ms: 0 of 1\n" in out
    assert "invalid (a message lost, twice or not Delivered): ['20261208T020000Z']" in out
    assert out.count(" NO\n") == 2
