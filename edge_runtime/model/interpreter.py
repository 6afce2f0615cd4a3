"""The one module that touches an interpreter package.

Resolves the package (``ai_edge_litert``, then ``tflite_runtime``, then ``tensorflow.lite``,
imported lazily), and builds an engine per backend:

- ``cpu``: the classic Interpreter with XNNPACK, threads = the machine's cores;
- ``edgetpu``: the classic Interpreter with the ``libedgetpu`` delegate;
- ``gpu``: LiteRT's CompiledModel with its GPU accelerator (CPU per-op fallback).

Every engine has the same small surface: ``input``/``output`` specs, ``run(x) -> raw output``
and ``close()``. Everything above it is plain numpy.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from edge_runtime.errors import BackendUnavailable, ModelError
from edge_runtime.system.limits import MAX_MODEL_BYTES, read_bounded
from edge_runtime.system.machine import cores
from edge_runtime.model.modelcheck import check_input_size, check_io

PACKAGES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
ENV_INTERPRETER = "EDGECLS_INTERPRETER"
_ALIASES = {
    "ai_edge_litert": "ai_edge_litert", "ai-edge-litert": "ai_edge_litert", "litert": "ai_edge_litert",
    "tflite_runtime": "tflite_runtime", "tflite-runtime": "tflite_runtime",
    "tensorflow": "tensorflow", "tf": "tensorflow", "tensorflow.lite": "tensorflow",
}
_INSTALL = {
    "ai_edge_litert": "pip install ai-edge-litert",
    "tflite_runtime": "pip install tflite-runtime 'numpy<2'",
    "tensorflow": "pip install 'edgecls[train]'",
}
EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
TFLITE_IDENTIFIER = b"TFL3"


# --- interpreter packages ------------------------------------------------------------------


@dataclass(frozen=True)
class InterpreterPackage:
    """An importable interpreter package: its module name, version and entry points."""

    name: str
    version: str
    Interpreter: Any
    load_delegate: Any


def _import_package(name: str) -> InterpreterPackage:
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return InterpreterPackage(name, tf.__version__, tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    mod = importlib.import_module(f"{name}.interpreter")
    top = importlib.import_module(name)
    return InterpreterPackage(name, getattr(top, "__version__", "unknown"), mod.Interpreter, mod.load_delegate)


def resolve_package(name: str | None = None) -> InterpreterPackage:
    """The interpreter package to use: ``name``, else ``$EDGECLS_INTERPRETER``, else the first
    importable of ai_edge_litert, tflite_runtime, tensorflow. A forced one that cannot be
    imported is an error, never a silent fallback."""
    forced = name or os.environ.get(ENV_INTERPRETER) or None
    if forced:
        canonical = _ALIASES.get(forced.strip().lower())
        if canonical is None:
            raise ValueError(f"unknown interpreter package {forced!r}; valid: {', '.join(PACKAGES)}")
        try:
            return _import_package(canonical)
        except Exception as e:  # ImportError, or a broken binary wheel
            raise BackendUnavailable(
                f"interpreter package {canonical} cannot be imported ({type(e).__name__}: {e}); "
                f"install it with: {_INSTALL[canonical]}") from None
    failures = []
    for candidate in PACKAGES:
        try:
            return _import_package(candidate)
        except Exception as e:
            failures.append(f"{candidate}: {type(e).__name__}: {e}")
    raise BackendUnavailable(
        "no TFLite interpreter package found (" + "; ".join(failures) + "); install one with: pip install ai-edge-litert")


# --- model files ---------------------------------------------------------------------------


def read_model_file(path: str) -> bytes:
    """Read a .tflite file and check it is one, before any interpreter sees it (a FIFO, a device
    or a directory is refused unopened; a flatbuffer cannot exceed 2 GiB)."""
    if os.path.isdir(path):
        raise ModelError(f"{path}: is a directory; pass a .tflite file or a bundle directory with edgecls.json")
    data = read_bounded(path, "model file", ModelError, MAX_MODEL_BYTES, "no .tflite is larger (flatbuffer limit)")
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{path}: not a TFLite model (no TFL3 flatbuffer header); "
                         "pass a .tflite file written by a TFLite converter")
    return data


def is_edgetpu_model(data: bytes) -> bool:
    """True for a model compiled by edgetpu_compiler (it holds the edgetpu-custom-op)."""
    return EDGETPU_CUSTOM_OP in data


# --- native stderr capture -----------------------------------------------------------------


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 (LiteRT logs its reasons there).
    Yields a list that holds the captured lines after the block."""
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield lines
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def _causes(lines: list[str]) -> str:
    keys = ("error", "failed", "no adapters", "couldn't", "cannot", "not found", "no drivers")
    found = []
    for line in lines:
        text = line.strip()
        if any(k in text.lower() for k in keys) and "npu" not in text.lower() and "plugin" not in text.lower():
            found.append(text[:200])
    return "; ".join(dict.fromkeys(found[-4:]))


