# pg_sync — PGXS build. EXTVERSION is the one version source: the control file, the install
# script sql/pg_sync--$(EXTVERSION).sql and the update scripts are generated from it (below).
EXTENSION   = pg_sync
EXTVERSION  = 0.3.0

MODULE_big  = pg_sync
OBJS        = src/pg/module.o src/pg/settings.o src/pg/hooks.o src/pg/shared_slots.o src/pg/wakeups.o \
              src/pg/launcher.o src/pg/utility_commands.o src/pg/guard.o src/pg/sql_api.o src/pg/sql_endpoint_auth.o src/pg/shown_data.o \
              src/pg/capture_trigger.o src/pg/capture_plans.o src/pg/capture_filter.o src/pg/value_render.o \
              src/pg/session_settings.o src/pg/queue_writer.o src/pg/queue_counters.o \
              src/pg/delivery_worker.o src/pg/delivery_loop.o src/pg/delivery_pass.o src/pg/queue_store.o \
              src/pg/delivery_rotation.o src/pg/queue_rotation.o \
              src/pg/backfill_worker.o src/pg/replicated_changes.o \
              src/core/validate.o src/core/retry_policy.o src/core/scheduler.o src/core/envelope.o src/core/cloudevents.o \
              src/core/signature.o src/core/http_client.o src/core/dispatcher.o src/core/payload_gate.o \
              src/core/head_cache.o src/core/worker_policy.o src/core/queue_rotation.o src/core/pending_counts.o \
              src/core/kafka_config.o src/core/kafka_records.o src/core/kafka_sink.o src/core/sink_router.o \
              src/core/rate_limit.o src/core/tls_config.o src/core/oauth2.o src/core/oauth2_sink.o

# SQL scripts, generated (build outputs, never committed or edited; see "SQL scripts" below):
#   sql/pg_sync--$(EXTVERSION).sql       install: SQL_ONCE_FIRST + SQL_DEFINITIONS + SQL_ONCE_LAST
#   sql/pg_sync--V--$(EXTVERSION).sql    direct update from every earlier version V: the deltas
#                                        sql/updates/V--...sql up to $(EXTVERSION), in order, then
#                                        SQL_DEFINITIONS again, then the COMMENT ON statements of
#                                        SQL_ONCE_FIRST
# Every function and view is written once, in sql/src/, as CREATE OR REPLACE. What cannot be run
# twice (CREATE SCHEMA/TABLE/EVENT TRIGGER) is in the SQL_ONCE files; an update does it in its delta.
# sql/released/ holds the install scripts of released versions, frozen (SHA256SUMS), so that
# CREATE EXTENSION ... VERSION 'V' still works (test/180_upgrade.sh updates from each of them).
SQL_ONCE_FIRST  = sql/src/schema.sql sql/src/tables.sql
SQL_DEFINITIONS = sql/src/library.sql sql/src/queue.sql sql/src/helpers.sql sql/src/endpoints.sql sql/src/tracking.sql \
                  sql/src/dead_letters.sql sql/src/backfill.sql sql/src/health.sql sql/src/emit.sql \
                  sql/src/ddl.sql sql/src/replication.sql sql/src/counters.sql sql/src/views.sql \
                  sql/src/queue_migration.sql \
                  sql/src/privileges.sql
