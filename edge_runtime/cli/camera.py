"""``edgecls camera``: its options and the command around ``camera.run`` (the web view, the
actions, the output lines and the summary). Only this module and ``cli`` parse and print."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from edge_runtime.bundle.classifier import BACKENDS
from edge_runtime.errors import LabelError
from edge_runtime.cli.args import model_args, nonneg_float, positive_float, positive_int, score, wait_for_ctrl_c, web_args, web_options


def run_command(a: argparse.Namespace) -> int:
    """``edgecls camera``: one loop and the same sinks whichever backend scores the frames."""
    from edge_runtime import actions
    from edge_runtime.live import loop

    signal.signal(signal.SIGTERM, _interrupt)  # systemd stops a service with SIGTERM: end like Ctrl-C
    zones = _zones(a)  # a bad --zone is refused before the camera starts
    scorer, source, info = _on_sensor(a) if _wants_sensor(a) else _on_model(a)
    try:
        if zones is not None:
            source = _check_zones(zones, source)
        view = _serve(a, info) if a.serve else None
        acts = actions.Actions(actions.ActionOptions.from_namespace(a), scorer.labels, model=info["model"],
                               zones=zones.names() if zones is not None else ())
        miner = _miner(a, lambda m: print(f"edgecls: {m}", file=sys.stderr, flush=True), source.live)
        monitor = _monitor(a, scorer, info, acts, miner, view, zones.names() if zones is not None else ())
    except BaseException:
        source.close()  # an early failure never leaves the camera open
        raise
    opts = loop.Options(top=a.top_k, threshold=a.threshold, on_change=a.on_change, smooth=a.smooth,
                        max_frames=a.max_frames)
    following = _follow(a, scorer, monitor, view, zones.names() if zones is not None else ())
    s = loop.run(scorer, source, _emitter(a.json), opts, view=view, actions=acts.start() if acts.sinks else None,
                 miner=miner, on_error=_skipped(a.json), zones=zones, watch=monitor)
    if following is not None:
        following.close()
    if miner is not None:
        print(f"edgecls: {miner.close().describe(a.save_uncertain)}", file=sys.stderr, flush=True)
    if a.json:
        out = s.to_dict()
        if monitor.drifts:
            out["summary"]["drift"] = monitor.drift_json()
        print(json.dumps(out), flush=True)
    for line in monitor.describe_drift():
        print(f"edgecls: {line}", file=sys.stderr, flush=True)
    if view is not None and s.ended == "end of input":
        _keep_serving()
    return _summary(s, a.source)


def _monitor(a: argparse.Namespace, scorer: Any, info: dict[str, Any], acts: Any, miner: Any, view: Any,
             zones: Sequence[str] = ()) -> Any:
    """Drift against the bundle's reference (said once when it has none; with zones a window per
    zone) and the Prometheus metrics, wired to the web view's /status.json and /metrics."""
    from edge_runtime.bench import metrics

    say = lambda m: print(f"edgecls: {m}", file=sys.stderr, flush=True)  # noqa: E731
    bundle = getattr(getattr(scorer, "clf", None), "bundle", None)
    section = bundle.meta.get("reference") if bundle is not None else None
    drift = None
    if section is None:  # a bare model (or the AI Camera's sensor) has no bundle to record one: nothing to say
        if bundle is not None:
            say("drift: off - the bundle records no reference (reconvert it, or adopt it again, to get one)")
    else:
        drift = _drift_windows(a, bundle, zones, say)
    monitor = metrics.Monitor({**metrics.bundle_identity(bundle), "backend": str(info.get("backend", ""))}, drift,
                              actions=acts.stats if acts.sinks else None,
                              mined=(lambda: miner.stats.saved) if miner is not None else None, zones=zones)
    if drift is not None:  # MQTT: a Home Assistant sensor beside the label
        acts.add_sensor("drift", "Drift", lambda: (monitor.drift_json() or {}).get("score"))
    if view is not None:
        view.drift_ref = monitor.drift_json
        view.metrics_ref = lambda: (monitor.exposition(), metrics.CONTENT_TYPE)
        if monitor.unavailable:
            say(f"note: {monitor.unavailable} (the camera runs without it)")
    return monitor


