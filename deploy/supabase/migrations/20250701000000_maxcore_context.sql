-- One round trip for what a message needs from memory: the chat's history window and its
-- facts, read by maxcore_context(tenant, chat) in a single call instead of two requests.
--
-- security invoker: under a tenant JWT the caller's RLS policies still decide which rows
-- it sees (another tenant's id in p_tenant_id returns nothing); with the service key the
-- backend passes its own bound tenant, as it adds tenant_id=eq. to every table request.
-- Schema version 2: the backend checks for it. Idempotent (create or replace).

create or replace function public.maxcore_context(p_tenant_id text, p_chat_id text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    select jsonb_build_object(
        'history', coalesce((
            select s.history from public.sessions s
            where s.tenant_id = p_tenant_id and s.chat_id = p_chat_id
        ), '[]'::jsonb),
        'facts', coalesce((
            select jsonb_object_agg(m.key, m.value) from public.tenant_memory m
            where m.tenant_id = p_tenant_id and m.chat_id = p_chat_id
        ), '{}'::jsonb)
    )
$$;
revoke all on function public.maxcore_context(text, text) from public, anon;
grant execute on function public.maxcore_context(text, text) to authenticated, service_role;

-- History retention (retention.history_days): the backend deletes sessions windows not
-- touched for that long; the index keeps the purge from scanning every tenant's rows.
create index if not exists sessions_tenant_updated on public.sessions (tenant_id, updated_at);

create or replace function public.maxcore_schema_version()
returns integer
language sql
stable
security invoker
set search_path = ''
as $$ select 2 $$;
revoke all on function public.maxcore_schema_version() from public, anon;
grant execute on function public.maxcore_schema_version() to authenticated, service_role;
