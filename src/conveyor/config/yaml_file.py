"""Reading the YAML file: safe loading that remembers each key's line and refuses
duplicate keys and unusual tags, so every error can name the line to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from conveyor.config.base import ConfigIssue, Loc, dotted


def read_file(path: Path, sources: dict[Loc, str], issues: list[ConfigIssue]) -> dict[str, Any]:
    """The file's sections as plain data; each key's line goes into `sources`, each
    problem into `issues` (then nothing, or what could be read, is returned)."""
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(ConfigIssue("", label, f"configuration file not found ({path.absolute()})"))
        return {}
    except UnicodeDecodeError as exc:
        issues.append(ConfigIssue("", label, f"not UTF-8 text ({exc.reason})"))
        return {}
    except OSError as exc:
        issues.append(ConfigIssue("", label, f"cannot read configuration file: {exc.strerror}"))
        return {}
    loader = yaml.SafeLoader(text)
    lines: dict[Loc, int] = {}
    try:
        root = loader.get_single_node()
        data = None if root is None else _construct(loader, root, (), lines, issues, label)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label} line {mark.line + 1}" if mark else label
        issues.append(ConfigIssue("", where, f"invalid YAML: {exc.problem or exc.context}"))
        return {}
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue("", label, f"invalid YAML: {exc}"))
        return {}
    finally:
        loader.dispose()
    if data is None:  # an empty file, or only comments
        return {}
    if not isinstance(data, dict):
        found = "a list" if isinstance(data, list) else f"the value {data!r}"
        message = f"must be a mapping of sections such as 'worker:', found {found}"
        issues.append(ConfigIssue("", f"{label} line 1", message))
        return {}
    for loc, line in lines.items():
        sources[loc] = f"{label} line {line}"
    # A section whose keys are all commented out reads as null: treat it as "all defaults".
    data = {section: value for section, value in data.items() if value is not None}
    return data


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    issues: list[ConfigIssue],
    label: str,
) -> Any:
    """Like SafeLoader's constructor, but remembering each key's line and refusing duplicates."""
    if len(loc) > 32:  # a self-referencing alias would otherwise recurse forever
        raise yaml.YAMLError(f"{dotted(loc)} is nested too deeply")
    if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_TAGS:
        # Walking collections by hand bypasses the constructor's tag checks, so refuse here.
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported tag {node.tag!r}", node.start_mark
        )
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                where = f"{label} line {line}"
                issues.append(ConfigIssue(dotted(loc), where, "keys must be plain names"))
                continue
            child = (*loc, str(key_node.value))
            if child[-1] in mapping:
                message = f"set twice in this file (also on line {lines[child]})"
                issues.append(ConfigIssue(dotted(child), f"{label} line {line}", message))
                continue
            lines[child] = line
            mapping[str(child[-1])] = _construct(loader, value_node, child, lines, issues, label)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            items.append(_construct(loader, item, (*loc, index), lines, issues, label))
        return items
    return loader.construct_object(node)
