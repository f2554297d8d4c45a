"""The pipeline's tool loop, driven by a scripted model through the real runtime."""

from __future__ import annotations

import json
from typing import Any

import pytest

from maxcore import InboundMessage, LLMReply, Role
from maxcore.connectors import LeadQuery
from maxcore.runtime import Runtime
from tests.conftest import REQUESTS, call

LEAD = {"first_name": "Jean", "last_name": "Dupont", "phone": "06 12 34 56 78",
        "email": "jean@dupont.fr", "industry": "BTP"}


@pytest.fixture
async def runtime(make_config, plugins):
    config = make_config("acme", llm="scripted")
    rt = Runtime.from_directory(config, plugins=plugins)
    await rt.open()
    yield rt
    await rt.close()


def message(text: str = "hello", message_id: str = "m1", tenant: str = "acme") -> InboundMessage:
    return InboundMessage(tenant=tenant, channel="webchat", chat_id="chat-1",
                          message_id=message_id, text=text)


def tool_results(request) -> list[dict[str, Any]]:
    return [json.loads(t.content) for t in request.messages if t.role == Role.TOOL]


async def test_tool_loop_creates_lead_and_feeds_result_back(runtime, script):
    script(LLMReply(tool_calls=(call("upsert_lead", LEAD, "c1"),)), LLMReply(text="Lead créé"))
    result = await runtime.handle(message())
    assert result.reply.text == "Lead créé"
    assert result.tool_calls == ("upsert_lead",)
    second = REQUESTS["default"][1]
    # The assistant turn with the call is echoed, then one tool turn answering it.
    assistant = [t for t in second.messages if t.role == Role.ASSISTANT][-1]
    assert [c.id for c in assistant.tool_calls] == ["c1"]
    tool_turn = second.messages[-1]
    assert tool_turn.role == Role.TOOL and tool_turn.tool_call_id == "c1"
    lead = tool_results(second)[0]["lead"]
    assert lead["phone"] == "+33612345678" and lead["industry"] == "BTP"
    assert lead["status"] == "New" and lead["source"] == "Web Site"  # the tenant's lead_defaults
    crm = runtime.tenant("acme").crm
    assert len(await crm.search_leads(LeadQuery(email="jean@dupont.fr"))) == 1
    actions = [e.action for e in await runtime.tenant("acme").memory.audit_log()]
    assert "lead_created" in actions and "reply_sent" in actions and "llm_call" in actions
    facts = await runtime.tenant("acme").memory.facts("chat-1")
    assert facts["last_lead"]["name"] == "Jean Dupont" and facts["last_lead"]["id"] == lead["id"]


async def test_bad_arguments_become_a_tool_error_the_model_sees(runtime, script):
    script(
        LLMReply(tool_calls=(call("upsert_lead", "{not json", "c1"),)),
        LLMReply(tool_calls=(call("upsert_lead", {"first_name": 42}, "c2"),)),
        LLMReply(tool_calls=(call("upsert_lead", {**LEAD, "status": "astrology"}, "c3"),)),
        LLMReply(text="ok"),
    )
    result = await runtime.handle(message())
    assert result.reply.text == "ok"
    errors = [r["error"] for r in tool_results(REQUESTS["default"][-1])]
    assert "not valid JSON" in errors[0]
    assert "first_name" in errors[1] and "not of type 'string'" in errors[1]
    assert "status 'astrology' is not allowed" in errors[2] and "Qualified" in errors[2]
    assert await runtime.tenant("acme").crm.list_leads() == []


async def test_unknown_tool_is_reported_to_the_model(runtime, script):
    script(LLMReply(tool_calls=(call("delete_everything", {}, "c1"),)), LLMReply(text="fine"))
    await runtime.handle(message())
    error = tool_results(REQUESTS["default"][1])[0]["error"]
    assert "unknown tool 'delete_everything'" in error and "upsert_lead" in error


async def test_too_many_rounds_end_with_a_worded_answer(runtime, script):
    looping = [LLMReply(tool_calls=(call("search_leads", {"query": "x"}, f"c{i}"),)) for i in range(4)]
    script(*looping, LLMReply(text="Voici ce que j'ai trouvé."))
    result = await runtime.handle(message())
    assert result.reply.text == "Voici ce que j'ai trouvé."
    assert len(REQUESTS["default"]) == 5
    assert REQUESTS["default"][-1].tools == ()  # the last call offers no tools
    actions = [e.action for e in await runtime.tenant("acme").memory.audit_log()]
    assert "max_tool_rounds_exceeded" in actions


