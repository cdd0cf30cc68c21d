"""The HTTP layer: Starlette routes over the engine. Nothing below imports this package."""
