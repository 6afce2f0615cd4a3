"""``--gpio PIN=LABEL``: an output pin that is high while LABEL is the current label; with zones,
``--gpio PIN=ZONE:LABEL``: while LABEL is the current label of that zone.

gpiozero (shipped by Raspberry Pi OS) drives the pins; PIN is anything gpiozero accepts (``17``,
``GPIO17``, ``BOARD11``). Several pins may follow one label. Every pin goes low when edgecls ends."""

from __future__ import annotations

from typing import Any

from edge_runtime.actions.base import Log, Sink, State, stderr_log
from edge_runtime.errors import EdgeclsError, MissingExtra


def parse(spec: str) -> tuple[Any, str]:
    pin, sep, label = spec.partition("=")
    if not sep or not pin.strip() or not label:
        raise ValueError(f"--gpio {spec!r}: give PIN=LABEL, e.g. --gpio 17=cat")
    pin = pin.strip()
    return (int(pin) if pin.isdigit() else pin), label


class GpioSink(Sink):
    name = "gpio"

    def __init__(self, pins: list[tuple[Any, str, str | None]], *, log: Log = stderr_log):
        super().__init__(log, maxlen=4)
        self.pins = pins
        self.devices: list[tuple[Any, str, str | None]] = []  # (device, label, zone)

    def open(self) -> None:
        try:
            from gpiozero import DigitalOutputDevice
        except ImportError:
            raise MissingExtra("--gpio", "gpio", "gpiozero") from None
        for pin, label, zone in self.pins:
            try:
                self.devices.append((DigitalOutputDevice(pin, initial_value=False), label, zone))
            except Exception as e:  # gpiozero's errors: a bad pin name, a pin in use, no pin factory
                self.close()
                raise EdgeclsError(f"--gpio {pin}={label}: {type(e).__name__}: {e}") from None

    def handle(self, state: State) -> None:
        for dev, label, zone in self.devices:
            if zone == state.zone:
                dev.value = label == state.label
        self.sent += 1

    def close(self) -> None:
        for dev, *_ in self.devices:
            try:
                dev.off()
            finally:
                dev.close()
        self.devices = []
