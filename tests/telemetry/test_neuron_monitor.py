import json
import stat
import sys
import time

from appliance.telemetry.neuron_monitor import NeuronMonitorSampler, monitor_config, parse_report

from .reports import report, runtime


def test_parse_report_gives_per_core_utilization_and_memory():
    parsed = parse_report(report(runtime(101, "replica-a", {0: 42.5, 1: 10.0}, {0: 4096, 1: 8192})))
    assert [(c.core, c.utilization_pct, c.memory_bytes, c.pid) for c in parsed.cores] == [
        (0, 42.5, 4096, 101),
        (1, 10.0, 8192, 101),
    ]
    assert parsed.instance_type == "inf2.xlarge"
    assert (parsed.device_count, parsed.cores_per_device, parsed.device_memory_bytes) == (1, 2, 34359738368)


def test_parse_report_gives_execution_statistics_per_runtime():
    (stats,) = parse_report(report(runtime(7, "t", {0: 1.0}, {0: 1}, completed=123))).runtimes
    assert stats.completed == 123
    assert stats.failed == 3  # completed_with_err 1 + failed_to_queue 2
    assert stats.errors["numerical"] == 1
    assert stats.latency_p50_s == 0.013 and stats.latency_p99_s == 0.02 and stats.device_latency_p50_s == 0.012


def test_parse_report_tolerates_errors_nulls_and_missing_groups():
    broken = {"pid": 9, "neuron_runtime_tag": "gone", "error": "failed to connect to runtime", "report": {}}
    idle = runtime(8, "idle", {2: 0.0}, {2: 10}, latency={"total_latency": None, "device_latency": None})
    idle["report"]["memory_used"] = {"period": 1.0, "error": "timeout"}
    parsed = parse_report(report(broken, idle))
    assert [r.error for r in parsed.runtimes] == ["failed to connect to runtime", ""]
    assert parsed.runtimes[1].latency_p50_s is None
    assert [(c.core, c.memory_bytes) for c in parsed.cores] == [(2, 0)]
    assert parse_report({}).cores == [] and parse_report({"neuron_runtime_data": None}).runtimes == []


def test_runtimes_that_come_and_go_between_reports():
    first = parse_report(report(runtime(1, "a", {0: 50.0}, {0: 1}), runtime(2, "b", {1: 60.0}, {1: 1})))
    second = parse_report(report(runtime(2, "b", {1: 70.0}, {1: 1})))
    third = parse_report(report())
    assert [c.core for c in first.cores] == [0, 1]
    assert [(c.core, c.utilization_pct) for c in second.cores] == [(1, 70.0)]
    assert third.cores == [] and third.runtimes == []


def test_monitor_config_enables_the_runtime_groups_the_parser_reads():
    config = monitor_config(period_s=2)
    assert config["period"] == "2s"
    types = {m["type"] for m in config["neuron_runtimes"][0]["metrics"]}
    assert {"neuroncore_counters", "memory_used", "execution_stats"} <= types


def test_sampler_survives_neuron_monitor_exiting_and_restarts_it(tmp_path):
    # Test double of the neuron-monitor executable: prints two documented-schema reports, one garbage line, exits.
    lines = [json.dumps(report(runtime(5, "x", {0: float(i)}, {0: 1}))) for i in range(2)] + ["not json"]
    fake = tmp_path / "fake-neuron-monitor"
    fake.write_text(f"#!{sys.executable}\nprint({chr(10).join(lines)!r})\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    received = []
    sampler = NeuronMonitorSampler(on_report=received.append, command=[str(fake)], restart_backoff_s=0.05).start()
    deadline = time.monotonic() + 20
    while (len(received) < 6 or sampler.restarts < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.stop()
    assert len(received) >= 6
    assert sampler.restarts >= 2
    assert sampler.parse_errors >= 2
    assert {c.utilization_pct for r in received for c in r.cores} == {0.0, 1.0}


def test_sampler_keeps_trying_when_the_tool_is_missing():
    sampler = NeuronMonitorSampler(on_report=lambda r: None, command=["/nonexistent/neuron-monitor"],
                                   restart_backoff_s=0.01, max_backoff_s=0.02).start()
    deadline = time.monotonic() + 5
    while sampler.restarts < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert sampler.restarts >= 3
