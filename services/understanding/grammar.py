"""The grammar's rules in the order they run.

Order matters: a rule consumes its phrase so later, looser rules cannot misread it. Verb phrases first
("copy over" is not the comparison "over"; "keep ... in sync with" fixes the sides); streaming bounds before
schedules ("every 10 seconds"); dates before top-N and schedules ("the last 30 days" is neither a top-N nor
"daily"); incremental before aggregates ("(by updated_at)"); joins before aggregates ("by customer_id" is a
key, not a group); aggregates before schedules ("monthly revenue") and before top-N ("count per city, top
5" ranks the counts); where-chains ("where a is missing and b > 5") whole, then word-level filters (nulls, amounts,
status lists), then the operator filters;
column selection after every filter ("only paid orders" is a filter, "only id and email" a selection);
what is moved ("order lines") last, from what no rule took in the verb's object slot.
"""
from __future__ import annotations

from .dates import scan_dates
from .operations import scan_aggregates, scan_cleaning, scan_filters, scan_pii, scan_quality
from .predicates import (scan_comparisons, scan_contains, scan_counted, scan_durations, scan_null_filters,
                         scan_parenthesised_filters, scan_status_lists, scan_where_clauses)
from .rules import scan_incremental, scan_load_mode, scan_streaming, scan_triggers
from .schedule import scan_cron_literals, scan_schedules_en, scan_schedules_ru, scan_timezone
from .shaping import scan_joins, scan_order, scan_rename, scan_select, scan_top_n
from .verbs import scan_file_words, scan_moved_nouns, scan_na_markers, scan_verb_phrases, scan_verb_typos

RULES = (scan_cron_literals, scan_verb_typos, scan_verb_phrases, scan_na_markers, scan_streaming, scan_triggers, scan_incremental, scan_dates,
         scan_load_mode, scan_joins, scan_pii, scan_cleaning, scan_quality, scan_aggregates, scan_top_n,
         scan_order, scan_rename, scan_schedules_en, scan_schedules_ru, scan_timezone, scan_durations, scan_counted,
         scan_parenthesised_filters, scan_where_clauses, scan_contains, scan_null_filters, scan_status_lists,
         scan_comparisons, scan_filters, scan_select, scan_file_words, scan_moved_nouns)
