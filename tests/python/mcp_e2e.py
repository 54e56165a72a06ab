"""Drive an MCP server over Streamable HTTP with the official Python SDK, and report what it saw.

Usage: python mcp_e2e.py [--sse] URL TOKEN SCENARIO [TOOL ARGUMENTS_JSON]

The same script runs under the SDK's 1.x and 2.x releases (each in its own virtual environment);
it picks the API of the installed one. It asserts nothing: for every step it prints one JSON line
of observations on stdout, and the Rust end-to-end test decides what is right. A step that does not
finish within STEP_TIMEOUT seconds is reported with `"error": {"kind": "timeout"}`, so a client
that would hang shows up as a hang instead of a stuck CI run.

Every line has `step` (what was attempted), `ok` (whether the SDK call returned normally) and
`elapsedMs`. Successful steps add `result` (the SDK's result object dumped as wire JSON, camelCase);
failed ones add `error` with a `kind`:

- `jsonrpc`: the SDK raised its MCP error type; `code`, `message` and `data` are the JSON-RPC error
  as the caller sees it.
- `http`: the SDK raised an HTTP status error instead (the JSON-RPC body, if any, is lost to the
  caller); `status` is the HTTP status.
- `timeout`: the step did not finish in time.
- `exception`: anything else; `type` and `message` describe it.

`--sse` makes every POST accept only `text/event-stream` (an httpx request hook rewrites the
SDK's `Accept: application/json, text/event-stream`), so that a server which prefers JSON when
both are offered is driven through its event-stream answers, parsed by the SDK's own SSE reader.

Scenarios (each starts with `initialize`, which in 2.x also covers the `server/discover` probe):

- `list`: list every tool (following cursors).
- `get_post`: call getPost {"id": 1}.
- `get_user`: call getUser {"id": 3}.
- `create_post`: call createPost with a new post (run it with a write-enabled agent).
- `write_refused`: the same createPost call (run it with a read-only agent).
- `off_allowlist`: list the tools, then call getUser {"id": 3} (run it with an agent whose
  allowlist leaves getUser out).
- `deactivated`: call getPost {"id": 1} (`call_before`), print a `pause` line and wait for one
  line on stdin (the test deactivates the agent meanwhile), call getPost again on the same session
  (`call_after`), then open a new session (a second `initialize`).
- `call`: call TOOL with ARGUMENTS_JSON.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import AsyncExitStack
from importlib.metadata import version as _package_version
from typing import Any

import anyio

try:
    # 2.x: the high-level `Client` and the httpx2 fork.
    import httpx2 as httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError as SdkError

    SDK_MAJOR = 2
except ImportError:
    # 1.x: `ClientSession` over the transport's streams.
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import McpError as SdkError

    SDK_MAJOR = 1

SDK_VERSION = _package_version("mcp")

# Seconds one step may take before it counts as a hang.
STEP_TIMEOUT = 20.0

SCENARIOS = {
    "list",
    "get_post",
    "get_user",
    "create_post",
    "write_refused",
    "off_allowlist",
    "deactivated",
    "call",
}

# The post that `create_post` and `write_refused` send.
NEW_POST = {
    "userId": 2,
    "title": "written through ithil",
    "body": "This post was created by an MCP client through the Ithil gateway.",
}


def emit(observation: dict[str, Any]) -> None:
    """Print one observation as a JSON line, at once (the test may be waiting for it)."""
    observation.setdefault("sdk", SDK_VERSION)
    sys.stdout.write(json.dumps(observation, sort_keys=True) + "\n")
    sys.stdout.flush()


def dump(model: Any) -> Any:
    """An SDK result object as the JSON it was on the wire."""
    if model is None:
        return None
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (possibly nested) exception groups, outermost order kept."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(leaves(inner))
        return out
    return [exc]


def classify(exc: BaseException) -> dict[str, Any]:
    """Describe what the caller saw when an SDK call raised `exc`."""
    found = leaves(exc)
    cancelled = anyio.get_cancelled_exc_class()
    # A transport failure inside the SDK's task group cancels the caller too; the cancellation
    # says nothing, the failure beside it does.
    useful = [e for e in found if not isinstance(e, cancelled)] or found
    first = useful[0]
    if isinstance(first, SdkError):
        error = first.error
        out: dict[str, Any] = {"kind": "jsonrpc", "code": error.code, "message": error.message}
        if error.data is not None:
            out["data"] = error.data
        return out
    if isinstance(first, httpx.HTTPStatusError):
        return {"kind": "http", "status": first.response.status_code, "message": str(first)}
    if isinstance(first, (TimeoutError, httpx.TimeoutException)):
        return {"kind": "timeout"}
    return {"kind": "exception", "type": type(first).__name__, "message": str(first)}


class Steps:
    """Runs the steps of a scenario, one observation line each."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.started = 0.0
        self.extra: dict[str, Any] = {}

    def begin(self, step: str, **extra: Any) -> None:
        """Mark `step` as in progress, so a failure that surfaces elsewhere is reported for it."""
        self.current = step
        self.started = time.monotonic()
        self.extra = extra

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def succeed(self, **fields: Any) -> None:
        line = {"step": self.current, "ok": True, "elapsedMs": self.elapsed_ms()}
        emit({**line, **self.extra, **fields})
        self.current = None

    def fail(self, exc: BaseException) -> None:
        line = {"step": self.current or "connection", "ok": False, "elapsedMs": self.elapsed_ms()}
        emit({**line, **self.extra, "error": classify(exc)})
        self.current = None


