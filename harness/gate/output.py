"""A gate's verdict written for CI: a JUnit XML file (one test case per check) and a Markdown table."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from harness.gate.verdict import Status, Verdict


def junit(verdict: Verdict) -> bytes:
    """One test case per check and comparison; an unusable input is one errored case."""
    root = ElementTree.Element("testsuites")
    suite = ElementTree.SubElement(root, "testsuite", name="gate")
    cases: list[tuple[str, str, Status, str]] = [
        ("gate.absolute", c.name, c.status, f"{c.value} (threshold {c.threshold}) {c.detail}".strip())
        for c in verdict.checks
    ]
    cases += [("gate.regression", f"{c.metric}_{c.quantile}", c.status, c.detail) for c in verdict.comparisons]
    for classname, name, status, message in cases:
        case = ElementTree.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        if status == "fail":
            ElementTree.SubElement(case, "failure", message=message).text = message
        elif status == "skip":
            ElementTree.SubElement(case, "skipped", message=message)
    if verdict.unusable is not None:
        case = ElementTree.SubElement(suite, "testcase", classname="gate", name="input", time="0")
        ElementTree.SubElement(case, "error", message=verdict.unusable).text = verdict.unusable
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(sum(1 for *_, status, _ in cases if status == "fail")))
    suite.set("skipped", str(sum(1 for *_, status, _ in cases if status == "skip")))
    suite.set("errors", str(int(verdict.unusable is not None)))
    xml: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}"


def markdown(verdict: Verdict) -> str:
    icon = {"pass": "✅", "fail": "❌", "skip": "➖"}
    lines = [f"## Gate: **{verdict.word}** — run `{verdict.run_id}`", ""]
    if verdict.notes:
        lines += [*(f"- note: {note}" for note in verdict.notes), ""]
    if verdict.unusable is not None:
        return "\n".join([*lines, f"The input cannot be judged: {verdict.unusable}", ""])
    if verdict.checks:
        lines += ["| check | value | threshold | result |", "|---|---:|---:|---|"]
        lines += [
            f"| `{c.name}` | {c.value} | {c.threshold} | {icon[c.status]} {c.detail.replace('|', '/')} |"
            for c in verdict.checks
        ]
        lines.append("")
    if verdict.comparisons:
        lines += [
            "| vs baseline | n (base / run) | baseline ms | run ms | change | interval | Mann-Whitney p | result |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c in verdict.comparisons:
            values = [
                f"{c.n_baseline} / {c.n_current}",
                "–" if c.baseline is None else f"{c.baseline:.1f}",
                "–" if c.current is None else f"{c.current:.1f}",
                _pct(c.change),
                "–" if c.ci_low is None else f"[{_pct(c.ci_low)}, {_pct(c.ci_high)}]",
                "–" if c.p_value is None else f"{c.p_value:.3g}",
            ]
            lines.append(f"| {c.metric} {c.quantile} | {' | '.join(values)} | {icon[c.status]} {c.detail} |")
        lines.append("")
    return "\n".join(lines)


def write(verdict: Verdict, summary_path: Path, junit_path: Path | None, markdown_path: Path | None) -> str:
    """Write the JUnit XML and the Markdown verdict (beside the summary unless told where); return the Markdown."""
    text = markdown(verdict)
    for path, default, content in (
        (junit_path, "gate.xml", junit(verdict)),
        (markdown_path, "gate.md", text.encode()),
    ):
        target = path or summary_path.parent / default
        if target.parent.is_dir():
            target.write_bytes(content)
    return text
