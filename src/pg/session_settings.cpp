// The settings and the rights under which capture runs code: a filter is parsed and run under
// the session settings recorded from its author's track() call, with its author's rights,
// security-restricted, and search_path = pg_catalog; keys are rendered under fixed (canonical)
// settings. Each helper applies something until its matching leave_*/pop_*; an error in
// between is cleaned up by the (sub)transaction's abort.
//
// C-style: no object with a destructor lives in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_session_settings);
}

#include "pg/capture_internal.hpp"

namespace pg_sync::pg::capture {
namespace {

// A filter is parsed and run under these settings as recorded from the session that called
// track() (pg_sync._session_settings()), so that the same row gets the same answer in every
// session: they change how literals are read (standard_conforming_strings, DateStyle,
// IntervalStyle), how values convert (TimeZone, lc_monetary, lc_numeric, xmloption) and how
// values turn into text (extra_float_digits, bytea_output). (search_path is pinned to
// pg_catalog on its own.)
const char *const kRecordedSettings[] = {"DateStyle",          "IntervalStyle", "TimeZone",
                                        "standard_conforming_strings", "extra_float_digits",
                                        "bytea_output",       "xmloption",     "lc_monetary",
                                        "lc_numeric"};
constexpr int kNumRecordedSettings = lengthof(kRecordedSettings);

// Keys are rendered the same whatever the writer's session (per-key order is decided on the key
// text): the common key types have a fixed rendering here (timestamptz in UTC, floats shortest
// exact); any other key column goes through to_json under these settings.
const char *const kCanonicalNames[] = {"TimeZone",     "DateStyle",   "IntervalStyle", "extra_float_digits",
                                       "bytea_output", "lc_monetary", "xmloption"};
const char *const kCanonicalValues[] = {"UTC", "ISO, YMD", "postgres", "1", "hex", "C", "content"};
constexpr int kNumCanonical = lengthof(kCanonicalNames);

// Filters and keys see only pg_catalog: NEW and OLD, constants, operators and functions.
struct OverrideSearchPath catalog_search_path = {NIL, true, false, 0};

} // namespace

// Applies the given settings (only those that differ from the current values) until
// leave_settings(nest), which undoes them and anything the code run in between set (a filter's
// set_config(..., false) must not outlive it: it would change the writer's session, or the
// worker's pinned search_path). An error in between is cleaned up by the (sub)transaction's abort.
int enter_settings(int n, const char *const *names, const char *const *values) {
    const int nest = NewGUCNestLevel();
    for (int i = 0; i < n; ++i) {
        const char *current = GetConfigOption(names[i], true, false);
        if (!current || strcmp(current, values[i]) != 0)
            (void)set_config_option(names[i], values[i], PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
                                    false);
    }
    return nest;
}

void leave_settings(int nest) { AtEOXact_GUC(false, nest); }

int enter_canonical_settings() { return enter_settings(kNumCanonical, kCanonicalNames, kCanonicalValues); }

void push_catalog_search_path() { PushOverrideSearchPath(&catalog_search_path); }
void pop_catalog_search_path() { PopOverrideSearchPath(); }

// Runs as `role`, security-restricted (no SET ROLE, no session state changes), until
// leave_role(). An error in between is cleaned up by the (sub)transaction's abort.
SavedUser enter_role(Oid role) {
    SavedUser saved;
    GetUserIdAndSecContext(&saved.user, &saved.context);
    SetUserIdAndSecContext(role, saved.context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    return saved;
}
void leave_role(SavedUser saved) { SetUserIdAndSecContext(saved.user, saved.context); }

// "name=value" elements of a text[] (pg_sync._session_settings()) -> two arrays, in the
// current memory context.
void split_settings(Datum array, int *n, char ***names, char ***values) {
    Datum *elems;
    bool *nulls;
    int count;
    deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &count);
    *names = static_cast<char **>(palloc(sizeof(char *) * Max(count, 1)));
    *values = static_cast<char **>(palloc(sizeof(char *) * Max(count, 1)));
    *n = 0;
    for (int i = 0; i < count; ++i) {
        if (nulls[i])
            continue;
        char *item = TextDatumGetCString(elems[i]);
        char *eq = strchr(item, '=');
        if (!eq)
            continue;
        *eq = '\0';
        (*names)[*n] = item;
        (*values)[*n] = eq + 1;
        ++*n;
    }
}

} // namespace pg_sync::pg::capture

using namespace pg_sync::pg::capture;

// pg_sync._session_settings() RETURNS text[]: the settings a filter is recorded with
// (kRecordedSettings), as 'name=value' from the calling session.
extern "C" Datum pg_sync_session_settings(PG_FUNCTION_ARGS) {
    Datum elems[kNumRecordedSettings];
    for (int i = 0; i < kNumRecordedSettings; ++i)
        elems[i] = CStringGetTextDatum(
            psprintf("%s=%s", kRecordedSettings[i], GetConfigOption(kRecordedSettings[i], false, false)));
    PG_RETURN_ARRAYTYPE_P(construct_array(elems, kNumRecordedSettings, TEXTOID, -1, false, TYPALIGN_INT));
}
