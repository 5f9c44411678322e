"""What one process needs to run maps: the event-loop thread and interrupts, counters and progress bars,
batch turns, the garbage-collector pause, process checks.

Imports :mod:`mapgen.core` only.
"""
