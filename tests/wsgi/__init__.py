"""Era 3, the threaded WSGI server: PEP 3333 item by item, its connections and its pool."""
