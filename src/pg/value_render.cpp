// How a column value becomes JSON text: to_json semantics, fast. For the common built-in types
// (after looking through domains) the value is rendered here, with PostgreSQL's own output
// functions (bool, integers, floats and numeric, text, bpchar/uuid, json/jsonb, date/timestamps
// through JsonEncodeDateTime); every other type goes through PostgreSQL's to_json, called with
// an fn_expr that tells it the column type. The JSON syntax (escaping, numbers, objects) comes
// from core/json_render.hpp, PostgreSQL-free and unit-tested. The regression test capture_types
// compares the result with row_to_json byte for byte.
//
// Keys are canonical: the same text for the same values in every session (render_key).
//
// C-style: no object with a destructor lives in these frames (see guard.hpp); JSON goes into
// a StringInfo through a sink with a trivial destructor.
#include "pg/pg_prelude.hpp"

#include "core/json_render.hpp"
#include "pg/capture_internal.hpp"

#include <cmath>

namespace pg_sync::pg::capture {
namespace {

namespace json = pg_sync::json;

// JSON output into a StringInfo (inline: a row is a dozen small appends; the text is used as a
// varlena, never as a C string, so no terminating NUL is kept up to date).
struct StringInfoSink {
    StringInfo si;
    void append(const char *p, std::size_t n) {
        if (static_cast<std::size_t>(si->maxlen - si->len) <= n)
            enlargeStringInfo(si, static_cast<int>(n));
        memcpy(si->data + si->len, p, n);
        si->len += static_cast<int>(n);
    }
    void push(char c) {
        if (si->len + 1 >= si->maxlen)
            enlargeStringInfo(si, 1);
        si->data[si->len++] = c;
    }
};

void render_value(StringInfoSink &sink, const ColumnPlan *col, Datum value, bool isnull) {
    if (isnull) {
        sink.append("null", 4);
        return;
    }
    char buf[MAXDATELEN + 32];
    switch (col->kind) {
    case RenderKind::Bool:
        if (DatumGetBool(value))
            sink.append("true", 4);
        else
            sink.append("false", 5);
        break;
    case RenderKind::Int2: sink.append(buf, pg_itoa(DatumGetInt16(value), buf)); break;
    case RenderKind::Int4: sink.append(buf, pg_ltoa(DatumGetInt32(value), buf)); break;
    case RenderKind::Int8: sink.append(buf, pg_lltoa(DatumGetInt64(value), buf)); break;
    case RenderKind::NumberOut: {
        if (col->canonical && (col->base_type == FLOAT8OID || col->base_type == FLOAT4OID)) {
            // Shortest exact digits, as float8out with extra_float_digits > 0 (the default).
            const double d = col->base_type == FLOAT8OID ? DatumGetFloat8(value) : DatumGetFloat4(value);
            if (std::isnan(d))
                json::append_number_text(sink, "NaN", 3);
            else if (std::isinf(d))
                d > 0 ? json::append_number_text(sink, "Infinity", 8) : json::append_number_text(sink, "-Infinity", 9);
            else
                sink.append(buf, col->base_type == FLOAT8OID ? double_to_shortest_decimal_buf(d, buf)
                                                             : float_to_shortest_decimal_buf(float(d), buf));
            break;
        }
        char *s = OutputFunctionCall(const_cast<FmgrInfo *>(&col->fn), value);
        json::append_number_text(sink, s, strlen(s));
        break;
    }
    case RenderKind::Text: {
        text *t = DatumGetTextPP(value);
        json::append_string(sink, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
        break;
    }
    case RenderKind::StringOut: {
        char *s = OutputFunctionCall(const_cast<FmgrInfo *>(&col->fn), value);
        json::append_string(sink, s, strlen(s));
        break;
    }
    case RenderKind::RawOut: {
        char *s = OutputFunctionCall(const_cast<FmgrInfo *>(&col->fn), value);
        sink.append(s, strlen(s));
        break;
    }
    case RenderKind::DateTime: {
        // A key's timestamptz in UTC ("+00:00"), not in the writer's TimeZone. The text depends
        // on the value and, for other timestamptz, on the session's time zone only: the last
        // one is kept.
        const pg_tz *tz = col->base_type == TIMESTAMPTZOID && !col->canonical ? session_timezone : nullptr;
        if (!col->has_last || col->last_value != value || col->last_tz != tz) {
            static const int utc = 0;
            JsonEncodeDateTime(col->last_text, value, col->base_type, col->canonical ? &utc : nullptr);
            col->last_len = static_cast<int>(strlen(col->last_text));
            col->last_value = value;
            col->last_tz = tz;
            col->has_last = true;
        }
        sink.push('"');
        sink.append(col->last_text, col->last_len);
        sink.push('"');
        break;
    }
    case RenderKind::ToJson: {
        text *t = DatumGetTextPP(FunctionCall1(const_cast<FmgrInfo *>(&col->fn), value));
        sink.append(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
        break;
    }
    }
}

} // namespace

void plan_rendering(ColumnPlan *col, Form_pg_attribute att, MemoryContext cxt, bool canonical) {
    col->attnum = att->attnum;
    col->canonical = canonical;
    {
        StringInfoData key;
        initStringInfo(&key);
        StringInfoSink sink{&key};
        const char *name = NameStr(att->attname);
        json::append_string(sink, name, strlen(name));
        appendStringInfoChar(&key, ':');
        col->key = key.data;
        col->key_len = key.len;
    }
    col->byval = att->attbyval;
    col->typlen = att->attlen;
    Oid base = getBaseType(att->atttypid);
    col->base_type = base;
    Oid outfn = InvalidOid;
    bool varlena = false;
    switch (base) {
    case BOOLOID: col->kind = RenderKind::Bool; break;
    case INT2OID: col->kind = RenderKind::Int2; break;
    case INT4OID: col->kind = RenderKind::Int4; break;
    case INT8OID: col->kind = RenderKind::Int8; break;
    case FLOAT4OID:
    case FLOAT8OID:
    case NUMERICOID: col->kind = RenderKind::NumberOut; break;
    case TEXTOID:
    case VARCHAROID: col->kind = RenderKind::Text; break;
    case BPCHAROID:
    case UUIDOID: col->kind = RenderKind::StringOut; break;
    case JSONOID:
    case JSONBOID: col->kind = RenderKind::RawOut; break;
    case DATEOID:
    case TIMESTAMPOID:
    case TIMESTAMPTZOID: col->kind = RenderKind::DateTime; break;
    default: col->kind = RenderKind::ToJson; break;
    }
    switch (col->kind) {
    case RenderKind::NumberOut:
    case RenderKind::StringOut:
    case RenderKind::RawOut:
        getTypeOutputInfo(base, &outfn, &varlena);
        fmgr_info_cxt(outfn, &col->fn, cxt);
        break;
    case RenderKind::ToJson: {
        // to_json looks at its argument's declared type through fn_expr.
        fmgr_info_cxt(F_TO_JSON, &col->fn, cxt);
        Node *arg = reinterpret_cast<Node *>(makeNullConst(att->atttypid, att->atttypmod, att->attcollation));
        Node *call = reinterpret_cast<Node *>(makeFuncExpr(F_TO_JSON, JSONOID, list_make1(arg), InvalidOid,
                                                           InvalidOid, COERCE_EXPLICIT_CALL));
        fmgr_info_set_expr(call, &col->fn);
        break;
    }
    default: break;
    }
}

// Renders the listed columns of a deformed slot as a JSON object, returned as a json datum.
Datum render_object(const ColumnPlan *cols, int ncols, TupleTableSlot *slot) {
    StringInfoData buf;
    initStringInfo(&buf);
    appendStringInfoSpaces(&buf, VARHDRSZ); // room for the varlena header
    StringInfoSink sink{&buf};
    json::ObjectWriter<StringInfoSink> obj(sink);
    for (int i = 0; i < ncols; ++i) {
        const ColumnPlan *col = &cols[i];
        obj.raw_key(col->key, col->key_len);
        render_value(sink, col, slot->tts_values[col->attnum - 1], slot->tts_isnull[col->attnum - 1]);
    }
    obj.finish();
    SET_VARSIZE(buf.data, buf.len);
    return PointerGetDatum(buf.data);
}

// The key of a row: the same text for the same values in every session.
Datum render_key(const EndpointPlan *ep, TupleTableSlot *slot) {
    if (!ep->keys_need_settings)
        return render_object(ep->keys, ep->nkeys, slot);
    // (search_path too: regclass and the other reg* types print names relative to it.)
    const int nest = enter_canonical_settings();
    push_catalog_search_path();
    const Datum key = render_object(ep->keys, ep->nkeys, slot);
    pop_catalog_search_path();
    leave_settings(nest);
    return key;
}

} // namespace pg_sync::pg::capture
