"""Headless Chromium driven through the DevTools protocol over ``--remote-debugging-pipe``
(JSON messages ending in a NUL byte on file descriptors 3 and 4): no websocket library, no
driver binary. Clicks and keys are real input events (``Input.dispatchMouseEvent``,
``Input.dispatchKeyEvent``), so the page's own handlers run as they do for a person."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, url: str, width: int = 1000, height: int = 1400):
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium is not installed")
        self.profile = tempfile.mkdtemp(prefix="edgecls-chromium-")
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds() -> None:  # runs in the child: the pipe ends become fds 3 and 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Page.navigate", session=True, url=url)
        self.wait("document.readyState === 'complete'")

    def call(self, method: str, session: bool = False, timeout: float = 30, **params: Any) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" not in self._buf:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(method)

    def js(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, condition: str, timeout: float = 20) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.js(condition)
            if v:
                return v
            time.sleep(0.05)
        raise TimeoutError(condition)

    def center(self, selector: str) -> tuple[float, float]:
        r = self.wait(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null; "
                      "e.scrollIntoView({block: 'center'}); const b = e.getBoundingClientRect(); "
                      "return [b.x + b.width / 2, b.y + b.height / 2]; })()")
        return r[0], r[1]

    def press(self, selector: str) -> None:
        x, y = self.center(selector)
        self.call("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", session=True, type="mousePressed", x=x, y=y, button="left", clickCount=1)

    def release(self, selector: str) -> None:
        x, y = self.center(selector)
        self.call("Input.dispatchMouseEvent", session=True, type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def click(self, selector: str) -> None:
        self.press(selector)
        self.release(selector)

    def key_down(self, key: str) -> None:
        code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
        self.call("Input.dispatchKeyEvent", session=True, type="keyDown", key=key, code=code, text=key,
                  windowsVirtualKeyCode=ord(key.upper()))

    def key_up(self, key: str) -> None:
        code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
        self.call("Input.dispatchKeyEvent", session=True, type="keyUp", key=key, code=code,
                  windowsVirtualKeyCode=ord(key.upper()))

    def key(self, key: str) -> None:
        self.key_down(key)
        self.key_up(key)

    def type(self, selector: str, text: str) -> None:
        self.click(selector)
        self.call("Input.insertText", session=True, text=text)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
