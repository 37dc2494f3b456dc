/* ledgerstream.core.wire._entry_reader: the compiled readers and writers of the hot paths
 * (ledgerstream/core/wire/avro_fast.py): the verifier's LedgerEntry reader (read_entry;
 * docs/verifiers.md) and, below it, the signer's per-entry path (read_action, entry_preimage,
 * encode_entry; docs/signer.md, D44) and its checkpoint-mode sealed path (read_sealable_action,
 * seal_entry; D54: the only part that hashes, with OpenSSL's libcrypto).
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
 * An ActionEvent (read_action's, or the one inside a LedgerEntry) is walked once, into spans of
 * the record (sp_action): its dict, its JCS text and the sealed path's values are made from them.
 *
 * Why compiled: in a verifier worker, fastavro's generic decode and the Python JCS writer
 * took ~20 us of the ~30 us the checker's serial thread spends per 3.8 KB entry.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

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

struct Action;

typedef struct {
    const unsigned char *d;
    Py_ssize_t n, p;
    struct Action *action;  /* read_entry: where rd_action leaves the action's spans (else NULL) */
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
static PyObject *NeedsEscape;  /* _entry_reader.NeedsEscape: a value the fast writers do not take */

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

FIELDS(resolved_link, {K_AGENT_ID, rd_str}, {K_EVENT_ID, rd_str}, {K_STATUS, rd_str}, {K_SEQ, rd_opt_long},
       {K_ENTRY_HASH, rd_opt_bytes})
FIELDS(source, {K_TOPIC, rd_str}, {K_PARTITION, rd_int_obj}, {K_OFFSET, rd_long_obj})

static PyObject *rd_resolved_links(Reader *r) { return rd_array(r, rd_resolved_link); }

/* --- the ActionEvent, read once as spans -----------------------------------------------------
 * One walk of the ActionEvent schema, in the canonical forms above, into spans of the record:
 * the action's dict (read_action, read_entry), its JCS text (w_action) and the sealed path's
 * values (read_sealable_action) are all made from them. A string is taken only when JSON would
 * not escape it (no control character, '"' or '\\'); its UTF-8 is checked when it becomes a str
 * (str_of), or is trivially valid when every string is ASCII (Action.ascii). */

typedef struct {
    const unsigned char *s;  /* NULL: the null branch of an optional field */
    Py_ssize_t n;
} Span;

typedef struct {
    Span request_id, approver_id, key_id, decision, signature;
    int64_t approved_at;
} Approval;

typedef struct Action {
    Span event_id, agent_id, session_id, action_type, payload, salt, payload_hash;
    int64_t occurred_at, pid, links, approvals;  /* links, approvals: their counts */
    Py_ssize_t links_at, approvals_at;            /* where their first items start */
    int policy, trace, offline, ascii;            /* ascii: every string is printable ASCII */
    Span decision, rule, reason, trace_id, span_id, parent_span_id, library, version, host, adapter;
} Action;

static int sp_str(Reader *r, Span *out, int *ascii) {
    if (rd_span(r, &out->s, &out->n) < 0) return 0;
    for (Py_ssize_t i = 0; i < out->n; i++) {
        unsigned char c = out->s[i];
        if (c < 0x20 || c == '"' || c == '\\') return 0;  /* JSON would escape it */
        if (c > 0x7e) *ascii = 0;
    }
    return 1;
}

static int sp_opt_str(Reader *r, Span *out, int *ascii) {
    int some;
    if (rd_branch(r, &some) < 0) return 0;
    *out = (Span){NULL, 0};
    return !some || sp_str(r, out, ascii);
}

static int sp_bytes(Reader *r, Span *out) { return rd_span(r, &out->s, &out->n) == 0; }

static int sp_opt_bytes(Reader *r, Span *out) {
    int some;
    if (rd_branch(r, &some) < 0) return 0;
    *out = (Span){NULL, 0};
    return !some || sp_bytes(r, out);
}

/* a link: agent_id, event_id, relation */
static int sp_link(Reader *r, Span link[3], int *ascii) {
    return sp_str(r, &link[0], ascii) && sp_str(r, &link[1], ascii) && sp_str(r, &link[2], ascii);
}

static int sp_approval(Reader *r, Approval *x, int *ascii) {
    return sp_str(r, &x->request_id, ascii) && sp_str(r, &x->approver_id, ascii) && sp_str(r, &x->key_id, ascii)
           && sp_str(r, &x->decision, ascii) && rd_long(r, &x->approved_at) == 0 && sp_bytes(r, &x->signature);
}

static int skip_link(Reader *r, int *ascii) {
    Span link[3];
    return sp_link(r, link, ascii);
}

static int skip_approval(Reader *r, int *ascii) {
    Approval x;
    return sp_approval(r, &x, ascii);
}

/* an array written as one block (or none, when empty): its count and where its items start */
static int sp_array(Reader *r, int64_t *count, Py_ssize_t *at, int (*skip)(Reader *, int *), int *ascii) {
    if (rd_long(r, count) < 0 || *count < 0 || *count > r->n - r->p) return 0;
    *at = r->p;
    for (int64_t i = 0; i < *count; i++)
        if (!skip(r, ascii)) return 0;
    return *count == 0 || (r->p < r->n && r->d[r->p++] == 0);  /* more than one block: refused */
}

/* 1 when an ActionEvent body starts at r (which it then ends after), its parts in *a */
static int sp_action(Reader *r, Action *a) {
    int *ascii = &a->ascii;
    a->ascii = 1;
    if (!sp_str(r, &a->event_id, ascii) || !sp_str(r, &a->agent_id, ascii) || !sp_opt_str(r, &a->session_id, ascii)
            || !sp_str(r, &a->action_type, ascii) || !sp_opt_bytes(r, &a->payload) || !sp_opt_bytes(r, &a->salt)
            || !sp_bytes(r, &a->payload_hash) || rd_long(r, &a->occurred_at) < 0
            || !sp_array(r, &a->links, &a->links_at, skip_link, ascii) || rd_branch(r, &a->policy) < 0)
        return 0;
    if (a->policy && (!sp_str(r, &a->decision, ascii) || !sp_opt_str(r, &a->rule, ascii)
                      || !sp_opt_str(r, &a->reason, ascii)))
        return 0;
    if (!sp_array(r, &a->approvals, &a->approvals_at, skip_approval, ascii) || rd_branch(r, &a->trace) < 0) return 0;
    if (a->trace && (!sp_str(r, &a->trace_id, ascii) || !sp_str(r, &a->span_id, ascii)
                     || !sp_opt_str(r, &a->parent_span_id, ascii)))
        return 0;
    if (!sp_str(r, &a->library, ascii) || !sp_str(r, &a->version, ascii) || !sp_str(r, &a->host, ascii)
            || rd_int(r, &a->pid) < 0 || !sp_opt_str(r, &a->adapter, ascii) || r->p >= r->n || r->d[r->p] > 1)
        return 0;
    a->offline = r->d[r->p++];
    return 1;
}