# --- a classifier's optional feature output ------------------------------------------------

SCORES_OUTPUT, FEATURES_OUTPUT = "scores", "features"


def signature_outputs(it: Any) -> dict[str, int]:
    """{output name: tensor index} of the model's first signature ({} when it has none, or the
    package cannot list it)."""
    try:
        sigs = it._get_full_signature_list()
    except Exception:
        return {}
    if not sigs:
        return {}
    outputs = next(iter(sigs.values())).get("outputs", {})
    return {str(k): int(v) for k, v in outputs.items()}


def split_outputs(outputs: list[dict[str, Any]], named: dict[str, int], feature_dim: int | None = None
                  ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A classifier with a feature output (what ``edgecls convert`` exports: two outputs named
    ``scores`` and ``features`` in the model's signature) -> ([the scores output], the features
    output). Where a compiler dropped the signature, ``feature_dim`` (the bundle's
    ``features.dim``) picks the features output by size when that is unambiguous. Any other
    model: (outputs, None), unchanged."""
    if len(outputs) != 2:
        return outputs, None
    by_index = {int(d["index"]): d for d in outputs}
    if set(named) == {SCORES_OUTPUT, FEATURES_OUTPUT} and set(named.values()) == set(by_index):
        return [by_index[named[SCORES_OUTPUT]]], by_index[named[FEATURES_OUTPUT]]
    if feature_dim:
        sizes = [int(np.prod(d["shape"])) for d in outputs]
        if sizes.count(feature_dim) == 1:
            f = sizes.index(feature_dim)
            return [outputs[1 - f]], outputs[f]
    return outputs, None


# --- engines -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """Shape, type and quantization of a model input or output."""

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype != np.float32 and self.scale != 0

    @staticmethod
    def from_details(d: dict[str, Any]) -> "TensorSpec":
        scale, zero_point = d.get("quantization", (0.0, 0))
        return TensorSpec(tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]), float(scale), int(zero_point))


def default_threads() -> int:
    """XNNPACK threads by default: the cores this process may use."""
    return cores()


class InterpreterEngine:
    """The classic Interpreter (CPU with XNNPACK, or with the Edge TPU delegate)."""

    def __init__(self, path: str, package: InterpreterPackage, backend: str, threads: int,
                 delegates: list[Any] | None = None, feature_dim: int | None = None):
        self.backend = backend
        self.package = package
        self.threads = threads
        with captured_stderr() as log:
            try:
                self._it = package.Interpreter(model_path=path, num_threads=threads,
                                               experimental_delegates=delegates or None)
                inputs, outputs = self._it.get_input_details(), self._it.get_output_details()
            except Exception as e:
                raise ModelError(_explain_load_error(path, package, e, log)) from None
            check_input_size(path, inputs)  # before allocating: a huge input would take all memory
            try:
                self._it.allocate_tensors()
            except Exception as e:
                raise ModelError(_explain_load_error(path, package, e, log)) from None
        outputs, feats = split_outputs(outputs, signature_outputs(self._it), feature_dim)
        self._details = (inputs, outputs)
        self.input = TensorSpec.from_details(inputs[0])
        self.output = TensorSpec.from_details(outputs[0])
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        self.features: TensorSpec | None = TensorSpec.from_details(feats) if feats else None
        self._feat = int(feats["index"]) if feats else None
        self.path = path

    def check_classifier(self) -> None:
        """Raise ModelError saying what kind of model this is, unless it is an image classifier
        edgecls runs (``modelcheck.check_io``)."""
        check_io(self.path, *self._details, _ops(self._it))

    def run(self, x: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._in, x.reshape(self.input.shape))
        self._it.invoke()
        return self._it.get_tensor(self._out)

    def invoke(self) -> None:
        """Bare invoke() on the input already set (what benchmarks compare against)."""
        self._it.invoke()

    def last_features(self) -> np.ndarray:
        """The feature output of the last run (raw, quantized where the model is); ModelError
        when the model has none."""
        if self._feat is None:
            raise ModelError(f"{self.path}: has no feature output")
        return self._it.get_tensor(self._feat)

    def run_filled(self, fill: Callable[[np.ndarray], None]) -> np.ndarray:
        """``run``, with ``fill(buf)`` writing the input straight into the input tensor's memory
        (no ``set_tensor`` copy). The view must not outlive ``fill``: the interpreter refuses to
        invoke while a numpy view of its buffers exists."""
        buf = self._it.tensor(self._in)()
        try:
            fill(buf)
        finally:
            del buf
        self._it.invoke()
        return self._it.get_tensor(self._out)

    def close(self) -> None:
        self._it = None


@dataclass(frozen=True)
class GraphInfo:
    """What the graph says before any backend starts: the input type, and whether the output
    comes from SOFTMAX (None when a custom op such as the Edge TPU's hides the graph)."""

    input_dtype: np.dtype | None
    softmax_output: bool | None


def inspect_graph(path: str, package: InterpreterPackage) -> GraphInfo:
    """Read the graph with the classic interpreter, without allocating tensors."""
    try:
        with captured_stderr():
            it = package.Interpreter(model_path=path)
        (inp,), (out,) = it.get_input_details(), split_outputs(it.get_output_details(), signature_outputs(it))[0]
    except Exception:
        return GraphInfo(None, None)
    try:
        ops = it._get_ops_details()
    except Exception:  # older packages have no op introspection
        return GraphInfo(np.dtype(inp["dtype"]), None)
    return GraphInfo(np.dtype(inp["dtype"]), _softmax_output(ops, int(out["index"])))


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # numpy name: uint8, int8, int32, float32, ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 marks a dynamic dimension
    constant: bool  # weights and biases (no producer op and not a graph input)
    per_channel: bool  # quantized with one scale per channel


@dataclass(frozen=True)
class OpInfo:
    index: int  # execution order
    name: str  # TFLite builtin name (CONV_2D, ...) or CUSTOM
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def read_ops(path: str, package: InterpreterPackage | None = None) -> list[OpInfo]:
    """Every op of the model's main graph in execution order, with its tensors' types and shapes
    (for conversion checks and the Edge TPU preflight). Raises ModelError if unreadable."""
    package = package or resolve_package()
    read_model_file(path)  # a missing, empty or foreign file gets its own clear error
    with captured_stderr() as log:
        try:
            it = package.Interpreter(model_path=path)
            ops = it._get_ops_details()
            tensors = {int(d["index"]): d for d in it.get_tensor_details()}
            graph_inputs = {int(d["index"]) for d in it.get_input_details()}
        except AttributeError:
            raise ModelError(f"{package.name} {package.version} cannot list a model's ops; "
                             "install ai-edge-litert") from None
        except Exception as e:
            raise ModelError(_explain_load_error(path, package, e, log)) from None
    produced = {int(o) for op in ops for o in op["outputs"]}

    def info(i: int) -> TensorInfo:
        d = tensors[i]
        q = d.get("quantization_parameters") or {}
        return TensorInfo(d["name"], np.dtype(d["dtype"]).name, tuple(int(x) for x in d["shape"]),
                          tuple(int(x) for x in d.get("shape_signature", d["shape"])),
                          i not in produced and i not in graph_inputs, len(q.get("scales", ())) > 1)

    return [OpInfo(int(op["index"]), op["op_name"], tuple(info(int(i)) for i in op["inputs"] if int(i) >= 0),
                   tuple(info(int(i)) for i in op["outputs"] if int(i) >= 0)) for op in ops]


def per_channel_dense(ops: list[OpInfo]) -> list[int]:
    """Indices of FULLY_CONNECTED ops whose weights carry one scale per output channel."""
    return [op.index for op in ops if op.name == "FULLY_CONNECTED" and len(op.inputs) > 1 and op.inputs[1].per_channel]


def check_known_crashes(path: str, package: InterpreterPackage) -> None:
    """Refuse, before ``invoke()``, a model that is known to crash this interpreter: tflite-runtime
    2.14 on ARM segfaults in invoke() on int8 dense layers with per-channel weights (TF 2.21's
    converter default)."""
    if package.name != "tflite_runtime" or not platform.machine().lower().startswith(("aarch64", "arm")):
        return
    try:
        bad = per_channel_dense(read_ops(path, package))
    except ModelError:
        return  # unreadable here: loading reports it properly
    if bad:
        raise ModelError(f"{path}: its dense layer (op {bad[0]}) is quantized per channel, which crashes "
                         f"tflite-runtime {package.version} on {platform.machine()} in invoke(); reconvert with "
                         "edgecls convert (per-tensor dense layers, its default) or install ai-edge-litert")


def _softmax_output(ops: list[dict[str, Any]], tensor: int) -> bool | None:
    producer = {int(o): op for op in ops if op["op_name"] != "DELEGATE" for o in op["outputs"]}
    for _ in range(8):
        op = producer.get(tensor)
        if op is None:
            return None
        name = op["op_name"]
        if name == "SOFTMAX":
            return True
        if name in ("RESHAPE", "SQUEEZE", "QUANTIZE", "DEQUANTIZE"):
            tensor = int(op["inputs"][0])
            continue
        if name == "CUSTOM" or not name.isupper():
            return None
        return False
    return None


def _explain_load_error(path: str, package: InterpreterPackage, e: Exception, log: list[str]) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "not a valid Flatbuffer" in msg or "Could not open" in msg:
        return f"{path}: not a valid TFLite model ({msg}); the file may be truncated - copy it again"
    if "edgetpu-custom-op" in msg:
        return f"{path}: compiled for the Edge TPU and no Edge TPU delegate is loaded"
    if "unresolved custom op" in msg:
        return (f"{path}: uses a custom op this runtime does not have ({msg.split('.')[0]}); "
                "convert the model with TFLite builtin ops only")
    if package.name == "tflite_runtime" and np.__version__.split(".")[0] != "1":
        return (f"{path}: tflite-runtime {package.version} cannot run with numpy {np.__version__} ({msg}); "
                "install 'numpy<2' or use ai-edge-litert")
    causes = _causes(log)
    return f"{path}: {package.name} {package.version} cannot load this model: {msg}" + (f" ({causes})" if causes else "")


def edgetpu_library() -> str:
    """The libedgetpu file name for this platform."""
    return {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}.get(
        platform.system(), "libedgetpu.so.1")


def check_edgetpu_library() -> str:
    """The Edge TPU library's file name, once it loads; else BackendUnavailable saying what to install."""
    lib = edgetpu_library()
    try:
        ctypes.CDLL(lib)
    except OSError:
        raise BackendUnavailable(
            f"Edge TPU library {lib} is not installed; install libedgetpu1-std from Coral's apt "
            "repository (https://coral.ai/software/#debian-packages)") from None
    return lib


def load_edgetpu_delegate(package: InterpreterPackage, device: str | None = None) -> Any:
    """Load the Edge TPU delegate, or raise BackendUnavailable saying why."""
    options = {"device": device} if device else {}
    lib = check_edgetpu_library()  # first: a failed load_delegate leaves a half-made Delegate whose __del__ raises
    with captured_stderr() as log:
        try:
            return package.load_delegate(lib, options)
        except (OSError, ValueError, RuntimeError) as e:
            err = str(e)
    causes = _causes(log)
    raise BackendUnavailable(f"no Edge TPU found ({lib} loaded, but {err.strip()}"
                             + (f"; {causes}" if causes else "") + "); plug in a Coral USB Accelerator "
                             "or check it with: edgecls doctor")


class GpuEngine:
    """LiteRT's CompiledModel on its GPU accelerator (WebGPU on Vulkan), CPU for the ops the
    GPU does not support. Only ai-edge-litert has it."""

    backend = "gpu"

    def __init__(self, path: str, threads: int, enforce_f32: bool = True):
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.options import CpuOptions, GpuOptions, Options
        except ImportError as e:
            raise BackendUnavailable(f"the gpu backend needs ai-edge-litert's CompiledModel API ({e}); "
                                     "install it with: pip install ai-edge-litert") from None
        _check_file_io(path, classifier=False)
        options = Options(hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                          cpu_options=CpuOptions(num_threads=threads),
                          gpu_options=GpuOptions(enforce_f32=enforce_f32))
        with captured_stderr() as log:
            try:
                self._m = CompiledModel.from_file(path, options=options)
            except Exception as e:
                err = f"{type(e).__name__}: {e}".strip()
            else:
                err = ""
        if err:
            causes = _causes(log) or err
            raise BackendUnavailable(f"GPU accelerator cannot start for {path}: {causes}; "
                                     "check the Vulkan driver with: edgecls doctor, or use --backend cpu")
        key = next(iter(self._m.get_signature_list()))
        ins = list(self._m.get_input_tensor_details(key).values())
        named = self._m.get_output_tensor_details(key)
        outs = list(named.values())
        self._out_index, self._feat_index = 0, None
        self.features: TensorSpec | None = None
        if set(named) == {SCORES_OUTPUT, FEATURES_OUTPUT}:  # a classifier with a feature output: its scores
            self._out_index, self._feat_index = list(named).index(SCORES_OUTPUT), list(named).index(FEATURES_OUTPUT)
            f = named[FEATURES_OUTPUT]
            self.features = TensorSpec(tuple(f["shape"]), np.dtype(f["dtype"]), 0.0, 0)  # the float model's
            outs = [named[SCORES_OUTPUT]]
        if len(ins) != 1 or len(outs) != 1:
            raise ModelError(f"{path}: a classifier has one input and one output; this model has "
                             f"{len(ins)} inputs and {len(outs)} outputs")
        # CompiledModel reports no quantization; the classic interpreter reads it (no allocation).
        q_in, q_out = _quantization(path)
        self.input = TensorSpec(tuple(ins[0]["shape"]), np.dtype(ins[0]["dtype"]), *q_in)
        self.output = TensorSpec(tuple(outs[0]["shape"]), np.dtype(outs[0]["dtype"]), *q_out)
        self._n_out = int(np.prod(self.output.shape))
        self._inputs = self._m.create_input_buffers(0)
        self._outputs = self._m.create_output_buffers(0)
        self.fully_accelerated = bool(self._m.is_fully_accelerated())
        self.threads = threads
        self.path = path

    def run(self, x: np.ndarray) -> np.ndarray:
        self._inputs[0].write(np.ascontiguousarray(x, dtype=self.input.dtype).reshape(-1))
        self._m.run_by_index(0, self._inputs, self._outputs)
        return self._outputs[self._out_index].read(self._n_out, self.output.dtype).reshape(self.output.shape)

    def last_features(self) -> np.ndarray:
        """As ``InterpreterEngine.last_features``."""
        if self._feat_index is None or self.features is None:
            raise ModelError(f"{self.path}: has no feature output")
        n = int(np.prod(self.features.shape))
        return self._outputs[self._feat_index].read(n, self.features.dtype).reshape(self.features.shape)

    def check_classifier(self) -> None:
        """As ``InterpreterEngine.check_classifier``."""
        _check_file_io(self.path)

    def invoke(self) -> None:
        """Run again on the input buffers already written."""
        self._m.run_by_index(0, self._inputs, self._outputs)

    def close(self) -> None:
        self._m = None


def _ops(it: Any) -> list[dict[str, Any]] | None:
    try:
        return list(it._get_ops_details())
    except Exception:  # older packages have no op introspection
        return None


def _check_file_io(path: str, classifier: bool = True) -> None:
    """``check_input_size`` and (``classifier``) ``check_io`` on a model file, read by
    ai-edge-litert's classic interpreter without allocating its tensors."""
    package = _import_package("ai_edge_litert")
    with captured_stderr() as log:
        try:
            it = package.Interpreter(model_path=path)
            inputs = it.get_input_details()
            outputs = split_outputs(it.get_output_details(), signature_outputs(it))[0]
        except Exception as e:
            raise ModelError(_explain_load_error(path, package, e, log)) from None
    check_input_size(path, inputs)
    if classifier:
        check_io(path, inputs, outputs, _ops(it))


def _quantization(path: str) -> tuple[tuple[float, int], tuple[float, int]]:
    package = _import_package("ai_edge_litert")
    with captured_stderr():
        it = package.Interpreter(model_path=path)
    (i,), (o,) = it.get_input_details(), split_outputs(it.get_output_details(), signature_outputs(it))[0]
    return ((float(i["quantization"][0]), int(i["quantization"][1])),
            (float(o["quantization"][0]), int(o["quantization"][1])))


VK_PHYSICAL_DEVICE_TYPE_CPU = 4  # a software rasterizer (Mesa's llvmpipe/lavapipe, SwiftShader)


@dataclass(frozen=True)
class VulkanDevice:
    """A physical device the Vulkan loader reports."""

    name: str
    software: bool


class _VkInstanceCreateInfo(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]


def vulkan_devices(loader: str = "libvulkan.so.1") -> list[VulkanDevice] | None:
    """The devices Vulkan reports, found the way LiteRT's GPU accelerator (through Dawn) finds its
    adapters: a bare instance, then ``vkEnumeratePhysicalDevices``. None without a loader; [] when
    no driver answers (ICD files of a GPU that is not there). What the loader and the drivers
    print goes to a captured stderr: the details are ``edgecls doctor``'s to give."""
    with captured_stderr():
        try:
            vk = ctypes.CDLL(loader)
        except OSError:
            return None
        vk.vkCreateInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        vk.vkEnumeratePhysicalDevices.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
        vk.vkGetPhysicalDeviceProperties.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        vk.vkDestroyInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        info = _VkInstanceCreateInfo(sType=1)  # VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
        instance = ctypes.c_void_p()
        if vk.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance)) != 0:
            return []  # VK_ERROR_INCOMPATIBLE_DRIVER: no driver could start
        try:
            count = ctypes.c_uint32(0)
            if vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None) != 0 or not count.value:
                return []
            handles = (ctypes.c_void_p * count.value)()
            if vk.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles) not in (0, 5):  # 5: VK_INCOMPLETE
                return []
            found = []
            for handle in handles[:count.value]:
                props = ctypes.create_string_buffer(4096)  # VkPhysicalDeviceProperties is 824 bytes
                vk.vkGetPhysicalDeviceProperties(handle, props)
                kind = int.from_bytes(props.raw[16:20], sys.byteorder)  # after 4 uint32 (versions, ids)
                name = props.raw[20:276].split(b"\0", 1)[0].decode("utf-8", "replace")
                found.append(VulkanDevice(name, kind == VK_PHYSICAL_DEVICE_TYPE_CPU))
            return found
        finally:
            vk.vkDestroyInstance(instance, None)


