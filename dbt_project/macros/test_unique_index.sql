{#- The primary key of a large incremental table whose uniqueness a unique index enforces on every write
    (stg_stripe__invoices, int_customer_mrr_monthly, ...): fails, without scanning the table, when the
    table has no valid unique index on exactly `columns`. With not_null on each column, the key's test;
    a unique test would group millions of rows every night to find what the index already refuses. -#}
{% test unique_index(model, columns) %}
select '{{ columns | join(", ") }}' as missing_unique_index
where not exists (
    select 1
    from pg_index as indexes
    where
        indexes.indrelid = '"{{ model.schema }}"."{{ model.identifier }}"'::regclass
        and indexes.indisunique
        and indexes.indisvalid
        and indexes.indpred is null
        and indexes.indexprs is null
        and (
            select array_agg(attributes.attname::text order by keys.position)
            from unnest(indexes.indkey::int2[]) with ordinality as keys (attnum, position)
            inner join pg_attribute as attributes
                on attributes.attrelid = indexes.indrelid and attributes.attnum = keys.attnum
        ) = array[{% for column in columns %}'{{ column }}'{% if not loop.last %}, {% endif %}{% endfor %}]::text[]
)
{% endtest %}