/* --- the action's dict (what fastavro returns) ---------------------------------------------- */

/* a str, None for a null branch; NULL without an exception when it is not UTF-8 (refused) */
static PyObject *str_of(const Span *x) {
    if (x->s == NULL) return Py_NewRef(Py_None);
    PyObject *str = PyUnicode_DecodeUTF8((const char *)x->s, x->n, "strict");
    if (str == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) PyErr_Clear();
    return str;
}

static PyObject *bytes_of(const Span *x) {
    return x->s == NULL ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)x->s, x->n);
}

/* dict[key] = value, the reference to value taken over; -1 when value is NULL or on failure */
static int put(PyObject *dict, int key, PyObject *value) {
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(dict, KEYS[key], value);
    Py_DECREF(value);
    return rc;
}

/* a new dict of ``count`` (key, value) pairs, each value's reference taken over; NULL if one is */
static PyObject *dict_of(int count, const int *keys, PyObject **values) {
    PyObject *dict = PyDict_New();
    int i = 0;
    for (; dict != NULL && i < count; i++)
        if (put(dict, keys[i], values[i]) < 0) Py_CLEAR(dict);
    for (; i < count; i++) Py_XDECREF(values[i]);  /* the ones not put */
    return dict;
}

#define DICT(...) dict_of(sizeof((int[]){__VA_ARGS__}) / sizeof(int), (int[]){__VA_ARGS__}, values)

static PyObject *link_dict(Reader *r, int *ascii) {
    Span x[3];
    sp_link(r, x, ascii);  /* read once already by sp_action */
    PyObject *values[] = {str_of(&x[0]), str_of(&x[1]), str_of(&x[2])};
    return DICT(K_AGENT_ID, K_EVENT_ID, K_RELATION);
}

static PyObject *approval_dict(Reader *r, int *ascii) {
    Approval x;
    sp_approval(r, &x, ascii);
    PyObject *values[] = {str_of(&x.request_id), str_of(&x.approver_id), str_of(&x.key_id), str_of(&x.decision),
                          PyLong_FromLongLong(x.approved_at), bytes_of(&x.signature)};
    return DICT(K_REQUEST_ID, K_APPROVER_ID, K_KEY_ID, K_DECISION, K_APPROVED_AT, K_SIGNATURE);
}

/* the list of the ``count`` items from ``at``, each made by ``item`` */
static PyObject *list_of(const Reader *record, Py_ssize_t at, int64_t count, PyObject *(*item)(Reader *, int *)) {
    Reader r = {record->d, record->n, at, NULL};
    int ascii = 1;
    PyObject *list = PyList_New((Py_ssize_t)count);
    for (Py_ssize_t i = 0; list != NULL && i < (Py_ssize_t)count; i++) {
        PyObject *x = item(&r, &ascii);
        if (x == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, i, x);
    }
    return list;
}

/* the action as fastavro decodes it; NULL without an exception when a string is not UTF-8 */
static PyObject *action_dict(const Action *a, const Reader *record) {
    PyObject *policy = Py_NewRef(Py_None), *trace = Py_NewRef(Py_None);
    if (a->policy) {
        Py_DECREF(policy);
        PyObject *values[] = {str_of(&a->decision), str_of(&a->rule), str_of(&a->reason)};
        policy = DICT(K_DECISION, K_RULE, K_REASON);
    }
    if (a->trace) {
        Py_DECREF(trace);
        PyObject *values[] = {str_of(&a->trace_id), str_of(&a->span_id), str_of(&a->parent_span_id)};
        trace = DICT(K_TRACE_ID, K_SPAN_ID, K_PARENT_SPAN_ID);
    }
    PyObject *producer;
    {
        PyObject *values[] = {str_of(&a->library), str_of(&a->version), str_of(&a->host), PyLong_FromLongLong(a->pid),
                              str_of(&a->adapter)};
        producer = DICT(K_LIBRARY, K_VERSION, K_HOST, K_PID, K_ADAPTER);
    }
    PyObject *values[] = {
        str_of(&a->event_id), str_of(&a->agent_id), str_of(&a->session_id), str_of(&a->action_type),
        bytes_of(&a->payload), bytes_of(&a->salt), bytes_of(&a->payload_hash), PyLong_FromLongLong(a->occurred_at),
        list_of(record, a->links_at, a->links, link_dict), policy,
        list_of(record, a->approvals_at, a->approvals, approval_dict), trace, producer,
        PyBool_FromLong(a->offline)};
    return dict_of(14, (int[]){K_EVENT_ID, K_AGENT_ID, K_SESSION_ID, K_ACTION_TYPE, K_PAYLOAD, K_PAYLOAD_SALT,
                               K_PAYLOAD_HASH, K_OCCURRED_AT, K_LINKS, K_POLICY, K_APPROVALS, K_TRACE, K_PRODUCER,
                               K_OFFLINE}, values);
}

/* the entry's action (FIELDS(entry)): its dict; its spans are left in r->action when set */
static PyObject *rd_action(Reader *r) {
    Action local, *a = r->action != NULL ? r->action : &local;
    return sp_action(r, a) ? action_dict(a, r) : NULL;
}

FIELDS(entry, {K_SPEC_VERSION, rd_int_obj}, {K_SEQ, rd_long_obj}, {K_PREV_HASH, rd_bytes},
       {K_ENTRY_HASH, rd_bytes}, {K_ACTION, rd_action}, {K_RECEIVED_AT, rd_long_obj}, {K_SOURCE, rd_source},
       {K_AGENT_SEQ, rd_long_obj}, {K_AGENT_PREV_HASH, rd_bytes}, {K_RESOLVED_LINKS, rd_resolved_links},
       {K_KEY_ID, rd_str}, {K_SIGNATURE, rd_opt_bytes}, {K_TIMESTAMP_TOKEN, rd_opt_bytes})

