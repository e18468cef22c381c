-- The key sets of the month aggregates over int_customer_segments_monthly (macros/incremental.sql, "Key
-- sets"), computed just before their incremental builds: per aggregate (model_name), the months its ledger
-- int_customer_segments_monthly__changed_months lists since that aggregate's last build (entries after
-- the newest ledger_through in its rows; macros/segments.sql). int_cohort_segment_retention also
-- recomputes every month of a cohort whose own month is listed. No rows for an aggregate whose build is
-- a full one (no table yet, --full-refresh).
-- The ledger is appended to by the post-hook of int_customer_segments_monthly: built after it.
-- depends_on: {{ ref('int_customer_segments_monthly') }}
{%- set ledger = growth_changed_months_ledger() %}
{%- set aggregates = [] %}
{%- for name in ['int_segment_mrr_monthly', 'int_cohort_segment_retention'] %}
{%- set previous = previous_build_of(name) %}
{%- if previous is not none %}{% do aggregates.append((name, previous)) %}{% endif %}
{%- endfor %}

with

{% for name, previous in aggregates -%}
{{ name }}_months as (
    select distinct
        '{{ name }}'::text as model_name,
        month
    from {{ ledger }}
    where changed_at > (select coalesce(max(ledger_through), '-infinity') from {{ previous }})
),

{% endfor -%}
final as (
    {%- for name, previous in aggregates %}
    select * from {{ name }}_months
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    -- full builds: none
    select
        null::text as model_name,
        null::date as month
    where false
    {%- endfor %}
)

select * from final
