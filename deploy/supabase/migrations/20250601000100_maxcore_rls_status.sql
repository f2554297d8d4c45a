-- Lets the backend (and `maxcore doctor`) check through the API that Row Level Security
-- is enabled, forced and has policies on every memory table. The API cannot read
-- pg_class otherwise; this function only reports catalogue facts, never rows.
-- Idempotent (create or replace).

create or replace function public.maxcore_rls_status()
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(c.relname, jsonb_build_object(
               'enabled', c.relrowsecurity,
               'forced', c.relforcerowsecurity,
               'policies', (select count(*) from pg_catalog.pg_policy p where p.polrelid = c.oid)
           )), '{}'::jsonb)
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public'
      and c.relkind = 'r'
      and c.relname in ('tenant_memory', 'sessions', 'max_logs', 'processed_messages')
$$;
revoke all on function public.maxcore_rls_status() from public, anon;
grant execute on function public.maxcore_rls_status() to authenticated, service_role;