/* --- the entry view's JCS text, keys sorted (records.entry_hash_typed) ----------------------
 * The action's part is written from its spans (w_action), the entry's own fields from a dict
 * or the arguments of seal_entry (EntryView). */

static PyObject *get(PyObject *dict, int key) { return PyDict_GetItem(dict, KEYS[key]); }

/* a JSON string: the bytes as they are (rd_str refused every string JSON would escape) */
static int w_str(Out *o, PyObject *s) {
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(s, &n);
    if (utf8 == NULL) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)utf8[i];
        if (c < 0x20 || c == '"' || c == '\\') {  /* JSON escapes it: the caller's Python path writes it */
            PyErr_SetString(NeedsEscape, "a string JSON would escape");
            return -1;
        }
    }
    if (out_reserve(o, (size_t)n + 2) < 0) return -1;
    o->buf[o->len++] = '"';
    memcpy(o->buf + o->len, utf8, (size_t)n);
    o->len += (size_t)n;
    o->buf[o->len++] = '"';
    return 0;
}

static int w_long(Out *o, PyObject *v) {
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred()) return -1;
    return out_long(o, n);
}

static int w_hex(Out *o, PyObject *b) {
    if (!PyBytes_Check(b)) {  /* the signer's entries are built in Python: never trust a type */
        PyErr_SetString(PyExc_TypeError, "expected bytes");
        return -1;
    }
    return out_hex(o, (const unsigned char *)PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
}

static int missing(int key) {
    PyErr_Format(PyExc_KeyError, "missing field %s", KEY_NAMES[key]);
    return -1;
}

/* "<lit>" then a value (NULL: the field ``key`` is missing), written by one of the writers above */
#define WV(lit, writer, value, key)                                                    \
    do {                                                                               \
        PyObject *v_ = (value);                                                        \
        if (v_ == NULL) return missing(key);                                           \
        if (OUT_LIT(o, lit) < 0 || writer(o, v_) < 0) return -1;                       \
    } while (0)
#define W(lit, writer, dict, key) WV(lit, writer, get((dict), (key)), key)

/* a string span as JSON (sp_str took only strings JSON does not escape), or null */
static int w_span(Out *o, const Span *x) {
    if (x->s == NULL) return OUT_LIT(o, "null");
    if (out_reserve(o, (size_t)x->n + 2) < 0) return -1;
    o->buf[o->len++] = '"';
    memcpy(o->buf + o->len, x->s, (size_t)x->n);
    o->len += (size_t)x->n;
    o->buf[o->len++] = '"';
    return 0;
}

/* the action's JCS text (records.action_hash_view, keys sorted), from the spans sp_action read
 * in ``record``; its strings must be UTF-8 (action_dict decoded them, or they are ASCII) */
static int w_action(Out *o, const Action *a, const Reader *record) {
#define WS(lit, span) if (OUT_LIT(o, lit) < 0 || w_span(o, &(span)) < 0) return -1
    int ascii = 1;
    WS("{\"action_type\":", a->action_type);
    WS(",\"agent_id\":", a->agent_id);
    if (OUT_LIT(o, ",\"approvals\":[") < 0) return -1;
    Reader r = {record->d, record->n, a->approvals_at, NULL};
    for (int64_t i = 0; i < a->approvals; i++) {
        Approval x;
        sp_approval(&r, &x, &ascii);  /* read once already by sp_action */
        if ((i && OUT_LIT(o, ",") < 0) || OUT_LIT(o, "{\"approved_at\":") < 0 || out_long(o, x.approved_at) < 0) return -1;
        WS(",\"approver_id\":", x.approver_id);
        WS(",\"decision\":", x.decision);
        WS(",\"key_id\":", x.key_id);
        WS(",\"request_id\":", x.request_id);
        if (OUT_LIT(o, ",\"signature\":") < 0 || out_hex(o, x.signature.s, x.signature.n) < 0 || OUT_LIT(o, "}") < 0)
            return -1;
    }
    WS("],\"event_id\":", a->event_id);
    if (OUT_LIT(o, ",\"links\":[") < 0) return -1;
    r.p = a->links_at;
    for (int64_t i = 0; i < a->links; i++) {
        Span x[3];
        sp_link(&r, x, &ascii);
        if (i && OUT_LIT(o, ",") < 0) return -1;
        WS("{\"agent_id\":", x[0]);
        WS(",\"event_id\":", x[1]);
        WS(",\"relation\":", x[2]);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    if (OUT_LIT(o, "],\"occurred_at\":") < 0 || out_long(o, a->occurred_at) < 0) return -1;
    if ((a->offline ? OUT_LIT(o, ",\"offline\":true") : OUT_LIT(o, ",\"offline\":false")) < 0) return -1;
    if (OUT_LIT(o, ",\"payload_hash\":") < 0 || out_hex(o, a->payload_hash.s, a->payload_hash.n) < 0) return -1;
    if (!a->policy) {
        if (OUT_LIT(o, ",\"policy\":null") < 0) return -1;
    } else {
        WS(",\"policy\":{\"decision\":", a->decision);
        WS(",\"reason\":", a->reason);
        WS(",\"rule\":", a->rule);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    WS(",\"producer\":{\"adapter\":", a->adapter);
    WS(",\"host\":", a->host);
    WS(",\"library\":", a->library);
    if (OUT_LIT(o, ",\"pid\":") < 0 || out_long(o, a->pid) < 0) return -1;
    WS(",\"version\":", a->version);
    WS("},\"session_id\":", a->session_id);
    if (!a->trace) {
        if (OUT_LIT(o, ",\"trace\":null") < 0) return -1;
    } else {
        WS(",\"trace\":{\"parent_span_id\":", a->parent_span_id);
        WS(",\"span_id\":", a->span_id);
        WS(",\"trace_id\":", a->trace_id);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
#undef WS
    return OUT_LIT(o, "}");
}

/* An entry's own fields (all but its action), borrowed from a dict (view_of) or from the
 * arguments of seal_entry; NULL where a field is missing (each writer says which). */
typedef struct {
    PyObject *spec_version, *seq, *prev_hash, *entry_hash, *received_at, *topic, *partition, *offset,
        *agent_seq, *agent_prev_hash, *resolved_links, *key_id, *signature, *timestamp_token;
} EntryView;

static void view_of(PyObject *e, EntryView *v) {
    PyObject *source = get(e, K_SOURCE);
    int has_source = source != NULL && PyDict_Check(source);
    *v = (EntryView){
        get(e, K_SPEC_VERSION), get(e, K_SEQ), get(e, K_PREV_HASH), get(e, K_ENTRY_HASH), get(e, K_RECEIVED_AT),
        has_source ? get(source, K_TOPIC) : NULL, has_source ? get(source, K_PARTITION) : NULL,
        has_source ? get(source, K_OFFSET) : NULL, get(e, K_AGENT_SEQ), get(e, K_AGENT_PREV_HASH),
        get(e, K_RESOLVED_LINKS), get(e, K_KEY_ID), get(e, K_SIGNATURE), get(e, K_TIMESTAMP_TOKEN)};
}

/* the preimage of the entry hash around the action's JCS text (w_action) */
static int w_entry(Out *o, const EntryView *v, const char *action_text, size_t text_len) {
    if (out_raw(o, TAG_ENTRY, sizeof TAG_ENTRY) < 0 || OUT_LIT(o, "{\"action\":") < 0
            || out_raw(o, action_text, text_len) < 0)
        return -1;
    WV(",\"agent_prev_hash\":", w_hex, v->agent_prev_hash, K_AGENT_PREV_HASH);
    WV(",\"agent_seq\":", w_long, v->agent_seq, K_AGENT_SEQ);
    WV(",\"key_id\":", w_str, v->key_id, K_KEY_ID);
    WV(",\"prev_hash\":", w_hex, v->prev_hash, K_PREV_HASH);
    WV(",\"received_at\":", w_long, v->received_at, K_RECEIVED_AT);
    if (OUT_LIT(o, ",\"resolved_links\":[") < 0) return -1;
    PyObject *links = v->resolved_links;
    if (links == NULL || !PyList_Check(links)) return missing(K_RESOLVED_LINKS);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(links); i++) {
        PyObject *x = PyList_GET_ITEM(links, i);
        if (i && OUT_LIT(o, ",") < 0) return -1;
        W("{\"agent_id\":", w_str, x, K_AGENT_ID);
        if (OUT_LIT(o, ",\"entry_hash\":") < 0) return -1;
        PyObject *hash = get(x, K_ENTRY_HASH);
        if (hash == NULL) return missing(K_ENTRY_HASH);
        if ((hash == Py_None ? OUT_LIT(o, "null") : w_hex(o, hash)) < 0) return -1;
        W(",\"event_id\":", w_str, x, K_EVENT_ID);
        if (OUT_LIT(o, ",\"seq\":") < 0) return -1;
        PyObject *seq = get(x, K_SEQ);
        if (seq == NULL) return missing(K_SEQ);
        if ((seq == Py_None ? OUT_LIT(o, "null") : w_long(o, seq)) < 0) return -1;
        W(",\"status\":", w_str, x, K_STATUS);
        if (OUT_LIT(o, "}") < 0) return -1;
    }
    WV("],\"seq\":", w_long, v->seq, K_SEQ);
    WV(",\"source\":{\"offset\":", w_long, v->offset, K_OFFSET);
    WV(",\"partition\":", w_long, v->partition, K_PARTITION);
    WV(",\"topic\":", w_str, v->topic, K_TOPIC);
    WV("},\"v\":", w_long, v->spec_version, K_SPEC_VERSION);
    return OUT_LIT(o, "}");
}

/* (record, the text written into o) when ``written`` is 0, else NULL; frees o and the record */
static PyObject *with_text(PyObject *record, Out *o, int written) {
    PyObject *result = NULL;
    if (written == 0) {
        PyObject *text = PyBytes_FromStringAndSize(o->buf, (Py_ssize_t)o->len);
        if (text != NULL) result = PyTuple_Pack(2, record, text);
        Py_XDECREF(text);
    }
    PyMem_Free(o->buf);
    Py_DECREF(record);
    return result;
}

/* --- the signer's fast path (signer_worker/sequencer.py) -------------------------------------
 * read_action takes an ActionEvent only when every rule of records.validate_action that needs
 * no hash is proven here: identifiers that are printable ASCII (U+0020..U+007E, no space at
 * either end, at most MAX_ID_LEN), an action type of the ACTION_TYPE_RE grammar, a 32-byte
 * payload hash, payload and salt together with a 32-byte salt, a payload proven to be RFC 8785
 * canonical by is_canonical_json, occurred_at in [0, 2**53), no approvals. Everything else (not
 * wrong, only not proven here) returns None and the Python path decides, with its message.
 * The caller still checks the payload commitment (one SHA-256). Tests hold the C acceptance to
 * be a subset of the Python rules on random and corrupted records. */

#define MAX_ID_LEN 256           /* records.MAX_ID_LEN */
#define MAX_ACTION_TYPE_LEN 256  /* records.MAX_ACTION_TYPE_LEN */
#define HASH_LEN 32              /* records.HASH_LEN and records.SALT_LEN */
#define MAX_SAFE_INT 9007199254740991LL
#define MAX_JSON_DEPTH 128

/* an identifier: printable ASCII, no space at either end, 1..MAX_ID_LEN characters */
static int id_ok(const Span *x) {
    if (x->n < 1 || x->n > MAX_ID_LEN || x->s[0] == ' ' || x->s[x->n - 1] == ' ') return 0;
    for (Py_ssize_t i = 0; i < x->n; i++)
        if (x->s[i] < 0x20 || x->s[i] > 0x7e) return 0;
    return 1;
}

static int action_type_ok(const Span *x) {
    if (!id_ok(x) || x->n > MAX_ACTION_TYPE_LEN) return 0;
    Py_ssize_t segment = 0;  /* characters in the current segment */
    for (Py_ssize_t i = 0; i < x->n; i++) {
        unsigned char ch = x->s[i];
        if (ch == ':') {
            if (segment == 0) return 0;
            segment = 0;
        } else if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'
                   || ch == '.' || ch == '-') {
            segment++;
        } else {
            return 0;
        }
    }
    return segment > 0;
}

/* RFC 8785 canonical JSON, proven for a subset: no floats or exponents, integers of at most 15
 * characters, strings without code points from U+E000 up (where UTF-16 key order can differ
 * from UTF-8 byte order) and keys without escapes, nesting up to MAX_JSON_DEPTH. 1: canonical;
 * 0: not proven (records.validate_canonical_payload decides). */
typedef struct {
    const unsigned char *s;
    Py_ssize_t n, p;
} Json;

static int js_value(Json *j, int depth);

/* a string in JCS form; its body (between the quotes) in *body, *len; *escaped if it has escapes */
static int js_string(Json *j, const unsigned char **body, Py_ssize_t *len, int *escaped) {
    if (j->p >= j->n || j->s[j->p] != '"') return 0;
    Py_ssize_t start = ++j->p;
    *escaped = 0;
    while (j->p < j->n) {
        unsigned char c = j->s[j->p];
        if (c == '"') {
            *body = j->s + start;
            *len = j->p - start;
            j->p++;
            return 1;
        }
        if (c < 0x20) return 0;                    /* JCS escapes every control character */
        if (c == '\\') {
            *escaped = 1;
            if (j->p + 1 >= j->n) return 0;
            unsigned char e = j->s[j->p + 1];
            if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                j->p += 2;
                continue;
            }
            /* \u00xx, lowercase, only for the controls without a short escape */
            if (e != 'u' || j->p + 5 >= j->n || j->s[j->p + 2] != '0' || j->s[j->p + 3] != '0') return 0;
            unsigned char h = j->s[j->p + 4], l = j->s[j->p + 5];
            int lo = (l >= '0' && l <= '9') ? l - '0' : (l >= 'a' && l <= 'f') ? l - 'a' + 10 : -1;
            if ((h != '0' && h != '1') || lo < 0) return 0;
            int v = (h - '0') * 16 + lo;
            if (v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t') return 0;
            j->p += 6;
            continue;
        }
        if (c < 0x80) {
            j->p++;
        } else if (c >= 0xc2 && c <= 0xdf) {       /* two bytes */
            if (j->p + 1 >= j->n || (j->s[j->p + 1] & 0xc0) != 0x80) return 0;
            j->p += 2;
        } else if (c >= 0xe0 && c <= 0xed) {       /* three bytes, below U+E000, no surrogates */
            if (j->p + 2 >= j->n) return 0;
            unsigned char c1 = j->s[j->p + 1], c2 = j->s[j->p + 2];
            if ((c1 & 0xc0) != 0x80 || (c2 & 0xc0) != 0x80) return 0;
            if (c == 0xe0 && c1 < 0xa0) return 0;  /* overlong */
            if (c == 0xed && c1 > 0x9f) return 0;  /* a surrogate */
            j->p += 3;
        } else {
            return 0;                              /* U+E000 and up, or not UTF-8 */
        }
    }
    return 0;
}

static int js_number(Json *j) {
    Py_ssize_t start = j->p;
    if (j->s[j->p] == '-') j->p++;
    if (j->p >= j->n) return 0;
    if (j->s[j->p] == '0') {
        j->p++;
        if (j->p - start == 2) return 0;           /* -0 is written 0 */
    } else if (j->s[j->p] >= '1' && j->s[j->p] <= '9') {
        while (j->p < j->n && j->s[j->p] >= '0' && j->s[j->p] <= '9') j->p++;
    } else {
        return 0;
    }
    if (j->p < j->n && (j->s[j->p] == '.' || j->s[j->p] == 'e' || j->s[j->p] == 'E')) return 0;
    return j->p - start <= 15;                     /* below 2**53: written as they are */
}

static int js_literal(Json *j, const char *lit, Py_ssize_t n) {
    if (j->n - j->p < n || memcmp(j->s + j->p, lit, (size_t)n) != 0) return 0;
    j->p += n;
    return 1;
}

static int js_value(Json *j, int depth) {
    if (j->p >= j->n || depth > MAX_JSON_DEPTH) return 0;
    unsigned char c = j->s[j->p];
    if (c == '"') {
        const unsigned char *body;
        Py_ssize_t len;
        int escaped;
        return js_string(j, &body, &len, &escaped);
    }
    if (c == '{') {
        j->p++;
        if (j->p < j->n && j->s[j->p] == '}') {
            j->p++;
            return 1;
        }
        const unsigned char *prev = NULL;
        Py_ssize_t prev_len = 0;
        for (;;) {
            const unsigned char *key;
            Py_ssize_t len;
            int escaped;
            if (!js_string(j, &key, &len, &escaped) || escaped) return 0;
            if (prev != NULL) {                    /* strictly increasing: sorted, no duplicates */
                int cmp = memcmp(prev, key, (size_t)(prev_len < len ? prev_len : len));
                if (cmp > 0 || (cmp == 0 && prev_len >= len)) return 0;
            }
            prev = key;
            prev_len = len;
            if (j->p >= j->n || j->s[j->p++] != ':' || !js_value(j, depth + 1) || j->p >= j->n) return 0;
            c = j->s[j->p++];
            if (c == '}') return 1;
            if (c != ',') return 0;
        }
    }
    if (c == '[') {
        j->p++;
        if (j->p < j->n && j->s[j->p] == ']') {
            j->p++;
            return 1;
        }
        for (;;) {
            if (!js_value(j, depth + 1) || j->p >= j->n) return 0;
            c = j->s[j->p++];
            if (c == ']') return 1;
            if (c != ',') return 0;
        }
    }
    if (c == 't') return js_literal(j, "true", 4);
    if (c == 'f') return js_literal(j, "false", 5);
    if (c == 'n') return js_literal(j, "null", 4);
    if (c == '-' || (c >= '0' && c <= '9')) return js_number(j);
    return 0;
}

static int canonical_json(const unsigned char *s, Py_ssize_t n) {
    Json j = {s, n, 0};
    return js_value(&j, 0) && j.p == n;
}

static PyObject *is_canonical_json(PyObject *module, PyObject *data) {
    (void)module;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes");
        return NULL;
    }
    return PyBool_FromLong(canonical_json((const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)));
}

static int action_ok(const Action *a, const Reader *record) {
    if (!id_ok(&a->event_id) || !id_ok(&a->agent_id) || !action_type_ok(&a->action_type)) return 0;
    if (a->session_id.s != NULL && !id_ok(&a->session_id)) return 0;
    if (a->payload_hash.n != HASH_LEN || (a->payload.s == NULL) != (a->salt.s == NULL)) return 0;
    if (a->payload.s != NULL && (a->salt.n != HASH_LEN || !canonical_json(a->payload.s, a->payload.n))) return 0;
    if (a->occurred_at < 0 || a->occurred_at > MAX_SAFE_INT || a->approvals != 0) return 0;
    Reader r = {record->d, record->n, a->links_at, NULL};
    int ascii = 1;
    for (int64_t i = 0; i < a->links; i++) {
        Span link[3];
        sp_link(&r, link, &ascii);
        if (!id_ok(&link[0]) || !id_ok(&link[1])) return 0;
    }
    return 1;
}

/* 1 when ``data`` is a single-object record of an action that action_ok proves, its spans in
 * *a (over *r); 0 when it is not taken */
static int read_whole_action(PyObject *data, Reader *r, Action *a) {
    if (!PyBytes_CheckExact(data) || PyBytes_GET_SIZE(data) < HEADER_LEN) return 0;
    *r = (Reader){(const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), HEADER_LEN, NULL};
    return sp_action(r, a) && r->p == r->n && action_ok(a, r);
}

static PyObject *read_action(PyObject *module, PyObject *data) {
    (void)module;
    Reader r;
    Action a;
    if (!read_whole_action(data, &r, &a)) Py_RETURN_NONE;
    PyObject *action = action_dict(&a, &r);
    if (action == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;  /* a string that is not UTF-8 */
    }
    Out o = {NULL, 0, 0};
    return with_text(action, &o, w_action(&o, &a, &r));
}

/* entry_preimage(entry, action_text): records.entry_hash_input(entry) with the action's JCS text
 * as read_action wrote it; None when a string of the entry would need a JSON escape */
static PyObject *entry_preimage(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *entry, *action_text;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &entry, &PyBytes_Type, &action_text)) return NULL;
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    EntryView v;
    view_of(entry, &v);
    if (w_entry(&o, &v, PyBytes_AS_STRING(action_text), (size_t)PyBytes_GET_SIZE(action_text)) == 0) {
        result = PyBytes_FromStringAndSize(o.buf, (Py_ssize_t)o.len);
    } else if (PyErr_ExceptionMatches(NeedsEscape)) {
        PyErr_Clear();
        result = Py_NewRef(Py_None);
    }
    PyMem_Free(o.buf);
    return result;
}

