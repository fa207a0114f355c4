"""Tests of the course frame: the lesson format, the walkthrough, the notebooks' helper."""
