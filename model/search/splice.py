"""Put one candidate function into a translation unit's baseline assembly.

A per-function answer (from an LLM or another compiler) only makes sense inside the whole
file gcc produced: its callers, constants and other functions stay as they were. The
candidate text may be just ``f:`` and instructions, the function with its own directives, or a
whole ``.s`` file, in AT&T or Intel syntax; :func:`splice_function` always returns a complete
file ready to assemble.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from asmopt.executor.asmfile import (
    AsmFunction,
    LineState,
    clone_parent,
    data_item,
    defined_symbols,
    is_family_member,
    line_states,
    local_labels,
    parse_functions,
    referenced_symbols,
    section_declarations,
)

__all__ = ["SpliceError", "splice_function"]


class SpliceError(ValueError):
    """The candidate cannot be put into the baseline; the message says why and what to do."""


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    lines: list[str]


def splice_function(
    baseline_asm: str,
    name: str,
    new_function_asm: str,
    *,
    c_source: str | None = None,
) -> str:
    """Replace function ``name`` (with the gcc parts of it the candidate redefines or that are
    no longer used) in ``baseline_asm`` by the candidate's definition; return the whole file.

    The candidate's ``.L`` labels that clash with labels kept from the baseline are renamed;
    constants it defines and the baseline lacks are copied in; its code stays in the
    function's original section unless it names one; ``.globl``/``.type``/``.size`` follow
    the baseline. ``c_source`` (optional) lets the error for a missing function say that gcc
    inlined it. Raises :class:`SpliceError` when the splice is impossible.
    """
    base_fns = parse_functions(baseline_asm)
    family = [fn for fn in base_fns if is_family_member(fn.name, name)]
    target = next((fn for fn in family if fn.name == name), None)
    if not family:
        raise SpliceError(_missing_message(name, base_fns, c_source))

    family_names = {fn.name for fn in family}
    cand_fns = parse_functions(new_function_asm, assume_functions=family_names | {name})
    cand_family = [fn for fn in cand_fns if fn.name in family_names or fn.name == name]
    _check_candidate(name, target, family, cand_fns, cand_family)

    cand_lines = new_function_asm.splitlines()
    taken = _outermost(cand_family)
    new_lines: list[str] = []
    for fn in taken:
        new_lines.extend(cand_lines[fn.start_line : fn.end_line])

    base_lines = baseline_asm.splitlines()
    redefined = {fn.name for fn in cand_family}
    anchor = target or next(fn for fn in family if fn.name in redefined)
    removed = [fn for fn in _outermost(family) if fn is anchor or fn.name in redefined]

    new_lines = _fix_symbol_directives(new_lines, name, target)
    kept_text = _without(base_lines, removed)
    new_lines, constants = _resolve_labels(new_lines, new_function_asm, kept_text, base_lines)
    _check_undefined(new_lines, constants, kept_text)

    states = line_states(baseline_asm)
    declarations = section_declarations(baseline_asm)
    cand_declarations = section_declarations(new_function_asm)
    wanted_section = _wanted_section(new_function_asm, cand_family, anchor)
    edits = [
        _Edit(
            anchor.start_line,
            anchor.end_line,
            _with_state(
                constants + new_lines,
                states[anchor.start_line],
                states[anchor.end_line],
                wanted_section,
                _label_syntax(
                    new_function_asm,
                    cand_fns,
                    name,
                    family_names,
                    states[anchor.label_line].intel_syntax,
                ),
                {**cand_declarations, **declarations},
            ),
        )
    ]
    for fn in removed:
        if fn is not anchor:
            edits.append(_removal(fn, states, declarations))
    result = _apply(base_lines, edits)
    return _drop_unused_parts(result, name, redefined)


# ---------------------------------------------------------------------------------------------
# Errors.


def _missing_message(name: str, base_fns: list[AsmFunction], c_source: str | None) -> str:
    names = [fn.name for fn in base_fns]
    if c_source is not None and _c_defines(c_source, name):
        if len(re.findall(rf"\b{re.escape(name)}\b", _strip_c_comments(c_source))) > 1:
            return (
                f"gcc inlined `{name}` into its callers at -O3; optimize the caller or the "
                "whole file"
            )
        return (
            f"gcc dropped `{name}` at -O3: it is static and never used, so there is nothing "
            "to optimize"
        )
    message = f"no function `{name}` in the baseline assembly"
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        message += "; did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
    if names:
        message += " (functions there: " + ", ".join(names) + ")"
    return message


def _strip_c_comments(c_source: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", c_source, flags=re.S)


def _c_defines(c_source: str, name: str) -> bool:
    """Whether the C text has a definition (not just a prototype) of ``name``."""
    pattern = rf"\b{re.escape(name)}\s*\([^;{{}}]*\)\s*\{{"
    return re.search(pattern, _strip_c_comments(c_source)) is not None


def _check_candidate(
    name: str,
    target: AsmFunction | None,
    family: list[AsmFunction],
    cand_fns: list[AsmFunction],
    cand_family: list[AsmFunction],
) -> None:
    if target is not None and any(fn.name == name for fn in cand_family):
        return
    if target is None and any(fn.name != name for fn in cand_family):
        return
    if target is None:
        clones = ", ".join(f"`{fn.name}`" for fn in family)
        need = f"gcc emitted only specialised copies of `{name}` ({clones}), whose arguments "
        need += "differ from the C function's; the candidate must define one of them"
        raise SpliceError(need)
    if not cand_fns:
        raise SpliceError(
            f"the candidate does not define `{name}`: it has no label `{name}:` followed by "
            "instructions"
        )
    others = ", ".join(f"`{fn.name}`" for fn in cand_fns)
    raise SpliceError(f"the candidate defines {others}, not `{name}`")


def _check_undefined(new_lines: list[str], constants: list[str], kept_text: str) -> None:
    """A candidate that jumps to a label nobody defines would only fail later, in the
    assembler or linker, with a less helpful message."""
    inserted = "\n".join(constants + new_lines)
    defined = defined_symbols(inserted) | defined_symbols(kept_text)
    used = referenced_symbols(inserted)
    missing = sorted(sym for sym in used - defined if sym.startswith(".L"))
    if missing:
        raise SpliceError(
            "the candidate uses labels it does not define: "
            + ", ".join(missing)
            + " (a function answer must include all of its code, cold parts included)"
        )


# ---------------------------------------------------------------------------------------------
# Building the inserted text.


def _outermost(fns: list[AsmFunction]) -> list[AsmFunction]:
    """Drop regions nested in another (a ``.cold`` part inside its hot function's region)."""
    return [
        fn
        for fn in fns
        if not any(
            o is not fn and o.start_line <= fn.start_line and fn.end_line <= o.end_line for o in fns
        )
    ]


def _without(lines: list[str], regions: list[AsmFunction]) -> str:
    drop = {i for fn in regions for i in range(fn.start_line, fn.end_line)}
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def _directive_target(line: str, directive: str) -> str | None:
    m = re.match(rf"\s*\{directive}\s+(\S+?)\s*(,|$)", line)
    return m.group(1).strip('"') if m else None


def _fix_symbol_directives(lines: list[str], name: str, target: AsmFunction | None) -> list[str]:
    """Make ``.globl``/``.type``/``.size`` for ``name`` match the baseline's binding."""
    if target is None:
        return lines
    label_at = _label_index(lines, name)
    if label_at is None:
        return lines
    out = list(lines)
    has_global = any(
        _directive_target(line, d) == name for line in out for d in (".globl", ".global")
    )
    has_type = any(_directive_target(line, ".type") == name for line in out)
    has_size = any(_directive_target(line, ".size") == name for line in out)
    if not target.is_global and has_global:
        # A static C function must stay local: a global copy could clash at link time.
        out = [
            line
            for line in out
            if _directive_target(line, ".globl") != name
            and _directive_target(line, ".global") != name
        ]
        label_at = _label_index(out, name) or 0
    before: list[str] = []
    if target.is_global and not has_global:
        before.append(f"\t.globl\t{name}")
    if not has_type:
        before.append(f"\t.type\t{name}, @function")
    out[label_at:label_at] = before
    if not has_size:
        # `.-name` only resolves in the function's own section.
        states = line_states("\n".join(out))
        label_line = label_at + len(before)
        if states[-1].section == states[label_line].section:
            out.append(f"\t.size\t{name}, .-{name}")
    return out


def _label_index(lines: list[str], name: str) -> int | None:
    pattern = re.compile(rf"\s*{re.escape(name)}\s*:(?!:)")
    return next((i for i, line in enumerate(lines) if pattern.match(line)), None)


def _fresh(label: str, taken: set[str]) -> str:
    k = 1
    while f"{label}_{k}" in taken:
        k += 1
    return f"{label}_{k}"


def _rename(lines: list[str], renames: dict[str, str]) -> list[str]:
    if not renames:
        return lines
    pattern = re.compile(
        r"(?<![\w.$])("
        + "|".join(re.escape(k) for k in sorted(renames, key=len, reverse=True))
        + r")(?![\w.$])"
    )
    return [pattern.sub(lambda m: renames[m.group(1)], line) for line in lines]


def _resolve_labels(
    new_lines: list[str], cand_text: str, kept_text: str, base_lines: list[str]
) -> tuple[list[str], list[str]]:
    """Rename clashing ``.L`` labels and collect the constants the candidate brings along.

    Returns the (renamed) function lines and the constant blocks to insert before them."""
    kept_defined = defined_symbols(kept_text)
    base_text = "\n".join(base_lines)
    cand_defined = defined_symbols(cand_text)
    taken = kept_defined | cand_defined
    renames: dict[str, str] = {}
    items = []
    copied: set[str] = set()
    pending = referenced_symbols("\n".join(new_lines)) - defined_symbols("\n".join(new_lines))
    while pending:
        sym = pending.pop()
        if sym in copied or sym not in cand_defined:
            continue
        item = data_item(cand_text, sym)
        if item is None:
            if sym not in kept_defined:
                raise SpliceError(
                    f"the candidate calls `{sym}`, which it defines as code but the baseline "
                    "does not have; send only the function (and its .cold/.part pieces)"
                )
            continue  # the baseline's own function of that name
        if sym in kept_defined:
            base_item = data_item(base_text, sym)
            if base_item is not None and base_item.content == item.content:
                continue  # the baseline already holds this very constant
            renames[sym] = _fresh(sym, taken)
            taken.add(renames[sym])
        copied.add(sym)
        items.append(item)
        pending |= referenced_symbols(item.text) - copied
    for label in local_labels("\n".join(new_lines)):
        if label in kept_defined and label not in renames:
            renames[label] = _fresh(label, taken)
            taken.add(renames[label])
    declarations = section_declarations(cand_text)
    constants: list[str] = []
    for item in items:
        constants.append(f"\t.pushsection\t{declarations.get(item.section, item.section)}")
        constants.extend(item.text.splitlines())
        constants.append("\t.popsection")
    return _rename(new_lines, renames), _rename(constants, renames)


# ---------------------------------------------------------------------------------------------
# Sections and syntax around an edit.


def _wanted_section(cand_text: str, cand_family: list[AsmFunction], anchor: AsmFunction) -> str:
    """The candidate's own section when it names one before the function, else the
    baseline function's."""
    first = min(cand_family, key=lambda fn: fn.label_line)
    before = cand_text.splitlines()[: first.label_line]
    names_section = any(
        re.match(r"\s*\.(text|data|bss|section|pushsection)\b", line) for line in before
    )
    return first.section if names_section else anchor.section


def _label_syntax(
    cand_text: str, cand_fns: list[AsmFunction], name: str, family: set[str], baseline: bool
) -> bool:
    """Whether the candidate's function is Intel syntax. A candidate that never says
    (``.intel_syntax``/``.att_syntax``) is judged by its registers (``%rax`` or ``rax``), and
    failing that takes the baseline's syntax, as a bare answer to a prompt would."""
    fn = next(f for f in cand_fns if f.name == name or f.name in family)
    lines = cand_text.splitlines()
    if any(re.match(r"\s*\.(intel|att)_syntax\b", line) for line in lines[: fn.label_line]):
        return fn.intel_syntax
    code = "\n".join(lines[fn.label_line : fn.end_line])
    if _ATT_REGISTER.search(code):
        return False
    if _INTEL_REGISTER.search(code):
        return True
    return baseline


_ATT_REGISTER = re.compile(r"%(?:[re]?[a-d]x|[re]?[sd]i|[re]?[sb]p|r\d+[dwb]?|[xyz]mm\d+|[a-d]l)\b")
_INTEL_REGISTER = re.compile(
    r"(?<![%\w.])(?:[re][a-d]x|[re][sd]i|[re][sb]p|r\d+[dwb]?|[xyz]mm\d+)\b", re.I
)


def _switch_to(section: str, declarations: dict[str, str]) -> str:
    if section in (".text", ".data", ".bss"):
        return f"\t{section}"
    return f"\t.section\t{declarations.get(section, section)}"


def _syntax_directive(intel: bool) -> str:
    return "\t.intel_syntax noprefix" if intel else "\t.att_syntax prefix"


def _with_state(
    lines: list[str],
    before: LineState,
    after: LineState,
    section: str,
    intel: bool,
    declarations: dict[str, str],
) -> list[str]:
    """Wrap inserted lines so they start in ``section``/syntax and leave the file in the state
    the replaced region left it in."""
    out = list(lines)
    label_state = _first_code_state(out, before)
    head: list[str] = []
    if label_state.section != section:
        head.append(_switch_to(section, declarations))
    if label_state.intel_syntax != intel:
        head.append(_syntax_directive(intel))
    out = head + out
    end = line_states("\n".join(out), before)[-1] if out else before
    if end.section != after.section:
        out.append(_switch_to(after.section, declarations))
    if end.intel_syntax != after.intel_syntax:
        out.append(_syntax_directive(after.intel_syntax))
    return out


def _first_code_state(lines: list[str], before: LineState) -> LineState:
    """The state at the first non-local label (the function's), ignoring constants pushed in
    with .pushsection."""
    states = line_states("\n".join(lines), before)
    for i, line in enumerate(lines):
        m = re.match(r"\s*([A-Za-z_][\w.$]*)\s*:", line)
        if m:
            return states[i]
    return states[-1]


def _removal(fn: AsmFunction, states: list[LineState], declarations: dict[str, str]) -> _Edit:
    return _Edit(
        fn.start_line,
        fn.end_line,
        _restore(states[fn.start_line], states[fn.end_line], declarations),
    )


def _restore(before: LineState, after: LineState, declarations: dict[str, str]) -> list[str]:
    out: list[str] = []
    if before.section != after.section:
        out.append(_switch_to(after.section, declarations))
    if before.intel_syntax != after.intel_syntax:
        out.append(_syntax_directive(after.intel_syntax))
    return out


def _apply(lines: list[str], edits: list[_Edit]) -> str:
    out = list(lines)
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        out[edit.start : edit.end] = edit.lines
    return "".join(line + "\n" for line in out)


def _drop_unused_parts(text: str, name: str, keep: set[str]) -> str:
    """Remove gcc's local parts and clones (``f.part.0``, ``f.constprop.0``...) that nothing
    uses any more, the replaced function's or, once their last caller is replaced, any
    other's: stale code only confuses readers and tools."""
    while True:
        fns = parse_functions(text)
        lines = text.splitlines()
        for fn in _outermost(fns):
            # only gcc's local parts/clones: anything else may be used from another file
            if fn.name in keep or fn.name == name or clone_parent(fn.name) is None:
                continue
            if fn.is_global:
                continue
            rest = "\n".join(lines[: fn.start_line] + lines[fn.end_line :])
            if fn.name in referenced_symbols(rest):
                continue
            states = line_states(text)
            declarations = section_declarations(text)
            text = _apply(
                lines,
                [
                    _Edit(
                        fn.start_line,
                        fn.end_line,
                        _restore(states[fn.start_line], states[fn.end_line], declarations),
                    )
                ],
            )
            break
        else:
            return text
