"""Kedro parameters -> MLflow params: flattened ``a.b.c`` keys, string values, within MLflow's
limits, and nothing that looks like a credential.

MLflow params are immutable strings with limits (key <= 250 chars of ``[/\\w.\\- :]``, value
<= 6000 chars, checked by the server); one bad key would fail the whole ``log_batch``, so keys
are sanitised, over-long keys dropped and over-long values truncated here, with a warning.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
MAX_VALUE_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
TRUNCATED = "...[truncated]"

# Whole words of a key (split on _ - . space and camelCase) that mark a credential. Whole words,
# so that `tokenizer`, `max_new_tokens` or `sort_keys` are kept while `hf_token`, `api_key`,
# `aws_secret_access_key` or `db.password` are dropped.
SECRET_WORDS = frozenset(
    {"secret", "secrets", "password", "passwd", "pwd", "token", "key", "apikey", "credential",
     "credentials", "auth", "authorization", "cookie"}
)  # fmt: skip
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_URI_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@")


def is_secret_key(key: str) -> bool:
    """True when a word of ``key`` names a credential (``api_key``, ``hfToken``, ``password``)."""
    return any(word.lower() in SECRET_WORDS for word in _WORD.findall(key))


def redact_uri(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host`` anywhere in ``text``."""
    return _URI_USERINFO.sub(r"\g<scheme>\g<user>:***@", text)


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key, child in value.items():
            if is_secret_key(str(key)):
                logger.debug("not logging parameter %s.%s: looks like a credential", prefix, key)
                continue
            yield from _leaves(child, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings -> ``{"a.b.c": "value"}``; lists and empty mappings become JSON."""
    flat: dict[str, str] = {}
    for key, value in _leaves(params, prefix):
        name = _BAD_KEY_CHARS.sub("_", key) or "_"
        if posixpath.normpath(name) != name:  # MLflow rejects keys that resolve as paths
            name = name.replace("/", "_")
        if len(name) > MAX_KEY_LENGTH:
            logger.warning("not logging parameter %s...: key over %d", name[:60], MAX_KEY_LENGTH)
            continue
        text = redact_uri(_as_string(value))
        if len(text) > MAX_VALUE_LENGTH:
            logger.warning("parameter %s truncated to %d characters", name, MAX_VALUE_LENGTH)
            text = text[: MAX_VALUE_LENGTH - len(TRUNCATED)] + TRUNCATED
        flat[name] = text
    return flat


def kedro_params(inputs: Mapping[str, Any]) -> dict[str, str]:
    """Flatten the ``parameters`` / ``params:<path>`` entries of a name -> value mapping.

    ``params:pretrain.common`` contributes keys under ``pretrain.common.``, the same keys the
    whole ``parameters`` dict gives, so overlapping inputs agree.
    """
    flat: dict[str, str] = {}
    for name, value in inputs.items():
        if name == "parameters":
            flat.update(flatten_params(value))
        elif name.startswith("params:"):
            path = name.removeprefix("params:")
            if not any(is_secret_key(part) for part in path.split(".")):
                flat.update(flatten_params(value, path))
    return flat


def metric_values(value: Any, path: str = "") -> dict[str, float]:
    """The numeric leaves (bools excluded) under dotted ``path`` of ``value``, flattened."""
    for part in filter(None, path.split(".")):
        value = value.get(part) if isinstance(value, Mapping) else None
    if not isinstance(value, Mapping):
        return {}
    numbers = {
        key: leaf
        for key, leaf in _leaves(value, "")
        if isinstance(leaf, int | float) and not isinstance(leaf, bool)
    }
    return {_BAD_KEY_CHARS.sub("_", key): float(leaf) for key, leaf in numbers.items()}