def _follow(a: argparse.Namespace, scorer: Any, monitor: Any, view: Any, zones: Sequence[str]) -> Any:
    """The status JSON's ``bundle`` (name, version, sha256) and, on a deployed folder, the scorer
    following its ``current`` (live/swap.py): each swap renews the web view's model, the metrics'
    ``edgecls_bundle_info`` and the drift windows. Returns the started ``Following``, else None."""
    from edge_runtime.bench import metrics
    from edge_runtime.live.swap import Following

    bundle = getattr(getattr(scorer, "clf", None), "bundle", None)
    if not isinstance(scorer, Following):
        if view is not None and bundle is not None:
            ident = metrics.bundle_identity(bundle)
            view.bundle_ref = lambda: ident
        return None
    say = lambda m: print(f"edgecls: {m}", file=sys.stderr, flush=True)  # noqa: E731

    def swapped(f: Following) -> None:
        new = f.clf.bundle
        monitor.info = {**monitor.info, **metrics.bundle_identity(new)}
        if new.meta.get("reference") is not None:
            monitor.drifts = _drift_windows(a, new, zones, say)
        else:
            monitor.drifts = {}
            say(f"drift: off - {new.name} ({f.version}) records no reference")
        if view is not None:
            view.info["model"] = new.name

    scorer.on_swap.append(swapped)
    if view is not None:
        view.bundle_ref = lambda: scorer.status
    say(f"following {scorer.folder.path}/current (version {scorer.version}): a new live version (edgecls deploy, "
        "teach --into, a rollback) is taken between two frames")
    return scorer.start()


def _drift_windows(a: argparse.Namespace, bundle: Any, zones: Sequence[str], say: Callable[[str], None]) -> dict:
    """Drift windows against the bundle's reference, keyed as ``Monitor.drifts``: one per zone, or
    one (None) for the whole frame."""
    from edge_runtime.bundle.reference import Reference
    from edge_runtime.live.drift import Drift

    ref = Reference.from_json(bundle.meta["reference"], f"{bundle.path}/edgecls.json", len(bundle.labels))
    window = lambda prefix: Drift(ref, window=a.drift_window, warn=a.drift_warn or None,  # noqa: E731
                                  log=lambda m: say(f"warning: {prefix}{m}"))
    return {z: window(f"zone {z}: ") for z in zones} if zones else {None: window("")}


# Options that mean a model run here: the AI Camera cannot honour them (the network runs on its sensor).
HOST_ONLY = (("threads", None, "--threads"), ("interpreter", None, "--interpreter"), ("isp_resize", "on", "--isp-resize"))


def _wants_sensor(a: argparse.Namespace) -> bool:
    """--backend imx500, or auto on an AI Camera with the bundle's network and no option that needs
    a model run here (auto then says why it took the CPU path)."""
    from edge_runtime.live import imx500

    given = [flag for key, default, flag in HOST_ONLY if getattr(a, key) != default] + (["--zone"] if a.zone else [])
    if a.backend == "imx500":
        if given:
            raise ValueError(f"{', '.join(given)}: the imx500 backend runs the network on the AI Camera's sensor, "
                             "so there is nothing to set here; drop it, or use --backend cpu")
        return True
    if a.backend != "auto" or a.source != "auto" or not imx500.prefer(a.model):
        return False
    if given:
        print(f"edgecls: --backend auto: an AI Camera with this bundle's network is here, but {', '.join(given)} "
              "applies only to a model run on this machine: running it here", file=sys.stderr)
        return False
    return True


def _zones(a: argparse.Namespace) -> Any:
    """The ``ZoneSet`` that --zone, --trigger, --motion-threshold and --every ask for, or None."""
    from edge_runtime.live.zones import Trigger, ZoneSet, parse_zones

    trigger = Trigger.parse(a.trigger)
    if not a.zone:
        given = [flag for flag, on in (("--trigger", trigger.kind != "always"), ("--every", a.every),
                                       ("--motion-threshold", a.motion_threshold is not None)) if on]
        if given:
            raise ValueError(f"{', '.join(given)} decides when zones are classified; add --zone NAME=X,Y,W,H "
                             "(--zone all=0,0,1,1 for the whole frame)")
        return None
    if a.motion_threshold is not None and trigger.kind != "motion":
        raise ValueError("--motion-threshold applies to --trigger motion")
    threshold = 0.05 if a.motion_threshold is None else a.motion_threshold
    return ZoneSet(parse_zones(a.zone), trigger, threshold, a.every, settle_after=a.smooth)


