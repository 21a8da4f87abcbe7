// What a reader of the views may see (docs/security.md, "Monitors see metadata, not data"):
//   pg_sync._sees_data()          the calling role (current_user) is a member of pgsync_admin
//                                 (superusers are members of every role)
//   pg_sync._error_class(message) the text before the first ': ' ("HTTP 500", "timeout"): the
//                                 rest can quote row data
//   pg_sync._shown_error(message) the whole message for those who see data, its class otherwise
// The views call them once per row (recent_attempts: up to pg_sync.recent_attempts_size rows), so
// they are C: as SQL functions with a pinned search_path (never inlined) they cost about 20 us a
// row, 19 ms for a ring of 1000 attempts.
//
// C-style: no object with a destructor in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_sees_data);
PG_FUNCTION_INFO_V1(pg_sync_error_class);
PG_FUNCTION_INFO_V1(pg_sync_shown_error);
}

namespace {

bool sees_data() {
    const Oid admin = get_role_oid("pgsync_admin", true);
    return OidIsValid(admin) && is_member_of_role(GetUserId(), admin);
}

// The class of a message: up to its first ": " (all of it when there is none).
text *error_class(text *message) {
    const char *s = VARDATA_ANY(message);
    const int len = int(VARSIZE_ANY_EXHDR(message));
    for (int i = 0; i + 1 < len; ++i)
        if (s[i] == ':' && s[i + 1] == ' ')
            return cstring_to_text_with_len(s, i);
    return message;
}

} // namespace

extern "C" Datum pg_sync_sees_data(PG_FUNCTION_ARGS) { PG_RETURN_BOOL(sees_data()); }

extern "C" Datum pg_sync_error_class(PG_FUNCTION_ARGS) {
    PG_RETURN_TEXT_P(error_class(PG_GETARG_TEXT_P(0)));
}

extern "C" Datum pg_sync_shown_error(PG_FUNCTION_ARGS) {
    text *message = PG_GETARG_TEXT_P(0);
    PG_RETURN_TEXT_P(sees_data() ? message : error_class(message));
}
