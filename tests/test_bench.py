"""`edgecls bench`: the JSON's fields and their consistency, thread sweeps, unavailable backends,
the machine's state, and `bench compare`."""

from __future__ import annotations

import json

from conftest import CORAL, assert_one_line_error, json_lines, make_coral_bundle, run_edgecls

from edge_runtime.bench import measure as bench

V1 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"


def _bench(tmp_path, *args: str) -> tuple[dict, object]:
    out = tmp_path / "bench.json"
    p = run_edgecls("bench", *args, "--save", out)
    return json.loads(out.read_text()), p


def test_json_fields_are_consistent_and_a_thread_sweep_gives_one_row_each(tmp_path):
    r, p = _bench(tmp_path, V1, "--labels", LABELS, "--threads", "1,2", "--runs", "30", "--warmup", "3",
                  "--input", CORAL / "cat.bmp")
    assert p.returncode == 0, p.stderr
    m = r["machine"]
    assert {"cpu", "cores", "arch", "governor", "board", "edgecls", "interpreters", "warnings"} <= set(m)
    assert {"temperature_c", "throttled", "throttle_flags"} <= set(r["board_before"]) and r["board_after"]
    assert [row["threads"] for row in r["results"]] == [1, 2]
    for row in r["results"]:
        assert row["status"] == "ok" and row["backend"] == "cpu"
        s = row["invoke_ms"]
        assert s["count"] == 30
        assert 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
        assert s["min"] <= s["mean"] <= s["max"] and s["std"] >= 0
        assert row["file_bytes"] == V1.stat().st_size and row["warmup"] == 3
        assert row["create_ms"] > 0 and row["first_invoke_ms"] > 0
        rss = row["rss_mb"]
        # An interpreter with its tensor arena costs memory; the peak is at least what is held after loading.
        assert rss["added_by_load"] > 0 and rss["peak"] >= rss["after_load"] > rss["before_load"]
        e2e = row["end_to_end_ms"]
        assert set(e2e) == {"decode", "resize", "input", "set_get", "invoke", "postprocess", "total", "classify"}
        assert e2e["decode"] > 0 and e2e["resize"] > 0 and e2e["invoke"] > 0  # cat.bmp is 600x400: all stages run
    assert "p50 ms" in p.stdout and p.stdout.count("mobilenet_v1_0.25_128_quant.tflite") == 2


def test_json_means_json_lines_on_stdout(tmp_path):
    saved = tmp_path / "b.json"
    p = run_edgecls("bench", V1, "--threads", "1,2", "--runs", "5", "--json", "--save", saved)
    assert p.returncode == 0, p.stderr
    rows = json_lines(p.stdout)
    assert [r["threads"] for r in rows] == [1, 2] and all(r["status"] == "ok" for r in rows)
    assert [r["invoke_ms"] for r in rows] == [r["invoke_ms"] for r in json.loads(saved.read_text())["results"]]
    c = run_edgecls("bench", "compare", saved, saved, "--json")
    assert c.returncode == 0 and len(json_lines(c.stdout)) == 4


def test_a_backend_that_cannot_run_gets_its_row_and_the_others_still_run(tmp_path):
    r, p = _bench(tmp_path, V1, "--labels", LABELS, "--backend", "edgetpu,cpu", "--runs", "5", "--threads", "1")
    assert p.returncode == 0, p.stderr
    tpu, cpu = r["results"]
    assert tpu["backend"] == "edgetpu" and tpu["status"] == "unavailable" and "Edge TPU" in tpu["reason"]
    assert cpu["status"] == "ok" and cpu["invoke_ms"]["count"] == 5
    assert "unavailable" in p.stdout


def test_seconds_instead_of_runs_and_a_directory_of_inputs(tmp_path):
    r, p = _bench(tmp_path, V1, "--labels", LABELS, "--seconds", "0.5", "--threads", "1", "--input", CORAL)
    assert p.returncode == 0, p.stderr
    (row,) = r["results"]
    assert row["inputs"] == 3 and row["invoke_ms"]["count"] > 10  # cat.bmp, bird.bmp, parrot.jpg
    assert 400 < row["invoke_ms"]["count"] * row["invoke_ms"]["mean"] < 2000


def test_bad_inputs_are_reported_not_raised(tmp_path):
    r, p = _bench(tmp_path, V1, "--runs", "5", "--input", tmp_path / "nope.jpg")
    assert p.returncode == 1 and r["results"][0]["status"] == "error" and "nope.jpg" in r["results"][0]["reason"]
    both = run_edgecls("bench", V1, "--runs", "5", "--seconds", "1")
    assert_one_line_error(both, "--runs or --seconds")
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    assert_one_line_error(run_edgecls("bench", "compare", junk), "junk.json", "edgecls bench --save")


