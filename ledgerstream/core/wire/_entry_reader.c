/* ledgerstream.core.wire._entry_reader: the verifier's compiled reader of canonical LedgerEntry
 * records (ledgerstream/core/wire/avro_fast.py, read_entry; docs/verifiers.md).
 *
 * read_entry(data) decodes a LedgerEntry single object written with the shipped schema in
 * canonical form (the rules of avro_fast.read_action: minimal varints, arrays as one block
 * plus the terminating zero, booleans 0/1, union indexes 0/1, `int` values within 32 bits,
 * strict UTF-8, no trailing bytes) into the dict fastavro would return, and writes the entry
 * hash preimage (records.entry_hash_input: TAG_ENTRY || the JCS text of the entry view) as
 * records.entry_hash_typed builds it. It returns (entry, preimage), or None for anything it
 * does not take: another schema, a non-canonical or corrupt body, or a string that JSON
 * would escape (a control character, '"' or '\'). The caller then decodes with codec and
 * hashes in Python, which also explains what is wrong. It never guesses.
 *
 * Why compiled: in a verifier worker, fastavro's generic decode and the Python JCS writer
 * took ~20 us of the ~30 us the checker's serial thread spends per 3.8 KB entry.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The single-object header (C3 01 + fingerprint): the caller, avro_fast.read_entry, has
 * checked that it names the LedgerEntry schema this reader implements (in either byte
 * order); the fingerprints are written in one place, avro_fast. */
#define HEADER_LEN 10
static const char TAG_ENTRY[] = "ledgerstream/v1/entry";  /* + its NUL byte: sizeof(TAG_ENTRY) bytes */

/* --- the output text ------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
} Out;

static int out_reserve(Out *o, size_t extra) {
    if (o->len + extra <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 2048;
    while (cap < o->len + extra) cap *= 2;
    char *buf = PyMem_Realloc(o->buf, cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = buf;
    o->cap = cap;
    return 0;
}

static int out_raw(Out *o, const char *s, size_t n) {
    if (out_reserve(o, n) < 0) return -1;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return 0;
}

#define OUT_LIT(o, lit) out_raw((o), (lit), sizeof(lit) - 1)

static int out_long(Out *o, int64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    return out_raw(o, tmp, (size_t)n);
}

static int out_hex(Out *o, const unsigned char *s, Py_ssize_t n) {
    static const char digits[] = "0123456789abcdef";
    if (out_reserve(o, 2 + 2 * (size_t)n) < 0) return -1;
    char *w = o->buf + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        *w++ = digits[s[i] >> 4];
        *w++ = digits[s[i] & 15];
    }
    *w++ = '"';
    o->len = (size_t)(w - o->buf);
    return 0;
}

/* --- reading (canonical forms only) --------------------------------------------------------
 * Every reader returns 0, or -1 to refuse the record: with a Python exception set only when
 * something really failed (out of memory), without one when the record is not taken. */

typedef struct {
    const unsigned char *d;
    Py_ssize_t n, p;
} Reader;

static int rd_long(Reader *r, int64_t *out) {
    uint64_t z = 0;
    Py_ssize_t start = r->p;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->n) return -1;
        unsigned char b = r->d[r->p++];
        if (shift == 63 && b > 1) return -1;          /* more than 64 bits */
        z |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            if (b == 0 && r->p - start > 1) return -1;  /* a redundant continuation */
            *out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            return 0;
        }
    }
    return -1;                                         /* longer than 10 bytes */
}

static int rd_int(Reader *r, int64_t *out) {
    if (rd_long(r, out) < 0 || *out < INT32_MIN || *out > INT32_MAX) return -1;
    return 0;
}

static int rd_span(Reader *r, const unsigned char **s, Py_ssize_t *len) {
    int64_t n;
    if (rd_long(r, &n) < 0 || n < 0 || n > r->n - r->p) return -1;
    *s = r->d + r->p;
    *len = (Py_ssize_t)n;
    r->p += (Py_ssize_t)n;
    return 0;
}

/* index of a ["null", X] union: 0 for null, 1 for X */
static int rd_branch(Reader *r, int *some) {
    if (r->p >= r->n) return -1;
    unsigned char b = r->d[r->p++];
    if (b != 0 && b != 2) return -1;
    *some = b == 2;
    return 0;
}

