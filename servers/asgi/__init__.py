"""Era 4: the asyncio ASGI server (ASGI 3.0). The application is a conversation.

WSGI made the app a function call on a thread: the thread is held for the whole request,
through every wait for the client, the database or a timer. ASGI makes the app a
coroutine, ``await app(scope, receive, send)``, and every wait an ``await``: while one
request waits, the event loop runs the others, on one thread. A connection that does
nothing costs a few kilobytes instead of a thread, which is how one process holds ten
thousand of them (lesson 5) and how an app can keep a WebSocket open for hours.

How the work is split, and the one rule that makes it work (no blocking on the loop)::

        accept() --> HttpProtocol.connection_made       asyncio calls us back; no thread
                          |
        bytes ----> data_received --> the HTTP core (servers/http/) --> events
                          |                (parsing runs here, in the callback)
                          |  Request --> loop.create_task(app(scope, receive, send))
                          v
        the app's task:  await receive()   <- the body, as the core de-chunks it
                         await send(...)   -> the core frames it -> transport.write()
                                              and waits while the client is slow (drain)
        Upgrade: websocket --> WebSocketProtocol (servers/websocket.py frames)

The package, in reading order:

* ``types``      the ASGI contract, typed, and the two errors an app can meet
* ``connection`` what every connection has: flow control both ways, a deadline
* ``http``       HTTP/1.1: the connection (HttpProtocol) apart from the request (RequestCycle)
* ``extensions`` the response extensions trailers and pathsend (sendfile), off the usual path
* ``websocket``  RFC 6455 on the loop: handshake, messages, pings, the closing handshake
* ``lifespan``   startup and shutdown, and the state shared with every scope
* ``wsgi``       an old WSGI app on this server, through a thread pool
* ``server``     the listening socket, the sweeper, the graceful stop, ``main()``

Compare servers/wsgi.py: the same HTTP core and the same limits; what changed is only
who waits. There, a thread per request; here, a task per request and callbacks for I/O.
"""

from .server import Config, Server, main
from .types import ClientDisconnected, ContractError

__all__ = ["ClientDisconnected", "Config", "ContractError", "Server", "main"]