async def test_model_that_never_stops_gets_the_fallback_text(runtime, script):
    script(*[LLMReply(tool_calls=(call("search_leads", {}, f"c{i}"),)) for i in range(6)])
    result = await runtime.handle(message())
    assert result.reply.text.startswith("Désolé")


async def test_tenant_argument_is_ignored(make_config, plugins, script):
    config = make_config("acme", "globex", llm="scripted")
    runtime = Runtime.from_directory(config, plugins=plugins)
    await runtime.open()
    try:
        script(
            LLMReply(tool_calls=(call("upsert_lead", {**LEAD, "tenant": "globex",
                                                       "tenantId": "globex"}, "c1"),)),
            LLMReply(text="done"),
        )
        await runtime.handle(message(tenant="acme"))
        assert len(await runtime.tenant("acme").crm.list_leads()) == 1
        assert await runtime.tenant("globex").crm.list_leads() == []
    finally:
        await runtime.close()


async def test_allowed_tools_limit_what_the_model_sees(make_config, plugins, script):
    config = make_config("acme", llm="scripted",
                         extra="  allowed_tools: [search_leads]\n")
    runtime = Runtime.from_directory(config, plugins=plugins)
    await runtime.open()
    try:
        script(LLMReply(tool_calls=(call("upsert_lead", LEAD, "c1"),)), LLMReply(text="no"))
        await runtime.handle(message())
        assert [t.name for t in REQUESTS["default"][0].tools] == ["search_leads"]
        assert "unknown tool 'upsert_lead'" in tool_results(REQUESTS["default"][1])[0]["error"]
        assert await runtime.tenant("acme").crm.list_leads() == []
    finally:
        await runtime.close()


async def test_replayed_message_repeats_no_effect(runtime, script):
    replies = [LLMReply(tool_calls=(call("upsert_lead", LEAD, "c1"),
                                    call("send_message", {"text": "Bienvenue"}, "c2"))),
               LLMReply(text="Lead créé")]
    script(*replies, *replies)
    channel = runtime.tenant("acme").channel
    await runtime.handle(message(message_id="same"))
    await runtime.handle(message(message_id="same"))  # e.g. replay after a crash
    sent = [m for m in channel.outbox.after("chat-1", 0) if m["from"] == "assistant"]
    assert [m["text"] for m in sent] == ["Bienvenue", "Lead créé"]
    audit = [e.action for e in await runtime.tenant("acme").memory.audit_log()]
    assert audit.count("lead_created") == 1 and audit.count("lead_updated") == 0
    assert audit.count("reply_sent") == 1
    history = await runtime.tenant("acme").memory.history("chat-1", 10)
    assert len(history) == 2


async def test_history_and_facts_reach_the_prompt(runtime, script):
    script(LLMReply(tool_calls=(call("remember", {"key": "budget", "value": "20k"}, "c1"),)),
           LLMReply(text="Noté"), LLMReply(text="Bonjour"))
    await runtime.handle(message("retiens mon budget", "m1"))
    await runtime.handle(message("et alors ?", "m2"))
    later = REQUESTS["default"][-1]
    assert "budget: 20k" in later.system
    assert [t.content for t in later.messages] == ["retiens mon budget", "Noté", "et alors ?"]


async def test_message_for_another_tenant_is_refused(runtime):
    pipeline_tenant = runtime.tenant("acme")
    from maxcore.pipeline import Pipeline

    with pytest.raises(ValueError, match="sent to 'acme'"):
        await Pipeline(pipeline_tenant, runtime.hooks).process(message(tenant="globex"))


async def test_fixed_reply_skips_the_model_and_is_sent_once(runtime, script):
    from maxcore import FIXED_REPLY

    script(LLMReply(text="should not be used"))
    msg = InboundMessage(tenant="acme", channel="webchat", chat_id="chat-1", message_id="swe",
                         kind="text", metadata={FIXED_REPLY: "Merci de renvoyer votre message."})
    first = await runtime.handle(msg)
    await runtime.handle(msg)  # replayed: journalled, not sent again
    assert first.reply.text == "Merci de renvoyer votre message."
    assert REQUESTS.get("default") is None
    sent = [m for m in runtime.tenant("acme").channel.outbox.after("chat-1", 0) if m["from"] == "assistant"]
    assert [m["text"] for m in sent] == ["Merci de renvoyer votre message."]
    actions = [e.action for e in await runtime.tenant("acme").memory.audit_log()]
    assert actions.count("reply_sent") == 1 and "llm_call" not in actions