def _check_zones(zones: Any, source: Any) -> Any:
    """Read the first frame now, so that a zone outside it is refused before the loop starts; the
    frame is then the loop's first. A source that fails here fails in the loop as it would have."""
    from edge_runtime.live.zones import Peeked

    peeked = Peeked(source)
    first = peeked.peek()
    if first is not None:
        pic = zones.picture(first)
        zones.check(pic.shape[1], pic.shape[0])
        print(f"edgecls: zones in the {pic.shape[1]}x{pic.shape[0]} frame: "
              + ", ".join(f"{s.zone.name} {s.box[2] - s.box[0]}x{s.box[3] - s.box[1]} at ({s.box[0]}, {s.box[1]})"
                          for s in zones.states) + f"; trigger {zones.trigger.describe()}", file=sys.stderr)
    return peeked


def _on_model(a: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The model run here (CPU, GPU or Edge TPU) on frames from --source."""
    from edge_runtime.bundle.classifier import Classifier
    from edge_runtime.bundle.deployed import Deployed
    from edge_runtime.live import sources
    from edge_runtime.live.loop import ModelScorer
    from edge_runtime.live.swap import Following

    load = lambda model: Classifier(model, labels=a.labels, backend=a.backend, threads=a.threads,  # noqa: E731
                                    interpreter=a.interpreter)
    folder = Deployed.find(a.model)  # DIR or DIR/current of a deployed folder: its live version, followed
    version = folder.live() if folder is not None else None
    clf = load(folder.version(version) if folder is not None and version is not None else a.model)
    source, note = sources.open_source(a.source, (clf.width, clf.height), fps=a.fps, isp_resize=a.isp_resize == "on",
                                       resize=clf.resize_method, crop=clf.crop)
    source.open()
    path = getattr(source, "path", "")  # the Pi camera: ISP or software resize, stride, colour space
    print(f"edgecls: {source.name} -> {clf.model_path} on {clf.backend} ({clf.threads} threads)"
          + (f"; {note}" if note else "") + (f"; {path}" if path else ""), file=sys.stderr)
    info = {"model": clf.bundle.name if clf.bundle else Path(clf.model_path).stem, "backend": clf.backend,
            "threads": clf.threads, "interpreter": f"{clf.interpreter} {clf.package.version}"}
    if folder is None or version is None:
        return ModelScorer(clf), source, info
    return Following(clf, folder, version, load, lambda m: print(f"edgecls: {m}", file=sys.stderr, flush=True)), \
        source, info


def _on_sensor(a: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The bundle's network on the AI Camera's sensor: frames arrive with their scores."""
    from edge_runtime.live import imx500
    from edge_runtime.model.labels import read_labels

    net = imx500.network(a.model)
    labels = read_labels(a.labels, net.classes) if a.labels else net.labels
    if len(labels) != net.classes:
        raise LabelError(f"{a.labels}: {len(labels)} labels, but the IMX500 network outputs {net.classes} classes")
    source = imx500.Imx500Source(net, frame_rate=a.fps or 30.0)
    source.open()
    w, h = source.session.input_size()
    print(f"edgecls: IMX500 -> {net.rpk} ({net.classes} classes, {w}x{h} input, on the sensor)", file=sys.stderr)
    info = {"model": net.bundle.name, "backend": "imx500", "threads": None, "interpreter": "on the sensor"}
    return imx500.SensorScorer(labels), source, info


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _serve(a: argparse.Namespace, info: dict[str, Any]) -> Any:
    """The web view on --serve (loopback unless --public --users say otherwise)."""
    from edge_runtime.web import server as webview

    host, port, web = web_options(a, "live")
    view = webview.View(info=info)
    server = webview.serve(view, host, port, **web)
    print(f"edgecls: web view on {webview.url(server)} (JSON: /status.json, Prometheus: /metrics)", file=sys.stderr,
          flush=True)
    return view


def _emitter(as_json: bool) -> Callable[[dict], None]:
    def emit(d: dict) -> None:
        if as_json:
            print(json.dumps(d), flush=True)
        else:
            top = ", ".join(f"{c['label']} ({c['score']:.3f})" for c in d["classes"]) or "(below the threshold)"
            zone = f" {d['zone']}" if "zone" in d else ""
            print(f"frame {d['frame']}{zone}: {top}  [{d['latency_ms'].get('invoke', 0.0):.1f} ms]", flush=True)
    return emit


def _skipped(as_json: bool) -> Callable[[str], None]:
    def skipped(message: str) -> None:  # an unreadable image of a folder: said at once, the run goes on
        print(json.dumps({"error": message}) if as_json else f"edgecls: skipped: {message}",
              file=sys.stdout if as_json else sys.stderr, flush=True)
    return skipped


def _keep_serving() -> None:
    print("edgecls: the input ended; the web view keeps the last frame - Ctrl-C to stop", file=sys.stderr, flush=True)
    wait_for_ctrl_c()


def _summary(s: Any, source: str) -> int:
    from edge_runtime import actions

    lat = ", ".join(f"{k} {v:.1f}" for k, v in s.latency_ms.items())
    done = "frames taken (zones classified as their trigger says)" if s.zones else "frames classified"
    print(f"edgecls: {s.classified} {done} of {s.captured} captured, {s.dropped} dropped, "
          f"{s.fps:.1f} FPS over {s.seconds:.1f} s ({s.ended}); mean ms: {lat}", file=sys.stderr)
    if s.zones:
        print("edgecls: zones: " + "; ".join(f"{name} {z['classified']} classified, {z['skipped']} skipped"
                                             + (f" ({z['latency_ms'].get('invoke', 0.0):.1f} ms invoke)"
                                                if z["latency_ms"] else "") for name, z in s.zones.items()),
              file=sys.stderr)
    if s.actions:
        print(f"edgecls: actions: {actions.format_stats(s.actions)}", file=sys.stderr)
    if s.failed:
        print(f"edgecls: error: {s.ended}", file=sys.stderr)
        return 1
    if s.errors:
        print(f"edgecls: error: {s.errors} image(s) of {source} could not be read (see the lines above)", file=sys.stderr)
        return 1
    return 0


def add_camera(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("camera", help="classify live frames: Pi camera, webcam, video file or images; --serve for a web view",
                       description="Classify frames as fast as the model allows: capture runs in its own thread and "
                       "inference always takes the newest frame (a camera's stale frames are dropped and counted). "
                       "One line per classified frame (--json: {t, frame, classes, latency_ms}); Ctrl-C ends with a "
                       "summary. --backend imx500 runs the bundle's network on the Raspberry Pi AI Camera's sensor.")
    model_args(p, (*BACKENDS, "imx500"))
    p.add_argument("--source", default="auto",
                   help="auto (the Pi camera, else the first webcam), picamera2, opencv:N, /dev/videoN, a video file, "
                        "or a folder or glob of images (default auto)")
    p.add_argument("--top-k", type=positive_int, default=3, metavar="K", help="classes per frame (default 3)")
    p.add_argument("--threshold", type=score, default=0.0, metavar="T", help="report only classes scoring at least T")
    p.add_argument("--on-change", action="store_true", help="print a line only when the top label changes")
    p.add_argument("--smooth", type=positive_int, default=1, metavar="K", help="average the scores of the last K frames")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="stop after N classified frames")
    p.add_argument("--fps", type=nonneg_float, default=0.0,
                   help="pace a video file or a folder of images at this rate, like a camera (default 0: no pacing; "
                        "--backend imx500: the sensor's frame rate, default 30)")
    p.add_argument("--isp-resize", choices=("on", "off"), default="on",
                   help="Pi camera: on = the ISP delivers the model's size (no CPU resize, but not TensorFlow's "
                        "bilinear); off = a larger frame resized in software by the bundle's method, as in training "
                        "(default on)")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="web view with the live picture and the top-k "
                   "(default host 127.0.0.1)")
    web_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per frame, and a summary at the end")
    _zone_options(p)
    g = p.add_argument_group("actions", "act on the current label (see README: Acting on what the camera sees); "
                             "actions run in their own threads and never slow inference")
    g.add_argument("--mqtt", metavar="URL", help="publish to an MQTT broker: mqtt://[USER:PASSWORD@]HOST[:PORT][/PREFIX] "
                   "(mqtts:// for TLS; PREFIX default edgecls/HOSTNAME): state JSON on PREFIX/state, availability on "
                   "PREFIX/availability, Home Assistant discovery (needs edgecls[mqtt])")
    g.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate (PEM) for an mqtts:// broker (default: the system's)")
    g.add_argument("--mqtt-interval", type=nonneg_float, default=30.0, metavar="S",
                   help="also publish the state every S seconds (default 30; 0: only on changes)")
    g.add_argument("--ha-prefix", default="homeassistant", metavar="PREFIX",
                   help="Home Assistant's discovery prefix (default homeassistant; '' for no discovery)")
    g.add_argument("--ha-binary", action="append", default=[], metavar="LABEL",
                   help="also a Home Assistant binary sensor, on while LABEL is current (repeatable); with zones one "
                        "per zone, or ZONE:LABEL for one zone")
    g.add_argument("--webhook", metavar="URL", help="POST the state JSON to URL on every label change")
    g.add_argument("--webhook-timeout", type=positive_float, default=2.0, metavar="S", help="per POST (default 2; 3 tries)")
    g.add_argument("--exec", metavar="CMD", help="run CMD (no shell) on every label change, with EDGECLS_LABEL, "
                   "EDGECLS_SCORE, EDGECLS_FRAME and EDGECLS_PREVIOUS_LABEL set; one at a time")
    g.add_argument("--exec-timeout", type=positive_float, default=10.0, metavar="S", help="kill CMD after S seconds (default 10)")
    g.add_argument("--gpio", action="append", default=[], metavar="PIN=LABEL",
                   help="drive PIN high while LABEL is current, e.g. 17=cat; with zones PIN=ZONE:LABEL, e.g. "
                        "17=door:open (repeatable; gpiozero)")
    g.add_argument("--hold", type=nonneg_float, default=0.0, metavar="S",
                   help="a new label must lead for S seconds before the actions hear of it (default 0)")
    g.add_argument("--min-score", type=score, default=0.0, metavar="T",
                   help="below T the current label is none (default 0)")
    _mining_options(p)  # --save-uncertain and its limits
    g = p.add_argument_group("drift (see README: Watch a fleet)")
    g.add_argument("--drift-warn", type=nonneg_float, default=0.25, metavar="D",
                   help="log once when the drift from the bundle's reference photos rises above D (population "
                        "stability index of the top-1 scores and margins; default 0.25; 0: never)")
    g.add_argument("--drift-window", type=positive_int, default=200, metavar="N",
                   help="compare the last N frames with the reference (default 200)")
    p.set_defaults(func=run_command)


