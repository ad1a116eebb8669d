"""The ML node's model endpoints: what the Hugging Face cache holds, and downloads into it.

The host's API checks during each inference phase that the node has the chain's models
(`POST /api/v1/models/status`) and asks for a download when it does not
(`POST /api/v1/models/download`). The shapes are the real ML node's:

- `models/status` `{hf_repo, hf_commit}` -> `{model, status, progress, error_message}` with
  `status` DOWNLOADED (a complete checkpoint: config.json and every safetensors shard, whole),
  DOWNLOADING (`progress` = `{start_time, elapsed_seconds}`), PARTIAL (files of the repo are
  there but the checkpoint is incomplete: an interrupted or failed download) or NOT_FOUND.
  `error_message` carries why the last download of that model failed, if it did.
- `models/download` -> 202 `{task_id, status: "DOWNLOADING", model}` once the download has
  started in the background; 200 with status DOWNLOADED when the model is already there;
  409 while that model is downloading; 429 when `MAX_DOWNLOADS` (3) run already. With
  `HF_HUB_OFFLINE` set, 202 with status IGNORED (nothing is downloaded), as the real node does.
- `models/list` -> `{models: [{model, status}]}`, one entry per cached revision.
- `DELETE /api/v1/models` -> `{status: "deleted" | "cancelled", model}`; 404 when the cache has
  no such model. `hf_commit` null deletes every revision. A download cannot be interrupted
  half-way; "cancelled" means its files are deleted as soon as it ends.
- `models/space` -> `{cache_size_gb, available_gb, cache_path}`.

The cache is the one every Hugging Face tool shares (`HF_HUB_CACHE`, `HF_HOME`...), read with
`huggingface_hub`'s cache scan; downloads go through `gonka_cli.compute.hub.pull` (configs,
safetensors weights and tokenizer files only). Errors are `MlNodeError`s carrying the HTTP
status to answer (400 bad repo id, 422 missing field, 404, 409, 429).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gonka_cli.compute.checkpoints import hub_cache_dir, inspect_checkpoint, looks_like_repo_id
from gonka_cli.errors import CheckpointError, GonkaError

if TYPE_CHECKING:
    from gonka_cli.mlnode.service import MlNodeError

log = logging.getLogger(__name__)

__all__ = [
    "DOWNLOADED",
    "DOWNLOADING",
    "MAX_DOWNLOADS",
    "NOT_FOUND",
    "PARTIAL",
    "ModelDownloads",
]

DOWNLOADED = "DOWNLOADED"
DOWNLOADING = "DOWNLOADING"
NOT_FOUND = "NOT_FOUND"
PARTIAL = "PARTIAL"
#: Downloads that may run at once (the real ML node's limit).
MAX_DOWNLOADS = 3


def _error(status: int, message: str) -> MlNodeError:
    from gonka_cli.mlnode.service import MlNodeError

    return MlNodeError(status, message)


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class _Model:
    hf_repo: str
    hf_commit: str | None

    @classmethod
    def from_body(cls, body: Any) -> _Model:
        if not isinstance(body, Mapping):
            raise _error(422, "the body must be a JSON object with hf_repo (and hf_commit)")
        repo = body.get("hf_repo")
        if repo is None:
            raise _error(422, "hf_repo is required")
        if not isinstance(repo, str) or "@" in repo or not looks_like_repo_id(repo):
            raise _error(400, f"hf_repo {repo!r} is not a Hugging Face repo id (ORG/NAME)")
        commit = body.get("hf_commit")
        if commit is not None and (not isinstance(commit, str) or not commit.strip()):
            raise _error(400, "hf_commit must be a revision (a commit hash) or null")
        return cls(repo, commit.strip() if isinstance(commit, str) else None)

    @property
    def task_id(self) -> str:
        return f"{self.hf_repo}:{self.hf_commit or 'latest'}"

    def to_dict(self) -> dict[str, Any]:
        return {"hf_repo": self.hf_repo, "hf_commit": self.hf_commit}


@dataclass
class _Task:
    model: _Model
    start_time: float
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False


def _silent_tqdm() -> Any:
    """A progress-bar class that shows nothing (a server has no terminal to draw on); a
    subclass, since huggingface_hub also calls its class methods (`get_lock`...)."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    class Silent(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def _repo_dir(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _scan(cache: Path) -> Any:
    """huggingface_hub's scan of the cache (None when there is none yet); 500 when unreadable."""
    from gonka_cli.compute.hub import scan_cache

    try:
        return scan_cache(cache)
    except CheckpointError as exc:
        raise _error(500, str(exc)) from None


