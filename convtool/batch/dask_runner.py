"""Running batch jobs on an existing Dask distributed cluster (``--dask ADDRESS``).

Each job is one task, :func:`convtool.batch.process_quietly`: the worker reads the input
and writes the output by path, so the workers must share a file system with the client (the
same paths must name the same files) and have convtool installed. Results come back as the
same :class:`~convtool.batch.JobResult`\\ s as from the local pool. ``dask[distributed]`` is
an optional extra and is imported only here, only when asked for.

Failing in one line, fast: the address is checked before any connection (:func:`check_address`:
a known scheme, a numeric port, TLS settings for ``tls://``), the scheduler's port is probed
with a short timeout before a Dask client exists, and while jobs run Dask's own loggers
(which print tracebacks when a scheduler dies or a client's clean-up fails) are silenced:
what went wrong is this module's one :class:`~convtool.errors.ConvtoolError`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

from convtool.errors import ConvtoolError, UsageError, excerpt

MISSING = "--dask needs dask.distributed: pip install 'convtool[dask]'"
# Seconds to wait for the scheduler (the port, then Dask's handshake) before saying it
# cannot be reached; a client that loses its scheduler gives up after as long.
CONNECT_TIMEOUT = 5
DEFAULT_PORT = 8786  # the Dask scheduler's own default
USAGE = "give the scheduler's address as tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)"
# Dask's loggers, silenced while it runs for us (its records are tracebacks, not lines).
_DASK_LOGGERS = ("distributed", "tornado")


def require_dask() -> None:
    """Raise :class:`UsageError` telling how to install it when dask.distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError(MISSING) from None


def check_address(address: str) -> str:
    """The scheduler ``address`` in Dask's canonical form, or :class:`UsageError` (exit 2).

    ``HOST:PORT`` means ``tcp://HOST:PORT``; ``tcp://HOST`` takes port 8786. The scheme must
    be one Dask knows, the port a number from 1 to 65535, and ``tls://`` / ``wss://`` need
    TLS certificates in Dask's configuration (``distributed.comm.tls``).
    """
    from distributed.comm.addressing import parse_address, parse_host_port, unparse_host_port
    from distributed.comm.registry import backends

    text = (address or "").strip()
    shown = excerpt(text)
    if not text:
        raise UsageError(f"--dask is empty; {USAGE}")
    try:
        scheme, location = parse_address(text, strict=False)
    except Exception:  # noqa: BLE001 - whatever Dask's parser dislikes
        raise UsageError(f"--dask {shown} is not an address; {USAGE}") from None
    if scheme not in backends:
        known = ", ".join(f"{name}://" for name in sorted(backends))
        raise UsageError(
            f"--dask {shown}: unknown scheme {excerpt(scheme)} (Dask knows {known}); {USAGE}"
        )
    if scheme not in ("tcp", "tls", "ws", "wss"):
        return f"{scheme}://{location}"
    default = DEFAULT_PORT if scheme in ("tcp", "tls") else None
    try:
        host, port = parse_host_port(location, default_port=default)
    except (ValueError, TypeError):
        raise UsageError(f"--dask {shown}: the port must be a number; {USAGE}") from None
    if not host or not 1 <= int(port) <= 65535:
        raise UsageError(f"--dask {shown}: needs a host and a port from 1 to 65535; {USAGE}")
    if scheme in ("tls", "wss") and not _tls_configured():
        raise UsageError(
            f"--dask {shown}: {scheme}:// needs TLS certificates in Dask's configuration "
            "(distributed.comm.tls.ca-file, .client.cert and .client.key); see Dask's "
            "security documentation"
        )
    return f"{scheme}://{unparse_host_port(host, port)}"


def _tls_configured() -> bool:
    from distributed.security import Security

    try:
        return Security().get_connection_args("client").get("ssl_context") is not None
    except Exception:  # noqa: BLE001 - unreadable certificates: not configured
        return False


