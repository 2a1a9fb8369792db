"""Where the Dask stages (multi-worker extraction, k-fold) run: a cluster by address, or a local one."""
from contextlib import contextmanager

from cnncodes.features.errors import UserError
from cnncodes.features.store import reason

CONNECT_SECONDS = 10  # Dask's default of 30 s is a long wait for a mistyped address


@contextmanager
def dask_client(scheduler: str | None, workers: int):
    """A client of the scheduler at `scheduler`; else of a local cluster (threads in this process for
    1 worker, processes on loopback beyond), which is shut down with the client."""
    from distributed import Client

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, ValueError) as e:  # refused, unknown host, nothing answering in time, or no address
            raise UserError(f"--scheduler {scheduler}: no Dask scheduler answers there ({reason(e)}); start one "
                            f"(`dask scheduler`) or leave --scheduler out to run on this machine") from None
    elif workers <= 1:
        client = Client(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    else:
        # with no address the client starts the LocalCluster itself, so closing it closes the cluster too
        client = Client(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0")
    try:
        yield client
    finally:
        client.close()