def _cached_repo(scan: Any, repo_id: str) -> Any:
    repos = [] if scan is None else scan.repos
    return next((r for r in repos if r.repo_type == "model" and r.repo_id == repo_id), None)


def _revision(repo: Any, commit: str | None) -> Any:
    """The revision `commit` names (a hash, its prefix, or a ref such as main); without one,
    the revision `main` points at, else the newest."""
    revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
    if commit is None:
        return next((r for r in revisions if "main" in r.refs), revisions[0] if revisions else None)
    for rev in revisions:
        if rev.commit_hash == commit or commit in rev.refs:
            return rev
    if len(commit) >= 7:
        return next((r for r in revisions if r.commit_hash.startswith(commit)), None)
    return None


def _complete(snapshot: Path) -> str | None:
    """None when the snapshot holds a whole checkpoint, else what is missing."""
    try:
        inspect_checkpoint(snapshot)
    except CheckpointError as exc:
        return " ".join(str(exc).split())
    return None


class ModelDownloads:
    """The models endpoints over the Hugging Face cache. Thread-safe."""

    def __init__(self, *, max_downloads: int = MAX_DOWNLOADS) -> None:
        self.max_downloads = max_downloads
        self._tasks: dict[_Model, _Task] = {}
        self._errors: dict[_Model, str] = {}
        self._lock = threading.Lock()

    # -- status ------------------------------------------------------------------------

    def _running(self, model: _Model) -> _Task | None:
        with self._lock:
            task = self._tasks.get(model)
            if task is None and model.hf_commit is None:
                # Asked without a revision: any download of that repo counts.
                task = next((t for m, t in self._tasks.items() if m.hf_repo == model.hf_repo), None)
        return task

    def _cache_status(self, model: _Model) -> tuple[str, str | None]:
        """(status, why) of `model` in the cache, downloads aside."""
        cache = hub_cache_dir()
        repo = _cached_repo(_scan(cache), model.hf_repo)
        rev = None if repo is None else _revision(repo, model.hf_commit)
        if rev is None:
            folder = _repo_dir(cache, model.hf_repo)
            if folder.is_dir() and (model.hf_commit is None or repo is None):
                return PARTIAL, "the cache holds files of this repo but no complete revision"
            return NOT_FOUND, None
        missing = _complete(Path(rev.snapshot_path))
        return (DOWNLOADED, None) if missing is None else (PARTIAL, missing)

    def status(self, body: Any) -> dict[str, Any]:
        """`POST /api/v1/models/status`."""
        model = _Model.from_body(body)
        task = self._running(model)
        if task is not None:
            now = time.time()
            return {
                "model": model.to_dict(),
                "status": DOWNLOADING,
                "progress": {
                    "start_time": task.start_time,
                    "elapsed_seconds": round(now - task.start_time, 3),
                },
                "error_message": None,
            }
        state, why = self._cache_status(model)
        with self._lock:
            failure = self._errors.get(model)
        error = None if state == DOWNLOADED else failure or (why if state == PARTIAL else None)
        return {"model": model.to_dict(), "status": state, "progress": None, "error_message": error}

    # -- download ----------------------------------------------------------------------

    def download(self, body: Any) -> tuple[int, dict[str, Any]]:
        """`POST /api/v1/models/download`: (HTTP status, body). Raises `MlNodeError` 409
        (that model is downloading) or 429 (too many downloads)."""
        model = _Model.from_body(body)
        answer = {"task_id": model.task_id, "model": model.to_dict()}
        if _offline():
            return 202, {**answer, "task_id": model.task_id + ":offline", "status": "IGNORED"}
        with self._lock:
            if model in self._tasks:
                raise _error(409, f"{model.hf_repo} is already downloading")
        if self._cache_status(model)[0] == DOWNLOADED:
            return 200, {**answer, "status": DOWNLOADED}
        with self._lock:
            if model in self._tasks:
                raise _error(409, f"{model.hf_repo} is already downloading")
            if len(self._tasks) >= self.max_downloads:
                raise _error(
                    429,
                    f"Maximum concurrent downloads ({self.max_downloads}) reached; "
                    "try again when one has finished",
                )
            task = _Task(model, time.time())
            self._tasks[model] = task
            self._errors.pop(model, None)
        thread = threading.Thread(
            target=self._download, args=(task,), name=f"download {model.task_id}", daemon=True
        )
        thread.start()
        return 202, {**answer, "status": DOWNLOADING}

    def _download(self, task: _Task) -> None:
        from gonka_cli.compute.hub import pull

        model = task.model
        error = None
        try:
            pull(model.hf_repo, model.hf_commit, tqdm_class=_silent_tqdm())
        except GonkaError as exc:
            error = " ".join(str(exc).split())
        except Exception as exc:  # a failed download must never end the node
            error = f"cannot download {model.hf_repo}: {type(exc).__name__}: {exc}"
            log.exception("download of %s failed", model.task_id)
        if error is not None:
            log.warning("download of %s failed: %s", model.task_id, error)
        else:
            log.info("downloaded %s", model.task_id)
        with self._lock:
            if error is not None:
                self._errors[model] = error
            cancelled = task.cancelled
        if cancelled and _repo_dir(hub_cache_dir(), model.hf_repo).exists():
            try:
                self._delete_files(model)
            except GonkaError as exc:
                log.warning("cannot delete the cancelled download %s: %s", model.task_id, exc)
        with self._lock:
            self._tasks.pop(model, None)
        task.done.set()

    def wait(self, body: Any, timeout_s: float | None = None) -> bool:
        """Wait for the download of `body`'s model to end; False on timeout."""
        model = _Model.from_body(body)
        with self._lock:
            task = self._tasks.get(model)
        return True if task is None else task.done.wait(timeout_s)

    # -- list, delete, space -----------------------------------------------------------

    def list(self) -> dict[str, Any]:
        """`GET /api/v1/models/list`: every cached model revision with its status."""
        scan = _scan(hub_cache_dir())
        models = []
        for repo in sorted([] if scan is None else scan.repos, key=lambda r: r.repo_id.lower()):
            if repo.repo_type != "model":
                continue
            for rev in sorted(repo.revisions, key=lambda r: r.commit_hash):
                state = DOWNLOADED if _complete(Path(rev.snapshot_path)) is None else PARTIAL
                models.append(
                    {
                        "model": {"hf_repo": repo.repo_id, "hf_commit": rev.commit_hash},
                        "status": state,
                    }
                )
        return {"models": models}

    def delete(self, body: Any) -> dict[str, Any]:
        """`DELETE /api/v1/models`: delete a cached model (one revision, or all with
        hf_commit null), or cancel its download. 404 when there is nothing to delete."""
        model = _Model.from_body(body)
        with self._lock:
            task = self._tasks.get(model)
            if task is not None:
                task.cancelled = True
        if task is not None:
            return {"status": "cancelled", "model": model.to_dict()}
        self._delete_files(model)
        with self._lock:
            self._errors.pop(model, None)
        return {"status": "deleted", "model": model.to_dict()}

    def _delete_files(self, model: _Model) -> None:
        cache = hub_cache_dir()
        scan = _scan(cache)
        repo = _cached_repo(scan, model.hf_repo)
        folder = _repo_dir(cache, model.hf_repo)
        if model.hf_commit is None:
            if repo is None and not folder.is_dir():
                raise _error(404, f"{model.hf_repo} is not in the Hugging Face cache ({cache})")
            try:
                shutil.rmtree(folder)
            except OSError as exc:
                raise _error(500, f"cannot delete {model.hf_repo} from {cache}: {exc}") from None
            return
        rev = None if repo is None else _revision(repo, model.hf_commit)
        if rev is None:
            raise _error(
                404, f"{model.hf_repo} at {model.hf_commit} is not in the Hugging Face cache"
            )
        try:
            scan.delete_revisions(rev.commit_hash).execute()
        except OSError as exc:
            raise _error(500, f"cannot delete {model.hf_repo} from {cache}: {exc}") from None

    def space(self) -> dict[str, Any]:
        """`GET /api/v1/models/space`: the cache's size and the free disk space under it."""
        cache = hub_cache_dir()
        scan = _scan(cache)
        size = 0 if scan is None else int(scan.size_on_disk)
        probe = cache
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        return {
            "cache_size_gb": round(size / 2**30, 2),
            "available_gb": round(free / 2**30, 2),
            "cache_path": str(cache),
        }
