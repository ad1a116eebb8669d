"""The onnxruntime backend: the PoC forward pass and prefill of the built-in models.

Each model is exported once, in float32, with `torch.onnx.export` (the torch.export-based
exporter) into gonka's cache directory, under a name that carries the model's weights
fingerprint — a changed model can never be served from a stale file. Two graphs per model:

- `poc`: `PocForward` — embeddings [B, T, dim] float32 and the per-layer Householder vectors
  [n_layers, dim] in, the last hidden state [B, dim] out (the batch is a dynamic axis);
- `prefill`: token ids [B, T] int64 in, logits [B, T, vocab] float32 out (both axes dynamic).

The inputs and the steps after the hidden state are the torch backend's own
(`poc.poc_inputs`, `poc.artifacts_from_hidden`), so the two backends' artifacts validate
against each other. The CUDA execution provider is used for `cuda`, the CPU one for `cpu`;
asking for CUDA where onnxruntime cannot run it raises `BackendUnavailable` instead of
quietly running on the CPU.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gonka_cli.errors import BackendUnavailable, InvalidComputeInput

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from gonka_cli.compute.models import BuiltinModel

log = logging.getLogger(__name__)

OPSET = 18
#: Bump when `PocForward` or the prefill forward changes what it computes.
GRAPH_VERSION = 1
KINDS = ("poc", "prefill")
_export_lock = threading.Lock()
_DEVICE = re.compile(r"cpu|cuda(?::([0-9]+))?")


def cache_dir() -> Path:
    from gonka_cli.settings import paths

    return paths().cache_dir / "onnx"


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable(
            "onnxruntime is not installed: `pip install onnxruntime-gpu` (or `onnxruntime` "
            "where no GPU build exists), or use the torch backend"
        ) from None
    return ort


def model_path(name: str, kind: str, fingerprint: str, directory: Path | None = None) -> Path:
    """The cached file of a graph. Its name carries everything the graph depends on: the
    weights (fingerprint), our forward code (`GRAPH_VERSION`), the opset and torch's version,
    so that no upgrade is ever served a stale export."""
    import torch

    if kind not in KINDS:
        raise InvalidComputeInput(f"unknown ONNX graph {kind!r}: one of {', '.join(KINDS)}")
    torch_version = re.sub(r"[^0-9A-Za-z.]", "_", torch.__version__)
    stem = f"{name}-{kind}-{fingerprint[:16]}-g{GRAPH_VERSION}-op{OPSET}-torch{torch_version}"
    return (directory or cache_dir()) / f"{stem}.onnx"


def export(name: str, kind: str = "poc", directory: Path | None = None) -> Path:
    """Export model `name`'s `kind` graph (once; later calls return the cached file)."""
    import torch

    from gonka_cli.compute.models import PocForward, load_builtin

    model = load_builtin(name, "cpu", torch.float32)
    path = model_path(name, kind, model.fingerprint, directory)
    with _export_lock:
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = model.spec
        if kind == "poc":
            module: torch.nn.Module = PocForward(model)
            t = spec.poc_seq_len
            args: tuple[Any, ...] = (
                torch.zeros(2, t, spec.dim),
                torch.zeros(spec.n_layers, spec.dim),
            )
            batch = torch.export.Dim("batch", min=1, max=65_536)
            shapes: Any = ({0: batch}, None)
            names = (["embeddings", "householder"], ["hidden"])
        else:
            module = _prefill_module(model)
            args = (torch.zeros(2, 8, dtype=torch.long),)
            shapes = (
                {
                    0: torch.export.Dim("batch", min=1, max=4096),
                    1: torch.export.Dim("seq", min=2, max=spec.max_seq_len),
                },
            )
            names = (["tokens"], ["logits"])
        log.info("exporting %s (%s) to ONNX: %s", name, kind, path)
        # The exporter reports progress on stdout and warns about optional packages: the
        # core never prints, so its chatter goes to our debug log instead.
        chatter = io.StringIO()
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        with (
            torch.inference_mode(False),
            torch.no_grad(),
            contextlib.redirect_stdout(chatter),
            contextlib.redirect_stderr(chatter),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module.eval(),
                args,
                input_names=names[0],
                output_names=names[1],
                dynamic_shapes=shapes,
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        quiet.setLevel(level)
        log.debug("ONNX exporter output:\n%s", chatter.getvalue())
        if program is None:  # pragma: no cover - dynamo=True always returns a program
            raise BackendUnavailable("torch.onnx.export returned no program")
        # Saved in a private directory first: graphs over 2 GB put their weights in a
        # `<name>.data` file beside the graph, referenced by its name. Both move into place
        # (weights first), so a killed export or a concurrent one never leaves a graph
        # without its weights, and a crash leaves only the private directory to remove.
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=".export-"))
        try:
            program.save(str(staging / path.name))
            for file in sorted(staging.iterdir(), key=lambda f: f.name == path.name):
                os.replace(file, path.parent / file.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path


def _prefill_module(model: BuiltinModel) -> Any:
    """`forward_tokens` without a cache, as a module to export (torch loads lazily)."""
    import torch

    class Prefill(torch.nn.Module):
        def __init__(self, inner: BuiltinModel) -> None:
            super().__init__()
            self.model = inner

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.model.forward_tokens(tokens)

    return Prefill(model)


class OnnxModel:
    """A built-in model served by onnxruntime on `device` ("cpu" or "cuda[:N]")."""

    def __init__(
        self,
        name: str,
        device: str = "cpu",
        *,
        directory: Path | None = None,
        threads: int | None = None,
    ) -> None:
        import torch

        from gonka_cli.compute.models import get_spec, load_builtin

        self.spec = get_spec(name)
        self.name = name
        match = _DEVICE.fullmatch(device) if isinstance(device, str) else None
        if match is None:
            raise InvalidComputeInput(f"unknown device {device!r}: use cpu, cuda or cuda:N")
        self.device = device
        self._device_id = int(match.group(1) or 0)
        self._directory = directory
        self._threads = threads
        self._ort = _import_ort()
        self.fingerprint = load_builtin(name, "cpu", torch.float32).fingerprint
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _providers(self) -> list[Any]:
        if self.device == "cpu":
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" not in self._ort.get_available_providers():
            raise BackendUnavailable(
                "this onnxruntime has no CUDA execution provider: install onnxruntime-gpu, "
                "or use the torch backend"
            )
        return [("CUDAExecutionProvider", {"device_id": self._device_id})]

    def session(self, kind: str) -> Any:
        """The onnxruntime session of graph `kind` (exported on first use)."""
        with self._lock:
            if kind in self._sessions:
                return self._sessions[kind]
            providers = self._providers()  # before a long export that could not run
            path = export(self.name, kind, self._directory)
            options = self._ort.SessionOptions()
            options.log_severity_level = 3
            if self._threads:
                options.intra_op_num_threads = self._threads
            session = self._ort.InferenceSession(str(path), options, providers=providers)
            if self.device != "cpu" and session.get_providers()[0] != "CUDAExecutionProvider":
                # onnxruntime-gpu lists CUDA even where it cannot load it, then uses the CPU.
                raise BackendUnavailable(
                    f"onnxruntime could not start its CUDA execution provider on {self.device} "
                    "(missing CUDA or cuDNN libraries?); use the torch backend or fix CUDA"
                )
            self._sessions[kind] = session
            return session

    @property
    def providers(self) -> list[str]:
        return list(self.session("poc").get_providers())

    def poc_hidden(
        self, embeddings: npt.NDArray[np.float32], householder: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Last hidden states [B, dim] for embeddings [B, T, dim]."""
        out = self.session("poc").run(
            ["hidden"], {"embeddings": embeddings, "householder": householder}
        )[0]
        return out  # type: ignore[no-any-return]

    def logits(self, tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Prefill logits [B, T, vocab] for token ids [B, T]."""
        return self.session("prefill").run(["logits"], {"tokens": tokens})[0]  # type: ignore[no-any-return]


def compute_artifacts(
    model: OnnxModel,
    block_hash: str,
    public_key_hex: str,
    nonces: Sequence[int],
    *,
    batch_size: int = 16,
    seq_len: int | None = None,
) -> list[bytes]:
    """`poc.compute_artifacts` on onnxruntime: the same inputs, the same artifacts (and the
    same InvalidComputeInput when a row's hidden state holds NaN)."""
    from gonka_cli.compute import poc

    check = poc.check_seed_text("block hash", block_hash)
    pk = poc.check_seed_text("public key", public_key_hex)
    nonce_list = list(nonces)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidComputeInput(f"batch size must be an integer >= 1, got {batch_size!r}")
    spec = model.spec
    t = seq_len or spec.poc_seq_len
    if t != spec.poc_seq_len:
        raise InvalidComputeInput(
            f"the ONNX graph of {spec.name} is exported for seq_len {spec.poc_seq_len}"
        )
    reflections = poc.householder_vectors(check, spec.n_layers, spec.dim).numpy()
    out: list[bytes] = []
    for i in range(0, len(nonce_list), batch_size):
        batch = nonce_list[i : i + batch_size]
        inputs = poc.poc_inputs(check, pk, batch, t, spec.dim).numpy()
        hidden = model.poc_hidden(inputs, reflections)
        result = poc.artifacts_from_hidden(hidden, check, pk, batch)
        if result.dropped:
            raise InvalidComputeInput(poc.NON_FINITE)
        out.extend(result.artifacts)
    return out