SQL_ONCE_LAST   = sql/src/event_triggers.sql sql/src/start.sql
SQL_DELTAS      = $(wildcard sql/updates/*--*.sql)
SQL_EARLIER     = $(foreach d,$(SQL_DELTAS),$(firstword $(subst --, ,$(notdir $(d)))))
SQL_INSTALL     = sql/pg_sync--$(EXTVERSION).sql
SQL_UPDATES     = $(foreach v,$(SQL_EARLIER),sql/pg_sync--$(v)--$(EXTVERSION).sql)

# Released install scripts are kept compressed (release artifacts, never edited; SHA256SUMS is of
# the scripts themselves); make decompresses them next to the archives.
SQL_RELEASED = $(patsubst %.sql.gz,%.sql,$(wildcard sql/released/pg_sync--*.sql.gz))
DATA_built  = pg_sync.control $(SQL_INSTALL) $(SQL_UPDATES) $(SQL_RELEASED)
EXTRA_CLEAN = pg_sync.control $(OBJS:.o=.d) results regression.diffs regression.out tmp_check tmp_check_iso output_iso

# Tests live under test/: one regression file per feature (test/sql/NAME.sql ->
# test/expected/NAME.out), isolation specs (test/specs/NAME.spec -> test/expected/NAME.out).
# Results go to results/ and output_iso/ at the top.
#   make installcheck   against a running server (PGHOST, PGPORT, PGUSER), as every PGXS
#                       extension; the server must run with the settings of test/regress.conf
#                       (shared_preload_libraries = 'pg_sync', pg_sync.max_workers = 0)
#   make check-temp     the same suites in temporary instances (tmp_check/, tmp_check_iso/) with
#                       test/regress.conf; initdb refuses root (scripts/test.sh runs it as postgres)
REGRESS      = endpoints track bulk_capture capture_types ddl privileges bad_input emit views delivery dead_letters health \
               backfill recent_attempts hostile_input privileges_hostile security kafka endpoint_features endpoint_auth
ISOLATION      = concurrent_capture concurrent_track concurrent_endpoint concurrent_pause concurrent_redeliver
TEMP_INSTANCE  = $(if $(CHECK_TEMP),--temp-instance=$(1) --temp-config=test/regress.conf)
REGRESS_OPTS   = --inputdir=test $(call TEMP_INSTANCE,tmp_check)
ISOLATION_OPTS = --inputdir=test $(call TEMP_INSTANCE,tmp_check_iso)

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -DPG_SYNC_VERSION='"$(EXTVERSION)"'
PG_CXXFLAGS = -std=c++17 -Wno-register -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
# Header dependencies: each object also writes NAME.d (the headers it included), read back below,
# so that a changed header rebuilds every object that uses it (a stale object once crashed tests).
PG_CXXFLAGS += -MMD -MP
SHLIB_LINK  = -lstdc++ -lcurl -lcrypto -lrdkafka

# CI and scripts/test.sh build with WERROR=1.
ifdef WERROR
PG_CXXFLAGS += -Werror
endif

# SANITIZE=1: AddressSanitizer and UBSan (any UB report is fatal). The server must then run with
# LD_PRELOAD of libasan; scripts/test.sh sanitize builds this in a copy of the tree and installs it
# into a private, relocated copy of the PostgreSQL installation (never into the shared pkglibdir).
ifdef SANITIZE
PG_CXXFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SHLIB_LINK  += -fsanitize=address,undefined
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

-include $(OBJS:.o=.d)
# An object built by an older Makefile (from before the .d files: a stale object with an old
# struct layout crashed a benchmark's backend) is built again. Flags given on the command line
# (WERROR, SANITIZE) or another PG_CONFIG are not tracked: `make clean` first.
$(OBJS): Makefile

# (after PGXS: the first target is the default goal, all)
.PHONY: check-temp
check-temp:
	$(MAKE) installcheck CHECK_TEMP=1

# LLVM bitcode for JIT inlining: clang needs the same C++ dialect.
BITCODE_CXXFLAGS += -std=c++17 -Wno-register

pg_sync.control: pg_sync.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/' $< > $@

# --- SQL scripts ---------------------------------------------------------------------------------
# Each part is preceded by a comment naming its source file.
sql_header = printf -- '-- %s\n-- Generated by make from sql/src/ and sql/updates/ (Makefile, SQL_*). Do not edit.\n%s\n'
# Endpoint defaults come from src/core/endpoint_defaults.hpp (@default:NAME@ in sql/src/).
sql_defaults = sed -n 's/^inline constexpr long \([a-z_]*\) = \([0-9]*\);.*/s|@default:\1@|\2|g/p' src/core/endpoint_defaults.hpp
sql_parts  = script=$$($(sql_defaults)); for f in $(1); do printf '\n-- ======== %s\n\n' "$$f"; sed -e "$$script" "$$f"; done
# The COMMENT ON statements of files an update does not run (SQL_ONCE_FIRST: the schema and the
# tables are described where they are created), so that an update describes them as an install does.
sql_comments = for f in $(1); do printf '\n-- ======== %s: its COMMENT ON statements\n\n' "$$f"; \
	  awk '/^COMMENT ON /{p=1} p{print} p&&/;$$/{p=0}' "$$f"; done

$(SQL_INSTALL): $(SQL_ONCE_FIRST) $(SQL_DEFINITIONS) $(SQL_ONCE_LAST) src/core/endpoint_defaults.hpp Makefile
	{ $(sql_header) 'pg_sync $(EXTVERSION) install script. Contract: docs/design.md and README.md.' \
	      '\echo Use "CREATE EXTENSION pg_sync" to load this file. \quit'; \
	  $(call sql_parts,$(SQL_ONCE_FIRST) $(SQL_DEFINITIONS) $(SQL_ONCE_LAST)); } >$@.tmp
	mv $@.tmp $@

# The deltas from V on form a chain V--A.sql, A--B.sql, ... up to EXTVERSION; each one runs
# against what the previous ones left (without the definitions of the versions in between).
sql/pg_sync--%--$(EXTVERSION).sql: $(SQL_DELTAS) $(SQL_DEFINITIONS) $(SQL_ONCE_FIRST) src/core/endpoint_defaults.hpp Makefile
	{ $(sql_header) 'pg_sync $* -> $(EXTVERSION) update script, run by ALTER EXTENSION pg_sync UPDATE.' \
	      '\echo Use "ALTER EXTENSION pg_sync UPDATE TO '"'"'$(EXTVERSION)'"'"'" to load this file. \quit'; \
	  v='$*' deltas=''; \
	  while [ "$$v" != '$(EXTVERSION)' ]; do \
	      d=$$(ls sql/updates/"$$v"--*.sql 2>/dev/null); \
	      [ "$$(echo "$$d" | wc -w)" -eq 1 ] || { echo "sql/updates: no single delta from $$v" >&2; exit 1; }; \
	      deltas="$$deltas $$d" v=$$(basename "$$d" .sql | sed 's/.*--//'); \
	  done; \
	  $(call sql_parts,$$deltas $(SQL_DEFINITIONS)); $(call sql_comments,$(SQL_ONCE_FIRST)); } >$@.tmp
	mv $@.tmp $@

$(SQL_RELEASED): sql/released/%.sql: sql/released/%.sql.gz
	gzip -dc $< >$@.tmp
	mv $@.tmp $@
sql/released/%.sql.gz: ; # sources (no rule makes them)

# The install scripts of released versions never change.
.PHONY: check-released-sql
check-released-sql: $(SQL_RELEASED)
	cd sql/released && sha256sum --quiet -c SHA256SUMS
