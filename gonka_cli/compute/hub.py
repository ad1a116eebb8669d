"""The models this machine has: the built-in ones and the Hugging Face cache's checkpoints.

`list_local()` lists both; `pull()` downloads a checkpoint into the Hugging Face cache through
`huggingface_hub` (the cache every Hugging Face tool shares, `checkpoints.hub_cache_dir()`);
`remove()` deletes one from it. Only the files the engine reads are downloaded: configs,
safetensors weights, tokenizer files and chat templates.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gonka_cli.compute.checkpoints import (
    SUPPORTED,
    CheckpointInfo,
    hub_cache_dir,
    inspect_checkpoint,
    looks_like_repo_id,
    split_repo_id,
)
from gonka_cli.errors import CheckpointError, InputError, ModelDownloadError, UnknownModel

logger = logging.getLogger(__name__)

__all__ = [
    "PULL_PATTERNS",
    "LocalModel",
    "RemovedModel",
    "list_local",
    "pull",
    "remove",
    "scan_cache",
]

#: What `pull` downloads (weights in other formats, ONNX or GGUF copies are left out).
PULL_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.jinja",
    "*.txt",
    "*.model",
    "*.tiktoken",
)
_FLOAT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class LocalModel:
    """One model this machine can load: `source` is "built-in" or "hub-cache".

    `runnable` says whether this machine can run it (a supported architecture whose weights
    fit in the free memory of its GPUs together, or else of its RAM); `reason` says why not.
    """

    id: str
    source: str
    architecture: str
    param_count: int
    size_on_disk_bytes: int
    dtype: str
    runnable: bool
    reason: str = ""
    revision: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RemovedModel:
    id: str
    revisions: tuple[str, ...]
    freed_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "revisions": list(self.revisions), "freed_bytes": self.freed_bytes}


def _memory_room() -> tuple[int, str]:
    """The most weights this machine can hold: free GPU memory together, else free RAM."""
    import torch

    from gonka_cli.compute.devices import free_memory_bytes

    if torch.cuda.is_available() and torch.cuda.device_count():
        gpus = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return sum(free_memory_bytes(d) or 0 for d in gpus), f"{len(gpus)} GPU(s)"
    return free_memory_bytes(torch.device("cpu")) or 0, "RAM"


def _verdict(architecture: str, need_bytes: int, room: tuple[int, str]) -> tuple[bool, str]:
    if architecture not in SUPPORTED and architecture != "gonka":
        return False, f"architecture {architecture!r} is not supported"
    free, where = room
    if need_bytes > free:
        return (
            False,
            f"needs {need_bytes / 2**30:.1f} GiB, {where} have {free / 2**30:.1f} GiB free",
        )
    return True, ""


def _builtin_entries(room: tuple[int, str]) -> list[LocalModel]:
    from gonka_cli.compute.models import list_models

    out = []
    for spec in list_models():
        runnable, reason = _verdict("gonka", spec.param_count * 4, room)
        out.append(
            LocalModel(
                id=spec.name,
                source="built-in",
                architecture="gonka",
                param_count=spec.param_count,
                size_on_disk_bytes=0,
                dtype="float32",
                runnable=runnable,
                reason=reason,
            )
        )
    return out


def _checkpoint_entry(
    repo_id: str, revision: str, path: Path, size: int, room: tuple[int, str]
) -> LocalModel:
    try:
        info: CheckpointInfo | None = inspect_checkpoint(path)
    except CheckpointError as exc:
        info = None
        reason = " ".join(str(exc).split())
    if info is None:
        return LocalModel(
            repo_id, "hub-cache", "?", 0, size, "?", False, reason, revision, str(path)
        )
    need = info.param_count * _FLOAT_BYTES.get(info.dtype, 2)
    runnable, reason = _verdict(info.architecture, need, room)
    return LocalModel(
        id=repo_id,
        source="hub-cache",
        architecture=info.architecture,
        param_count=info.param_count,
        size_on_disk_bytes=size,
        dtype=info.dtype,
        runnable=runnable,
        reason=reason,
        revision=revision,
        path=str(path),
    )


def scan_cache(cache: Path) -> Any:
    """huggingface_hub's scan of the cache, or None when there is no cache yet."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return scan_cache_dir(cache)
    except CacheNotFound:
        return None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the Hugging Face cache {cache}: {exc}") from None


