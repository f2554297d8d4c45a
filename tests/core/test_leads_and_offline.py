"""Lead normalisation against a CRM's declaration, and the offline model's French and
English rules reading that declaration from the tool schema."""

from __future__ import annotations

import json

import pytest

from maxcore import ChatTurn, LLMRequest, Role, ToolSpec
from maxcore.builtin.offline_llm import decide
from maxcore.builtin.offline_rules import extract_lead
from maxcore.errors import ToolError
from maxcore.leads import build_lead, normalise_email, normalise_phone, with_defaults
from maxcore.tools.builtin import lead_schemas
from maxcore.vocabulary import Choice, FieldType, LeadField, LeadSchema, schema_problems

# A vocabulary of the test's own: the core ships none.
SCHEMA = LeadSchema((
    LeadField("industry", FieldType.ENUM, "Industry", choices=(
        Choice("Construction", synonyms={"fr": ("btp", "bâtiment")}),
        Choice("Real Estate", synonyms={"fr": ("immobilier",)}),
        Choice("Healthcare", "Health care", {"fr": ("santé",)}),
        Choice("Food & Beverage"),
    )),
    LeadField("status", FieldType.ENUM, "Status", required=True, choices=(
        Choice("NEW", "New", {"fr": ("nouveau",)}), Choice("IN_PROGRESS", "In progress"),
    )),
    LeadField("notes", label="Notes", max_length=50),
    LeadField("score", FieldType.NUMBER),
))
INDUSTRY = SCHEMA.field("industry")


@pytest.mark.parametrize("raw,expected", [
    ("btp", "Construction"), ("BTP", "Construction"), ("Bâtiment", "Construction"),
    ("immobilier", "Real Estate"), ("real estate", "Real Estate"), ("santé", "Healthcare"),
    ("health care", "Healthcare"), ("Food & Beverage", "Food & Beverage"),
])
def test_values_labels_and_synonyms_map_to_the_crm_value(raw, expected):
    assert INDUSTRY.normalise(raw) == expected


def test_unknown_value_lists_allowed_values():
    with pytest.raises(ToolError, match=r"status 'perhaps' is not allowed; allowed values: NEW, IN_PROGRESS"):
        SCHEMA.normalise({"status": "perhaps"})
    with pytest.raises(ToolError, match=r"unknown lead field 'color'; fields: industry, status"):
        SCHEMA.normalise({"color": "red"})


def test_tenant_synonyms_extend_the_declaration():
    extended = SCHEMA.with_synonyms({"industry": {"Construction": ["gros œuvre"]}})
    assert extended.field("industry").normalise("Gros Oeuvre") == "Construction"
    assert extended.field("industry").normalise("btp") == "Construction"
    with pytest.raises(ValueError, match=r"industry.Banana: not a value of industry"):
        SCHEMA.with_synonyms({"industry": {"Banana": ["x"]}})
    with pytest.raises(ValueError, match=r"notes: not an enumerated lead field"):
        SCHEMA.with_synonyms({"notes": {"x": ["y"]}})


def test_lead_defaults_problems_name_the_file_and_key():
    problems = schema_problems(SCHEMA, {"status": "Banana", "color": "red", "industry": "btp"},
                               "tenants/acme.yaml")
    assert problems == [
        "tenants/acme.yaml: assistant.lead_defaults.status: 'Banana' is not one of NEW, IN_PROGRESS",
        "tenants/acme.yaml: assistant.lead_defaults.color: the CRM declares no lead field 'color'; "
        "fields: industry, status, notes, score",
    ]


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
        build_lead({"first_name": "A", "email": "nope@"}, schema=SCHEMA)
    for bad in ("a@b", "a@b.c", "a@.fr", "a@b..fr", "@b.fr", "a b@c.fr"):
        with pytest.raises(ToolError):
            normalise_email(bad)
    assert normalise_email(" Jean@Dupont.FR ") == "jean@dupont.fr"


def test_build_lead_needs_contact_and_name_and_normalises_fields():
    with pytest.raises(ToolError, match="phone number or an e-mail"):
        build_lead({"first_name": "Jean"}, schema=SCHEMA)
    with pytest.raises(ToolError, match="needs a name"):
        build_lead({"email": "a@b.fr"}, schema=SCHEMA)
    lead = build_lead({"name": "Jean  Dupont", "email": "JEAN@Dupont.fr", "industry": "btp",
                       "score": "7,5"}, schema=SCHEMA)
    assert (lead.first_name, lead.last_name, lead.email) == ("Jean", "Dupont", "jean@dupont.fr")
    assert lead.fields == {"industry": "Construction", "score": 7.5}
    with pytest.raises(ToolError, match="longer than 50"):
        build_lead({"email": "a@b.fr", "company": "x", "notes": "n" * 51}, schema=SCHEMA)
    partial = build_lead({"notes": "call back"}, schema=SCHEMA, require_identity=False)
    assert partial.fields == {"notes": "call back"}


def test_defaults_fill_a_new_lead_only_where_empty():
    lead = build_lead({"email": "a@b.fr", "company": "Acme", "status": "in progress"}, schema=SCHEMA)
    assert with_defaults(lead, {"status": "nouveau"}, SCHEMA).fields["status"] == "IN_PROGRESS"
    bare = build_lead({"email": "a@b.fr", "company": "Acme"}, schema=SCHEMA)
    assert with_defaults(bare, {"status": "nouveau"}, SCHEMA).fields["status"] == "NEW"
    with pytest.raises(ToolError, match="a new lead needs status"):
        with_defaults(bare, {}, SCHEMA)


