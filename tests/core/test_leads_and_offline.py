"""Lead normalisation and the offline model's French and English rules."""

from __future__ import annotations

import pytest

from maxcore import ChatTurn, LLMRequest, Role, ToolSpec
from maxcore.builtin.offline_llm import decide
from maxcore.builtin.offline_rules import extract_lead
from maxcore.errors import ToolError
from maxcore.leads import DEFAULT_OPTIONS, build_lead, normalise_option, normalise_phone


@pytest.mark.parametrize("raw,expected", [
    ("btp", "Construction"), ("BTP", "Construction"), ("Bâtiment", "Construction"),
    ("immobilier", "Real Estate"), ("real estate", "Real Estate"), ("santé", "Healthcare"),
    ("construction", "Construction"), ("Food & Beverage", "Food & Beverage"),
])
def test_industry_synonyms(raw, expected):
    assert normalise_option("industry", raw, DEFAULT_OPTIONS["industry"]) == expected


def test_status_and_source_synonyms():
    assert normalise_option("status", "en cours", DEFAULT_OPTIONS["status"]) == "In Process"
    assert normalise_option("source", "site web", DEFAULT_OPTIONS["source"]) == "Web Site"


def test_unknown_option_lists_allowed_values():
    with pytest.raises(ToolError, match=r"status 'perhaps' is not allowed; allowed values: New, Assigned"):
        normalise_option("status", "perhaps", DEFAULT_OPTIONS["status"])


def test_synonym_only_used_when_the_crm_has_the_option():
    with pytest.raises(ToolError):
        normalise_option("source", "whatsapp", ("Call", "Email"))


@pytest.mark.parametrize("raw,region,expected", [
    ("06 12 34 56 78", "FR", "+33612345678"), ("+33 6 12 34 56 78", "FR", "+33612345678"),
    ("0033612345678", "FR", "+33612345678"), ("+1 514 555 0199", "FR", "+15145550199"),
    ("07700 900123", "GB", "+447700900123"),
])
def test_phones_become_e164(raw, region, expected):
    assert normalise_phone(raw, region) == expected


def test_bad_phone_and_email_are_tool_errors():
    with pytest.raises(ToolError, match="not a possible phone number"):
        normalise_phone("12", "FR")
    with pytest.raises(ToolError, match="not a valid e-mail"):
        build_lead({"first_name": "A", "email": "nope@"}, options=DEFAULT_OPTIONS)


def test_build_lead_needs_contact_and_name():
    with pytest.raises(ToolError, match="phone number or an e-mail"):
        build_lead({"first_name": "Jean"}, options=DEFAULT_OPTIONS)
    with pytest.raises(ToolError, match="needs a name"):
        build_lead({"email": "a@b.fr"}, options=DEFAULT_OPTIONS)
    lead = build_lead({"name": "Jean <Dupont>", "email": "JEAN@Dupont.fr"}, options=DEFAULT_OPTIONS,
                      defaults={"status": "New"})
    assert (lead.first_name, lead.last_name, lead.email, lead.status) == (
        "Jean", "Dupont", "jean@dupont.fr", "New")


@pytest.mark.parametrize("text,expected", [
    ("Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78",
     {"first_name": "Jean", "last_name": "Dupont", "industry": "Construction",
      "email": "jean@dupont.fr", "phone": "+33 6 12 34 56 78"}),
    ("New lead: John Smith from Acme, real estate, john@acme.com",
     {"first_name": "John", "last_name": "Smith", "company": "Acme", "industry": "Real Estate",
      "email": "john@acme.com"}),
    ("Bonjour, je m'appelle Marie Curie, société Radium, 06 11 22 33 44",
     {"first_name": "Marie", "last_name": "Curie", "company": "Radium", "phone": "06 11 22 33 44"}),
])
def test_extract_lead(text, expected):
    assert extract_lead(text) == expected


TOOLS = (ToolSpec("upsert_lead", "", {}), ToolSpec("search_leads", "", {}), ToolSpec("remember", "", {}))


def ask(text: str, language: str = "fr"):
    return decide(LLMRequest(system="", messages=(ChatTurn(role=Role.USER, content=text),),
                             tools=TOOLS, language=language))


def test_offline_decisions():
    assert [c.name for c in ask("Nouveau lead : Jean Dupont, jean@dupont.fr").tool_calls] == ["upsert_lead"]
    assert [c.name for c in ask("cherche Dupont").tool_calls] == ["search_leads"]
    assert [c.name for c in ask("retiens que le budget est 20k").tool_calls] == ["remember"]
    assert "il me manque" in ask("Nouveau lead : Jean Dupont").text
    assert ask("hello", "en").text.startswith("Hello, I am MAX")
    assert ask("bonjour").text.startswith("Bonjour, je suis MAX")


def test_offline_does_not_call_tools_it_was_not_given():
    reply = decide(LLMRequest(system="", messages=(ChatTurn(role=Role.USER, content=(
        "Nouveau lead : Jean Dupont, jean@dupont.fr")),), tools=()))
    assert reply.tool_calls == ()
