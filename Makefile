# pg_sync — PGXS build. EXTVERSION is the one version source: the control file is generated
# from it and the install script is sql/pg_sync--$(EXTVERSION).sql.
EXTENSION   = pg_sync
EXTVERSION  = 0.3.0

MODULE_big  = pg_sync
OBJS        = src/pg/module.o src/pg/guard.o src/pg/capture_trigger.o src/pg/sql_api.o \
              src/pg/launcher.o src/pg/delivery_worker.o src/pg/delivery_loop.o src/pg/delivery_pass.o src/pg/queue_store.o \
              src/pg/backfill_worker.o src/pg/replicated_changes.o \
              src/core/validate.o src/core/retry_policy.o src/core/scheduler.o src/core/envelope.o \
              src/core/signature.o src/core/http_client.o src/core/dispatcher.o src/core/payload_gate.o \
              src/core/head_cache.o src/core/worker_policy.o

# Install scripts of every version (pg_sync--V.sql) and the updates between them (pg_sync--A--B.sql).
DATA        = $(wildcard sql/pg_sync--*.sql)
DATA_built  = pg_sync.control
EXTRA_CLEAN = pg_sync.control results regression.diffs regression.out tmp_check output_iso

# One regression file per feature (sql/NAME.sql -> expected/NAME.out). The temporary instance
# preloads the library; pg_regress must run as a non-root user (scripts/test.sh arranges it).
REGRESS      = endpoints track capture_types ddl privileges bad_input emit views delivery dead_letters health \
               backfill recent_attempts hostile_input privileges_hostile security
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

# SANITIZE=1: AddressSanitizer and UBSan (any UB report is fatal). The server must then run with
# LD_PRELOAD of libasan; scripts/test.sh sanitize builds this in a copy of the tree and installs it
# into a private, relocated copy of the PostgreSQL installation (never into the shared pkglibdir).
ifdef SANITIZE
PG_CXXFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SHLIB_LINK  += -fsanitize=address,undefined
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# LLVM bitcode for JIT inlining: clang needs the same C++ dialect.
BITCODE_CXXFLAGS += -std=c++17 -Wno-register

pg_sync.control: pg_sync.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/' $< > $@