def test_tool_schema_shows_the_crm_values_and_accepts_synonyms():
    shown, accepted = lead_schemas(SCHEMA, ())
    industry = shown["properties"]["industry"]
    assert industry["enum"] == ["Construction", "Real Estate", "Healthcare", "Food & Beverage"]
    assert "Healthcare (Health care)" in industry["description"]
    assert industry["x-synonyms"]["Construction"] == ["btp", "bâtiment"]
    assert "enum" not in accepted["properties"]["industry"]
    assert set(shown["properties"]) == {"first_name", "last_name", "phone", "email", "company",
                                        "industry", "status", "notes", "score"}


PROPERTIES = lead_schemas(SCHEMA, ())[0]["properties"]
FREE_TEXT = {"industry": {"type": "string"}, "notes": {"type": "string"}}


@pytest.mark.parametrize("text,properties,expected", [
    ("Nouveau lead : Jean Dupont, BTP, jean@dupont.fr, +33 6 12 34 56 78", PROPERTIES,
     {"first_name": "Jean", "last_name": "Dupont", "industry": "Construction",
      "email": "jean@dupont.fr", "phone": "+33 6 12 34 56 78"}),
    ("New lead: John Smith from Acme, real estate, john@acme.com", PROPERTIES,
     {"first_name": "John", "last_name": "Smith", "company": "Acme", "industry": "Real Estate",
      "email": "john@acme.com"}),
    ("Bonjour, je m'appelle Marie Curie, société Radium, 06 11 22 33 44", PROPERTIES,
     {"first_name": "Marie", "last_name": "Curie", "company": "Radium", "phone": "06 11 22 33 44"}),
    # A free-text industry gets the words as written; an enumeration only its own values.
    ("Nouveau lead : Jean Dupont, BTP, jean@dupont.fr", FREE_TEXT,
     {"first_name": "Jean", "last_name": "Dupont", "industry": "BTP", "email": "jean@dupont.fr"}),
    ("Nouveau lead : Jean Dupont, astrologie, jean@dupont.fr", PROPERTIES,
     {"first_name": "Jean", "last_name": "Dupont", "email": "jean@dupont.fr"}),
    ("Nouveau lead : Jean Dupont, nouveau, jean@dupont.fr", PROPERTIES,
     {"first_name": "Jean", "last_name": "Dupont", "status": "NEW", "email": "jean@dupont.fr"}),
])
def test_extract_lead(text, properties, expected):
    assert extract_lead(text, properties) == expected


TOOLS = (ToolSpec("upsert_lead", "", {"type": "object", "properties": PROPERTIES}),
         ToolSpec("search_leads", "", {}), ToolSpec("remember", "", {}))


def ask(text: str, language: str = "fr"):
    return decide(LLMRequest(system="", messages=(ChatTurn(role=Role.USER, content=text),),
                             tools=TOOLS, language=language))


def test_offline_decisions():
    [call] = ask("Nouveau lead : Jean Dupont, BTP, jean@dupont.fr").tool_calls
    assert call.name == "upsert_lead" and json.loads(call.arguments)["industry"] == "Construction"
    assert [c.name for c in ask("cherche Dupont").tool_calls] == ["search_leads"]
    assert [c.name for c in ask("retiens que le budget est 20k").tool_calls] == ["remember"]
    assert "il me manque" in ask("Nouveau lead : Jean Dupont").text
    assert ask("hello", "en").text.startswith("Hello, I am MAX")
    assert ask("bonjour").text.startswith("Bonjour, je suis MAX")


def test_offline_does_not_call_tools_it_was_not_given():
    reply = decide(LLMRequest(system="", messages=(ChatTurn(role=Role.USER, content=(
        "Nouveau lead : Jean Dupont, jean@dupont.fr")),), tools=()))
    assert reply.tool_calls == ()


@pytest.mark.parametrize("text, expected", [
    ("  Bâtiment_et   Travaux ", "batiment et travaux"),
    ("Œuvre", "oeuvre"),
    ("STRASSE", "strasse"),
    ("Straße", "strasse"),
    ("BTP\t\n_x", "btp x"),
    ("é" * 100, "e" * 100),  # longer than the cached size: the same answer
])
def test_fold_lowercases_strips_accents_and_squeezes(text: str, expected: str) -> None:
    from maxcore.vocabulary import fold

    assert fold(text) == expected
    assert fold(text) == expected  # the second answer comes from the cache


def test_parse_arguments_reuses_a_validator_and_still_reports_errors() -> None:
    from maxcore.tools import Tool, parse_arguments

    async def nothing(ctx: object, arguments: object) -> dict[str, object]:
        return {}

    tool = Tool(name="t", description="d", function=nothing, parameters={
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    assert parse_arguments(tool, '{"n": 1}') == ({"n": 1}, [])
    with pytest.raises(ToolError, match="n: 'x' is not of type 'integer'"):
        parse_arguments(tool, '{"n": "x"}')
    with pytest.raises(ToolError, match="'n' is a required property"):
        parse_arguments(tool, "{}")
