"""The functions this server runs, and which of them an event triggers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from headwater.errors import FunctionDefinitionError
from headwater.expr import compile_expression
from headwater.sdk.functions import EventTrigger, FunctionDefinition
from headwater.types import JSONObject


class FunctionRegistry:
    def __init__(self, definitions: Iterable[FunctionDefinition] = ()) -> None:
        self._by_slug: dict[str, FunctionDefinition] = {}
        self._exact: dict[str, list[tuple[FunctionDefinition, EventTrigger]]] = {}
        self._prefixes: list[tuple[str, FunctionDefinition, EventTrigger]] = []
        for definition in definitions:
            self.add(definition)

    def add(self, definition: FunctionDefinition) -> None:
        if definition.slug in self._by_slug:
            raise FunctionDefinitionError(f"two functions are named {definition.slug!r}")
        self._by_slug[definition.slug] = definition
        for trigger in definition.event_triggers:
            if trigger.if_:
                compile_expression(trigger.if_)  # fail now, not at the first event
            if trigger.event.endswith("*"):
                self._prefixes.append((trigger.event[:-1], definition, trigger))
            else:
                self._exact.setdefault(trigger.event, []).append((definition, trigger))

    def get(self, slug: str) -> FunctionDefinition | None:
        return self._by_slug.get(slug)

    def __iter__(self) -> Iterator[FunctionDefinition]:
        return iter(self._by_slug.values())

    def __len__(self) -> int:
        return len(self._by_slug)

    def triggered_by(self, event: JSONObject) -> list[FunctionDefinition]:
        """The functions that `event` (`{name, data, user, id, ts, v}`) starts, each once."""
        name = event.get("name")
        if not isinstance(name, str):
            return []
        candidates = list(self._exact.get(name, ()))
        candidates += [(d, t) for prefix, d, t in self._prefixes if name.startswith(prefix)]
        if not candidates:
            return []
        started: dict[str, FunctionDefinition] = {}
        for definition, trigger in candidates:
            if definition.slug in started:
                continue
            if trigger.if_ is None or compile_expression(trigger.if_).matches({"event": event}):
                started[definition.slug] = definition
        return list(started.values())
