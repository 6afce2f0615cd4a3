"""Stand-in for picamera2's ``devices/imx500/imx500.py``: the same device search in sysfs, the same
output-tensor parsing from request metadata (``get_outputs``, ``get_output_shapes``,
``get_kpi_info``), no V4L2 controls. See ``tests/standins/picamera2/__init__.py``."""

from __future__ import annotations

import ctypes
import os

import numpy as np

from ... import Picamera2, _script

NETWORK_NAME_LEN = 64
MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16


class OutputTensorInfo(ctypes.LittleEndianStructure):  # libcamera's struct OutputTensorInfo
    _fields_ = [("tensor_data_num", ctypes.c_uint32), ("num_dimensions", ctypes.c_uint32),
                ("size", ctypes.c_uint16 * MAX_NUM_DIMENSIONS)]


class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):  # libcamera's export of it
    _fields_ = [("network_name", ctypes.c_char * NETWORK_NAME_LEN), ("num_tensors", ctypes.c_uint32),
                ("info", OutputTensorInfo * MAX_NUM_TENSORS), ("frameCount", ctypes.c_uint8)]


def pack_tensor_info(name: str, shapes: list[tuple[int, ...]]) -> bytes:
    """What the IMX500 pipeline puts in a request's ``CnnOutputTensorInfo``."""
    info = CnnOutputTensorInfoExported()
    info.network_name = name.encode()[: NETWORK_NAME_LEN - 1]
    info.num_tensors = len(shapes)
    for i, shape in enumerate(shapes):
        info.info[i].tensor_data_num = int(np.prod(shape))
        info.info[i].num_dimensions = len(shape)
        for j, d in enumerate(shape):
            info.info[i].size[j] = d
    return bytes(info)


class IMX500:
    def __init__(self, network_file: str, camera_id: str = "", tensor_injection: bool = False):
        sysfs = os.environ.get("EDGECLS_TEST_SYSFS", "/sys")
        self.device_fd = None
        for i in range(32):
            test_dir = f"{sysfs}/class/video4linux/v4l-subdev{i}/device"
            module_dir, id_dir = f"{test_dir}/driver/module", f"{test_dir}/of_node"
            if (os.path.islink(module_dir) and os.path.islink(id_dir) and "imx500" in os.readlink(module_dir)
                    and (camera_id == "" or camera_id in os.readlink(id_dir))):
                self.device_fd = f"/dev/v4l-subdev{i}"
                self.imx500_device_id = os.readlink(test_dir).split("/")[-1]
                self._camera_num = next(c["Num"] for c in Picamera2.global_camera_info()
                                        if c["Model"] == "imx500" and c["Id"] in os.readlink(id_dir))
                break
        if self.device_fd is None:
            raise RuntimeError("IMX500: Requested camera dev-node not found")
        if not os.path.isfile(network_file):
            raise RuntimeError(f"Firmware file {os.path.abspath(network_file)} does not exist.")
        w, h = _script().get("input_size", (224, 224))
        self._cfg = {"network_file": network_file, "input_tensor_size": (w, h)}
        self.uploaded = True

    @property
    def camera_num(self) -> int:
        return self._camera_num

    def show_network_fw_progress_bar(self) -> None:
        pass  # the real one starts a process reading debugfs; nothing to show here

    def get_input_size(self) -> tuple:
        return self._cfg["input_tensor_size"]

    def get_outputs(self, metadata: dict, add_batch: bool = False):
        tensor = metadata.get("CnnOutputTensor")
        if not tensor:
            return None
        flat = np.fromiter(tensor, dtype=np.float32)
        outputs, offset = [], 0
        for shape in self.get_output_shapes(metadata):
            n = int(np.prod(shape))
            t = flat[offset: offset + n].reshape(shape, order="F")
            outputs.append(np.expand_dims(t, 0) if add_batch else t)
            offset += n
        return outputs

    def get_output_shapes(self, metadata: dict) -> list:
        raw = metadata.get("CnnOutputTensorInfo")
        if not raw:
            return []
        raw = bytes(raw)
        if len(raw) != ctypes.sizeof(CnnOutputTensorInfoExported):
            raise ValueError(f"tensor info length {len(raw)} does not match expected size "
                             f"{ctypes.sizeof(CnnOutputTensorInfoExported)}")
        parsed = CnnOutputTensorInfoExported.from_buffer_copy(raw)
        return [list(t.size)[: t.num_dimensions] for t in parsed.info[: parsed.num_tensors]]

    @staticmethod
    def get_kpi_info(metadata: dict):
        kpi = metadata.get("CnnKpiInfo")
        if kpi is None:
            return None
        return kpi[0] / 1000, kpi[1] / 1000
