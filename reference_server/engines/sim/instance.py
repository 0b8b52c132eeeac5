"""Instances of a JSON Schema: the values the simulator "generates" under guided decoding.

Guided decoding lets a model write only text that matches the schema; the simulator, which has no model, writes a
random instance of it instead. It covers the subset that tool parameters and structured outputs use: `type` (one or
a list), `object` (`properties`, `required`, `additionalProperties`, `minProperties`, `maxProperties`), `array`
(`items`, `prefixItems`, `minItems`, `maxItems`, `uniqueItems`), `string` (`minLength`, `maxLength`), `integer` and
`number` (`minimum`, `maximum`, their exclusive forms, `multipleOf`), `boolean`, `null`, `enum`, `const`, `anyOf` and
`oneOf` (one branch is picked), `allOf` (merged), and `$ref` to anywhere in the root (`#/$defs/…`,
`#/definitions/…`). Other keywords (`format`, `pattern`, `not`, `if`/`then`, `patternProperties`) are ignored, so
a schema that relies on them may not be met.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from reference_server.engines.sim.text import WORDS

# Below this depth optional parts (optional properties, extra items, branches that nest) are left out, so that
# recursive schemas end; a chain of `$ref`s longer than `_MAX_HOPS` is treated as "anything".
_DEEP = 4
_MAX_HOPS = 32
_SCALARS = frozenset({"string", "integer", "number", "boolean", "null"})
_UNBOUNDED_SPAN = 100


def instance(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A JSON value (dicts, lists, str, int, float, bool, None) that validates against `schema`."""
    return _Writer(schema, rng).value(schema, 0)


def dumps(value: Any) -> str:
    """JSON text as Python's json module spaces it (`", "` and `": "`), a spacing models trained on it write."""
    return json.dumps(value, ensure_ascii=False)


def free_object(rng: random.Random, size: int) -> dict[str, Any]:
    """Any JSON object, as JSON mode allows: `size` properties named by words, with scalar or list values."""
    writer = _Writer({}, rng)
    return {key: writer.anything() for key in rng.sample(WORDS, min(size, len(WORDS)))}