def test_compare_merges_result_files_into_one_table(tmp_path):
    a, _ = _bench(tmp_path, V1, "--threads", "1", "--runs", "10")
    b = json.loads(json.dumps(a))
    b["machine"]["board"] = "Raspberry Pi 5 Model B Rev 1.0"  # as if it came from a Pi
    stats = b["results"][0]["invoke_ms"]
    for k in ("min", "mean", "std", "p50", "p90", "p99", "max"):
        stats[k] *= 10
    stats["p50"] = 12.5
    fa, fb = tmp_path / "desktop.json", tmp_path / "pi5.json"
    fa.write_text(json.dumps(a))
    fb.write_text(json.dumps(b))
    md, png = tmp_path / "cmp.md", tmp_path / "cmp.png"
    p = run_edgecls("bench", "compare", fa, fb, "--markdown", md, "--plot", png)
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if "mobilenet_v1_0.25_128_quant" in l]
    assert len(lines) == 2 and "Raspberry Pi 5" in lines[1] and "12.500" in lines[1]
    text = md.read_text()
    rows = [l for l in text.splitlines() if "mobilenet_v1_0.25_128_quant" in l]
    assert text.startswith("# edgecls bench") and "| device |" in text
    assert len(rows) == 2 and rows[0].startswith(f"| {bench.device_name(a)} |") and rows[1].startswith("| Raspberry Pi 5")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_governor_and_throttling_are_flagged(monkeypatch):
    import edge_runtime.system.machine as machine

    monkeypatch.setattr(machine, "governor", lambda: "ondemand")
    assert any("'ondemand'" in w and "performance" in w for w in bench.machine()["warnings"])
    assert machine.throttle_flags(0x50005) == ["under-voltage", "throttled", "under-voltage occurred",
                                               "throttling occurred"]
    result = {"machine": {**bench.machine(), "board": "Raspberry Pi 4 Model B Rev 1.4"},
              "board_before": {"temperature_c": 61.3, "throttled": "0x0", "throttle_flags": []},
              "board_after": {"temperature_c": 81.0, "throttled": "0x20002", "throttle_flags": machine.throttle_flags(0x20002)},
              "results": []}
    text = "\n".join(bench.machine_lines(result))
    assert "81.0 C" in text and "ARM frequency capped" in text and "throttled during the run" in text


def _fake_result(board: str | None, models: list[str]) -> dict:
    rows = []
    for i, m in enumerate(models):
        for backend in ("cpu", "gpu"):
            for threads in (1, 4):
                p50 = 1.0 + i + threads / 10
                rows.append({"model": m, "backend": backend, "threads": threads, "status": "ok",
                             "invoke_ms": {"min": p50 * 0.9, "p50": p50, "p90": p50 * 1.2, "p99": p50 * 1.5}})
    machine = {"board": board, "cpu": "Cortex-A76" if board else "AMD EPYC 7B13", "cores": 4, "arch": "aarch64",
               "governor": "performance", "edgecls": "0.2.0", "interpreters": {"ai_edge_litert": "2.3.0"},
               "warnings": []}
    state = {"temperature_c": None, "throttled": None, "throttle_flags": []}
    return {"machine": machine, "board_before": state, "board_after": state, "results": rows}


def test_plot_of_many_rows_and_devices_keeps_every_label_readable(tmp_path):
    names = [f"/data/bundles/mobilenet_v3_small_{a}_224_ptq_with_a_long_name_{a}.tflite" for a in ("0.75", "1.0")]
    names.append("/data/bundles/sign-language-v2")
    results = [_fake_result(None, names), _fake_result("Raspberry Pi 5 Model B Rev 1.0", names)]
    fig = bench.plot(results, tmp_path / "many.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    ticks = [t for t in ax.get_yticklabels() if t.get_text()]
    assert len(ticks) == 2 * 3 * 2 * 2  # devices x models x backends x threads: one row each
    boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.y0)
    for lower, upper in zip(boxes, boxes[1:]):
        assert lower.y1 <= upper.y0 + 0.5, "tick labels overlap"
    fig_box = fig.get_window_extent(renderer)
    assert all(b.x0 >= fig_box.x0 for b in boxes), "a tick label runs off the figure"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["cpu", "gpu", "p90", "p99"]
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "Raspberry Pi 5" in caption and caption.count("AMD EPYC 7B13") == 1


def test_one_bench_of_a_bundle_and_bare_models_with_labels(tmp_path):
    bundle = make_coral_bundle(tmp_path / "coral")
    r, p = _bench(tmp_path, bundle, V1, "--labels", LABELS, "--runs", "5", "--threads", "1")
    assert p.returncode == 0, p.stderr
    bundled, bare = r["results"]
    assert bundled["status"] == "ok" and bare["status"] == "ok", r["results"]
    assert bundled["end_to_end_image"].endswith(".bmp")  # the bundle's first golden photo
    assert bare["end_to_end_image"] == "a synthetic 640x480 JPEG" and bare["end_to_end_ms"]["decode"] > 0


def test_the_machine_line_names_the_cpu_once():
    r = _fake_result(None, ["a.tflite"])
    (line,) = bench.machine_lines(r)
    assert line.count("AMD EPYC 7B13") == 1
