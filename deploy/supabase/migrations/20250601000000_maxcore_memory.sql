-- maxcore memory store: conversation memory, sessions, audit log, effects journal.
--
-- Every row carries tenant_id (not null) and every index is led by it. Row Level
-- Security is enabled *and forced* on every table; role `authenticated` sees and
-- writes only the rows of the tenant named by the JWT claim app_metadata.tenant_id
-- (set by the service side, never user_metadata which users can edit). The claim is
-- read through `(select auth.jwt() ...)` so Postgres evaluates it once per statement
-- (an InitPlan) instead of once per row.
--
-- The service key (role service_role) bypasses RLS: in that mode the backend adds
-- the tenant filter itself. Grants are not the isolation, RLS is.
--
-- Idempotent: safe to apply twice (if not exists, drop policy if exists, create or replace).

create table if not exists public.tenant_memory (
    tenant_id   text        not null check (tenant_id <> ''),
    chat_id     text        not null,
    key         text        not null,
    value       jsonb       not null,
    updated_at  timestamptz not null default now(),
    constraint tenant_memory_pkey primary key (tenant_id, chat_id, key)
);

create table if not exists public.sessions (
    tenant_id   text        not null check (tenant_id <> ''),
    chat_id     text        not null,
    history     jsonb       not null default '[]'::jsonb,  -- last N turns, oldest first
    summary     text,
    updated_at  timestamptz not null default now(),
    constraint sessions_pkey primary key (tenant_id, chat_id)
);

create table if not exists public.max_logs (
    -- The client generates the id so that a retried insert is a no-op (on conflict do nothing).
    id          uuid        not null default gen_random_uuid(),
    seq         bigint      generated always as identity,   -- insertion order (ties on created_at)
    tenant_id   text        not null check (tenant_id <> ''),
    action      text        not null,
    details     jsonb       not null default '{}'::jsonb,
    message_id  text,
    chat_hash   text,                                       -- never the raw chat id
    created_at  timestamptz not null default now(),
    constraint max_logs_pkey primary key (id)
);
create index if not exists max_logs_tenant_created on public.max_logs (tenant_id, created_at, seq);
create index if not exists max_logs_tenant_action on public.max_logs (tenant_id, action, created_at);

create table if not exists public.processed_messages (
    tenant_id   text        not null check (tenant_id <> ''),
    key         text        not null,
    state       text        not null default 'done',
    result      jsonb       not null default '{}'::jsonb,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint processed_messages_pkey primary key (tenant_id, key)
);

-- Row Level Security, forced so that even the table owner's sessions obey it.
alter table public.tenant_memory      enable row level security;
alter table public.tenant_memory      force  row level security;
alter table public.sessions           enable row level security;
alter table public.sessions           force  row level security;
alter table public.max_logs           enable row level security;
alter table public.max_logs           force  row level security;
alter table public.processed_messages enable row level security;
alter table public.processed_messages force  row level security;

drop policy if exists tenant_isolation on public.tenant_memory;
create policy tenant_isolation on public.tenant_memory
    for all to authenticated
    using      (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'))
    with check (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'));

drop policy if exists tenant_isolation on public.sessions;
create policy tenant_isolation on public.sessions
    for all to authenticated
    using      (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'))
    with check (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'));

drop policy if exists tenant_isolation on public.processed_messages;
create policy tenant_isolation on public.processed_messages
    for all to authenticated
    using      (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'))
    with check (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'));

-- max_logs is append-only: read and insert policies only, no update/delete grants.
drop policy if exists tenant_read on public.max_logs;
create policy tenant_read on public.max_logs
    for select to authenticated
    using (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'));
drop policy if exists tenant_append on public.max_logs;
create policy tenant_append on public.max_logs
    for insert to authenticated
    with check (tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'));

-- Grants. Supabase's default privileges give anon/authenticated/service_role ALL on
-- new tables; we state what each role needs and take the rest back.
revoke all on public.tenant_memory, public.sessions, public.max_logs, public.processed_messages
    from anon;
grant select, insert, update, delete
    on public.tenant_memory, public.sessions, public.processed_messages
    to authenticated, service_role;
revoke all on public.max_logs from authenticated, service_role;
grant select, insert on public.max_logs to authenticated, service_role;

-- Lets the backend check, through the API, that this migration is applied.
create or replace function public.maxcore_schema_version()
returns integer
language sql
stable
security invoker
set search_path = ''
as $$ select 1 $$;
revoke all on function public.maxcore_schema_version() from public, anon;
grant execute on function public.maxcore_schema_version() to authenticated, service_role;