def _zone_options(p: argparse.ArgumentParser) -> None:
    """``edgecls camera``'s zones and triggers (see README: Watch a door)."""
    g = p.add_argument_group("zones and triggers", "classify named regions of the frame, each on its own, and only "
                             "when they change")
    g.add_argument("--zone", action="append", default=[], metavar="NAME=X,Y,W,H",
                   help="a region of the full-resolution frame, in pixels, or in fractions of the frame when every "
                        "value is <= 1, e.g. door=0.6,0.1,0.3,0.8 (repeatable); each zone is classified on its own, "
                        "its JSON lines carry \"zone\": NAME, MQTT publishes it on PREFIX/NAME/state")
    g.add_argument("--trigger", default="always", metavar="always|motion|every:S",
                   help="when a zone is classified: every frame (always, the default); motion: its first frame, "
                        "then when its pixels change and until its label is stable again; every:S: every S seconds")
    g.add_argument("--motion-threshold", type=score, default=None, metavar="F",
                   help="--trigger motion: the fraction of a zone's pixels that must change (default 0.05)")
    g.add_argument("--every", type=nonneg_float, default=0.0, metavar="S",
                   help="--trigger motion: also classify each zone every S seconds, a heartbeat (default 0: none)")


def _mining_options(p: argparse.ArgumentParser) -> None:
    """``edgecls camera``'s mining options."""
    g = p.add_argument_group("keeping uncertain frames (for edgecls pull and review)")
    g.add_argument("--save-uncertain", metavar="DIR", default=None,
                   help="save frames whose top-1 score or margin is low into DIR, with an index.jsonl")
    g.add_argument("--uncertain-score", type=score, default=0.6, metavar="S",
                   help="keep a frame whose top-1 score is below S (default 0.6)")
    g.add_argument("--uncertain-margin", type=score, default=0.15, metavar="M",
                   help="or whose top-1 leads the second class by less than M (default 0.15)")
    g.add_argument("--save-per-minute", type=positive_int, default=6, metavar="N",
                   help="at most N frames saved in any minute (default 6)")
    g.add_argument("--save-max-mb", type=positive_float, default=None, metavar="MB",
                   help="stop saving when DIR holds this many MB (saving also stops below 10%% free disk)")


def _miner(a: argparse.Namespace, log: Callable[[str], None], live: bool = True) -> Any:
    """The Miner ``edgecls camera``'s options ask for, or None. A file (``live`` False) is not
    dropped from: its frames wait for the saving thread."""
    if not a.save_uncertain:
        return None
    from edge_runtime.dataset.mining import Miner

    return Miner(a.save_uncertain, a.uncertain_score, a.uncertain_margin, a.save_per_minute, a.save_max_mb, log=log,
                 wait=not live)
