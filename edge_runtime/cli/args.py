"""Arguments shared by every ``edgecls`` subcommand (the workstation ones too): argparse types, so
that a count, a rate or a score is checked the same way everywhere and the error names the option,
and ``serve_address``, the one ``--serve``/``--public`` check of the web pages (``web_args`` and
``web_options``: the options every ``--serve`` takes)."""

from __future__ import annotations

import argparse
import difflib
import sys
import textwrap
from typing import Any, Sequence


MAX_THREADS = 256  # far above any Pi or desktop; a larger number is a typo (and crashes XNNPACK)


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def positive_int(text: str) -> int:
    """An integer of at least 1: counts, sizes, batch sizes."""
    n = int(_number(text, int))
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def nonneg_int(text: str) -> int:
    """An integer of at least 0: warm-up runs, epochs that may be skipped."""
    n = int(_number(text, int))
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def threads(text: str) -> int:
    """A CPU thread count, 1 to MAX_THREADS."""
    n = int(_number(text, int))
    if not 1 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_THREADS}, got {n}")
    return n


def positive_float(text: str) -> float:
    """A finite number above 0: rates, durations."""
    x = _number(text, float)
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return x


def nonneg_float(text: str) -> float:
    x = _number(text, float)
    if not 0 <= x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {text}")
    return x


def score(text: str) -> float:
    """A score threshold, 0 to 1."""
    x = _number(text, float)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return x


def thread_list(text: str) -> list[int]:
    """Thread counts like ``1,2,4``."""
    parts = [x for x in text.split(",") if x.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r}: give thread counts like 1,2,4")
    return [threads(x.strip()) for x in parts]


def serve_address(text: str, public: bool, what: str, users: str | None = None, tls: bool = False) -> tuple[str, int]:
    """``--serve``'s host and port: the one ``--public`` check. An address other machines can reach
    needs ``--public``, and ``--public`` needs ``--users``."""
    from edge_runtime.web import server as webview

    host, port = webview.parse_address(text)
    if public and not users:
        raise ValueError("--public needs --users FILE: make one with `edgecls users add FILE NAME --role admin` "
                         "(or serve on 127.0.0.1 and use an SSH tunnel)")
    if not webview.is_loopback(host):
        if not public:
            raise ValueError(f"--serve {text} would be reachable from other machines; add --public --users FILE to "
                             "say so (or serve on 127.0.0.1 and use an SSH tunnel)")
        if not tls:
            print(f"edgecls: warning: the {what} page on {host}:{port} is plain HTTP: passwords and pictures cross "
                  "the network unencrypted; add --tls-cert/--tls-key, or use an SSH tunnel", file=sys.stderr)
    return host, port


def web_args(p: argparse.ArgumentParser) -> None:
    """``--public``, ``--users``, ``--tls-cert``, ``--tls-key``: who may reach a ``--serve`` page, and how."""
    p.add_argument("--public", action="store_true", help="allow --serve on an address other machines can reach "
                   "(needs --users)")
    p.add_argument("--users", metavar="FILE", help="who may log in (edgecls users add FILE NAME --role admin|viewer); "
                   "without it, only this machine reaches the page, without a login")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM; with --tls-key)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")


def web_options(a: argparse.Namespace, what: str) -> tuple[str, int, dict[str, Any]]:
    """(host, port, ``webview.serve``'s keyword options) from ``web_args``' options."""
    from edge_runtime.web import server as webview
    from edge_runtime.web.auth import Users

    if bool(a.tls_cert) != bool(a.tls_key):
        raise ValueError("give both --tls-cert FILE and --tls-key FILE (or neither)")
    host, port = serve_address(a.serve, a.public, what, a.users, bool(a.tls_cert))
    users = Users(a.users) if a.users else None
    tls = webview.tls_context(a.tls_cert, a.tls_key) if a.tls_cert else None
    return host, port, {"public": a.public, "users": users, "tls": tls}


def model_args(p: argparse.ArgumentParser, backends: Sequence[str] | None = None) -> None:
    p.add_argument("model", metavar="MODEL_OR_BUNDLE", help="bundle directory or .tar.gz, or a bare .tflite")
    p.add_argument("--labels", metavar="FILE", help="label file for a bare .tflite (one label a line, or 'N label')")
    runtime_args(p, backends)


def runtime_args(p: argparse.ArgumentParser, backends: Sequence[str] | None = None) -> None:
    """--backend, --threads, --interpreter: how a model runs here (``backends``: the Classifier's)."""
    if backends is None:
        from edge_runtime.bundle.classifier import BACKENDS  # numpy and the interpreter: a model is to run

        backends = BACKENDS
    p.add_argument("--backend", choices=backends, default="auto",
                   help="auto takes the first that starts of edgetpu, gpu, cpu (default: auto)")
    p.add_argument("--threads", type=threads, default=None, help="CPU threads (default: the machine's cores)")
    p.add_argument("--interpreter", metavar="PKG", default=None,
                   help="force ai_edge_litert, tflite_runtime or tensorflow (also $EDGECLS_INTERPRETER)")


# --- every command's --help: its options, each with a description, and examples at the end ----


class HelpFormatter(argparse.HelpFormatter):
    """Wraps a description's long lines but keeps its line breaks and indented lines, so that an
    epilog of examples (``examples:`` and one indented command a line) prints as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for line in text.splitlines():
            if line[:1].isspace() or len(indent + line) <= width:
                out.append(indent + line)
            else:
                out.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent))
        return "\n".join(out)


class DefaultsHelpFormatter(HelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``HelpFormatter`` that adds "(default: X)" where the help does not already say it and X
    says something (not None, not False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action) or ""


def finish_help(p: argparse.ArgumentParser, examples: Sequence[str]) -> None:
    """Give ``p`` an examples section (unless it has its own epilog) and the line-keeping formatter."""
    if not p.epilog and examples:
        p.epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    p.formatter_class = (DefaultsHelpFormatter if issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
                         else HelpFormatter)


def option_strings(p: argparse.ArgumentParser) -> list[str]:
    """Every option string ``p`` accepts (``--top-k``, ``-h``, ...), hidden ones included."""
    return [s for a in p._actions for s in a.option_strings]


def close_options(p: argparse.ArgumentParser, typed: str) -> list[str]:
    """``p``'s options closest to ``typed`` (``--top_k`` -> ``--top-k``), best first."""
    known = [s for s in option_strings(p) if s.startswith("--")]
    word = typed.split("=", 1)[0]
    return difflib.get_close_matches(word.replace("_", "-"), known, n=3, cutoff=0.7)


class SuggestingParser(argparse.ArgumentParser):
    """The parser of every subcommand: an argument it does not know is an error with this
    command's own usage (argparse would pass it up to the top-level parser, whose usage lists
    no options), and a mistyped option is answered with this command's closest options."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            hints = [f"{x}: did you mean {' or '.join(close)}?" for x in extras if x.startswith("--")
                     for close in [close_options(self, x)] if close]
            self.error(f"unrecognized arguments: {' '.join(extras)}; "
                       + ("; ".join(hints) if hints else f"`{self.prog} --help` lists its options"))
        return ns, extras


def wait_for_ctrl_c() -> None:
    """Block until Ctrl-C (or SIGTERM, which edgecls turns into one): what a page server's command
    does while its threads serve."""
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
