"""Apps synced over the Inngest protocol (PROTOCOL §3.2): the register body of either official SDK,
parsed into `FunctionDefinition`s the engine runs through the HTTP driver.

Both SDKs' spellings are accepted (`appName`/`appname`, `deployType`/`deploy_type`), and so are
`null`, missing and empty optional fields. Every option is checked for its
JSON type and kept in the stored config; `checkpoint` is accepted and ignored (the engine never
enables TS checkpointing, PROTOCOL §3.9). The flow-control options are parsed and enforced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from headwater.errors import FunctionDefinitionError
from headwater.protocol.durations import parse_duration_ms
from headwater.sdk.flow_options import NO_OPTIONS, flow_options_from_wire
from headwater.sdk.functions import (
    DEFAULT_RETRIES,
    MAX_RETRIES,
    CancelOn,
    CronTrigger,
    EventTrigger,
    FunctionDefinition,
    Timeouts,
    Trigger,
    define_function,
)
from headwater.types import JSONObject

#: Namespace of the app UUIDs in register replies: derived from the app id, as Inngest does.
_APP_NAMESPACE: Final = uuid.UUID("6f1d3c52-8d0a-4c36-9a57-4c0a8f1e2b11")
#: Fields that change on every sync without changing the app (ignored by the checksum).
_VOLATILE_FIELDS: Final = ("deployId", "deploy_id", "idempotencyKey")
#: The JSON types each option may take (checked before the options are parsed).
_OPTION_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "concurrency": (int, list, dict),
    "throttle": (dict,),
    "rateLimit": (dict,),
    "debounce": (dict,),
    "batchEvents": (dict,),
    "priority": (dict,),
    "idempotency": (str,),
    "singleton": (dict,),
    "checkpoint": (dict,),
}


class RegistrationError(Exception):
    """A register request that cannot be accepted; `message` is what the SDK reports."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class AppSync:
    """One parsed register request."""

    app_id: str
    url: str
    sdk: str
    framework: str
    checksum: str
    functions: tuple[FunctionDefinition, ...]
    #: Each function's config as sent (slug, config), to store and to parse again at start.
    configs: tuple[tuple[str, JSONObject], ...]

    @property
    def app_uuid(self) -> str:
        return app_uuid(self.app_id)


def app_uuid(app_id: str) -> str:
    return str(uuid.uuid5(_APP_NAMESPACE, app_id))


