{#- Uniqueness of a column combination (as dbt_utils has it; we ship no packages so that
    `dbt deps` never needs the internet). -#}
{% test unique_combination_of_columns(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_found
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