/* --- writing a LedgerEntry (avro_fast.encode_ledger_entry) ------------------------------------ */

static int av_long(Out *o, int64_t v) {
    if (out_reserve(o, 10) < 0) return -1;
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        o->buf[o->len++] = (char)((z & 0x7f) | 0x80);
        z >>= 7;
    }
    o->buf[o->len++] = (char)z;
    return 0;
}

static int av_pylong(Out *o, PyObject *v) {
    if (v == NULL) {
        PyErr_SetString(PyExc_KeyError, "missing field");
        return -1;
    }
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred()) return -1;
    return av_long(o, n);
}

/* an Avro ``int`` field: a long within 32 bits (the schema's range) */
static int av_pyint(Out *o, PyObject *v) {
    if (v != NULL && PyLong_Check(v)) {
        long long n = PyLong_AsLongLong(v);
        if (n == -1 && PyErr_Occurred()) return -1;
        if (n < INT32_MIN || n > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "an Avro int field out of 32-bit range");
            return -1;
        }
    }
    return av_pylong(o, v);
}

static int av_span(Out *o, const char *s, Py_ssize_t n) {
    return av_long(o, n) < 0 ? -1 : out_raw(o, s, (size_t)n);
}

static int av_bytes(Out *o, PyObject *b) {
    if (b == NULL || !PyBytes_Check(b)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "expected bytes");
        return -1;
    }
    return av_span(o, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
}