class _Writer:
    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        self._root = root
        self._rng = rng

    def value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping):  # `true` (or a non-schema): anything goes
            return self.anything()
        flat = self._flatten(schema, depth, 0)
        if "const" in flat:
            return flat["const"]
        if isinstance(flat.get("enum"), Sequence) and flat["enum"]:
            return self._rng.choice(list(flat["enum"]))
        kind = self._kind(flat, depth)
        if kind == "object":
            return self._object(flat, depth)
        if kind == "array":
            return self._array(flat, depth)
        if kind == "string":
            return self._string(flat)
        if kind == "integer":
            return self._integer(flat)
        if kind == "number":
            return self._number(flat)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self.anything()

    def anything(self) -> Any:
        """A value for a schema that allows anything: mostly words, sometimes a number, a flag or a list."""
        rng = self._rng
        roll = rng.random()
        if roll < 0.5:
            return self._words(rng.randint(1, 6))
        if roll < 0.7:
            return rng.randint(0, 1000)
        if roll < 0.8:
            return round(rng.uniform(0, 100), 2)
        if roll < 0.9:
            return rng.random() < 0.5
        return [self._words(rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]

    # -- composition --------------------------------------------------------------------------------------------

    def _flatten(self, schema: Mapping[str, Any], depth: int, hops: int) -> dict[str, Any]:
        """One schema without `$ref`, `allOf`, `anyOf` or `oneOf` at its top: targets and branches merged in."""
        if hops > _MAX_HOPS:
            return {}
        flat = dict(schema)
        ref = flat.pop("$ref", None)
        if isinstance(ref, str):
            flat = _merge(self._flatten(self._target(ref), depth, hops + 1), flat)
        for member in flat.pop("allOf", None) or ():
            if isinstance(member, Mapping):
                flat = _merge(flat, self._flatten(member, depth, hops + 1))
        for keyword in ("anyOf", "oneOf"):
            branches = flat.pop(keyword, None)
            if isinstance(branches, Sequence) and branches:
                branch = self._branch(branches, depth)
                if isinstance(branch, Mapping):
                    flat = _merge(flat, self._flatten(branch, depth, hops + 1))
        return flat

    def _target(self, ref: str) -> Mapping[str, Any]:
        """What a local `$ref` points at (a JSON Pointer into the root); anything for one that points nowhere."""
        if not ref.startswith("#"):
            return {}
        node: Any = self._root
        for part in (p for p in ref[1:].split("/") if p):
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, Sequence) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return {}
        return node if isinstance(node, Mapping) else {}

    def _branch(self, branches: Sequence[Any], depth: int) -> Any:
        if depth >= _DEEP:  # deep down, a branch that does not nest further ends the recursion
            flat = [b for b in branches if isinstance(b, Mapping) and "$ref" not in b and _scalar_only(b.get("type"))]
            if flat:
                return flat[0]
        return self._rng.choice(list(branches))

    def _kind(self, schema: Mapping[str, Any], depth: int) -> str | None:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, Sequence) and declared:
            kinds = [str(k) for k in declared]
            if depth >= _DEEP and "null" in kinds:
                return "null"
            concrete = [k for k in kinds if k != "null"]
            # Mostly a real value, as a model fills a nullable field; null now and then.
            return self._rng.choice(concrete) if concrete and self._rng.random() < 0.8 else self._rng.choice(kinds)
        if {"properties", "required", "additionalProperties", "minProperties"} & schema.keys():
            return "object"
        if {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
            return "array"
        if {"minLength", "maxLength"} & schema.keys():
            return "string"
        if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"} & schema.keys():
            return "number"
        return None

    # -- kinds --------------------------------------------------------------------------------------------------

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        rng = self._rng
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = [str(r) for r in schema.get("required") or ()]
        additional = schema.get("additionalProperties", True)
        low, high = int(schema.get("minProperties", 0)), schema.get("maxProperties")
        out: dict[str, Any] = {}
        skipped: list[str] = []
        for name, sub in properties.items():
            if name in required or (depth < _DEEP and sub is not False and rng.random() < 0.6):
                out[name] = self.value(sub, depth + 1)
            elif sub is not False:
                skipped.append(name)
        extra = additional if isinstance(additional, Mapping) else {}
        for name in required:
            if name not in out:
                out[name] = self.value(properties.get(name, extra), depth + 1)
        free = additional is not False
        if "properties" not in schema and free and not required and depth < _DEEP:
            low = max(low, rng.randint(1, 3))  # a free-form object gets a few properties of its own
        while len(out) < low and skipped:
            name = skipped.pop(0)
            out[name] = self.value(properties[name], depth + 1)
        if len(out) < low and free:
            words = [w for w in WORDS if w not in out and w not in properties]
            while len(out) < low and words:
                out[words.pop(rng.randrange(len(words)))] = self.value(extra, depth + 1)
        if isinstance(high, int):
            for name in [n for n in reversed(out) if n not in required][: max(len(out) - high, 0)]:
                del out[name]
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        rng = self._rng
        prefix: Sequence[Any] = schema.get("prefixItems") or ()
        items: Any = schema.get("items", True)
        if isinstance(items, Sequence) and not isinstance(items, Mapping):  # draft 4's tuple form
            prefix, items = items, schema.get("additionalItems", True)
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        count = low if depth >= _DEEP else rng.randint(max(low, 1), low + 3)
        if isinstance(high, int):
            count = min(count, high)
        if items is False:
            count = min(count, len(prefix))
        unique = bool(schema.get("uniqueItems"))
        out: list[Any] = []
        for _ in range(count * 8 if unique else count):  # a few tries each, for unique items
            if len(out) == count:
                break
            position = len(out)
            element = self.value(prefix[position] if position < len(prefix) else items, depth + 1)
            if not (unique and any(_same(element, other) for other in out)):
                out.append(element)
        return out

    def _string(self, schema: Mapping[str, Any]) -> str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        text = self._words(self._rng.randint(1, 5))
        while len(text) < low:
            text += " " + self._rng.choice(WORDS)
        return text[:high] if isinstance(high, int) else text

    def _integer(self, schema: Mapping[str, Any]) -> int:
        low, high = _limits(schema)
        lo = None if low is None else (math.floor(low[0]) + 1 if low[1] else math.ceil(low[0]))
        hi = None if high is None else (math.ceil(high[0]) - 1 if high[1] else math.floor(high[0]))
        first, last = (int(b) for b in _span(lo, hi))
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            multiples = (math.ceil(first / step), math.floor(last / step))
            if multiples[0] <= multiples[1]:
                return self._rng.randint(*multiples) * step
        return self._rng.randint(first, last)

    def _number(self, schema: Mapping[str, Any]) -> float | int:
        low, high = _limits(schema)
        lo, hi = _span(None if low is None else low[0], None if high is None else high[0])
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first <= last:
                multiple = self._rng.randint(first, last) * step
                if _inside(multiple, low, high):
                    return multiple
        value = round(self._rng.uniform(lo, hi), 2)
        return value if _inside(value, low, high) else (lo + hi) / 2

    def _words(self, count: int) -> str:
        return " ".join(self._rng.choices(WORDS, k=count))


def _merge(base: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Both schemas' constraints in one (as far as this subset needs): properties and required lists combine."""
    merged = dict(base)
    for key, value in more.items():
        if key == "properties" and isinstance(merged.get(key), Mapping) and isinstance(value, Mapping):
            merged[key] = {**merged[key], **value}
        elif key == "required" and isinstance(merged.get(key), Sequence) and isinstance(value, Sequence):
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        elif key == "type" and key in merged and merged[key] != value:
            both = [t for t in _types(merged[key]) if t in _types(value)] or _types(value)
            merged[key] = both[0] if len(both) == 1 else both
        else:
            merged[key] = value
    return merged


def _types(declared: Any) -> list[str]:
    return [declared] if isinstance(declared, str) else [str(t) for t in declared or ()]


def _scalar_only(declared: Any) -> bool:
    return declared is not None and all(t in _SCALARS for t in _types(declared))


Limit = tuple[float, bool]  # a bound and whether it is exclusive


def _limits(schema: Mapping[str, Any]) -> tuple[Limit | None, Limit | None]:
    """The tightest lower and upper bound, in either draft's spelling (draft 4's exclusive flags, or bounds)."""
    lows: list[Limit] = []
    highs: list[Limit] = []
    for inclusive, exclusive, found in (("minimum", "exclusiveMinimum", lows), ("maximum", "exclusiveMaximum", highs)):
        if _is_number(schema.get(inclusive)):
            found.append((schema[inclusive], schema.get(exclusive) is True))
        if _is_number(schema.get(exclusive)):
            found.append((schema[exclusive], True))
    low = max(lows) if lows else None  # at equal values, the exclusive one (True) is the tighter
    high = min(highs, key=lambda limit: (limit[0], not limit[1])) if highs else None
    return low, high


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _span(low: float | None, high: float | None) -> tuple[float, float]:
    """A finite range inside the bounds: a one-sided or open range is given a width of its own."""
    if low is None and high is None:
        return 0, _UNBOUNDED_SPAN
    if low is None:
        assert high is not None
        return high - _UNBOUNDED_SPAN, high
    if high is None:
        return low, low + _UNBOUNDED_SPAN
    return low, max(low, high)


def _inside(value: float, low: Limit | None, high: Limit | None) -> bool:
    above = low is None or (value > low[0] if low[1] else value >= low[0])
    below = high is None or (value < high[0] if high[1] else value <= high[0])
    return above and below


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (so 1 and True differ, as `uniqueItems` sees them)."""
    return type(a) is type(b) and a == b
