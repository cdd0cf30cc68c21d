"""The engine: what happens to events and runs, independent of HTTP."""