static int av_str(Out *o, PyObject *s) {
    Py_ssize_t n;
    const char *utf8 = s == NULL ? NULL : PyUnicode_AsUTF8AndSize(s, &n);
    if (utf8 == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "expected str");
        return -1;
    }
    return av_span(o, utf8, n);
}

/* a ["null", X] union */
static int av_opt(Out *o, PyObject *v, int (*write)(Out *, PyObject *)) {
    if (v == NULL) {
        PyErr_SetString(PyExc_KeyError, "missing field");
        return -1;
    }
    if (v == Py_None) return out_raw(o, "\0", 1);
    return out_raw(o, "\2", 1) < 0 ? -1 : write(o, v);
}

static int av_entry(Out *o, const EntryView *v, const char *action_body, Py_ssize_t body_len) {
    if (av_pyint(o, v->spec_version) < 0 || av_pylong(o, v->seq) < 0 || av_bytes(o, v->prev_hash) < 0
            || av_bytes(o, v->entry_hash) < 0 || out_raw(o, action_body, (size_t)body_len) < 0
            || av_pylong(o, v->received_at) < 0 || av_str(o, v->topic) < 0 || av_pyint(o, v->partition) < 0
            || av_pylong(o, v->offset) < 0 || av_pylong(o, v->agent_seq) < 0 || av_bytes(o, v->agent_prev_hash) < 0)
        return -1;
    PyObject *links = v->resolved_links;
    if (links == NULL || !PyList_Check(links)) return missing(K_RESOLVED_LINKS);
    Py_ssize_t count = PyList_GET_SIZE(links);
    if (count) {
        if (av_long(o, count) < 0) return -1;
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *x = PyList_GET_ITEM(links, i);
            if (av_str(o, get(x, K_AGENT_ID)) < 0 || av_str(o, get(x, K_EVENT_ID)) < 0
                    || av_str(o, get(x, K_STATUS)) < 0 || av_opt(o, get(x, K_SEQ), av_pylong) < 0
                    || av_opt(o, get(x, K_ENTRY_HASH), av_bytes) < 0) return -1;
        }
    }
    if (out_raw(o, "\0", 1) < 0) return -1;  /* the array's end (or its only, empty block) */
    if (av_str(o, v->key_id) < 0 || av_opt(o, v->signature, av_bytes) < 0) return -1;
    return av_opt(o, v->timestamp_token, av_bytes);
}

