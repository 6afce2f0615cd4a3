from .imx500 import IMX500  # as picamera2.devices exports it

__all__ = ["IMX500"]
