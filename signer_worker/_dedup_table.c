/* ledgerstream.signer_worker._dedup_table: the dedup window's open-addressing table and
 * columns (signer_worker/dedup.py), probed and written in C.
 *
 * The window's memory stays where dedup.py allocates it (array.array and bytearray objects,
 * also read by numpy and by snapshots); a Table holds buffer views of them and does what
 * DedupWindow._find, the insert of DedupWindow.add and DedupWindow._evict do in Python, step
 * for step (linear probing, a fingerprint to confirm a match, backward-shift deletion), so both
 * leave the same bytes (tests/unit/test_dedup_native.py). Why: in the signer's loop the Python
 * insert cost ~6 us of the ~21 us per checkpoint-mode entry (docs/benchmarks-signer.md, round 8).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HASH 32

typedef struct {
    PyObject_HEAD
    Py_buffer views[8];
    int held;              /* how many views are held */
    uint64_t *keys;        /* slot -> h1 (0: empty) */
    int64_t *seqs;         /* slot -> seq */
    uint64_t *h1, *fp;     /* seq % horizon -> the id's two fingerprints */
    unsigned char *entry, *payload;  /* seq % horizon -> 32-byte hashes */
    uint32_t *agent, *action;        /* seq % horizon -> name numbers */
    uint64_t mask;
    int64_t horizon;
} Table;

static void table_dealloc(Table *t) {
    for (int i = 0; i < t->held; i++) PyBuffer_Release(&t->views[i]);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* a writable, contiguous view of ``obj`` with ``count`` items of ``itemsize`` bytes */
static void *view(Table *t, PyObject *obj, Py_ssize_t itemsize, Py_ssize_t count, const char *name) {
    Py_buffer *v = &t->views[t->held];
    if (PyObject_GetBuffer(obj, v, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    t->held++;
    if (v->len != itemsize * count) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, v->len, itemsize * count);
        return NULL;
    }
    return v->buf;
}

static int table_init(Table *t, PyObject *args, PyObject *kwds) {
    (void)kwds;
    PyObject *keys, *seqs, *h1, *fp, *entry, *payload, *agent, *action;
    unsigned long long mask;
    long long horizon;
    if (t->held) {
        PyErr_SetString(PyExc_TypeError, "a Table is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOOOOOOOKL", &keys, &seqs, &h1, &fp, &entry, &payload, &agent, &action, &mask,
                          &horizon)) return -1;
    if (horizon < 1 || (mask & (mask + 1)) != 0 || mask + 1 < (unsigned long long)horizon) {
        PyErr_SetString(PyExc_ValueError, "mask must be 2**k - 1 with 2**k >= horizon >= 1");
        return -1;
    }
    Py_ssize_t slots = (Py_ssize_t)(mask + 1), n = (Py_ssize_t)horizon;
    t->mask = mask;
    t->horizon = horizon;
    if (!(t->keys = view(t, keys, 8, slots, "slot keys")) || !(t->seqs = view(t, seqs, 8, slots, "slot seqs"))
            || !(t->h1 = view(t, h1, 8, n, "h1")) || !(t->fp = view(t, fp, 8, n, "fp"))
            || !(t->entry = view(t, entry, HASH, n, "entry hashes"))
            || !(t->payload = view(t, payload, HASH, n, "payload hashes"))
            || !(t->agent = view(t, agent, 4, n, "agents")) || !(t->action = view(t, action, 4, n, "actions")))
        return -1;
    return 0;
}

static int ready(Table *t) {
    if (t->held == 8) return 1;
    PyErr_SetString(PyExc_ValueError, "the Table is not initialised");
    return 0;
}

/* the slot holding (h1, fp), or -1 */
static int64_t probe(Table *t, uint64_t h1, uint64_t fp) {
    uint64_t slot = h1 & t->mask;
    for (;;) {
        uint64_t k = t->keys[slot];
        if (k == 0) return -1;
        if (k == h1 && t->fp[t->seqs[slot] % t->horizon] == fp) return (int64_t)slot;
        slot = (slot + 1) & t->mask;
    }
}

static PyObject *table_find(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(t)) return NULL;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "find(h1, fp)");
        return NULL;
    }
    uint64_t h1 = PyLong_AsUnsignedLongLong(args[0]), fp = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromLongLong(probe(t, h1, fp));
}

