"""Tests of the shared HTTP/1.1 core (servers/http), all without sockets.

corpus.py and test_corpus.py: requests with their expected events or error status, replayed
under every fragmentation. test_connection.py: the state machine. test_writers.py: the
responses, read back with h11 as a client. test_h11_differential.py: generated requests
through our parser and h11's, with the deliberate differences listed and checked.
"""
