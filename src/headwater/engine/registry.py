"""The functions this server runs, and which of them an event triggers.

The lookup tables live in one immutable-once-built index that is swapped as a whole, so an app
synced while events are being planned (possibly on another thread) is seen entirely or not at
all: never half of its functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from headwater.errors import FunctionDefinitionError
from headwater.expr import compile_expression
from headwater.sdk.functions import EventTrigger, FunctionDefinition
from headwater.types import JSONObject


@dataclass(slots=True)
class _Index:
    by_slug: dict[str, FunctionDefinition] = field(default_factory=dict)
    exact: dict[str, list[tuple[FunctionDefinition, EventTrigger]]] = field(default_factory=dict)
    prefixes: list[tuple[str, FunctionDefinition, EventTrigger]] = field(default_factory=list)

    def add(self, definition: FunctionDefinition) -> None:
        if definition.slug in self.by_slug:
            raise FunctionDefinitionError(f"two functions are named {definition.slug!r}")
        self.by_slug[definition.slug] = definition
        for trigger in definition.event_triggers:
            if trigger.if_:
                compile_expression(trigger.if_)  # fail now, not at the first event
            if trigger.event.endswith("*"):
                self.prefixes.append((trigger.event[:-1], definition, trigger))
            else:
                self.exact.setdefault(trigger.event, []).append((definition, trigger))


class FunctionRegistry:
    def __init__(self, definitions: Iterable[FunctionDefinition] = ()) -> None:
        self._index = _Index()
        for definition in definitions:
            self.add(definition)

    def add(self, definition: FunctionDefinition) -> None:
        self._index.add(definition)

    def replace_app(self, app_id: str, definitions: Iterable[FunctionDefinition]) -> None:
        """Make `definitions` the functions of the synced app `app_id` (those of its earlier sync
        go), in one swap. Raises FunctionDefinitionError, changing nothing, if one cannot be added
        (e.g. its slug belongs to an in-process function)."""
        self._index = self.preview_app(app_id, definitions)

    def preview_app(self, app_id: str, definitions: Iterable[FunctionDefinition]) -> _Index:
        """The index `replace_app` would install; raises as it would, changing nothing."""
        index = _Index()
        for definition in self._index.by_slug.values():
            if not (definition.url is not None and definition.app_id == app_id):
                index.add(definition)
        for definition in definitions:
            index.add(definition)
        return index

    def get(self, slug: str) -> FunctionDefinition | None:
        return self._index.by_slug.get(slug)

    def __iter__(self) -> Iterator[FunctionDefinition]:
        return iter(list(self._index.by_slug.values()))

    def __len__(self) -> int:
        return len(self._index.by_slug)

    def triggered_by(self, event: JSONObject) -> list[FunctionDefinition]:
        """The functions that `event` (`{name, data, user, id, ts, v}`) starts, each once."""
        name = event.get("name")
        if not isinstance(name, str):
            return []
        index = self._index  # one snapshot for the whole lookup
        candidates = list(index.exact.get(name, ()))
        candidates += [(d, t) for prefix, d, t in index.prefixes if name.startswith(prefix)]
        if not candidates:
            return []
        started: dict[str, FunctionDefinition] = {}
        for definition, trigger in candidates:
            if definition.slug in started:
                continue
            if trigger.if_ is None or compile_expression(trigger.if_).matches({"event": event}):
                started[definition.slug] = definition
        return list(started.values())
