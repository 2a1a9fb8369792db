"""Where the Dask stages (multi-worker extraction, k-fold) run: a cluster by address, or a local one."""
from contextlib import contextmanager

from cnncodes.features.errors import UserError
from cnncodes.features.reading import reason

CONNECT_SECONDS = 10  # Dask's default of 30 s is a long wait for a mistyped address
SCHEMES = ("tcp", "tls", "ws", "wss")  # what a scheduler listens on; inproc and ucx are not addresses users give


def unreachable(scheduler: str, why: str) -> UserError:
    return UserError(f"--scheduler {scheduler}: no Dask scheduler answers there ({why}); start one "
                     f"(`dask scheduler`) or leave --scheduler out to run on this machine")


def check_address(scheduler: str):
    """Stops when `scheduler` is not an address a scheduler could listen on (a missing or bad port, an unknown
    scheme), without connecting: a malformed address is answered at once, before any work."""
    from distributed.comm.addressing import get_address_host_port, normalize_address, parse_address

    try:
        address = normalize_address(scheduler)
        scheme = parse_address(address)[0]
        if scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme}://, use {', '.join(SCHEMES)}")
        host, port = get_address_host_port(address)
        if not host or any(c.isspace() for c in host) or not 0 < port < 65536:
            raise ValueError("no host, or a port outside 1..65535")
    except ValueError as e:
        raise UserError(f"--scheduler {scheduler} is not a scheduler address ({reason(e)}): give HOST:PORT, e.g. "
                        f"tcp://10.0.0.5:8786, or leave --scheduler out to run on this machine") from None


def check_scheduler(scheduler: str):
    """Stops when no scheduler answers at `scheduler` (connects once and leaves)."""
    with dask_client(scheduler, 1):
        pass


@contextmanager
def dask_client(scheduler: str | None, workers: int):
    """A client of the scheduler at `scheduler`; else of a local cluster (threads in this process for
    1 worker, processes on loopback beyond), which is shut down with the client."""
    from distributed import Client

    if scheduler:
        check_address(scheduler)
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        # refused, unknown host, nothing answering in time; TypeError: tls:// without Dask's TLS configuration
        except (OSError, ValueError, TypeError) as e:
            raise unreachable(scheduler, reason(e)) from None
    elif workers <= 1:
        client = Client(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    else:
        # with no address the client starts the LocalCluster itself, so closing it closes the cluster too
        client = Client(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0")
    try:
        yield client
    finally:
        client.close()
