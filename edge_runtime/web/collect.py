"""The collect page (static/collect.html, collect.js): the live picture, a button per class, counts,
and the last photos with undo. Viewers see it; admins take photos. With a bundle (``--bundle``,
a ``web.teach.Teacher``): what the bundle sees in the live picture, and the Teach button."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Callable

from edge_runtime.dataset.collect import BURST_FPS, Collector, Grabber
from edge_runtime.live.frames import Source
from edge_runtime.live.zones import ZoneError
from edge_runtime.web import server as webview
from edge_runtime.web.teach import TeachConflict, Teacher

NO_BUNDLE = "this collect page has no bundle to teach; start it with --bundle BUNDLE (a bundle made by edgecls convert)"


def handler(collector: Collector, grabber: Grabber, view: Any, teacher: Teacher | None = None) -> type:
    """The camera web view's handler (``/stream.mjpg``) with the collect page and its actions;
    with ``teacher``, also ``/teach.json`` and the Teach, keep and undo writes."""
    def state() -> dict[str, Any]:
        return {**collector.state(), "burst_ms": int(1000 / BURST_FPS), "zone": zone_outline()}

    def zone_outline() -> dict[str, Any] | None:
        """--zone: where the saved crop lies in the live picture (the page outlines it)."""
        f = grabber.frame
        if collector.zone is None or f is None:
            return None
        pic = f.display if f.display is not None else f.rgb
        try:
            box = collector.zone.box(pic.shape[1], pic.shape[0])
        except ZoneError:  # a zone outside this frame: the capture says so
            return None
        return {"name": collector.zone.name, "box": list(box), "picture": [pic.shape[1], pic.shape[0]]}

    def capture(body: dict[str, Any]) -> dict[str, Any]:
        burst = bool(body.get("burst"))
        s = collector.capture(grabber, str(body.get("label", "")), burst)
        if s is None:
            msg = "no new frame from the camera yet" if burst else \
                f"no frame to save ({grabber.ended or 'waiting for the camera'})"
        else:
            msg = f"saved {s.rel}"
        return {**state(), "message": msg}

    def undo(body: dict[str, Any]) -> dict[str, Any]:
        s = collector.undo(body.get("rel") or None)
        return {**state(), "message": f"removed {s.rel}" if s else "nothing to undo"}

    def add_class(body: dict[str, Any]) -> dict[str, Any]:
        name = collector.add_class(str(body.get("label", "")))
        return {**state(), "message": f"class {name} added"}

    def teach_state() -> dict[str, Any]:
        """The teach's status and the bundle's top 3 for the newest frame (the saved picture: the
        zone's crop with --zone)."""
        if teacher is None:
            return {"bundle": None, "can_teach": False, "why_not": NO_BUNDLE, "state": "idle", "sees": []}
        f = grabber.frame
        sees = []
        if f is not None:
            try:
                g = collector.zone.crop(f) if collector.zone is not None else f
                sees = teacher.sees(g.display if g.display is not None else g.rgb, f.n)
            except ZoneError:  # a zone outside this frame: the capture says so
                pass
        return {**teacher.status(), "sees": sees}

    def teaching(act: Callable[[Teacher], dict[str, Any]]) -> dict[str, Any]:
        """Teach, keep or undo: 400 without a bundle, 409 while another teach runs or waits."""
        if teacher is None:
            raise ValueError(NO_BUNDLE)
        try:
            return {**act(teacher), "sees": []}
        except TeachConflict as e:
            raise webview.Refused(HTTPStatus.CONFLICT, str(e)) from None

    class Handler(webview.handler_for(view)):  # type: ignore[misc]
        page = "collect.html"

        def pages(self) -> dict:
            return {**super().pages(), "/collect.json": lambda q: self.send_json(state()),
                    "/teach.json": lambda q: self.send_json(teach_state()),
                    "/photo": lambda q: self.send_image_in(collector.root, q.get("rel", ""))}

        def writes(self) -> dict:
            return {"/capture": capture, "/undo": undo, "/class": add_class,
                    "/teach": lambda body: teaching(lambda t: t.start(self.who().name)),
                    "/teach/keep": lambda body: teaching(lambda t: t.keep(self.who().name)),
                    "/teach/undo": lambda body: teaching(lambda t: t.undo(self.who().name))}

    return Handler


def serve(collector: Collector, source: Source, host: str, port: int, metrics: Any = None,
          teacher: Teacher | None = None, **web: Any) -> tuple[Any, Grabber]:
    """Start the page's server and the frame reader; returns (server, grabber). ``metrics``: the
    ``/metrics`` answer (``bench.metrics.page_metrics``); ``teacher``: the page's bundle and Teach
    button (``--bundle``); ``web``: ``serve``'s options (users, tls, public)."""
    view = webview.View()
    view.metrics_ref = metrics
    grabber = Grabber(source, on_frame=lambda f: view.update(f, [], {}, 0.0))
    server = webview.serve(view, host, port, handler(collector, grabber, view, teacher), **web)
    grabber.start()
    return server, grabber
