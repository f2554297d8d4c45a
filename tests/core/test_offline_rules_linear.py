"""The offline rules take time linear in their input, whatever the input.

Each adversarial input is 100,000 characters: a pattern that backtracks (quadratic)
needs tens of seconds to minutes on it, a linear one milliseconds. The deadline is
only a sanity bound between those two, not a performance measurement. The scans run
in a child process: a regular expression holds the GIL for its whole search, so only
a process can be stopped at the deadline.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from maxcore.builtin import offline_rules

DEADLINE_S = 20.0

SCAN = """
import sys
from maxcore.builtin import offline_rules
from maxcore.builtin.offline_llm import decide
from maxcore.types import ChatTurn, LLMRequest, Role

SIZE = 100_000
ADVERSARIAL = {
    "one long word": "a" * SIZE,
    "only spaces": " " * SIZE + "x",
    "dotted word": "a." * (SIZE // 2),
    "at then a long word": "a@" + "b" * SIZE,
    "many domain labels": "a@b" + ".c" * (SIZE // 2) + "!",
    "spaced digits": "1 " * (SIZE // 2),
    "company keyword then a long word": "at A" + "a" * SIZE,
    "intro then spaces": "je suis" + " " * SIZE,
    "marker words repeated": "nouveau " * (SIZE // 8),
    "many short words": "Ab " * (SIZE // 3),
}
patterns = [v for k, v in vars(offline_rules).items() if k.endswith("_RE")]
for case, text in ADVERSARIAL.items():
    print(case, flush=True)
    if sys.argv[1] == "patterns":
        for pattern in patterns:
            pattern.search(text)
            pattern.match(text)
    else:
        offline_rules.extract_lead(text)
        decide(LLMRequest(system="", messages=(ChatTurn(role=Role.USER, content=text),)))
print("done", flush=True)
"""


@pytest.mark.parametrize("what", ["patterns", "rules"])
def test_linear_on_adversarial_input(what: str) -> None:
    try:
        result = subprocess.run([sys.executable, "-c", SCAN, what], capture_output=True,
                                text=True, timeout=DEADLINE_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stuck = out.strip().splitlines()[-1:] or ["(before the first case)"]
        pytest.fail(f"the {what} backtrack on the input {stuck[0]!r}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("done")


def test_only_the_first_characters_are_read() -> None:
    padding = "x " * offline_rules.MAX_INPUT_CHARS
    assert offline_rules.extract_lead("jean@dupont.fr " + padding) == {"email": "jean@dupont.fr"}
    assert offline_rules.extract_lead(padding + "jean@dupont.fr") == {}


@pytest.mark.parametrize("text, expected", [
    ("écrire à jean.dupont+crm@mail.example.fr.", "jean.dupont+crm@mail.example.fr"),
    ("<jean@dupont.fr>", "jean@dupont.fr"),
    ("x" * 65 + "@dupont.fr", None),
    ("jean@" + "d" * 64 + ".fr", None),
])
def test_email_bounds_follow_the_rfc_limits(text: str, expected: str | None) -> None:
    found = offline_rules.EMAIL_RE.search(text)
    assert (found.group(0) if found else None) == expected


def test_company_keyword_is_a_whole_word() -> None:
    assert "company" not in offline_rules.extract_lead("Nouveau lead : Jean Chat Noir, jean@x.fr")
    fields = offline_rules.extract_lead("New lead: John Smith from Acme Corp, john@acme.com")
    assert fields["company"] == "Acme Corp"
