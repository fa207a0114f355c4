"""Era 2: FastCGI 1.0, both sides of the record protocol.

* ``records``  the sans-IO record codec both sides share (this is lesson 2's byte-level view)
"""