def list_local() -> list[LocalModel]:
    """The built-in models, then each cached model repo (the revision `main` points at, else
    its newest), sorted by id."""
    room = _memory_room()
    entries = _builtin_entries(room)
    scan = scan_cache(hub_cache_dir())
    cached = []
    for repo in [] if scan is None else scan.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        chosen = next((r for r in revisions if "main" in r.refs), revisions[0])
        cached.append(
            _checkpoint_entry(
                repo.repo_id,
                chosen.commit_hash,
                Path(chosen.snapshot_path),
                int(chosen.size_on_disk),
                room,
            )
        )
    return entries + sorted(cached, key=lambda e: e.id.lower())


def _check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or "@" in repo_id or not looks_like_repo_id(repo_id):
        raise InputError(
            f"{repo_id!r} is not a Hugging Face repo id (ORG/NAME, e.g. Qwen/Qwen3-0.6B; "
            "give a revision with --revision)"
        )


def pull(repo_id: str, revision: str | None = None, *, tqdm_class: Any = None) -> LocalModel:
    """Download `repo_id` (at `revision`, default main) into the Hugging Face cache.

    `tqdm_class` is passed to `huggingface_hub` for its progress bars (None: its default;
    a silent class hides them). The endpoint is `HF_ENDPOINT` (default huggingface.co), the
    token `HF_TOKEN` or `hf auth login`'s, as for every Hugging Face tool. Raises
    ModelDownloadError naming the cause (offline, unknown repo or revision, gated repo).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    _check_repo_id(repo_id)
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ModelDownloadError(
            f"cannot download {repo_id}: HF_HUB_OFFLINE is set; unset it to download, or copy "
            "the checkpoint into the Hugging Face cache yourself"
        )
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    cache = hub_cache_dir()
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            endpoint=endpoint,
            allow_patterns=list(PULL_PATTERNS),
            tqdm_class=tqdm_class,
        )
    except GatedRepoError:
        raise ModelDownloadError(
            f"{repo_id} is gated: accept its terms on the model's page, then log in with "
            "`hf auth login` (or set HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelDownloadError(
            f"{repo_id} was not found on {endpoint} (check the id; a private repo needs "
            "`hf auth login` or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise ModelDownloadError(f"{repo_id} has no revision {revision!r}") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise ModelDownloadError(
            f"cannot download {repo_id}: {endpoint} is not reachable ({_first_line(exc)}); "
            "check the network connection, a proxy, or HF_ENDPOINT"
        ) from None
    except OSError as exc:
        raise ModelDownloadError(
            f"cannot download {repo_id} into {cache}: {_first_line(exc)}"
        ) from None
    except Exception as exc:
        # huggingface_hub lets its HTTP client's errors through (httpx or requests, by
        # version); what they all mean here is that the download failed.
        if type(exc).__module__.split(".")[0] not in ("httpx", "httpx2", "requests", "urllib3"):
            raise
        raise ModelDownloadError(
            f"cannot download {repo_id} from {endpoint}: {_first_line(exc)}; check the "
            "network connection, a proxy, or HF_ENDPOINT"
        ) from None
    path = Path(str(folder))
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    entry = _checkpoint_entry(repo_id, path.name, path, size, _memory_room())
    logger.info("pulled %s (%s) into %s", repo_id, path.name, path)
    return entry


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def remove(repo_id: str) -> RemovedModel:
    """Delete every cached revision of `repo_id` from the Hugging Face cache."""
    repo_id = split_repo_id(repo_id)[0]
    _check_repo_id(repo_id)
    cache = hub_cache_dir()
    scan = scan_cache(cache)
    repos = [] if scan is None else scan.repos
    repo = next((r for r in repos if r.repo_type == "model" and r.repo_id == repo_id), None)
    if repo is None:
        raise UnknownModel(f"{repo_id} is not in the Hugging Face cache ({cache})")
    hashes = tuple(sorted(r.commit_hash for r in repo.revisions))
    strategy = scan.delete_revisions(*hashes)
    freed = int(strategy.expected_freed_size)
    try:
        strategy.execute()
    except OSError as exc:
        raise CheckpointError(f"cannot remove {repo_id} from {cache}: {exc}") from None
    # Revisions go; an emptied repo folder (refs, blobs) is removed by huggingface_hub too
    # when every revision is deleted.
    return RemovedModel(repo_id, hashes, freed)
