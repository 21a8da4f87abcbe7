# pg_sync — PGXS build. EXTVERSION is the one version source: the control file is generated
# from it and the install script is sql/pg_sync--$(EXTVERSION).sql.
EXTENSION   = pg_sync
EXTVERSION  = 0.1.0

MODULE_big  = pg_sync
OBJS        = src/pg/module.o src/pg/guard.o src/pg/capture_trigger.o src/pg/sql_api.o \
              src/pg/launcher.o src/pg/delivery_worker.o src/pg/backfill_worker.o \
              src/core/validate.o src/core/retry_policy.o src/core/scheduler.o src/core/envelope.o \
              src/core/signature.o src/core/http_client.o src/core/dispatcher.o

DATA        = sql/pg_sync--$(EXTVERSION).sql
DATA_built  = pg_sync.control
EXTRA_CLEAN = pg_sync.control results regression.diffs regression.out tmp_check output_iso

# One regression file per feature (sql/NAME.sql -> expected/NAME.out). The temporary instance
# preloads the library; pg_regress must run as a non-root user (scripts/test.sh arranges it).
REGRESS      = endpoints track capture_types ddl privileges bad_input emit views delivery dead_letters health \
               backfill recent_attempts hostile_input privileges_hostile
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=test/regress.conf
ISOLATION      = concurrent_capture concurrent_track concurrent_endpoint concurrent_pause concurrent_redeliver
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=test/regress.conf

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -DPG_SYNC_VERSION='"$(EXTVERSION)"'
PG_CXXFLAGS = -std=c++17 -Wno-register -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK  = -lstdc++ -lcurl -lcrypto

# CI and scripts/test.sh build with WERROR=1.
ifdef WERROR
PG_CXXFLAGS += -Werror
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# LLVM bitcode for JIT inlining: clang needs the same C++ dialect.
BITCODE_CXXFLAGS += -std=c++17 -Wno-register

pg_sync.control: pg_sync.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/' $< > $@
