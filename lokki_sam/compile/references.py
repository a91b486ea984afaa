"""References between the entries of a template, and those a regeneration would leave dangling.

`generate` removes or renames what it owns (a removed step's function, a removed flow's state
machine); whatever of the user's still refers to it (`!Ref`, `!GetAtt`, `${X}` / `${X.Attr}` in a
`!Sub`, `DependsOn`, a `Condition` or an `Fn::If` condition, a SAM connector's `Id`) would make
`sam deploy` fail later, far from the cause. Templates here are plain data with long-form
intrinsics (`merge.to_plain`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# `${Name}` or `${Name.Attr}` in an Fn::Sub string; `${!Literal}` is an escape, not a reference.
_SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")
# Types for which SAM derives more resources from the logical ID (`<Id>Role`, `<Id><Event>`, `<Id>.Version`).
_SAM_TYPES = ("AWS::Serverless::",)


@dataclass(frozen=True)
class Reference:
    referrer: str  # the entry holding the reference: `Resources.Alarm`, `Outputs.CleanArn`, `Globals.Function`
    path: str  # where in it: `Properties.Dimensions[0].Value`, `DependsOn`
    target: str  # the logical ID, parameter or condition referred to
    kind: str  # Ref, Fn::GetAtt, Fn::Sub, DependsOn, Condition, Fn::If, Connector

    def describe(self) -> str:
        where = f"{self.referrer}.{self.path}" if self.path else self.referrer
        return f"{where} ({self.kind} {self.target})"


def references(template: Mapping[str, Any]) -> Iterator[Reference]:
    """Every reference in the template's resources, outputs, conditions and Globals."""
    for section in ("Resources", "Outputs", "Conditions"):
        entries = template.get(section)
        if not isinstance(entries, Mapping):
            continue
        for logical_id, entry in entries.items():
            referrer = f"{section}.{logical_id}"
            if section == "Conditions":
                yield from _walk(entry, referrer, "", in_condition=True)
                continue
            if not isinstance(entry, Mapping):
                continue
            yield from _attributes(entry, referrer)
            for key, value in entry.items():
                if key not in ("Metadata", "DependsOn", "Condition", "Type"):
                    yield from _walk(value, referrer, str(key))
            if entry.get("Type") == "AWS::Serverless::Connector":
                yield from _connector_ids(entry.get("Properties"), referrer, "Properties")
            connectors = entry.get("Connectors")  # SAM's connectors embedded in their source resource
            for name, connector in connectors.items() if isinstance(connectors, Mapping) else ():
                if isinstance(connector, Mapping):
                    yield from _connector_ids(connector.get("Properties"), referrer, f"Connectors.{name}.Properties")
    globals_ = template.get("Globals")
    if isinstance(globals_, Mapping):
        for key, value in globals_.items():
            yield from _walk(value, f"Globals.{key}", "")


def _attributes(entry: Mapping[str, Any], referrer: str) -> Iterator[Reference]:
    depends = entry.get("DependsOn")
    for target in [depends] if isinstance(depends, str) else depends if isinstance(depends, list) else []:
        if isinstance(target, str):
            yield Reference(referrer, "DependsOn", target, "DependsOn")
    condition = entry.get("Condition")
    if isinstance(condition, str):
        yield Reference(referrer, "Condition", condition, "Condition")


def _connector_ids(properties: Any, referrer: str, path: str) -> Iterator[Reference]:
    """SAM connectors name resources by plain ID: `Source: {Id: X}`, `Destination: [{Id: Y}]`."""
    if not isinstance(properties, Mapping):
        return
    for end in ("Source", "Destination"):
        value = properties.get(end)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping) and isinstance(item.get("Id"), str):
                yield Reference(referrer, f"{path}.{end}.Id", item["Id"], "Connector")


def _walk(value: Any, referrer: str, path: str, in_condition: bool = False) -> Iterator[Reference]:
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, referrer, f"{path}[{i}]", in_condition)
        return
    if not isinstance(value, Mapping):
        return
    if len(value) == 1:
        ((key, arg),) = value.items()
        found = list(_intrinsic(str(key), arg, referrer, path))
        if found or key in ("Ref", "Fn::GetAtt", "Fn::Sub", "Fn::If", "Condition"):
            yield from found
            if key == "Fn::Sub" and isinstance(arg, list) and len(arg) == 2:
                yield from _walk(arg[1], referrer, f"{path}.Fn::Sub[1]", in_condition)
            elif key == "Fn::If" and isinstance(arg, list):
                for i, item in enumerate(arg[1:], start=1):
                    yield from _walk(item, referrer, f"{path}.Fn::If[{i}]", in_condition)
            return
    for key, item in value.items():
        yield from _walk(item, referrer, f"{path}.{key}" if path else str(key), in_condition)


def _intrinsic(key: str, arg: Any, referrer: str, path: str) -> Iterator[Reference]:
    if key == "Ref" and isinstance(arg, str):
        yield Reference(referrer, path, arg.split(".", 1)[0], key)  # SAM's `!Ref Fn.Version` too
    elif key == "Fn::GetAtt":
        target = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0] if isinstance(arg, list) and arg else None
        if isinstance(target, str):
            yield Reference(referrer, path, target, key)
    elif key == "Fn::Sub":
        text, variables = (arg[0], arg[1]) if isinstance(arg, list) and len(arg) == 2 else (arg, {})
        local = set(variables) if isinstance(variables, Mapping) else set()
        if isinstance(text, str):
            for name in _SUB_VARIABLE.findall(text):
                base = name.strip().split(".", 1)[0]
                if base not in local:
                    yield Reference(referrer, path, base, key)
    elif key == "Fn::If" and isinstance(arg, list) and arg and isinstance(arg[0], str):
        yield Reference(referrer, path, arg[0], key)
    elif key == "Condition" and isinstance(arg, str):
        yield Reference(referrer, path, arg, key)


def defined(template: Mapping[str, Any]) -> dict[str, str]:
    """What a reference can name: parameters, resources (with their type) and conditions."""
    found: dict[str, str] = {}
    for section in ("Parameters", "Conditions", "Resources"):
        entries = template.get(section)
        if isinstance(entries, Mapping):
            for logical_id, entry in entries.items():
                kind = entry.get("Type") if isinstance(entry, Mapping) and section == "Resources" else section
                found[str(logical_id)] = str(kind)
    return found


def dangling(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[Reference, str]]:
    """References in `after` to what `before` defined and `after` no longer does, each with the
    entry it meant (`Resources.EtlCleanFunction`). Names SAM derives from a removed serverless
    resource (`<Id>Role`, `<Id>.Version`, `<Id><Event>`) count as removed with it; references that
    were already dangling before are the user's own and not reported."""
    old, new = defined(before), defined(after)
    removed = {name: kind for name, kind in old.items() if name not in new}
    if not removed:
        return []
    derived = [name for name, kind in removed.items() if kind.startswith(_SAM_TYPES)]
    found = []
    for reference in references(after):
        target = reference.target
        if target in new or target.startswith("AWS::"):
            continue
        owner = target if target in removed else next((n for n in derived if target.startswith(n)), None)
        if owner is not None:
            section = "Resources" if removed[owner] not in ("Parameters", "Conditions") else removed[owner]
            found.append((reference, f"{section}.{owner}"))
    return found
