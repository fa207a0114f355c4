"""Load tests for gatewaylab: how fast each era is, measured one way, beside its peers.

``loadtests.bench`` is `make bench`: wrk against our servers and the production servers of
each era, pair by pair, with one fixed method (pinned CPUs, warm-up, A B A B alternation,
medians). Its module docstring explains the method and why; README.md shows how to run it
and how to add a pair.
"""