def checksum_of(body: Mapping[str, Any]) -> str:
    """SHA-256 of the request in a canonical form (sorted keys), without per-sync fields: an app
    that syncs again unchanged is reported `modified: false`."""
    stable = {k: v for k, v in body.items() if k not in _VOLATILE_FIELDS}
    return hashlib.sha256(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_registration(body: Any) -> AppSync:
    """The app and its functions; RegistrationError with the message the SDK will show."""
    if not isinstance(body, dict):
        raise RegistrationError("Invalid request: the body must be a JSON object")
    app_id = body.get("appName") or body.get("appname") or body.get("app_name")
    if not isinstance(app_id, str) or not app_id.strip():
        raise RegistrationError("App ID required")
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise RegistrationError("Invalid request: `url` must be the app's http(s) URL")
    functions = body.get("functions") or []
    if not isinstance(functions, list):
        raise RegistrationError("Invalid request: `functions` must be an array")
    definitions: list[FunctionDefinition] = []
    configs: list[tuple[str, JSONObject]] = []
    problems: list[str] = []
    for index, config in enumerate(functions):
        try:
            definition = function_from_config(app_id, config)
        except FunctionDefinitionError as exc:
            name = config.get("id") if isinstance(config, dict) else None
            problems.append(f"function {name or index!r}: {exc}")
            continue
        definitions.append(definition)
        configs.append((definition.slug, config))
    slugs = [d.slug for d in definitions]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    if duplicates:
        problems.append(f"functions listed twice: {', '.join(duplicates)}")
    if problems:
        raise RegistrationError("At least one function is invalid: " + "; ".join(problems))
    return AppSync(
        app_id=app_id,
        url=url,
        sdk=str(body.get("sdk") or ""),
        framework=str(body.get("framework") or ""),
        checksum=checksum_of(body),
        functions=tuple(definitions),
        configs=tuple(configs),
    )


async def _remote_handler(*_: Any) -> None:
    """The handler of a synced function: it runs in its app, never in this process."""
    raise RuntimeError("this function is served by its app over HTTP")


def function_from_config(app_id: str, config: Any) -> FunctionDefinition:
    """One FunctionConfig (PROTOCOL §3.2) as a definition; FunctionDefinitionError if invalid."""
    if not isinstance(config, dict):
        raise FunctionDefinitionError("a function config must be an object")
    slug = config.get("id")
    prefix = f"{app_id}-"
    if not isinstance(slug, str) or not slug.startswith(prefix) or slug == prefix:
        # Both SDKs send "<app id>-<function id>"; run records, invokes and `fnId` use it.
        raise FunctionDefinitionError(f"the id must look like {prefix}<function id>")
    url, retries = _step(config.get("steps"))
    for option, types in _OPTION_TYPES.items():
        value = config.get(option)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise FunctionDefinitionError(f"{option} has the wrong type ({type(value).__name__})")
    name = config.get("name")
    flow = flow_options_from_wire(config)
    definition = define_function(
        app_id,
        _remote_handler,
        id=slug[len(prefix) :],
        triggers=_triggers(config.get("triggers")),
        name=name if isinstance(name, str) and name else None,
        retries=retries,
        cancel_on=_cancels(config.get("cancel")),
        timeouts=_timeouts(config.get("timeouts")),
        flow=None if flow == NO_OPTIONS else flow,
    )
    return dataclasses.replace(definition, url=url)


def _step(steps: Any) -> tuple[str, int]:
    """The URL and the retry count of the function's single step."""
    if not isinstance(steps, dict) or not steps:
        raise FunctionDefinitionError("`steps` must hold the function's step")
    step = steps.get("step") or next(iter(steps.values()))
    if not isinstance(step, dict):
        raise FunctionDefinitionError("the step must be an object")
    runtime = step.get("runtime")
    url = runtime.get("url") if isinstance(runtime, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise FunctionDefinitionError("the step needs runtime.url, an http(s) URL")
    retries = DEFAULT_RETRIES
    settings = step.get("retries")
    if isinstance(settings, dict) and settings.get("attempts") is not None:
        attempts = settings["attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise FunctionDefinitionError("retries.attempts must be a whole number")
        # Inngest reads `attempts` as a retry count and caps it (PROTOCOL §3.2).
        retries = min(attempts, MAX_RETRIES)
    return url, retries


def _triggers(triggers: Any) -> list[Trigger]:
    if triggers is None:
        return []
    if not isinstance(triggers, list):
        raise FunctionDefinitionError("`triggers` must be an array")
    parsed: list[Trigger] = []
    for trigger in triggers:
        if isinstance(trigger, dict) and isinstance(trigger.get("event"), str):
            expression = trigger.get("expression")
            parsed.append(
                EventTrigger(trigger["event"], expression if isinstance(expression, str) else None)
            )
        elif isinstance(trigger, dict) and isinstance(trigger.get("cron"), str):
            parsed.append(CronTrigger(trigger["cron"]))
        else:
            raise FunctionDefinitionError(f"trigger {trigger!r} has neither `event` nor `cron`")
    return parsed


def _cancels(cancels: Any) -> list[CancelOn]:
    if cancels is None:
        return []
    if not isinstance(cancels, list):
        raise FunctionDefinitionError("`cancel` must be an array")
    parsed: list[CancelOn] = []
    for rule in cancels:
        if not isinstance(rule, dict) or not isinstance(rule.get("event"), str):
            raise FunctionDefinitionError(f"cancel rule {rule!r} needs an `event`")
        condition = rule.get("if")
        timeout = rule.get("timeout")
        parsed.append(
            CancelOn(
                rule["event"],
                if_=condition if isinstance(condition, str) and condition else None,
                timeout=_seconds(timeout, "cancel timeout") if timeout else None,
            )
        )
    return parsed


def _timeouts(timeouts: Any) -> Timeouts | None:
    if not isinstance(timeouts, dict):
        return None
    start, finish = timeouts.get("start"), timeouts.get("finish")
    if not start and not finish:
        return None
    return Timeouts(
        start=_seconds(start, "timeouts.start") if start else None,
        finish=_seconds(finish, "timeouts.finish") if finish else None,
    )


def _seconds(value: Any, what: str) -> float:
    try:
        return parse_duration_ms(str(value)) / 1000
    except ValueError as exc:
        raise FunctionDefinitionError(f"{what}: {exc}") from None
