"""An OpenAI-compatible HTTP endpoint in front of a `PolicyRouter`, so any OpenAI client uses the
policy: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.

Standard library only (ThreadingHTTPServer: one thread per connection, one shared router),
bound to 127.0.0.1 by default. Binding beyond loopback requires a bearer token (`token=`; the
CLI reads it from the environment variable `--token-env` names): every request must then carry
`Authorization: Bearer <token>` (what the OpenAI client sends with the token as its API key),
else it gets 401 and is logged by method, path and client address only, never its body or
headers. Extra request fields understood beside the OpenAI ones: `labels`
(a label task), `task_type`, `tags` (or `metadata.tags`), `data_class`. A refused request
answers 200 with finish_reason "content_filter" and the reason in `message.refusal`; a request
every model failed answers 502 with an OpenAI-style error. The route (models tried, cost,
overhead, trace) is returned under the `workbench` key and in `x-workbench-*` headers.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workbench.errors import WorkbenchError
from workbench.providers.base import redact
from workbench.router import PolicyRouter, RouteResult

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1_000_000
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    return host in LOOPBACK or host.startswith("127.")


def check_token(token: str | None, host: str) -> bytes | None:
    """The bearer token as bytes (None for none); a WorkbenchError when binding beyond
    loopback without one, or when it is too short to resist guessing. The token's value never
    appears in a message."""
    if token is None or not token.strip():
        if not is_loopback(host):
            raise WorkbenchError(
                f"serving on {host} makes the endpoint reachable beyond this machine: it needs a "
                "bearer token (workbench serve --token-env VAR, with the token in $VAR), or bind "
                "to 127.0.0.1")
        return None
    if len(token.strip()) < MIN_TOKEN_CHARS:
        raise WorkbenchError(f"the bearer token is too short: use at least {MIN_TOKEN_CHARS} "
                             "random characters (e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
    return token.strip().encode()


def authorized(header: str | None, token: bytes) -> bool:
    """Whether an Authorization header carries `token` as a bearer token (constant-time)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)


class BadRequest(WorkbenchError):
    """The HTTP request body is not a valid chat completion request."""


def parse_chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `PolicyRouter.complete` from an OpenAI chat request body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of {role, content} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m:
            raise BadRequest(f"messages[{i}] must be an object with 'role' and 'content'")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            m = dict(m)
            m["content"] = " ".join(str(p.get("text", "")) for p in content
                                    if isinstance(p, Mapping) and p.get("type") == "text")
            messages[i] = m
        elif content is not None and not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string")
    labels = body.get("labels")
    if labels is not None and (not isinstance(labels, list)
                               or not all(isinstance(x, str) for x in labels)):
        raise BadRequest("'labels' must be a list of strings")
    tags = body.get("tags")
    metadata = body.get("metadata")
    if tags is None and isinstance(metadata, Mapping):
        tags = metadata.get("tags")
    if tags is not None and not isinstance(tags, list | dict | str):
        raise BadRequest("'tags' must be a list, an object or a string")
    task_type = body.get("task_type")
    if task_type is not None and not isinstance(task_type, str):
        raise BadRequest("'task_type' must be a string")
    data_class = body.get("data_class")
    return {"prompt_or_messages": messages, "labels": labels, "tags": tags,
            "task_type": task_type,
            "data_class": data_class if isinstance(data_class, str) else None}


