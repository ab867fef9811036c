"""The JUnit XML rules CI tools hold a report to, checked with xml.etree (no XSD validator is installed).

The rules are those of junit-10.xsd, the schema Jenkins' xunit plugin validates JUnit reports against
(jenkinsci/xunit-plugin, MIT licence), restricted to the elements a gate report uses; CodeBuild's JUNITXML
reader needs the same testsuites > testsuite > testcase(classname, name) shape. Written out here as checks
rather than copied, so the test states which rule a bad file breaks.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# junit-10.xsd's SUREFIRE_TIME: digits (optionally grouped by commas) and a decimal point, no exponent.
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")

_ATTRIBUTES = {
    # element: (required, allowed)
    "testsuites": (set(), {"name", "time", "tests", "failures", "errors"}),
    "testsuite": (
        {"name", "tests", "failures", "errors"},
        {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp", "hostname", "id"}
        | {"package", "file", "log", "url"},
    ),
    "properties": (set(), set()),
    "property": ({"name", "value"}, {"name", "value"}),
    "testcase": ({"name"}, {"name", "time", "classname", "group"}),
    "failure": (set(), {"type", "message"}),
    "error": (set(), {"type", "message"}),
    "skipped": (set(), {"type", "message"}),
    "system-out": (set(), set()),
    "system-err": (set(), set()),
}
_CHILDREN = {
    "testsuites": {"testsuite"},
    "testsuite": {"testsuite", "properties", "testcase", "system-out", "system-err"},
    "properties": {"property"},
    "property": set(),
    "testcase": {"skipped", "error", "failure", "system-out", "system-err"},
    "failure": set(),
    "error": set(),
    "skipped": set(),
    "system-out": set(),
    "system-err": set(),
}


def _check_element(element: ET.Element, path: str) -> None:
    required, allowed = _ATTRIBUTES[element.tag]
    attributes = set(element.attrib)
    assert required <= attributes, f"{path}: missing required attribute(s) {required - attributes}"
    assert attributes <= allowed, f"{path}: attribute(s) {attributes - allowed} are not in the schema"
    for key in ("tests", "failures", "errors", "skipped"):
        if key in element.attrib and element.tag in ("testsuite", "testsuites"):
            assert element.attrib[key].isdigit(), f"{path}/@{key} = {element.attrib[key]!r} is not a count"
    if "time" in element.attrib:  # the schema types it on suites; CI tools parse it as seconds on cases too
        assert SUREFIRE_TIME.fullmatch(element.attrib["time"]), f"{path}/@time is not a Surefire time"
    for child in element:
        assert child.tag in _CHILDREN[element.tag], f"{path}: <{child.tag}> is not allowed in <{element.tag}>"
        _check_element(child, f"{path}/{child.tag}")


def check_junit(text: str) -> ET.Element:
    """The parsed root of a JUnit report, after checking it against the schema's rules and its own counts."""
    root = ET.fromstring(text.encode("utf-8"))  # parsing bytes honours the XML declaration's encoding
    assert root.tag == "testsuites", f"the root is <{root.tag}>, not <testsuites>"
    _check_element(root, "testsuites")
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests", -1)) == len(cases), suite.get("name")
        assert int(suite.get("failures", -1)) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("errors", -1)) == sum(c.find("error") is not None for c in cases)
        assert int(suite.get("skipped", 0)) == sum(c.find("skipped") is not None for c in cases)
        for case in cases:
            assert case.get("classname"), "CodeBuild shows a test case by its classname (prefix) and name"
            outcomes = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
            assert len(outcomes) <= 1, f"{case.get('name')}: more than one outcome {outcomes}"
    return root