def run_on_dask(jobs, settings, address: str, stop: Callable) -> Iterator:
    """Submit ``jobs`` (in order of priority) to the scheduler at ``address``; yield results.

    When ``stop(result)`` is true the tasks not yet finished are cancelled and no more
    results are yielded (tasks already running on a worker may still finish). Closing the
    iterator or an interruption cancels them too. A scheduler that cannot be reached, or
    goes away, is one :class:`ConvtoolError`.
    """
    from convtool.batch.jobs import JobResult
    from convtool.batch.worker import process_quietly, with_threads

    address = check_address(address)
    # A Dask worker runs as many tasks at once as it has threads, and clusters are usually
    # set up with one thread per core: one engine thread per image uses them all.
    settings = with_threads(settings, 1)
    with _dask_logs_silenced():
        _probe(address)
        client = _connect(address)
        futures = {}
        try:
            for rank, job in enumerate(jobs):
                # Dask runs higher priorities first: keep the caller's largest-first order.
                future = client.submit(
                    process_quietly, job, settings, pure=False, priority=len(jobs) - rank
                )
                futures[future] = job
            for future in _as_completed(client, futures, address):
                job = futures.pop(future)
                if future.status == "finished":
                    result = future.result()
                elif future.status == "cancelled" or client.status not in ("running",):
                    # not cancelled by us (we do only below): the scheduler went away
                    raise ConvtoolError(_lost(address, len(futures) + 1))
                else:  # the task itself failed: a worker died, or convtool is missing there
                    result = JobResult(job, "failed", f"Dask task failed: {_task_error(future)}")
                yield result
                if stop(result):
                    break
        finally:
            with contextlib.suppress(Exception):
                if futures and client.status == "running":
                    client.cancel(list(futures))
            with contextlib.suppress(Exception):
                client.close(timeout=CONNECT_TIMEOUT)


def _as_completed(client, futures, address: str) -> Iterator:
    from distributed import as_completed

    try:
        yield from as_completed(list(futures), loop=client.loop)
    except Exception as err:  # noqa: BLE001 - the scheduler went away mid-run
        raise ConvtoolError(f"{_lost(address, len(futures))} ({_one_line(err)})") from None


def _lost(address: str, not_run: int) -> str:
    return (
        f"lost the Dask scheduler at {address}; {not_run} files were not run (run again with "
        "--skip-existing once it is back)"
    )


def _probe(address: str) -> None:
    """Refuse now, in one line, a scheduler whose TCP port does not answer."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme not in ("tcp", "tls", "ws", "wss"):
        return  # in-process or UCX: nothing to probe
    host, port = parse_host_port(location)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except socket.gaierror:
        raise ConvtoolError(
            f"cannot reach the Dask scheduler at {address}: unknown host {excerpt(host)}"
        ) from None
    except TimeoutError:
        raise ConvtoolError(
            f"cannot reach the Dask scheduler at {address}: no answer within {CONNECT_TIMEOUT} s"
        ) from None
    except OSError as err:
        reason = (err.strerror or type(err).__name__).lower()
        raise ConvtoolError(f"cannot reach the Dask scheduler at {address}: {reason}") from None


def _connect(address: str):
    """A Dask client of the scheduler, or one ConvtoolError (and no clean-up traceback)."""
    from distributed import Client

    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
    except Exception as err:  # noqa: BLE001 - a port that answers but is no Dask scheduler
        _disarm(err)
        message = (
            f"cannot reach the Dask scheduler at {address}: its port answers, but no Dask "
            f"scheduler does ({_one_line(err)})"
        )
        raise ConvtoolError(message) from None


def _disarm(err: BaseException) -> None:
    """Stop a half-made Client (met in ``err``'s traceback) before its ``__del__`` runs.

    A Client whose constructor failed closes itself when collected: it waits twice the
    timeout for a scheduler that never answered, then prints a traceback on stderr.
    """
    from distributed import Client

    tb = err.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, Client):
            with contextlib.suppress(Exception):
                candidate.status = "closed"
                candidate._loop_runner.stop()
        tb = tb.tb_next


@contextlib.contextmanager
def _dask_logs_silenced() -> Iterator[None]:
    """Every logger of Dask (and tornado under it) disabled, each with its own level kept."""
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name.split(".")[0] in _DASK_LOGGERS
    ]
    loggers = [logging.getLogger(name) for name in [*_DASK_LOGGERS, *names]]
    saved = [(logger, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in saved:
            logger.disabled = disabled


def _task_error(future) -> str:
    try:
        err = future.exception()
    except Exception as exc:  # noqa: BLE001 - a cancelled or lost future
        err = exc
    return _one_line(err) if err is not None else future.status


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
