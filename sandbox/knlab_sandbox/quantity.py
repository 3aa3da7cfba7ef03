"""Resource quantities as the API server stores them (apimachinery's `resource.Quantity`).

A typed object (a Pod, a PVC, and a Knative template after the webhook's Go round trip) keeps a
quantity in canonical form, not as written: `1024Mi` is stored as `1Gi`, `0.5Gi` as `512Mi`,
`1000M` as `1G`, `0.5` as `500m`. The rules, read in k8s.io/apimachinery v0.34.4
`pkg/api/resource/quantity.go` (ParseQuantity, CanonicalizeBytes):

- the suffix family is kept: binary (`Ki`…`Ei`), decimal SI (`n`…`E`, none), or `e<exponent>`;
- values are rounded up to the nano (away from zero), binary ones capped at 2^63-1;
- a binary value under 1024 in magnitude, or one that is not a whole number, is written in
  decimal SI; otherwise as the largest power of 1024 that divides it;
- a decimal value is an integer times a power of ten that is a multiple of 3, with as many zeros
  moved into the exponent as possible.
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal, InvalidOperation, localcontext

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = {exponent // 10: suffix for suffix, exponent in _BINARY.items()}
_SYNTAX = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)((?:[eE][+-]?\d+)|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)")
_MAX_BINARY = Decimal(2**63 - 1)
# apimachinery's splitREString, which its errors quote.
GO_QUANTITY_PATTERN = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


def quantity_error(text: object) -> str | None:
    """What resource.ParseQuantity (the webhook's Go decoder) says about `text`; None when it parses."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str) or not re.fullmatch(GO_QUANTITY_PATTERN[1:-1], text):
        return f"quantities must match the regular expression '{GO_QUANTITY_PATTERN}'"
    if canonical_quantity(text) is None:
        return "unable to parse quantity's suffix"
    return None


def pod_spec_quantities(spec: object) -> list[object]:
    """Every quantity a pod spec holds (containers' limits and requests, emptyDir size limits)."""
    found: list[object] = []
    if not isinstance(spec, dict):
        return found
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            resources = container.get("resources") if isinstance(container, dict) else None
            for part in ("limits", "requests"):
                values = resources.get(part) if isinstance(resources, dict) else None
                found.extend(values.values() if isinstance(values, dict) else [])
    for volume in spec.get("volumes") or []:
        empty_dir = volume.get("emptyDir") if isinstance(volume, dict) else None
        if isinstance(empty_dir, dict) and "sizeLimit" in empty_dir:
            found.append(empty_dir["sizeLimit"])
    return found


def canonical_quantity(text: str) -> str | None:
    """`text` in the API server's canonical form; None when it is not a quantity."""
    if not isinstance(text, str):
        return None
    match = _SYNTAX.fullmatch(text)
    if not match:
        return None
    sign, number, suffix = match.groups()
    with localcontext() as context:
        context.prec = 200
        try:
            value = Decimal(number)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            return None
        if suffix in _BINARY:
            family = "binary"
            value *= 2 ** _BINARY[suffix]
        elif suffix in _DECIMAL:
            family = "decimal"
            value = value.scaleb(_DECIMAL[suffix])
        else:
            family = "exponent"
            value = value.scaleb(int(suffix[1:]))
        if value != 0:
            value = value.quantize(Decimal("1e-9"), rounding=ROUND_UP)
        if family == "binary":
            value = min(value, _MAX_BINARY)
        if sign == "-":
            value = -value
        if value == 0:
            return "0"
        if family == "binary" and (abs(value) < 1024 or value != value.to_integral_value()):
            family = "decimal"
        if family == "binary":
            return _binary(int(value))
        return _decimal(value, family)


def _binary(value: int) -> str:
    exponent = 0
    while exponent < 6 and value % 1024 == 0:
        value //= 1024
        exponent += 1
    return f"{value}{_BINARY_SUFFIX.get(exponent, '')}"


def _decimal(value: Decimal, family: str) -> str:
    sign, digits, exponent = value.as_tuple()
    mantissa = int("".join(map(str, digits)) or "0")
    while mantissa and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    while exponent % 3:
        mantissa *= 10
        exponent -= 1
    text = f"{'-' if sign else ''}{mantissa}"
    if family == "decimal" and exponent in _DECIMAL_SUFFIX:
        return text + _DECIMAL_SUFFIX[exponent]
    return text if exponent == 0 else f"{text}e{exponent}"


def canonicalize_resources(resources: object) -> None:
    """Canonical limits and requests of a container's (or a claim's) `resources`, in place."""
    if not isinstance(resources, dict):
        return
    for part in ("limits", "requests"):
        values = resources.get(part)
        if isinstance(values, dict):
            for name, value in values.items():
                canonical = canonical_quantity(value) if isinstance(value, str) else None
                if canonical is not None:
                    values[name] = canonical


def canonicalize_pod_spec(spec: object) -> None:
    """The quantities of a pod spec (containers' resources, emptyDir size limits), in place."""
    if not isinstance(spec, dict):
        return
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                canonicalize_resources(container.get("resources"))
    for volume in spec.get("volumes") or []:
        empty_dir = volume.get("emptyDir") if isinstance(volume, dict) else None
        if isinstance(empty_dir, dict) and isinstance(empty_dir.get("sizeLimit"), str):
            canonical = canonical_quantity(empty_dir["sizeLimit"])
            if canonical is not None:
                empty_dir["sizeLimit"] = canonical