/* encode_entry(header, entry, action_body): the LedgerEntry single object, the action's
 * canonical body bytes spliced in (avro_fast.encode_ledger_entry) */
static PyObject *encode_entry(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *header, *entry, *action_body;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyBytes_Type, &header, &PyDict_Type, &entry, &PyBytes_Type,
                          &action_body)) return NULL;
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    EntryView v;
    view_of(entry, &v);
    if (out_raw(&o, PyBytes_AS_STRING(header), (size_t)PyBytes_GET_SIZE(header)) == 0
            && av_entry(&o, &v, PyBytes_AS_STRING(action_body), PyBytes_GET_SIZE(action_body)) == 0)
        result = PyBytes_FromStringAndSize(o.buf, (Py_ssize_t)o.len);
    PyMem_Free(o.buf);
    return result;
}

/* --- sealing an entry in one call (the signer's checkpoint mode: avro_fast.seal_entry) --------
 * The preimage above, its SHA-256 (OpenSSL's, fetched once), the Merkle leaf hash, and the
 * LedgerEntry record with the action's record spliced in: what entry_preimage, hashlib.sha256
 * and encode_entry do on an entry dict, without the dict. For an entry with no signature and
 * no timestamp token. */

static EVP_MD *SHA256_MD;
static EVP_MD_CTX *SHA256_CTX;
static PyObject *EMPTY_LIST;
static const char TAG_PAYLOAD[] = "ledgerstream/v1/payload";  /* records.TAG_PAYLOAD, with its NUL byte */

