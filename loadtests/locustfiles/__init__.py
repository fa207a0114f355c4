"""The family's workloads, one locustfile each, for ``locust -f`` only (see ``_common.py``).

Never import these modules from the course's own processes: importing locust patches
sockets and threads for gevent. ``loadtests.locust_run`` runs them as a separate process.
"""
