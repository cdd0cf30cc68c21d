"""Example apps: `make run APP=examples.shop:hw`."""