static PyObject *table_insert(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (!ready(t)) return NULL;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "insert(seq, h1, fp, entry_hash, payload_hash, agent, action)");
        return NULL;
    }
    int64_t seq = PyLong_AsLongLong(args[0]);
    uint64_t h1 = PyLong_AsUnsignedLongLong(args[1]), fp = PyLong_AsUnsignedLongLong(args[2]);
    unsigned long agent = PyLong_AsUnsignedLong(args[5]), action = PyLong_AsUnsignedLong(args[6]);
    if (PyErr_Occurred()) return NULL;
    if (seq < 0 || h1 == 0 || agent > UINT32_MAX || action > UINT32_MAX || !PyBytes_Check(args[3])
            || !PyBytes_Check(args[4]) || PyBytes_GET_SIZE(args[3]) != HASH || PyBytes_GET_SIZE(args[4]) != HASH) {
        PyErr_SetString(PyExc_ValueError, "insert: seq >= 0, h1 != 0, two 32-byte hashes, 32-bit name numbers");
        return NULL;
    }
    int64_t r = seq % t->horizon;
    t->h1[r] = h1;
    t->fp[r] = fp;
    memcpy(t->entry + HASH * r, PyBytes_AS_STRING(args[3]), HASH);
    memcpy(t->payload + HASH * r, PyBytes_AS_STRING(args[4]), HASH);
    t->agent[r] = (uint32_t)agent;
    t->action[r] = (uint32_t)action;
    /* to the id's slot (an id sequenced again names its newest entry) or the first empty one */
    uint64_t slot = h1 & t->mask;
    for (;;) {
        uint64_t k = t->keys[slot];
        if (k == 0) {
            t->keys[slot] = h1;
            break;
        }
        if (k == h1 && t->fp[t->seqs[slot] % t->horizon] == fp) break;
        slot = (slot + 1) & t->mask;
    }
    t->seqs[slot] = seq;
    Py_RETURN_NONE;
}

/* forget seq: delete its slot unless its id now names a newer entry (backward-shift deletion) */
static PyObject *table_evict(Table *t, PyObject *arg) {
    if (!ready(t)) return NULL;
    int64_t seq = PyLong_AsLongLong(arg);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    if (seq < 0) {
        PyErr_SetString(PyExc_ValueError, "evict: seq >= 0");
        return NULL;
    }
    uint64_t h1 = t->h1[seq % t->horizon], mask = t->mask;
    uint64_t hole = h1 & mask;
    while (t->keys[hole] && !(t->keys[hole] == h1 && t->seqs[hole] == seq)) hole = (hole + 1) & mask;
    if (!t->keys[hole]) Py_RETURN_NONE;
    uint64_t at = hole;
    for (;;) {
        at = (at + 1) & mask;
        uint64_t k = t->keys[at];
        if (!k) break;
        uint64_t home = k & mask;
        if (((hole - home) & mask) < ((at - home) & mask)) {  /* home is not in (hole, at]: it may move back */
            t->keys[hole] = k;
            t->seqs[hole] = t->seqs[at];
            hole = at;
        }
    }
    t->keys[hole] = 0;
    Py_RETURN_NONE;
}

static PyMethodDef TABLE_METHODS[] = {
    {"find", (PyCFunction)(void (*)(void))table_find, METH_FASTCALL,
     "find(h1, fp) -> int: the slot of the id with these fingerprints, or -1 (DedupWindow._find)."},
    {"insert", (PyCFunction)(void (*)(void))table_insert, METH_FASTCALL,
     "insert(seq, h1, fp, entry_hash, payload_hash, agent, action): write seq's columns and slot\n"
     "(what DedupWindow.add writes)."},
    {"evict", (PyCFunction)table_evict, METH_O, "evict(seq): delete seq's slot (DedupWindow._evict)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ledgerstream.signer_worker._dedup_table.Table",
    .tp_doc = "Table(slot_keys, slot_seqs, h1, fp, entry_hashes, payload_hashes, agents, actions, mask, horizon):\n"
              "the dedup window's table over its arrays (views held for the Table's life).",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)table_init,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_methods = TABLE_METHODS,
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_dedup_table",
                                    "The signer's dedup table in C (see signer_worker/dedup.py).", -1, NULL,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__dedup_table(void) {
    if (PyType_Ready(&TableType) < 0) return NULL;
    PyObject *module = PyModule_Create(&MODULE);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
