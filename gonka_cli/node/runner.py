"""Running a node: the home lock, the ledger, the HTTP server and the block clock.

`Node` serves in the foreground (`run()`, for `gonka node start`: uvicorn stops it cleanly on
Ctrl-C or SIGTERM) or on a background thread (`start()` / `stop()`, for `gonka mine --devnet`
and the tests). Either way a last block is made at shutdown, so that transactions the
mempool accepted are not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import InputError, NodeError, NodeRunning, NodeStateError
from gonka_cli.lockfile import LockFile
from gonka_cli.node.genesis import (
    FAUCET_KEY,
    ChainParams,
    Genesis,
    NodeHome,
    init_home,
    node_key,
)
from gonka_cli.node.ledger import Ledger

if TYPE_CHECKING:
    from gonka_cli.node.network import Network
    from gonka_cli.node.rpc import RpcServer

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class NodeInfo:
    """What the start-up banner shows."""

    home: str
    url: str
    chain_id: str
    height: int
    faucet_address: str
    faucet_key: str
    node_address: str
    block_time_s: float
    created: bool
    #: CometBFT's JSON-RPC (`gonka_cli.node.rpc`); "" when the node serves none.
    rpc_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def prepare_home(root: Path, *, params: ChainParams | None = None) -> tuple[NodeHome, bool]:
    """The node home at `root`, initialised with devnet defaults when it is empty."""
    home = NodeHome(root)
    if home.exists():
        return home, False
    init_home(root, params=params)
    return home, True


class _HomeLock:
    """An exclusive lock on the node home, released by the OS if the process dies."""

    def __init__(self, path: Path) -> None:
        self._lock = LockFile(path)

    def acquire(self) -> None:
        try:
            taken = self._lock.acquire()
        except OSError as exc:
            raise NodeError(
                f"cannot lock {self._lock.path} ({exc.strerror}); is the node's home writable?"
            ) from None
        if not taken:
            raise NodeRunning(
                f"another node is already running with home {self._lock.path.parent}; "
                "stop it first or use another --home"
            )

    def release(self) -> None:
        self._lock.release()


def bind(host: str, port: int, *, option: str = "--port") -> socket.socket:
    """A listening socket; port 0 picks a free one. `option` names the port in messages."""
    if not host.strip():
        # "" would listen on every interface, which nobody asks for by leaving --host empty.
        raise InputError("--host is empty: give the address to listen on, e.g. 127.0.0.1")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on connections whose socket says
    # so, and without it every answer waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NodeRunning(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another node running? "
                f"Pick another {option}"
            ) from None
        # Not an address of this machine, an unknown host name, a port that needs root.
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror}); check --host and {option}"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Node:
    """One local network node over a home directory."""

    def __init__(
        self,
        home: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 1317,
        block_time_s: float | None = None,
        rpc_port: int | None = None,
    ) -> None:
        self.home_path = Path(home)
        self.host = host
        self.port = port
        #: CometBFT's RPC port on the same host (0 picks a free one); None serves no RPC.
        self.rpc_port = rpc_port
        self._rpc_sock: socket.socket | None = None
        self.rpc: RpcServer | None = None
        self._block_time_s = block_time_s
        self._lock = _HomeLock(self.home_path / "node.lock")
        self._sock: socket.socket | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.ledger: Ledger | None = None
        self.network: Network | None = None
        self.info: NodeInfo | None = None
        self._created = False
        self._startup_error: BaseException | None = None
        #: The height the node had when `run()` returned.
        self.stopped_height: int | None = None
        #: The signal that stopped `run()` (SIGINT for Ctrl-C, SIGTERM), None otherwise.
        self.stop_signal: int | None = None
        #: Why the node stopped by itself (a block it could not write), if it did.
        self.failure: Exception | None = None

    # -- set-up --------------------------------------------------------------------------

    def open(self) -> NodeInfo:
        """Lock the home, initialise it if empty, open the ledger and bind the port."""
        if self._block_time_s is not None and not 0.05 <= self._block_time_s <= 3600:
            raise InputError("the block time must be between 50 ms and 1 hour")
        try:
            self.home_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise NodeError(
                f"cannot use {self.home_path} as the node's home ({exc.strerror})"
            ) from None
        # The lock first: two nodes started on one empty home must not both initialise it.
        self._lock.acquire()
        try:
            home, self._created = prepare_home(self.home_path)
            genesis = home.load_genesis()
            faucet = _faucet_key(home, genesis)
            own_key = node_key(home)
            # --block-time changes the pace, not the chain: the genesis stays as written.
            block_time_s = (
                genesis.params.block_time_s if self._block_time_s is None else self._block_time_s
            )
            self.ledger = Ledger(
                str(home.db_file),
                genesis,
                faucet_key=faucet,
                node_key=own_key,
                block_time_s=block_time_s,
            )
            from gonka_cli.node.network import Network

            self.network = Network(self.ledger, str(home.network_db_file), own_key)
            self._sock = bind(self.host, self.port)
            if self.rpc_port is not None:
                self._rpc_sock = bind(self.host, self.rpc_port, option="--rpc-port")
        except BaseException:
            self.close()
            raise
        port = self._sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        rpc_url = (
            f"http://{host}:{self._rpc_sock.getsockname()[1]}" if self._rpc_sock is not None else ""
        )
        self.info = NodeInfo(
            home=str(self.home_path),
            url=f"http://{host}:{port}",
            chain_id=genesis.chain_id,
            height=self.ledger.height,
            faucet_address=genesis.faucet_address,
            faucet_key=str(home.keys_dir / f"{FAUCET_KEY}.json"),
            node_address=self.ledger.node_address,
            block_time_s=block_time_s,
            created=self._created,
            rpc_url=rpc_url,
        )
        return self.info

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._rpc_sock is not None:
            self._rpc_sock.close()
            self._rpc_sock = None
        if self.network is not None:
            self.network.close()
            self.network = None
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        self._lock.release()

    # -- serving -------------------------------------------------------------------------

    def _make_server(self) -> Any:
        import uvicorn

        from gonka_cli.node.api import create_app

        ledger, network = self.ledger, self.network
        if ledger is None or network is None:
            raise NodeError("the node is not open")
        app = create_app(ledger, network)
        block_time = ledger.block_time_s
        on_block: Callable[[Any], None] = network.on_block
        served: Any = app
        if self._rpc_sock is not None and self.info is not None:
            from gonka_cli.node.rpc import RpcServer

            rpc = self.rpc = RpcServer(ledger, rpc_address=self.info.rpc_url)
            app.state.rpc_url = self.info.rpc_url
            rpc_port = self._rpc_sock.getsockname()[1]

            def both(block: Any) -> None:
                try:
                    rpc.on_block(block)
                finally:
                    network.on_block(block)

            on_block = both

            async def served(scope: Any, receive: Any, send: Any) -> None:
                # One server, two ports: the RPC's requests go to the RPC, the rest (and the
                # lifespan) to the REST app; all on one event loop, like the ledger wants.
                server_address = scope.get("server")
                if server_address is not None and server_address[1] == rpc_port:
                    await rpc(scope, receive, send)
                else:
                    await app(scope, receive, send)

        def block_failed(exc: Exception) -> None:
            self.failure = exc
            server.should_exit = True

        @contextlib.asynccontextmanager
        async def lifespan(_: Any) -> AsyncIterator[None]:
            network.catch_up()
            task = asyncio.create_task(_block_clock(ledger, block_time, block_failed, on_block))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                # A last block: what the mempool accepted is applied, not dropped.
                if ledger.mempool and self.failure is None:
                    ledger.make_block()

        app.router.lifespan_context = lifespan
        config = uvicorn.Config(
            served,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            limit_concurrency=4096,
        )
        server = uvicorn.Server(config)
        return server

    def _sockets(self) -> list[socket.socket]:
        return [s for s in (self._sock, self._rpc_sock) if s is not None]

    def run(self) -> None:
        """Serve in the foreground until Ctrl-C or SIGTERM, then shut down cleanly."""
        if self._sock is None:
            self.open()
        self._server = self._make_server()
        # uvicorn shuts down gracefully on SIGINT/SIGTERM (a last block included), then
        # re-raises the signal to the handler it found: make those note it instead, so that the
        # caller decides (`gonka node start`: Ctrl-C exits 130, SIGTERM is a normal stop).
        previous = {
            sig: signal.signal(sig, lambda signum, _: setattr(self, "stop_signal", signum))
            for sig in _STOP_SIGNALS
        }
        try:
            self._server.run(sockets=self._sockets())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stopped_height = self.ledger.height if self.ledger else None
            self.close()
        if self.failure is not None:
            raise NodeStateError(
                f"the node stopped at height {self.stopped_height}: {self.failure}; "
                "free some disk space or repair the home, then start it again"
            )

    def start(self, timeout_s: float = 30.0) -> NodeInfo:
        """Serve on a background thread; returns once the node answers requests."""
        info = self.info or self.open()
        self._server = self._make_server()

        def serve() -> None:
            try:
                self._server.run(sockets=self._sockets())
            except BaseException as exc:  # surfaced by start() or stop()
                self._startup_error = exc

        self._thread = threading.Thread(target=serve, name="gonka-node", daemon=True)
        self._thread.start()
        limit = time.monotonic() + timeout_s
        while not self._server.started:
            if self._startup_error is not None or not self._thread.is_alive():
                self.close()
                raise NodeError(f"the node did not start: {self._startup_error}")
            if time.monotonic() > limit:
                self.stop()
                raise NodeError(f"the node did not start within {timeout_s:g} s")
            time.sleep(0.01)
        return info

    def stop(self) -> None:
        """Stop a node started with `start()` (a last block first) and release its home."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.close()

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _block_clock(
    ledger: Ledger,
    block_time_s: float,
    on_failure: Callable[[Exception], None],
    on_block: Callable[[Any], None] | None = None,
) -> None:
    """Make a block every `block_time_s`, on the same loop as the API (never concurrently).

    A block that cannot be written means the disk or the database is broken: the clock
    stops and calls `on_failure`, which stops the node, rather than let it go on accepting
    transactions that no block will hold.
    """
    loop = asyncio.get_running_loop()
    next_at = loop.time() + block_time_s
    while True:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        try:
            block = ledger.make_block()
        except Exception as exc:
            # A traceback only for what is not a known state error (that is, a bug).
            log.error(
                "cannot make block %d: %s; the node stops",
                ledger.height + 1,
                exc,
                exc_info=not isinstance(exc, NodeStateError),
            )
            on_failure(exc)
            return
        if on_block is not None:
            try:
                on_block(block)
            except Exception:
                # The block is made and on disk; the network's bookkeeping catches up at the
                # next block or restart.
                log.exception("after block %d", block.height)
        next_at += block_time_s
        if next_at < loop.time():  # fell behind (a long pause): do not make a burst of blocks
            next_at = loop.time() + block_time_s


def _faucet_key(home: NodeHome, genesis: Genesis) -> PrivateKey | None:
    """The faucet's private key from the node's keystore (None: a node without a faucet)."""
    from gonka_cli.wallet.keystore import Keystore

    keystore = Keystore(home.keys_dir)
    if not genesis.faucet_address or not keystore.exists(FAUCET_KEY):
        return None
    return keystore.unlock(FAUCET_KEY, home.keystore_password()).private_key


def serve_forever(
    home: Path,
    *,
    host: str,
    port: int,
    block_time_s: float | None,
    on_ready: Callable[[NodeInfo], None],
    rpc_port: int | None = None,
) -> Node:
    """`gonka node start`: open the node, report it, serve until Ctrl-C or SIGTERM.

    Returns the stopped node: its `stopped_height`, and the `stop_signal` that stopped it.
    """
    import gc

    node = Node(home, host=host, port=port, block_time_s=block_time_s, rpc_port=rpc_port)
    info = node.open()
    # What start-up loaded (the compute stack: ~250k objects) lives as long as the process:
    # out of the collector's sight, a full collection pauses the event loop for ~10-30 ms
    # instead of ~130 ms.
    gc.collect()
    gc.freeze()
    on_ready(info)
    node.run()
    return node