def completion_body(result: RouteResult, policy_name: str) -> dict[str, Any]:
    """The OpenAI chat.completion object for a route result (plus the `workbench` key)."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text or ""}
    finish = "stop"
    if result.refused:
        message["content"] = ""
        message["refusal"] = f"refused by policy {policy_name!r}: {result.refusal_reason}"
        finish = "content_filter"
    route = result.as_dict()
    route.pop("text", None)
    return {
        "id": f"chatcmpl-{result.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model or policy_name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": None}],
        "usage": {"prompt_tokens": result.prompt_tokens,
                  "completion_tokens": result.completion_tokens,
                  "total_tokens": result.prompt_tokens + result.completion_tokens},
        "workbench": route,
    }


def _chunk(body: dict[str, Any]) -> dict[str, Any]:
    choice = body["choices"][0]
    return {
        "id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
        "model": body["model"],
        "choices": [{"index": 0, "delta": {"role": "assistant",
                                           "content": choice["message"]["content"]},
                     "finish_reason": choice["finish_reason"]}],
    }


def make_handler(router: PolicyRouter,
                 token: bytes | None = None) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `router`; with `token`, every request must carry it
    as `Authorization: Bearer <token>`."""
    policy = router.policy

    class Handler(BaseHTTPRequestHandler):
        server_version = "workbench-serve"
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes; with Nagle's algorithm on, a keep-alive
        # client's delayed ACK holds the body back ~40 ms per response
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            log.debug("%s %s", self.address_string(), redact(format % args))

        def _send(self, status: int, body: Mapping[str, Any],
                  headers: Mapping[str, str] | None = None) -> None:
            data = redact(json.dumps(body, default=str)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str = "invalid_request_error",
                   code: str | None = None) -> None:
            self._send(status, {"error": {"message": redact(message), "type": kind,
                                          "param": None, "code": code}})

        def _refuse_unauthorized(self) -> bool:
            """Answer 401 (True) unless the request carries the token; the body of a refused
            request is read and dropped unseen, so keep-alive clients stay in step."""
            if token is None or authorized(self.headers.get("Authorization"), token):
                return False
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if 0 < length <= MAX_BODY_BYTES:
                self.rfile.read(length)
            elif length != 0:
                self.close_connection = True
            log.warning("401 %s %s from %s: missing or wrong bearer token", self.command,
                        self.path.split("?", 1)[0], self.client_address[0])
            self._send(401, {"error": {
                "message": "missing or invalid bearer token: send 'Authorization: Bearer "
                           "<token>' (the OpenAI client's api_key)",
                "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}},
                {"WWW-Authenticate": 'Bearer realm="workbench"'})
            return True

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self._refuse_unauthorized():
                return
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                self._send(200, {"status": "ok", "policy": policy.name,
                                 "models": list(policy.used_models)})
            elif path in ("/v1/models", "/models"):
                ids = [policy.name, *[m for m in policy.models if m != policy.name]]
                self._send(200, {"object": "list", "data": [
                    {"id": i, "object": "model", "created": 0, "owned_by": "workbench"}
                    for i in ids]})
            else:
                self._error(404, f"no route {path!r}; try /v1/chat/completions, /v1/models, "
                            "/health", code="not_found")

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            if self._refuse_unauthorized():
                return
            path = self.path.split("?", 1)[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {path!r}", code="not_found")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self._error(413, f"body must be at most {MAX_BODY_BYTES} bytes")
                self.close_connection = True
                return
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"null")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                kwargs = parse_chat_request(body)
            except (ValueError, BadRequest) as exc:
                self._error(400, f"bad request: {exc}")
                return
            try:
                result = router.complete(**kwargs)
            except WorkbenchError as exc:
                self._error(400, str(exc))
                return
            if result.error and not result.refused:
                self._send(502, {"error": {
                    "message": f"every model the policy tried failed ({result.error})",
                    "type": "upstream_error", "param": None, "code": result.error},
                    "workbench": result.as_dict()})
                return
            out = completion_body(result, policy.name)
            headers = {
                "x-workbench-model": result.model or "",
                "x-workbench-overhead-ms": f"{result.overhead_ms:.3f}",
                "x-workbench-request-id": result.request_id,
            }
            if body.get("stream"):
                self._stream(out, headers)
            else:
                self._send(200, out, headers)

        def _stream(self, out: dict[str, Any], headers: Mapping[str, str]) -> None:
            """Server-sent events: the whole answer as one chunk, then [DONE]."""
            payload = (f"data: {redact(json.dumps(_chunk(out)))}\n\n"
                       "data: [DONE]\n\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class _Server(ThreadingHTTPServer):
    """One thread per connection, with a listen backlog for bursts of clients: the standard
    library's 5 makes the kernel reset connections when 16 arrive at once on a busy machine."""

    request_queue_size = 128
    daemon_threads = True


class PolicyServer:
    """A running (or ready to run) server; `start()` serves in a background thread,
    `serve_forever()` in the caller's. Beyond loopback a bearer `token` is required."""

    def __init__(self, router: PolicyRouter, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None) -> None:
        secret = check_token(token, host)
        self.requires_token = secret is not None
        self.router = router
        self.httpd = _Server((host, port), make_handler(router, secret))
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """The bound host."""
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self.httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """OpenAI client base URL (…/v1)."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> PolicyServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="workbench-serve")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until interrupted."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
