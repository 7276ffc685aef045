"""The gunicorn worker: uvicorn's, with a shutdown that loses no accepted connection.

uvicorn's shutdown closes every connection that has no request in progress. A connection the
retiring worker accepted an instant before (its request on the wire, not read yet) counts as
idle and is reset: one request in a few hundred across worker recycles. Here the worker first
stops accepting, then gives what it already accepted DRAIN_SECONDS to show its request (a request
in progress is answered, with `Connection: close`), and only then shuts down as uvicorn does.
"""

from __future__ import annotations

import asyncio
import socket
import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

DRAIN_SECONDS = 0.5


class DrainingServer(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections: the other workers take them
        for sock in sockets or []:
            sock.close()
        await asyncio.sleep(DRAIN_SECONDS)
        await super().shutdown()


class Worker(UvicornWorker):
    async def _serve(self) -> None:  # UvicornWorker._serve, with the draining server
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
