"""Era 2: FastCGI 1.0, both sides of the record protocol.

In reading order:

* ``records``     the sans-IO record codec both sides share (lesson 2's byte-level view)
* ``protocol``    both ends of a connection as state machines: what records mean
* ``trace``       ``--trace``: every record on the wire, decoded, its header in hex
* ``responder``   what the application sees: the responder interface, its streams, WSGI
* ``app_server``  ``python -m servers fastcgi-app``: the threaded application server
* ``upstream``    the gateway's application servers: kept connections, its own child
* ``exchange``    one HTTP request relayed as one FastCGI request, both ways at once
* ``gateway``     ``python -m servers fastcgi``: the HTTP front end (our small nginx)
"""