/* SHA-256 of the concatenation of ``count`` spans into ``out``; -1 with an exception on failure */
static int sha256_spans(const char *const *spans, const size_t *lens, int count, unsigned char out[HASH_LEN]) {
    unsigned int len = 0;
    int ok = EVP_DigestInit_ex(SHA256_CTX, SHA256_MD, NULL);
    for (int i = 0; ok && i < count; i++) ok = EVP_DigestUpdate(SHA256_CTX, spans[i], lens[i]);
    if (!ok || !EVP_DigestFinal_ex(SHA256_CTX, out, &len) || len != HASH_LEN) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed (OpenSSL)");
        return -1;
    }
    return 0;
}

/* --- read_sealable_action: the common action, without its dict ------------------------------
 * What seal_entry takes: an action read_action takes whose strings are all printable ASCII
 * (so each is its own JCS text) and whose payload commitment holds. Only the values the
 * signer's state and link resolution need become Python objects. */

/* ((agent_id, event_id), ...) of the action's links: what link resolution needs */
static PyObject *link_pairs(const Action *a, const Reader *record) {
    PyObject *pairs = PyTuple_New((Py_ssize_t)a->links);
    Reader r = {record->d, record->n, a->links_at, NULL};
    int ascii = 1;
    Span link[3];
    for (int64_t i = 0; pairs != NULL && i < a->links; i++) {
        sp_link(&r, link, &ascii);
        PyObject *pair = Py_BuildValue("(NN)", PyUnicode_DecodeASCII((const char *)link[0].s, link[0].n, NULL),
                                       PyUnicode_DecodeASCII((const char *)link[1].s, link[1].n, NULL));
        if (pair == NULL) Py_CLEAR(pairs);
        else PyTuple_SET_ITEM(pairs, (Py_ssize_t)i, pair);
    }
    return pairs;
}

/* read_sealable_action(data): (event_id, agent_id, action_type, payload_hash, action_text,
 * links) of such an action, links being ((agent_id, event_id), ...); None otherwise */
static PyObject *read_sealable_action(PyObject *module, PyObject *data) {
    (void)module;
    Reader r;
    Action a;
    if (!read_whole_action(data, &r, &a) || !a.ascii) Py_RETURN_NONE;
    if (a.payload.s != NULL) {
        const char *spans[3] = {TAG_PAYLOAD, (const char *)a.salt.s, (const char *)a.payload.s};
        const size_t lens[3] = {sizeof TAG_PAYLOAD, HASH_LEN, (size_t)a.payload.n};
        unsigned char commitment[HASH_LEN];
        if (sha256_spans(spans, lens, 3, commitment) < 0) return NULL;
        if (memcmp(commitment, a.payload_hash.s, HASH_LEN) != 0) Py_RETURN_NONE;
    }
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    if (w_action(&o, &a, &r) == 0) {
        PyObject *parts[6] = {
            PyUnicode_DecodeASCII((const char *)a.event_id.s, a.event_id.n, NULL),
            PyUnicode_DecodeASCII((const char *)a.agent_id.s, a.agent_id.n, NULL),
            PyUnicode_DecodeASCII((const char *)a.action_type.s, a.action_type.n, NULL),
            PyBytes_FromStringAndSize((const char *)a.payload_hash.s, HASH_LEN),
            PyBytes_FromStringAndSize(o.buf, (Py_ssize_t)o.len), link_pairs(&a, &r)};
        if (parts[0] && parts[1] && parts[2] && parts[3] && parts[4] && parts[5])
            result = PyTuple_Pack(6, parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]);
        for (int i = 0; i < 6; i++) Py_XDECREF(parts[i]);
    }
    PyMem_Free(o.buf);
    return result;
}

