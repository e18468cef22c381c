{#- Money is converted from Stripe's minor units exactly once, here.
    Zero-decimal currencies (JPY, KRW, ...) are already in major units. -#}
{% macro zero_decimal_currencies() -%}
    ('bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf')
{%- endmacro %}

{% macro cents_to_major(amount, currency) -%}
    {{ return(adapter.dispatch('cents_to_major', 'saas_metrics')(amount, currency)) }}
{%- endmacro %}

{% macro default__cents_to_major(amount, currency) -%}
    (case
        when lower({{ currency }}) in {{ saas_metrics.zero_decimal_currencies() }} then ({{ amount }})::numeric
        else ({{ amount }})::numeric / 100
    end)
{%- endmacro %}

{#- How many of a price's billing periods fit in a month (METRICS.md "Normalising to a month"). -#}
{% macro monthly_factor(interval, interval_count) -%}
    (case {{ interval }}
        when 'month' then 1::numeric / {{ interval_count }}
        when 'year' then 1::numeric / (12 * {{ interval_count }})
        when 'week' then 52::numeric / (12 * {{ interval_count }})
        when 'day' then 365::numeric / (12 * {{ interval_count }})
    end)
{%- endmacro %}

{#- "Now" for the MRR engine: the as_of var, or when the build started (one instant for every model of a
    build, even one that runs past midnight). -#}
{% macro as_of_timestamp() -%}
    {%- if var('as_of') is none -%}
        '{{ run_started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") }}'::timestamptz
    {%- else -%}
        '{{ var("as_of") }}'::timestamptz
    {%- endif -%}
{%- endmacro %}

{#- Whole calendar months from the month of `earlier` to the month of `later` (both dates). -#}
{% macro months_between(earlier, later) -%}
    ((extract(year from {{ later }}) - extract(year from {{ earlier }})) * 12
        + extract(month from {{ later }}) - extract(month from {{ earlier }}))::int
{%- endmacro %}

{% macro from_unix(column) -%}
    to_timestamp(({{ column }})::bigint)
{%- endmacro %}

{#- The average length of a billing interval, for scaling a prorated amount without a unit price. -#}
{% macro average_interval_seconds(interval, interval_count) -%}
    ({{ interval_count }} * 86400 * case {{ interval }}
        when 'month' then 30.436875
        when 'year' then 365.2425
        when 'week' then 7
        when 'day' then 1
    end)
{%- endmacro %}

{#- METRICS.md "Currencies": the rate from `currency` into the reporting currency (var reporting_currency):
    1 for the reporting currency itself, else `rate` (a joined int_fx_rates_daily.rate), null for a currency
    the fx_rates seed has no rate for: every amount converted with it is null, so sums leave it out
    (the fx_rates_cover_every_currency check names the currency and its customers). -#}
{% macro fx_rate(currency, rate) -%}
    (case when {{ currency }} = lower('{{ var("reporting_currency") }}') then 1::numeric else {{ rate }} end)
{%- endmacro %}
