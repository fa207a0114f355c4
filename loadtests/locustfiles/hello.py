"""Workload ``hello``: the throughput of fast requests.

Every user sends ``GET /hello`` again and again on one keep-alive connection, with no
pause, and checks the 14 bytes every era answers (``Hello, world!\\n``). Almost no work
is done per request, so what is measured is the server's own cost: parsing, the
interface (a fork and an exec for CGI, records for FastCGI, a thread hand-off for WSGI, a
task for ASGI), and writing the answer.

Stats row: ``GET /hello``. No settings of its own (``GATEWAYLAB_LOAD_TIMEOUT``, see
``_common.py``).
"""

from __future__ import annotations

from locust import task

from loadtests.locustfiles._common import FamilyUser

BODY = b"Hello, world!\n"


class HelloUser(FamilyUser):
    @task
    def hello(self) -> None:
        self.fetch("GET", "/hello", "/hello", BODY)