static PyObject *seal_entry(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    /* header, action_record, action_text, spec_version, seq, prev_hash, received_at, topic,
     * partition, offset, agent_seq, agent_prev_hash, resolved_links, key_id */
    if (nargs != 14 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1]) || !PyBytes_Check(args[2])
            || PyBytes_GET_SIZE(args[1]) < HEADER_LEN || !(args[12] == Py_None || PyList_Check(args[12]))) {
        PyErr_SetString(PyExc_TypeError, "seal_entry(header: bytes, action_record: bytes, action_text: bytes, "
                        "spec_version, seq, prev_hash, received_at, topic, partition, offset, agent_seq, "
                        "agent_prev_hash, resolved_links: list | None, key_id)");
        return NULL;
    }
    EntryView v = {args[3], args[4], args[5], NULL, args[6], args[7], args[8], args[9], args[10], args[11],
                   args[12] == Py_None ? EMPTY_LIST : args[12], args[13], Py_None, Py_None};
    Out o = {NULL, 0, 0};
    PyObject *result = NULL;
    unsigned char digest[HASH_LEN], leaf[HASH_LEN];
    if (w_entry(&o, &v, PyBytes_AS_STRING(args[2]), (size_t)PyBytes_GET_SIZE(args[2])) < 0) {
        if (PyErr_ExceptionMatches(NeedsEscape)) {
            PyErr_Clear();
            result = Py_NewRef(Py_None);
        }
        goto done;
    }
    const char *preimage[1] = {o.buf};
    const size_t preimage_len[1] = {o.len};
    if (sha256_spans(preimage, preimage_len, 1, digest) < 0) goto done;
    const char *leaf_in[2] = {"\0", (const char *)digest};  /* merkle.leaf_hash(merkle_leaf_input(h)) */
    const size_t leaf_len[2] = {1, HASH_LEN};
    if (sha256_spans(leaf_in, leaf_len, 2, leaf) < 0) goto done;
    if ((v.entry_hash = PyBytes_FromStringAndSize((const char *)digest, HASH_LEN)) == NULL) goto done;
    o.len = 0;
    const char *record = PyBytes_AS_STRING(args[1]);
    if (out_raw(&o, PyBytes_AS_STRING(args[0]), (size_t)PyBytes_GET_SIZE(args[0])) == 0
            && av_entry(&o, &v, record + HEADER_LEN, PyBytes_GET_SIZE(args[1]) - HEADER_LEN) == 0) {
        PyObject *bytes = PyBytes_FromStringAndSize(o.buf, (Py_ssize_t)o.len);
        PyObject *leaf_hash = PyBytes_FromStringAndSize((const char *)leaf, HASH_LEN);
        if (bytes != NULL && leaf_hash != NULL) result = PyTuple_Pack(3, v.entry_hash, leaf_hash, bytes);
        Py_XDECREF(bytes);
        Py_XDECREF(leaf_hash);
    }
    Py_DECREF(v.entry_hash);
done:
    PyMem_Free(o.buf);
    return result;
}

/* --- the module ----------------------------------------------------------------------------- */

static PyObject *read_entry(PyObject *module, PyObject *data) {
    (void)module;
    if (!PyBytes_CheckExact(data) || PyBytes_GET_SIZE(data) < HEADER_LEN) Py_RETURN_NONE;
    Action a;
    Reader r = {(const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), HEADER_LEN, &a};
    PyObject *entry = rd_entry(&r);
    if (entry == NULL || r.p != r.n) {  /* refused, or trailing bytes */
        Py_XDECREF(entry);
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Out text = {NULL, 0, 0}, o = {NULL, 0, 0};
    EntryView v;
    view_of(entry, &v);
    int written = w_action(&text, &a, &r);
    if (written == 0) written = w_entry(&o, &v, text.buf, text.len);
    PyMem_Free(text.buf);
    return with_text(entry, &o, written);
}

static PyMethodDef METHODS[] = {
    {"read_entry", read_entry, METH_O,
     "read_entry(data: bytes) -> tuple[dict, bytes] | None\n\n"
     "The LedgerEntry in a canonical single-object record and its entry hash preimage\n"
     "(records.entry_hash_input), or None when this reader does not take the record.\n"
     "The 10-byte header is skipped unread: the caller checks it."},
    {"read_action", read_action, METH_O,
     "read_action(data: bytes) -> tuple[dict, bytes] | None\n\n"
     "The ActionEvent in a canonical single-object record and its JCS text (the action's part of\n"
     "the entry hash preimage), or None unless this reader proves every rule of\n"
     "records.validate_action except the payload commitment. The header is skipped unread."},
    {"is_canonical_json", is_canonical_json, METH_O,
     "is_canonical_json(data: bytes) -> bool\n\n"
     "True when data is RFC 8785 canonical JSON within this reader's subset (no floats, short\n"
     "integers, no code point from U+E000 up, keys without escapes); False: not proven."},
    {"entry_preimage", entry_preimage, METH_VARARGS,
     "entry_preimage(entry: dict, action_text: bytes) -> bytes | None\n\n"
     "records.entry_hash_input(entry), the action written as action_text (from read_action);\n"
     "None when a string would need a JSON escape."},
    {"encode_entry", encode_entry, METH_VARARGS,
     "encode_entry(header: bytes, entry: dict, action_body: bytes) -> bytes\n\n"
     "codec.encode('LedgerEntry', entry) byte for byte, the action's canonical body spliced in."},
    {"read_sealable_action", read_sealable_action, METH_O,
     "read_sealable_action(data: bytes) -> tuple[str, str, str, bytes, bytes, tuple] | None\n\n"
     "(event_id, agent_id, action_type, payload_hash, action_text, ((link agent_id, event_id), ...))\n"
     "of an action read_action takes, with strings of printable ASCII only and a payload commitment\n"
     "that holds; None otherwise."},
    {"seal_entry", (PyCFunction)(void (*)(void))seal_entry, METH_FASTCALL,
     "seal_entry(header, action_record, action_text, spec_version, seq, prev_hash, received_at, topic,\n"
     "           partition, offset, agent_seq, agent_prev_hash, resolved_links, key_id)\n"
     "    -> tuple[bytes, bytes, bytes] | None\n\n"
     "(entry_hash, its RFC 9162 leaf hash, the LedgerEntry single object) of an entry with no\n"
     "signature or timestamp token (resolved_links: a list of dicts, or None for none), its\n"
     "action being action_record's canonical body (action_text: its JCS\n"
     "text from read_action); None when one of the entry's strings would need a JSON escape."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_entry_reader",
                                    "Compiled reader of canonical LedgerEntry records (see avro_fast.read_entry).",
                                    -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__entry_reader(void) {
    for (int i = 0; i < K_COUNT; i++) {
        if (KEYS[i] == NULL && (KEYS[i] = PyUnicode_InternFromString(KEY_NAMES[i])) == NULL) return NULL;
    }
    if (SHA256_MD == NULL && (SHA256_MD = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
        return PyErr_Format(PyExc_ImportError, "OpenSSL has no SHA-256");
    if (SHA256_CTX == NULL && (SHA256_CTX = EVP_MD_CTX_new()) == NULL) return PyErr_NoMemory();
    if (EMPTY_LIST == NULL && (EMPTY_LIST = PyList_New(0)) == NULL) return NULL;
    PyObject *module = PyModule_Create(&MODULE);
    if (module == NULL) return NULL;
    NeedsEscape = PyErr_NewException("ledgerstream.core.wire._entry_reader.NeedsEscape", NULL, NULL);
    if (NeedsEscape == NULL || PyModule_AddObjectRef(module, "NeedsEscape", NeedsEscape) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