static PyObject *rd_bytes(Reader *r) {
    const unsigned char *s;
    Py_ssize_t n;
    if (rd_span(r, &s, &n) < 0) return NULL;
    return PyBytes_FromStringAndSize((const char *)s, n);
}

static PyObject *rd_str(Reader *r) {
    const unsigned char *s;
    Py_ssize_t n;
    if (rd_span(r, &s, &n) < 0) return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == '"' || s[i] == '\\') return NULL;  /* JSON would escape it */
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s, n, "strict");
    if (str == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
    return str;
}

static PyObject *rd_long_obj(Reader *r) {
    int64_t v;
    return rd_long(r, &v) < 0 ? NULL : PyLong_FromLongLong(v);
}

static PyObject *rd_int_obj(Reader *r) {
    int64_t v;
    return rd_int(r, &v) < 0 ? NULL : PyLong_FromLongLong(v);
}

static PyObject *rd_opt(Reader *r, PyObject *(*read)(Reader *)) {
    int some;
    if (rd_branch(r, &some) < 0) return NULL;
    if (!some) Py_RETURN_NONE;
    return read(r);
}

static PyObject *rd_opt_str(Reader *r) { return rd_opt(r, rd_str); }
static PyObject *rd_opt_bytes(Reader *r) { return rd_opt(r, rd_bytes); }
static PyObject *rd_opt_long(Reader *r) { return rd_opt(r, rd_long_obj); }

/* the field names, interned once */
enum {
    K_SPEC_VERSION, K_SEQ, K_PREV_HASH, K_ENTRY_HASH, K_ACTION, K_RECEIVED_AT, K_SOURCE, K_TOPIC,
    K_PARTITION, K_OFFSET, K_AGENT_SEQ, K_AGENT_PREV_HASH, K_RESOLVED_LINKS, K_AGENT_ID, K_EVENT_ID,
    K_STATUS, K_KEY_ID, K_SIGNATURE, K_TIMESTAMP_TOKEN, K_SESSION_ID, K_ACTION_TYPE, K_PAYLOAD,
    K_PAYLOAD_SALT, K_PAYLOAD_HASH, K_OCCURRED_AT, K_LINKS, K_RELATION, K_POLICY, K_DECISION, K_RULE,
    K_REASON, K_APPROVALS, K_REQUEST_ID, K_APPROVER_ID, K_APPROVED_AT, K_TRACE, K_TRACE_ID, K_SPAN_ID,
    K_PARENT_SPAN_ID, K_PRODUCER, K_LIBRARY, K_VERSION, K_HOST, K_PID, K_ADAPTER, K_OFFLINE, K_COUNT
};
static const char *const KEY_NAMES[K_COUNT] = {
    "spec_version", "seq", "prev_hash", "entry_hash", "action", "received_at", "source", "topic",
    "partition", "offset", "agent_seq", "agent_prev_hash", "resolved_links", "agent_id", "event_id",
    "status", "key_id", "signature", "timestamp_token", "session_id", "action_type", "payload",
    "payload_salt", "payload_hash", "occurred_at", "links", "relation", "policy", "decision", "rule",
    "reason", "approvals", "request_id", "approver_id", "approved_at", "trace", "trace_id", "span_id",
    "parent_span_id", "producer", "library", "version", "host", "pid", "adapter", "offline",
};
static PyObject *KEYS[K_COUNT];

typedef PyObject *(*FieldReader)(Reader *);
typedef struct {
    int key;
    FieldReader read;
} Field;