async def test_lead_tools_show_the_crm_declaration(runtime):
    tools = runtime.tenant("acme").tools
    upsert = tools["upsert_lead"].spec().parameters["properties"]
    assert upsert["status"]["enum"] == ["New", "Contacted", "Qualified", "Won", "Lost"]
    assert upsert["industry"] == {"type": "string", "description": "Industry. the lead's line of business"}
    assert set(upsert) >= {"first_name", "phone", "email", "company", "source", "notes"}
    assert tools["search_leads"].spec().parameters["properties"]["status"]["enum"][0] == "New"
    assert tools["create_record"].spec().parameters["properties"]["entity"]["enum"] == ["Note", "Task"]


async def test_defaults_apply_on_create_and_a_stated_value_wins_on_update(runtime, script):
    script(
        LLMReply(tool_calls=(call("upsert_lead", {**LEAD, "status": "qualifié"}, "c1"),)),
        LLMReply(tool_calls=(call("upsert_lead", LEAD, "c2"),)),
        LLMReply(tool_calls=(call("upsert_lead", {**LEAD, "status": "nouveau"}, "c3"),)),
        LLMReply(text="ok"),
    )
    await runtime.handle(message())
    leads = [r["lead"] for r in tool_results(REQUESTS["default"][-1])]
    assert [lead["status"] for lead in leads] == ["Qualified", "Qualified", "New"]
    assert leads[0]["source"] == "Web Site"


async def test_update_lead_reaches_the_conversations_last_lead(runtime, script):
    script(LLMReply(tool_calls=(call("update_lead", {"notes": "x"}, "c0"),)), LLMReply(text="?"),
           LLMReply(tool_calls=(call("upsert_lead", LEAD, "c1"),)), LLMReply(text="créé"),
           LLMReply(tool_calls=(call("update_lead", {"email": "j.dupont@btp.fr", "status": "won"}, "c2"),
                                call("update_lead", {"lead_id": "nope", "notes": "x"}, "c3"),
                                call("update_lead", {}, "c4"))),
           LLMReply(text="mis à jour"))
    await runtime.handle(message("ajoute une note", "m0"))
    assert "no lead to update" in tool_results(REQUESTS["default"][1])[0]["error"]
    await runtime.handle(message("nouveau lead", "m1"))
    await runtime.handle(message("son mail : j.dupont@btp.fr, c'est signé", "m2"))
    updated, missing, empty = tool_results(REQUESTS["default"][-1])
    assert updated["status"] == "updated"
    assert updated["lead"]["email"] == "j.dupont@btp.fr" and updated["lead"]["status"] == "Won"
    assert updated["lead"]["phone"] == "+33612345678"
    assert missing == {"error": "lead 'nope' not found"}
    assert "nothing to update" in empty["error"]
    [stored] = await runtime.tenant("acme").crm.list_leads()
    assert stored.email == "j.dupont@btp.fr" and stored.fields["status"] == "Won"


async def test_lead_defaults_outside_the_declaration_fail_at_build(make_config, plugins):
    from maxcore.errors import PluginError

    config = make_config("acme", llm="scripted")
    tenant_file = config / "tenants" / "acme.yaml"
    tenant_file.write_text(tenant_file.read_text().replace("status: New", "status: Banana"))
    with pytest.raises(PluginError, match=r"acme.yaml: assistant.lead_defaults.status: 'Banana' is not "
                                          r"one of New, Contacted, Qualified, Won, Lost"):
        Runtime.from_directory(config, plugins=plugins)


async def test_lone_surrogates_from_the_model_become_replacement_characters(runtime, script):
    # A model (or an LLM plugin) can return what no store can encode: a lone surrogate
    # escaped in the tool arguments, or raw in its reply. The message is still answered.
    escaped = json.dumps({**LEAD, "first_name": "Je\ud800an"})  # "\ud800" as a JSON escape
    assert "\\ud800" in escaped
    script(LLMReply(tool_calls=(call("upsert_lead", escaped, "c1\udfff"),)), LLMReply(text="Lead cr\udc00é"))
    result = await runtime.handle(message())
    assert result.reply.text == "Lead cr\ufffdé"
    [lead] = await runtime.tenant("acme").crm.list_leads()
    assert lead.first_name == "Je\ufffdan"
    replied = [e for e in await runtime.tenant("acme").memory.audit_log() if e.action == "reply_sent"]
    assert len(replied) == 1
