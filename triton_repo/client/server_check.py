"""Before any request (`chat`, `bench`, `conform`): is something listening at the URL, is it ready, and
which protocol does it speak. A refused connection and a server that is not ready are said first and at
once (nothing else means anything before that); only a server that answers but serves none of the front
models is told so.

Triton answers `/v2/health/ready` (200 once every model is loaded; `/v2/health/live` says it is up but
still loading), over HTTP or gRPC; an OpenAI-compatible server (trtllm-serve, Dynamo, vLLM, NIM, ours)
lists its models at `GET /v1/models`.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from trt_build.common.errors import SwallowTrtError

TRITON, OPENAI = "triton", "openai"
FRONT_MODELS = ("ensemble", "tensorrt_llm_bls")  # engine repositories have both; pytorch ones the BLS only
PROBE_TIMEOUT_S = 10.0  # one readiness request; a server that takes longer is not ready
POLL_S = 0.5  # between probes while --wait lasts


class Refused(Exception):
    """Nothing listens at the address."""


class NotReady(Exception):
    """The server answers, but not (yet) as a ready endpoint of the protocol asked for."""


def base_url(url: str) -> str:
    """http://host:port for an HTTP URL given with or without its scheme."""
    url = url.rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def strip_scheme(url: str) -> str:
    """host:port for a gRPC URL given as host:port, grpc://host:port or http(s)://host:port."""
    for prefix in ("grpc://", "http://", "https://"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return url


def _http_status(url: str) -> int:
    """The status of GET `url`; Refused when nothing listens, OSError for any other transport failure."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            raise Refused() from None
        raise OSError(str(error.reason)) from None
    except ConnectionRefusedError:
        raise Refused() from None


def _triton_http(base: str) -> None:
    ready = _http_status(f"{base}/v2/health/ready")
    if ready == 200:
        return
    if _http_status(f"{base}/v2/health/live") == 200:
        raise NotReady(f"Triton is live but not ready (/v2/health/ready answered HTTP {ready})")
    raise NotReady(f"it does not answer as Triton (/v2/health/ready: HTTP {ready})")


def _openai(base: str) -> None:
    status = _http_status(f"{base.removesuffix('/v1')}/v1/models")
    if status not in (200, 401, 403):  # 401 / 403: up, and wanting a key the requests will carry
        raise NotReady(f"it does not answer as an OpenAI server (/v1/models: HTTP {status})")


def _triton_grpc(address: str) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(address)
    try:
        if client.is_server_ready(client_timeout=PROBE_TIMEOUT_S):
            return
        live = client.is_server_live(client_timeout=PROBE_TIMEOUT_S)
    except InferenceServerException as error:
        if "refused" in str(error).lower():
            raise Refused() from None
        raise OSError(str(error)) from None
    finally:
        client.close()
    raise NotReady("Triton is live but not ready" if live else "Triton is not live")


def probe(url: str, protocol: str) -> str:
    """One look at the server: the protocol it is ready on (TRITON or OPENAI), else Refused, NotReady or
    OSError. `protocol`: http or triton (Triton HTTP), grpc (Triton gRPC), openai, or auto (Triton HTTP,
    then OpenAI)."""
    if protocol == "grpc":
        _triton_grpc(strip_scheme(url).rstrip("/"))
        return TRITON
    base = base_url(url)
    if protocol == OPENAI:
        _openai(base)
        return OPENAI
    if protocol != "auto":
        _triton_http(base.removesuffix("/v1"))
        return TRITON
    try:
        _triton_http(base.removesuffix("/v1"))
        return TRITON
    except NotReady as triton:
        if str(triton).startswith("Triton is live"):
            raise
        try:
            _openai(base)
        except NotReady as openai:
            raise NotReady(
                f"it answers neither as Triton nor as an OpenAI server ({triton}; {openai})"
            ) from None
        return OPENAI


def shown_url(url: str, protocol: str) -> str:
    """The address a message names: host:port for gRPC, else the HTTP base URL."""
    return strip_scheme(url).rstrip("/") if protocol == "grpc" else base_url(url)


def wait_for_server(url: str, protocol: str, wait_s: float = 0.0, exit_code: int = 1) -> str:
    """`probe`, retried for up to `wait_s` seconds (once when 0); the protocol the server is ready on, or a
    SwallowTrtError that says first why it cannot be used: refused, not ready, or not reachable."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return probe(url, protocol)
        except (Refused, NotReady, OSError) as error:
            if time.monotonic() >= deadline:
                raise _unusable(shown_url(url, protocol), error, wait_s, protocol, exit_code) from None
        time.sleep(POLL_S)


def _unusable(
    shown: str, error: BaseException, wait_s: float, protocol: str, exit_code: int
) -> SwallowTrtError:
    waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
    wait_hint = "" if wait_s > 0 else "; pass --wait SECONDS to wait for a server that is still starting"
    if isinstance(error, Refused):
        return SwallowTrtError(
            f"{shown} refuses connections{waited}: nothing listens there.",
            f"Start the server (e.g. `swallow-trt serve`) or check the host and port{wait_hint}.",
            exit_code=exit_code,
        )
    if isinstance(error, NotReady):
        guessed = ", or pass --protocol if detection guessed wrong" if protocol == "auto" else ""
        return SwallowTrtError(
            f"{shown} is not ready{waited}: {error}.",
            f"Wait until its models are loaded{guessed}{wait_hint}.",
            exit_code=exit_code,
        )
    return SwallowTrtError(
        f"Cannot reach {shown}{waited}: {error}.",
        f"Check the URL and --protocol{wait_hint}.",
        exit_code=exit_code,
    )


def front_model(url: str, protocol: str) -> str:
    """The first of FRONT_MODELS a ready Triton server (http or grpc) has ready."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    if protocol == "grpc":
        client = grpcclient.InferenceServerClient(strip_scheme(url).rstrip("/"))
    else:
        client = httpclient.InferenceServerClient(base_url(url).split("://", 1)[1])
    try:
        for name in FRONT_MODELS:
            try:
                if client.is_model_ready(name):
                    return name
            except Exception:  # an unknown model
                continue
    finally:
        client.close()
    raise SwallowTrtError(
        f"{shown_url(url, protocol)} is ready but serves neither {' nor '.join(FRONT_MODELS)};",
        "name the model to call with --model.",
    )
