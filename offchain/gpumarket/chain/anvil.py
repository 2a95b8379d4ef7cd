"""Run anvil (foundry's local node) as a subprocess: for devnet and the chain tests.

anvil comes from the npm registry (`make anvil` runs
`npm install --no-save --no-audit --no-fund @foundry-rs/anvil-linux-amd64@1.7.1`), which
puts it at node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil; `find_anvil` looks there,
then on PATH.

    with AnvilNode(find_anvil(), state_path=tmp / "state.json") as node:
        w3 = connect(node.url)
        node.restart()            # same port and, with state_path, the same chain

The node listens on 127.0.0.1 (port 0: anvil picks a free one, read from its output),
funds TEST_ACCOUNT_COUNT accounts of the public test mnemonic, and logs to log_path
(chain id 31337 unless chain_id says otherwise).
Start-up waits at most start_timeout seconds; stop() sends SIGTERM (anvil then writes its
state file) and kills it if it has not exited within stop_timeout.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from gpumarket.chain.connection import TEST_ACCOUNT_COUNT, TEST_MNEMONIC

__all__ = ["ANVIL_NPM_PACKAGE", "AnvilError", "AnvilNode", "find_anvil"]

log = logging.getLogger(__name__)

ANVIL_NPM_PACKAGE = "@foundry-rs/anvil-linux-amd64@1.7.1"
_REPO_ROOT = Path(__file__).resolve().parents[3]
_NPM_BINARY = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
_LISTENING = re.compile(r"Listening on 127\.0\.0\.1:(\d+)")


class AnvilError(RuntimeError):
    """anvil is missing, did not start in time, or exited."""


def find_anvil() -> Path | None:
    """<repo>/node_modules/.../bin/anvil if installed there, else `anvil` on PATH, else None."""
    local = _REPO_ROOT / _NPM_BINARY
    if local.is_file():
        return local
    found = shutil.which("anvil")
    return Path(found) if found else None


class AnvilNode:
    """One anvil process; see the module docstring."""

    def __init__(
        self,
        binary: Path | str | None = None,
        *,
        port: int = 0,
        accounts: int = TEST_ACCOUNT_COUNT,
        state_path: Path | None = None,
        block_time: float | None = None,
        chain_id: int | None = None,
        log_path: Path | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        resolved = Path(binary) if binary is not None else find_anvil()
        if resolved is None or not resolved.is_file():
            raise AnvilError(f"anvil not found: run `make anvil` (npm install {ANVIL_NPM_PACKAGE})")
        self.binary = resolved
        self.port = port
        self.accounts = accounts
        self.state_path = state_path
        self.block_time = block_time
        self.chain_id = chain_id
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="anvil-")) / "anvil.log"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port == 0:
            raise AnvilError("anvil has not started yet")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        command = [
            str(self.binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--accounts",
            str(self.accounts),
            "--mnemonic",
            TEST_MNEMONIC,
        ]
        if self.state_path is not None:
            command += ["--state", str(self.state_path)]
        if self.block_time is not None:
            command += ["--block-time", f"{self.block_time:g}"]
        if self.chain_id is not None:
            command += ["--chain-id", str(self.chain_id)]
        return command

    def start(self) -> AnvilNode:
        if self.running:
            raise AnvilError("anvil is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                self._command(), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            output = self.log_path.read_bytes()[offset:].decode(errors="replace")
            match = _LISTENING.search(output)
            if match:
                self.port = int(match.group(1))
                log.info("anvil (pid %d) listening on %s", self._process.pid, self.url)
                return self
            if self._process.poll() is not None:
                raise AnvilError(f"anvil exited with {self._process.returncode}: {output[-2000:]}")
            time.sleep(0.05)
        self.stop()
        raise AnvilError(f"anvil did not start within {self.start_timeout:g} s (log: {self.log_path})")

    def stop(self) -> None:
        """SIGTERM (anvil writes its state file), then SIGKILL after stop_timeout."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("anvil (pid %d) ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait(timeout=self.stop_timeout)

    def restart(self) -> AnvilNode:
        """Stop and start again on the same port (and state file, if any)."""
        self.stop()
        return self.start()

    def __enter__(self) -> AnvilNode:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