NO_VULKAN_DEVICE = "no Vulkan device"


def vulkan_status() -> tuple[bool, str]:
    """Whether a hardware (non-software) Vulkan device answers, and what was found (the loader,
    the drivers installed, the devices they report). ``auto`` only tries the GPU when this is
    true: a software rasterizer is never a better choice than XNNPACK. ICD files alone prove
    nothing (a desktop install ships Intel's and AMD's on a machine with neither)."""
    import ctypes.util  # here: it imports subprocess and tempfile, which a Pi's classify never needs

    loader = ctypes.util.find_library("vulkan") or "libvulkan.so.1"
    devices = vulkan_devices(loader if os.sep in loader else "libvulkan.so.1")
    if devices is None:
        return False, "no Vulkan loader (libvulkan.so.1); install libvulkan1 and your GPU's Vulkan driver"
    files: list[str] = []
    forced = os.environ.get("VK_DRIVER_FILES") or os.environ.get("VK_ICD_FILENAMES")
    if forced:
        files = [f for f in forced.split(os.pathsep) if f]
    else:
        for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"):
            if os.path.isdir(d):
                files += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".json")]
    if not files:
        return False, "Vulkan loader found, but no Vulkan driver (ICD) is installed"
    drivers = ", ".join(os.path.basename(f) for f in files)
    hardware = [d.name for d in devices if not d.software]
    if hardware:
        return True, f"Vulkan device: {', '.join(hardware)} (drivers: {drivers})"
    software = [d.name for d in devices if d.software]
    return False, (f"{NO_VULKAN_DEVICE}: " + (f"only software Vulkan ({', '.join(software)})" if software
                                            else "no driver found a GPU") + f" (drivers installed: {drivers})")