/* a record whose fields are all read by one FieldReader each, in schema order */
static PyObject *rd_fields(Reader *r, const Field *fields, size_t count) {
    PyObject *dict = PyDict_New();
    if (dict == NULL) return NULL;
    for (size_t i = 0; i < count; i++) {
        PyObject *value = fields[i].read(r);
        if (value == NULL || PyDict_SetItem(dict, KEYS[fields[i].key], value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(value);
    }
    return dict;
}

/* an array written as one block (or none, when empty) */
static PyObject *rd_array(Reader *r, PyObject *(*item)(Reader *)) {
    int64_t count;
    if (rd_long(r, &count) < 0 || count < 0 || count > r->n - r->p) return NULL;
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    for (int64_t i = 0; i < count; i++) {
        PyObject *value = item(r);
        if (value == NULL || PyList_Append(list, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(value);
    }
    if (count && (r->p >= r->n || r->d[r->p++] != 0)) {  /* more than one block */
        Py_DECREF(list);
        return NULL;
    }
    return list;
}

#define FIELDS(name, ...)                                                      \
    static const Field name##_FIELDS[] = {__VA_ARGS__};                        \
    static PyObject *rd_##name(Reader *r) {                                    \
        return rd_fields(r, name##_FIELDS, sizeof name##_FIELDS / sizeof(Field)); \
    }

FIELDS(link, {K_AGENT_ID, rd_str}, {K_EVENT_ID, rd_str}, {K_RELATION, rd_str})
FIELDS(policy, {K_DECISION, rd_str}, {K_RULE, rd_opt_str}, {K_REASON, rd_opt_str})
FIELDS(approval, {K_REQUEST_ID, rd_str}, {K_APPROVER_ID, rd_str}, {K_KEY_ID, rd_str}, {K_DECISION, rd_str},
       {K_APPROVED_AT, rd_long_obj}, {K_SIGNATURE, rd_bytes})
FIELDS(trace, {K_TRACE_ID, rd_str}, {K_SPAN_ID, rd_str}, {K_PARENT_SPAN_ID, rd_opt_str})
FIELDS(producer, {K_LIBRARY, rd_str}, {K_VERSION, rd_str}, {K_HOST, rd_str}, {K_PID, rd_int_obj},
       {K_ADAPTER, rd_opt_str})
FIELDS(resolved_link, {K_AGENT_ID, rd_str}, {K_EVENT_ID, rd_str}, {K_STATUS, rd_str}, {K_SEQ, rd_opt_long},
       {K_ENTRY_HASH, rd_opt_bytes})
FIELDS(source, {K_TOPIC, rd_str}, {K_PARTITION, rd_int_obj}, {K_OFFSET, rd_long_obj})

static PyObject *rd_links(Reader *r) { return rd_array(r, rd_link); }
static PyObject *rd_approvals(Reader *r) { return rd_array(r, rd_approval); }
static PyObject *rd_resolved_links(Reader *r) { return rd_array(r, rd_resolved_link); }
static PyObject *rd_opt_policy(Reader *r) { return rd_opt(r, rd_policy); }
static PyObject *rd_opt_trace(Reader *r) { return rd_opt(r, rd_trace); }

static PyObject *rd_bool(Reader *r) {
    if (r->p >= r->n || r->d[r->p] > 1) return NULL;
    return PyBool_FromLong(r->d[r->p++]);
}

FIELDS(action, {K_EVENT_ID, rd_str}, {K_AGENT_ID, rd_str}, {K_SESSION_ID, rd_opt_str}, {K_ACTION_TYPE, rd_str},
       {K_PAYLOAD, rd_opt_bytes}, {K_PAYLOAD_SALT, rd_opt_bytes}, {K_PAYLOAD_HASH, rd_bytes},
       {K_OCCURRED_AT, rd_long_obj}, {K_LINKS, rd_links}, {K_POLICY, rd_opt_policy},
       {K_APPROVALS, rd_approvals}, {K_TRACE, rd_opt_trace}, {K_PRODUCER, rd_producer},
       {K_OFFLINE, rd_bool})
FIELDS(entry, {K_SPEC_VERSION, rd_int_obj}, {K_SEQ, rd_long_obj}, {K_PREV_HASH, rd_bytes},
       {K_ENTRY_HASH, rd_bytes}, {K_ACTION, rd_action}, {K_RECEIVED_AT, rd_long_obj}, {K_SOURCE, rd_source},
       {K_AGENT_SEQ, rd_long_obj}, {K_AGENT_PREV_HASH, rd_bytes}, {K_RESOLVED_LINKS, rd_resolved_links},
       {K_KEY_ID, rd_str}, {K_SIGNATURE, rd_opt_bytes}, {K_TIMESTAMP_TOKEN, rd_opt_bytes})

/* --- the entry view's JCS text, keys sorted (records.entry_hash_typed) ----------------------
 * Written from the dict just decoded, so every value has the schema's Python type. */

static PyObject *get(PyObject *dict, int key) { return PyDict_GetItem(dict, KEYS[key]); }

/* a JSON string: the bytes as they are (rd_str refused every string JSON would escape) */
static int w_str(Out *o, PyObject *s) {
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(s, &n);
    if (utf8 == NULL || out_reserve(o, (size_t)n + 2) < 0) return -1;
    o->buf[o->len++] = '"';
    memcpy(o->buf + o->len, utf8, (size_t)n);
    o->len += (size_t)n;
    o->buf[o->len++] = '"';
    return 0;
}

static int w_opt_str(Out *o, PyObject *s) { return s == Py_None ? OUT_LIT(o, "null") : w_str(o, s); }

static int w_long(Out *o, PyObject *v) {
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred()) return -1;
    return out_long(o, n);
}

static int w_hex(Out *o, PyObject *b) {
    return out_hex(o, (const unsigned char *)PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
}

/* "<lit>" then the value of one key, written by one of the writers above */
#define W(lit, writer, dict, key)                                        \
    if (OUT_LIT(o, lit) < 0 || writer(o, get((dict), (key))) < 0) return -1

static int w_action(Out *o, PyObject *a) {
    W("{\"action_type\":", w_str, a, K_ACTION_TYPE);
    W(",\"agent_id\":", w_str, a, K_AGENT_ID);
    if (OUT_LIT(o, ",\"approvals\":[") < 0) return -1;
    PyObject *approvals = get(a, K_APPROVALS);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(approvals); i++) {
        PyObject *x = PyList_GET_ITEM(approvals, i);
        if (i && OUT_LIT(o, ",") < 0) return -1;
        W("{\"approved_at\":", w_long, x, K_APPROVED_AT);
        W(",\"approver_id\":", w_str, x, K_APPROVER_ID);
        W(",\"decision\":", w_str, x, K_DECISION);
        W(",\"key_id\":", w_str, x, K_KEY_ID);
        W(",\"request_id\":", w_str, x, K_REQUEST_ID);
        W(",\"signature\":", w_hex, x, K_SIGNATURE);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    W("],\"event_id\":", w_str, a, K_EVENT_ID);
    if (OUT_LIT(o, ",\"links\":[") < 0) return -1;
    PyObject *links = get(a, K_LINKS);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(links); i++) {
        PyObject *x = PyList_GET_ITEM(links, i);
        if (i && OUT_LIT(o, ",") < 0) return -1;
        W("{\"agent_id\":", w_str, x, K_AGENT_ID);
        W(",\"event_id\":", w_str, x, K_EVENT_ID);
        W(",\"relation\":", w_str, x, K_RELATION);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    W("],\"occurred_at\":", w_long, a, K_OCCURRED_AT);
    if (OUT_LIT(o, ",\"offline\":") < 0) return -1;
    if (get(a, K_OFFLINE) == Py_True ? OUT_LIT(o, "true") : OUT_LIT(o, "false")) return -1;
    W(",\"payload_hash\":", w_hex, a, K_PAYLOAD_HASH);
    if (OUT_LIT(o, ",\"policy\":") < 0) return -1;
    PyObject *policy = get(a, K_POLICY);
    if (policy == Py_None) {
        if (OUT_LIT(o, "null") < 0) return -1;
    } else {
        W("{\"decision\":", w_str, policy, K_DECISION);
        W(",\"reason\":", w_opt_str, policy, K_REASON);
        W(",\"rule\":", w_opt_str, policy, K_RULE);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    PyObject *producer = get(a, K_PRODUCER);
    W(",\"producer\":{\"adapter\":", w_opt_str, producer, K_ADAPTER);
    W(",\"host\":", w_str, producer, K_HOST);
    W(",\"library\":", w_str, producer, K_LIBRARY);
    W(",\"pid\":", w_long, producer, K_PID);
    W(",\"version\":", w_str, producer, K_VERSION);
    W("},\"session_id\":", w_opt_str, a, K_SESSION_ID);
    if (OUT_LIT(o, ",\"trace\":") < 0) return -1;
    PyObject *trace = get(a, K_TRACE);
    if (trace == Py_None) {
        if (OUT_LIT(o, "null") < 0) return -1;
    } else {
        W("{\"parent_span_id\":", w_opt_str, trace, K_PARENT_SPAN_ID);
        W(",\"span_id\":", w_str, trace, K_SPAN_ID);
        W(",\"trace_id\":", w_str, trace, K_TRACE_ID);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    return OUT_LIT(o, "}");
}

static int w_entry(Out *o, PyObject *e) {
    if (out_raw(o, TAG_ENTRY, sizeof TAG_ENTRY) < 0 || OUT_LIT(o, "{\"action\":") < 0) return -1;
    if (w_action(o, get(e, K_ACTION)) < 0) return -1;
    W(",\"agent_prev_hash\":", w_hex, e, K_AGENT_PREV_HASH);
    W(",\"agent_seq\":", w_long, e, K_AGENT_SEQ);
    W(",\"key_id\":", w_str, e, K_KEY_ID);
    W(",\"prev_hash\":", w_hex, e, K_PREV_HASH);
    W(",\"received_at\":", w_long, e, K_RECEIVED_AT);
    if (OUT_LIT(o, ",\"resolved_links\":[") < 0) return -1;
    PyObject *links = get(e, K_RESOLVED_LINKS);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(links); i++) {
        PyObject *x = PyList_GET_ITEM(links, i);
        if (i && OUT_LIT(o, ",") < 0) return -1;
        W("{\"agent_id\":", w_str, x, K_AGENT_ID);
        if (OUT_LIT(o, ",\"entry_hash\":") < 0) return -1;
        PyObject *hash = get(x, K_ENTRY_HASH);
        if ((hash == Py_None ? OUT_LIT(o, "null") : w_hex(o, hash)) < 0) return -1;
        W(",\"event_id\":", w_str, x, K_EVENT_ID);
        if (OUT_LIT(o, ",\"seq\":") < 0) return -1;
        PyObject *seq = get(x, K_SEQ);
        if ((seq == Py_None ? OUT_LIT(o, "null") : w_long(o, seq)) < 0) return -1;
        W(",\"status\":", w_str, x, K_STATUS);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    W("],\"seq\":", w_long, e, K_SEQ);
    PyObject *source = get(e, K_SOURCE);
    W(",\"source\":{\"offset\":", w_long, source, K_OFFSET);
    W(",\"partition\":", w_long, source, K_PARTITION);
    W(",\"topic\":", w_str, source, K_TOPIC);
    W("},\"v\":", w_long, e, K_SPEC_VERSION);
    return OUT_LIT(o, "}");
}

/* --- the module ----------------------------------------------------------------------------- */

static PyObject *read_entry(PyObject *module, PyObject *data) {
    (void)module;
    if (!PyBytes_CheckExact(data) || PyBytes_GET_SIZE(data) < HEADER_LEN) Py_RETURN_NONE;
    Reader r = {(const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), HEADER_LEN};
    PyObject *entry = rd_entry(&r);
    if (entry == NULL || r.p != r.n) {  /* refused, or trailing bytes */
        Py_XDECREF(entry);
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    if (w_entry(&o, entry) == 0) {
        PyObject *preimage = PyBytes_FromStringAndSize(o.buf, (Py_ssize_t)o.len);
        if (preimage != NULL) result = PyTuple_Pack(2, entry, preimage);
        Py_XDECREF(preimage);
    }
    PyMem_Free(o.buf);
    Py_DECREF(entry);
    return result;
}

static PyMethodDef METHODS[] = {
    {"read_entry", read_entry, METH_O,
     "read_entry(data: bytes) -> tuple[dict, bytes] | None\n\n"
     "The LedgerEntry in a canonical single-object record and its entry hash preimage\n"
     "(records.entry_hash_input), or None when this reader does not take the record.\n"
     "The 10-byte header is skipped unread: the caller checks it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_entry_reader",
                                    "Compiled reader of canonical LedgerEntry records (see avro_fast.read_entry).",
                                    -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__entry_reader(void) {
    for (int i = 0; i < K_COUNT; i++) {
        if (KEYS[i] == NULL && (KEYS[i] = PyUnicode_InternFromString(KEY_NAMES[i])) == NULL) return NULL;
    }
    return PyModule_Create(&MODULE);
}
