"""``--webhook URL``: POST the state JSON (plus ``previous``, the label before) on a label change.

Each POST has a short timeout; a timeout, a refused connection, a 408, a 429 or a 5xx is retried
twice, after 0.5 s and 1 s; any other 4xx is not (the request itself is wrong). Changes that
arrive while a POST is retried wait in a queue of 16, the oldest dropped first."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from edge_runtime._version import __version__
from edge_runtime.actions.base import Log, Sink, State, stderr_log

RETRY_STATUS = {408, 429}


class WebhookSink(Sink):
    name = "webhook"

    def __init__(self, url: str, *, timeout: float = 2.0, tries: int = 3, backoff: float = 0.5,
                 log: Log = stderr_log):
        super().__init__(log, maxlen=16)
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"--webhook {url!r}: give an http:// or https:// URL")
        if timeout <= 0:
            raise ValueError("--webhook-timeout must be more than 0 seconds")
        self.url, self.timeout, self.tries, self.backoff = url, timeout, tries, backoff

    def handle(self, state: State) -> None:
        body = json.dumps({**state.to_json(), "previous": state.previous}).encode()
        delay, error = self.backoff, ""
        for attempt in range(1, self.tries + 1):
            req = urllib.request.Request(self.url, data=body, method="POST", headers={
                "Content-Type": "application/json", "User-Agent": f"edgecls/{__version__}"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    r.read()
                self.sent += 1
                return
            except urllib.error.HTTPError as e:
                e.close()
                error = f"HTTP {e.code} {e.reason}"
                if e.code < 500 and e.code not in RETRY_STATUS:
                    break
            except (urllib.error.URLError, OSError) as e:  # refused, unreachable, timed out
                reason = getattr(e, "reason", e)
                error = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else str(reason)
            if attempt < self.tries and not self.wait(delay):
                break  # stopping: no more retries
            delay *= 2
        self.failed += 1
        self.log(f"webhook: POST {self.url} failed after {attempt} tr{'y' if attempt == 1 else 'ies'} ({error})")
