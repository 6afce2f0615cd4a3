"""The review page (static/review.html, review.js): each mined frame with its predicted label and
score, buttons to move it into a class or discard it. Viewers see it; admins sort."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from edge_runtime.dataset.review import DISCARDED, REVIEW, Reviewer
from edge_runtime.web import server as webview


def handler(reviewer: Reviewer, view: Any) -> type:
    def move(body: dict[str, Any]) -> dict[str, Any]:
        dest = reviewer.move(str(body.get("rel", "")), str(body.get("label", "")))
        return {**reviewer.state(), "message": f"moved to {dest.relative_to(reviewer.root).as_posix()}"}

    def discard(body: dict[str, Any]) -> dict[str, Any]:
        reviewer.discard(str(body.get("rel", "")))
        return {**reviewer.state(), "message": f"discarded (kept in {DISCARDED}/ until you delete it)"}

    def add_class(body: dict[str, Any]) -> dict[str, Any]:
        name = reviewer.add_class(str(body.get("label", "")))
        return {**reviewer.state(), "message": f"class {name} added"}

    def image(q: dict[str, str]) -> tuple[Any, str]:
        return reviewer.root / REVIEW, PurePosixPath(q.get("rel", "")).as_posix().removeprefix(REVIEW + "/")

    class Handler(webview.handler_for(view)):  # type: ignore[misc]
        page = "review.html"

        def pages(self) -> dict:  # the live picture and status are the camera's, not here
            return {"/": lambda q: self._file(self.page), "/review.json": lambda q: self.send_json(reviewer.state()),
                    "/image": lambda q: self.send_image_in(*image(q)), "/metrics": lambda q: self._metrics()}

        def writes(self) -> dict:
            return {"/move": move, "/discard": discard, "/class": add_class}

    return Handler


def serve(reviewer: Reviewer, host: str, port: int, metrics: Any = None, **web: Any) -> Any:
    """Start the review page's server; ``metrics``: the ``/metrics`` answer
    (``bench.metrics.page_metrics``); ``web``: ``webview.serve``'s options (users, tls, public)."""
    view = webview.View()
    view.metrics_ref = metrics
    return webview.serve(view, host, port, handler(reviewer, view), **web)
