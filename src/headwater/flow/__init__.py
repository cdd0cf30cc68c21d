"""Flow-control and retry decisions: pure functions of (state, now), no I/O, no clock."""