class Connection:
    """One MCP session over Streamable HTTP, through whichever SDK is installed."""

    def __init__(self, url: str, token: str, steps: Steps, sse: bool) -> None:
        self.url = url
        self.token = token
        self.steps = steps
        self.sse = sse
        self.client: Any = None
        self.session: Any = None

    async def open(self, stack: AsyncExitStack) -> None:
        """Open the transport and run the handshake, as the `initialize` step."""
        self.steps.begin("initialize")
        headers = {"Authorization": f"Bearer {self.token}"}
        hooks = {"request": [only_event_stream]} if self.sse else {}
        # HTTP's own timeout is longer than a step's, so a hang is caught by the step's scope.
        http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(STEP_TIMEOUT + 10), event_hooks=hooks
        )
        await stack.enter_async_context(http)
        transport = streamable_http_client(self.url, http_client=http)

        if SDK_MAJOR == 2:
            # `Client` probes `server/discover` first and falls back to `initialize`; a cancel
            # scope cannot wrap the enter alone (the transport's task group outlives it), so
            # the scenario-wide deadline bounds this step.
            self.client = await stack.enter_async_context(Client(transport))
            self.steps.succeed(
                result={
                    "protocolVersion": self.client.protocol_version,
                    "serverInfo": dump(self.client.server_info),
                    "capabilities": dump(self.client.server_capabilities),
                }
            )
            return

        read, write, _session_id = await stack.enter_async_context(transport)
        self.session = await stack.enter_async_context(ClientSession(read, write))
        with anyio.fail_after(STEP_TIMEOUT):
            result = await self.session.initialize()
        self.steps.succeed(result=dump(result))

    async def list_tools(self) -> None:
        """List every tool, following `nextCursor`."""
        self.steps.begin("list_tools")
        tools: list[Any] = []
        pages = 0
        cursor = None
        with anyio.fail_after(STEP_TIMEOUT):
            while True:
                if SDK_MAJOR == 2:
                    page = await self.client.list_tools(cursor=cursor)
                else:
                    page = await self.session.list_tools(cursor=cursor)
                pages += 1
                tools.extend(dump(tool) for tool in page.tools)
                cursor = page.nextCursor if SDK_MAJOR == 1 else page.next_cursor
                if not cursor or pages > 100:
                    break
        self.steps.succeed(result={"tools": tools, "pages": pages})

    async def call(self, name: str, arguments: dict[str, Any], step: str = "call_tool") -> None:
        """Call one tool."""
        self.steps.begin(step, tool=name)
        owner = self.client if SDK_MAJOR == 2 else self.session
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                result = await owner.call_tool(name, arguments)
        except SdkError as exc:
            # A JSON-RPC error answers this request only; the session goes on.
            self.steps.fail(exc)
            return
        self.steps.succeed(result=dump(result))


async def only_event_stream(request: Any) -> None:
    """httpx request hook: accept only an event stream on POSTs."""
    if request.method == "POST":
        request.headers["accept"] = "text/event-stream"


async def wait_for_go(steps: Steps) -> None:
    """Tell the test we are paused and wait for its line on stdin."""
    steps.begin("pause")
    steps.succeed()
    with anyio.fail_after(STEP_TIMEOUT * 3):
        line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    if not line:
        raise RuntimeError("stdin closed while paused")


async def session_phase(
    url: str, token: str, name: str, rest: list[str], steps: Steps, sse: bool
) -> None:
    """Run the scenario's first session; raises whatever broke the session."""
    async with AsyncExitStack() as stack:
        conn = Connection(url, token, steps, sse)
        await conn.open(stack)

        if name == "list":
            await conn.list_tools()
        elif name == "get_post":
            await conn.call("getPost", {"id": 1})
        elif name == "get_user":
            await conn.call("getUser", {"id": 3})
        elif name in ("create_post", "write_refused"):
            await conn.call("createPost", dict(NEW_POST))
        elif name == "off_allowlist":
            await conn.list_tools()
            await conn.call("getUser", {"id": 3})
        elif name == "deactivated":
            await conn.call("getPost", {"id": 1}, step="call_before")
            await wait_for_go(steps)
            await conn.call("getPost", {"id": 1}, step="call_after")
        elif name == "call":
            await conn.call(rest[0], json.loads(rest[1]))
        else:
            raise SystemExit(f"unknown scenario {name!r}")


async def reconnect_phase(url: str, token: str, steps: Steps, sse: bool) -> None:
    """Open a second session with the same token (for `deactivated`)."""
    async with AsyncExitStack() as stack:
        await Connection(url, token, steps, sse).open(stack)


async def run_phase(phase: Any, steps: Steps) -> None:
    """Run one session phase; whatever breaks it is reported for the step in progress."""
    try:
        # The per-step timeouts catch a hung request; this deadline also bounds the handshake
        # and the teardown (session DELETE), which no per-step scope can wrap.
        with anyio.fail_after(STEP_TIMEOUT * 4):
            await phase
    except Exception as exc:  # noqa: BLE001 - every failure is an observation
        steps.fail(exc)


async def main(argv: list[str]) -> int:
    sse = "--sse" in argv
    argv = [a for a in argv if a != "--sse"]
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, token, name, rest = argv[1], argv[2], argv[3], argv[4:]
    if name not in SCENARIOS or (name == "call" and len(rest) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    steps = Steps()
    # A failure that breaks a session ends its phase early; the test sees the missing steps.
    await run_phase(session_phase(url, token, name, rest, steps, sse), steps)
    if name == "deactivated":
        await run_phase(reconnect_phase(url, token, steps, sse), steps)
    emit({"step": "done", "ok": True, "elapsedMs": 0})
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv))
